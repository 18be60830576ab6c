"""Reading an experiment: YAML files, `base:` inheritance, `--set` overrides, `${vars}`, then the schema.

This is the only module that reads YAML. Every mistake is a one-line `UserError` naming the file and the key:
a file that is not UTF-8 text, a YAML syntax error, a key given twice in one mapping (with both lines), an unknown
key (with the closest known one), a value out of range. Documents are bounded (`MAX_NODES` values, `MAX_DEPTH`
levels, counting every alias as the copy it stands for), so a small file that expands into a huge one is refused
before anything walks it.

Example:
>>> experiment = load_experiment("configs/quickstart.yaml", ["train.epochs=3"])
>>> experiment.train.epochs
3
"""

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cnnrun.config.dataset import DATASET_KINDS
from cnnrun.config.expressions import resolve_vars
from cnnrun.config.schema import Experiment
from cnnrun.errors import UserError, did_you_mean

MAX_NODES = 100_000  # values in one document, aliases expanded: a large config has a few hundred
MAX_DEPTH = 64  # levels of nesting: a config has under ten


def check_size(doc: Any, source: str) -> None:
    """Refuse a document with more than `MAX_NODES` values or `MAX_DEPTH` levels once its aliases are expanded.

    YAML's aliases (`*name`) let a ten-line file stand for billions of values (the "billion laughs"); everything
    that walks the document (`${vars}`, the schema, `config.yaml`) would expand them. Counting stops at the
    bound, so the check itself is quick.

    Args:
        doc: the document as read.
        source: the file or `--set` it came from, named in the error.
    """
    stack, count = [(doc, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise UserError(f"{source}: more than {MAX_NODES:,} values once YAML aliases are expanded; "
                            f"a config is far smaller (an alias bomb?)")
        if depth > MAX_DEPTH:
            raise UserError(f"{source}: nested more than {MAX_DEPTH} levels deep")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names the same key twice: YAML keeps the last silently, so the first is refused instead."""

    def __init__(self, key: Any, first_line: int, second_line: int):
        super().__init__(f"key {key!r} twice")
        self.key, self.first_line, self.second_line = key, first_line, second_line


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping with a key given twice (two `train:` sections, say).

    Keys that come in through a merge (`<<: *defaults`) may be given again: that is what a merge is for.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKeyError(key, seen[key], line)
                seen[key] = line
            except TypeError:  # an unhashable key: the safe loader's own error says so
                continue
        return super().construct_mapping(node, deep=deep)


def _one_line(error: yaml.YAMLError) -> str:
    """PyYAML's problem description, on one line (its messages span several, with a copy of the text)."""
    problem = error.problem if isinstance(error, yaml.MarkedYAMLError) and error.problem else str(error)
    return " ".join(str(problem).split())


def _parse(text: str, source: str, loader: type = UniqueKeyLoader) -> Any:
    """Parse a config file's text; a syntax error or a key given twice is a one-line UserError naming `source`
    and the line."""
    try:
        return yaml.load(text, Loader=loader)
    except DuplicateKeyError as e:
        raise UserError(f"{source}:{e.second_line}: key '{e.key}' is given twice in one mapping (lines "
                        f"{e.first_line} and {e.second_line}); YAML would drop the first silently: keep one") from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise UserError(f"{where}: YAML syntax error: {_one_line(e)}") from e
    except yaml.YAMLError as e:
        raise UserError(f"{source}: YAML error: {_one_line(e)}") from e
    except RecursionError as e:
        raise UserError(f"{source}: nested too deeply to read") from e


def read_yaml(path: Path, c_parser: bool = False) -> dict[str, Any]:
    """Read one YAML mapping; a missing file, a file that is not UTF-8 text or a syntax error is a UserError.

    Args:
        path: the YAML file.
        c_parser: parse with libyaml's C parser when PyYAML has it (about 8× faster), for files cnnrun wrote
            itself (a run's config.yaml, which `cnnrun runs` reads by the thousand): both parsers read them
            alike. Defaults to False (PyYAML's own parser, whose error messages the tests know).
    """
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        hint = f" (it holds {', '.join(found[:3])}{', …' if len(found) > 3 else ''})" if found else ""
        raise UserError(f"{path}: is a directory; give an experiment's YAML file{hint}")
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); a config "
                        f"is a YAML file saved as UTF-8") from e
    doc = _parse(text, str(path), getattr(yaml, "CSafeLoader", yaml.SafeLoader) if c_parser else UniqueKeyLoader)
    check_size(doc, str(path))
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise UserError(f"{path}: an experiment is a YAML mapping (key: value), got {type(doc).__name__}")
    return doc


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge `override` into a copy of `base`: mappings merge key by key, lists and values are replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_with_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a config and the chain of `base:` files it extends (paths relative to each file)."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise UserError(f"{path}: `base:` files form a loop: {chain}")
    doc = read_yaml(path)
    base = doc.pop("base", None)
    if base is None:
        return doc
    if not isinstance(base, str):
        raise UserError(f"{path}: base: a path to another YAML file, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise UserError(f"{path}: base: {base_path} not found")
    merged = deep_merge(load_with_bases(base_path, (*seen, path)), doc)
    train = doc.get("train")
    if isinstance(train, dict) and "phases" in train and "epochs" not in train:
        merged["train"].pop("epochs", None)  # the phases' sum, not the base's count (which the file cannot unset)
    return merged


def dotted_keys(doc: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as `{dotted path: value}`, in the paths `--set` takes (list items by number); an empty
    mapping or list is a value of its own.

    Example:
    >>> dotted_keys({"train": {"epochs": 3}, "model": {"layers": [{"Dense": {"units": 4}}]}})
    {'train.epochs': 3, 'model.layers.0.Dense.units': 4}
    """
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else None
    if items is None or not doc:
        return {prefix: doc} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(dotted_keys(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


MISSING = "(absent)"  # `differing_keys`' value for a key that one config does not have


def differing_keys(configs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The dotted keys whose values are not the same in every config, each with its value per config (`MISSING`
    where a config lacks the key), in the order the keys first appear.

    A name alone (`optimizer: sgd`) and a mapping with a name (`optimizer: {name: adam, learning_rate: 0.01}`)
    are compared as `compile.optimizer.name`.
    """

    flats = [dotted_keys(config) for config in configs]
    named = {key.removesuffix(".name") for flat in flats for key in flat if key.endswith(".name")}
    flats = [{f"{key}.name" if key in named and isinstance(value, str) else key: value  # `sgd` = `{name: sgd}`
              for key, value in flat.items()} for flat in flats]
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    differing = {}
    for key in keys:
        values = [flat.get(key, MISSING) for flat in flats]
        if len({json.dumps(value, sort_keys=True, default=str) for value in values}) > 1:
            differing[key] = values
    return differing


def apply_override(doc: dict[str, Any], assignment: str) -> None:
    """Apply one `--set KEY=VALUE`: KEY is a dotted path (list items by number), VALUE is read as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UserError(f"--set {assignment}: write KEY=VALUE, e.g. --set train.epochs=3")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader)
    except DuplicateKeyError as e:
        raise UserError(f"--set {assignment}: key '{e.key}' is given twice; keep one") from e
    except yaml.YAMLError as e:
        raise UserError(f"--set {assignment}: the value is not valid YAML: {_one_line(e)}") from e
    except RecursionError as e:
        raise UserError(f"--set {key}: the value is nested too deeply to read") from e
    check_size(value, f"--set {key}")
    parts = key.split(".")
    node: Any = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {key}: '{'.'.join(parts[:i])}' is a list of {len(node)}; "
                                f"'{part}' is not an index in it")
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
            if not last and node.get(part) is None:
                node[part] = {}
        else:
            raise UserError(f"--set {key}: '{'.'.join(parts[:i])}' is a value, not a section")
        if last:
            node[index] = value
        else:
            node = node[index]


# ---------------------------------------------------------------- validation


def _section_at(loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, list[str]]:
    """Walk a pydantic error location through the schema: the section model it ends in, and the key path.

    A dataset kind's tag (`shapes`, `npz`, …) in the location picks that kind's model; it is not a key.
    """
    cls: Any = Experiment
    keys: list[str] = []
    for part in loc:
        if cls is DATASET_KINDS and part in DATASET_KINDS:
            cls = DATASET_KINDS[part]
            continue
        keys.append(str(part))
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            cls = None
            continue
        if (cls, part) == (Experiment, "dataset"):
            cls = DATASET_KINDS
            continue
        annotation = cls.model_fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        cls = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return (cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None), keys


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line for the first problem pydantic found: file, key path, what is wrong, what would be right."""
    first = error.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
    if first["type"] == "union_tag_invalid":
        name = first["ctx"]["tag"]
        return (f"{source}: dataset.name: unknown dataset '{name}'{did_you_mean(name, DATASET_KINDS)}; "
                f"known: {', '.join(DATASET_KINDS)}")
    section, keys = _section_at(loc)
    key = ".".join(keys) or "(top level)"
    if first["type"] == "extra_forbidden":
        parent, _ = _section_at(loc[:-1])
        known = list(parent.model_fields) if parent else []
        where = ".".join(keys[:-1]) or "the top level"
        hint = did_you_mean(keys[-1], known)
        if len(loc) > 1 and loc[0] == "dataset" and loc[1] in DATASET_KINDS:
            where = f"dataset (name: {loc[1]})"
            owners = [name for name, kind in DATASET_KINDS.items() if keys[-1] in kind.model_fields]
            if owners:
                listed = " and ".join([", ".join(owners[:-1]), owners[-1]] if len(owners) > 1 else owners)
                hint = f" (it is for the {listed} dataset{'s' if len(owners) > 1 else ''})"
        return f"{source}: unknown key '{key}'{hint}; {where} takes: {', '.join(known)}"
    if first["type"] == "missing":
        return f"{source}: {key}: required key is missing"
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{source}: {key}: {message}{shown}"


def resolve_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a config with its bases, apply `--set` overrides, substitute vars: a plain dict.

    Args:
        path: the YAML file.
        overrides: `KEY=VALUE` strings, as given to `--set`.
    """
    path = Path(path)
    doc = load_with_bases(path)
    for assignment in overrides or []:
        apply_override(doc, assignment)
    check_size(doc, str(path))
    try:
        doc = resolve_vars(doc)
    except UserError as e:
        raise e.at(str(path)) from e
    doc.setdefault("name", path.stem)
    return doc


def validate_experiment(doc: dict[str, Any], source: str) -> Experiment:
    """Validate a resolved config dict; problems become a one-line UserError naming `source` and the key."""
    try:
        experiment = Experiment.model_validate(doc)
        experiment._source = source
        experiment.dataset._source = source
        return experiment
    except ValidationError as e:
        raise UserError(format_validation_error(e, source)) from e
    except UserError as e:  # raised by a section's own check (unknown layer, optimizer, loss)
        raise e.at(source) from e


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Load, resolve and validate an experiment file.

    Relative `dataset.path` and `dataset.data_dir` are taken from the current folder and stored absolute.

    Args:
        path: the YAML file.
        overrides: `KEY=VALUE` strings, as given to `--set`.
    """
    return validate_experiment(resolve_config(path, overrides), str(path))


def load_saved_experiment(path: str | Path) -> Experiment:
    """A run folder's own `config.yaml`, as `resume`, `evaluate` and `predict` read it.

    A run written before each dataset kind had its own keys lists every dataset key; those of another kind held
    their defaults there (the schema of the time refused anything else), so they are dropped, not refused.
    """
    doc = resolve_config(path)
    dataset = doc.get("dataset")
    if isinstance(dataset, dict) and dataset.get("name") in DATASET_KINDS:
        own = DATASET_KINDS[dataset["name"]].model_fields
        doc["dataset"] = {key: value for key, value in dataset.items() if key in own}
    return validate_experiment(doc, str(path))


def experiment_to_yaml(experiment: Experiment) -> str:
    """The complete experiment (defaults included) as YAML: what a run's `config.yaml` holds.

    Long strings stay on one line (PyYAML would fold them at 80 columns), so the file reads back exactly.
    """
    return yaml.safe_dump(experiment.model_dump(mode="json"), sort_keys=False, allow_unicode=True,
                          width=float("inf"))
