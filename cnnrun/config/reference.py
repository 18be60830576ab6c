"""The README's configuration reference, written from the schema: one table per section, one per dataset kind.

The field descriptions in `cnnrun/config/schema.py` and `cnnrun/config/dataset.py` are the documentation; this
module puts them between the two marker comments of the README's "Configuration reference", so the two never
drift apart. `make docs` runs it; a test fails when the README is stale.

Usage:
    python -m cnnrun.config.reference            # rewrite the README's section
    python -m cnnrun.config.reference --check    # exit 1 when the README's section is stale
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

START = "<!-- config-reference: start (written by `make docs` from cnnrun/config; do not edit by hand) -->"
END = "<!-- config-reference: end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


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
    return "\n".join([title, "", *([lead, ""] if lead else []), "| key | default | what it does |",
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
                      f"{title}\n\n{(kind.__doc__ or '').strip()} No keys of its own.\n")
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
    """The configuration reference as Markdown: the tables between the README's markers."""
    return "\n".join(_section_tables(Experiment, ""))


def updated_readme(text: str) -> str:
    """`text` (a README) with the part between the markers replaced by the current reference."""
    if START not in text or END not in text:
        raise SystemExit(f"README: the markers are missing; put {START} and {END} around the reference")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n\n{reference_markdown()}\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    """Rewrite the README's reference (`--check`: only say whether it is current). Returns the exit code."""
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    text = README.read_text(encoding="utf-8")
    new = updated_readme(text)
    if check:
        if new != text:
            print(f"{README}: the configuration reference is stale; run `make docs`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"{README}: configuration reference written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
