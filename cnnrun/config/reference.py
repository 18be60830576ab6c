"""The configuration reference, written from the schema: one table per section, one per dataset kind.

The field descriptions in `cnnrun/config/schema.py` and `cnnrun/config/dataset.py` are the documentation; this
module writes them as the documentation site's page `docs/reference.md`, so the two never drift apart. The docs
build runs it first (`on_pre_build`, a MkDocs hook named in `mkdocs.yml`), and a test fails when the committed
page is stale.

Usage:
    python -m cnnrun.config.reference            # rewrite docs/reference.md
    python -m cnnrun.config.reference --check    # exit 1 when docs/reference.md is stale
"""

import inspect
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cnnrun.config.dataset import DATASET_KINDS, DatasetBase
from cnnrun.config.schedules import SCHEDULES, schedule_keys
from cnnrun.config.schema import CompileConfig, Experiment

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
HEADER = """# Configuration reference

<!-- Written by `python -m cnnrun.config.reference` (the docs build runs it) from the field descriptions in
cnnrun/config; do not edit by hand: edit the descriptions. -->

Every key of an experiment config, its default and what it does, section by section, written from the schema
cnnrun checks configs with. How a config is written (`base:`, `${vars}`, layers): see
[Configuration](configuration/index.md).
"""


def _section_of(field: FieldInfo) -> type[BaseModel] | None:
    """The section model a field holds (`train: TrainConfig`, `augmentation: AugmentationConfig | None`)."""
    candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _default(field: FieldInfo) -> str:
    """A field's default as the table shows it: a YAML-like value, `—` for none, `required`, `(section)`."""
    shown = (field.json_schema_extra or {}).get("default_shown") if isinstance(field.json_schema_extra, dict) \
        else None
    if shown:
        return str(shown)
    if field.default_factory is not None:
        if isinstance(field.default_factory, type) and issubclass(field.default_factory, BaseModel):
            return "(section)"
        value: Any = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "—"
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def _cell(text: str | None) -> str:
    """Text that stays inside one Markdown table cell."""
    return (text or "").replace("|", "\\|")


def _table(title: str, fields: dict[str, FieldInfo], lead: str = "") -> str:
    rows = [f"| `{key}` | {_default(field)} | {_cell(field.description)} |" for key, field in fields.items()]
    return "\n".join([f"## {title}", "", *([lead, ""] if lead else []), "| key | default | what it does |",
                      "|---|---|---|", *rows, ""])


def _dataset_tables() -> list[str]:
    """One table of the keys every kind takes, then one per kind with its own keys."""
    common = {k: f for k, f in DatasetBase.model_fields.items() if k != "name"}
    tables = [_table("`dataset`: every kind", common,
                     "`name` picks the kind of data (default `shapes`); each kind takes these keys and its own.")]
    kinds: dict[type[DatasetBase], list[str]] = {}
    for name, kind in DATASET_KINDS.items():
        kinds.setdefault(kind, []).append(name)
    for kind, names in kinds.items():
        own = {k: f for k, f in kind.model_fields.items() if k not in DatasetBase.model_fields}
        title = f"`dataset` with `name: {', '.join(names)}`"
        tables.append(_table(title, own, (kind.__doc__ or "").strip()) if own else
                      f"## {title}\n\n{(kind.__doc__ or '').strip()} No keys of its own.\n")
    return tables


def _schedule_tables() -> list[str]:
    """One table per learning-rate schedule, the keys of `compile.optimizer.learning_rate: {schedule: …}`."""
    return [_table(f"`compile.optimizer.learning_rate` with `schedule: {name}`",
                   {k: kind.model_fields[k] for k in schedule_keys(kind)[1:]}, inspect.cleandoc(kind.__doc__ or ""))
            for name, kind in SCHEDULES.items()]


def _section_tables(model: type[BaseModel], path: str) -> list[str]:
    """The table of `model` at `path`, then those of its sections, depth first."""
    tables = [_table(f"`{path or 'top level'}`", model.model_fields)]
    for key, field in model.model_fields.items():
        where = f"{path}.{key}" if path else key
        if (model, key) == (Experiment, "dataset"):
            tables.extend(_dataset_tables())
        elif section := _section_of(field):
            tables.extend(_section_tables(section, where))
    if model is CompileConfig:
        tables.extend(_schedule_tables())
    return tables


def reference_markdown() -> str:
    """The configuration reference as Markdown: the tables, section by section."""
    return "\n".join(_section_tables(Experiment, ""))


def page_markdown() -> str:
    """The whole page `docs/reference.md`: its title and introduction, then the tables."""
    return f"{HEADER}\n{reference_markdown()}"


def write_page(path: Path = PAGE) -> bool:
    """Write the reference to `path` unless it is already current; return whether the file changed."""
    text = page_markdown()
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def on_pre_build(config: object) -> None:
    """MkDocs hook (`hooks:` in mkdocs.yml): regenerate the page before every build, so the site is never stale."""
    write_page()


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/reference.md (`--check`: only say whether it is current). Returns the exit code."""
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    if check:
        if not PAGE.is_file() or PAGE.read_text(encoding="utf-8") != page_markdown():
            print(f"{PAGE}: the configuration reference is stale; run `make docs`", file=sys.stderr)
            return 1
        return 0
    if write_page():
        print(f"{PAGE}: configuration reference written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
