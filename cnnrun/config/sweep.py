"""A sweep file: an experiment config (it may use `base:` and set any key) with one more section, `sweep:`.

`load_sweep` reads it and checks everything that can be checked before any trial starts: the `sweep:` section
against `SweepConfig`, the experiment against the schema, every param path against the experiment, the config
of every grid point (or of both ends of every range) against the schema (`Sweep.points`); once Keras is loaded,
the objective metric against what a run logs (`cnnrun.training.sweep.with_objective`) and every point's model,
built and compiled (`cnnrun.training.sweep.check_points`). `inspect` and `config show` take a sweep file too
(`load_experiment_or_sweep`); `train` refuses one (`sweeps=False`), naming `cnnrun sweep`.

Example:
>>> sweep = load_sweep("configs/quickstart_sweep.yaml")
>>> sweep.trial_experiment({"compile.optimizer.learning_rate": 0.001}, seed=8).compile.optimizer
{'name': 'adam', 'learning_rate': 0.001}
"""

import contextlib
import copy
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from cnnrun.config.load import (
    apply_override,
    dotted_keys,
    experiment_to_yaml,
    resolve_config,
    validate_experiment,
)
from cnnrun.config.schema import Experiment
from cnnrun.config.sections import Section
from cnnrun.errors import UserError, did_you_mean

MAX_GRID = 10_000  # grid points a sweep may list
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")


class Space(Section):
    """The values one param takes: exactly one of `choice`, `int` or `float`."""

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    choice: list[Any] | None = Field(None, min_length=1, description="The values to choose from, any YAML values: "
                                     "`{choice: [adam, sgd]}`.")
    int_range: tuple[int, int] | None = Field(None, alias="int", description="Whole numbers from lo to hi, both "
                                              "included: `{int: [16, 64], step: 16}`.")
    float_range: tuple[float, float] | None = Field(None, alias="float", description="Numbers from lo to hi: "
                                                    "`{float: [1.0e-4, 1.0e-2], log: true}`.")
    log: bool = Field(False, description="Draw `int` or `float` on a log scale (lo > 0).")
    step: float | None = Field(None, gt=0, description="`int` or `float` in steps of this size from lo (a grid "
                               "needs it for `float`; `int` steps by 1 by default).")

    @model_validator(mode="after")
    def _one_kind(self) -> "Space":
        kinds = [k for k in ("choice", "int", "float") if self.bounds(k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of {choice: [...]}, {int: [lo, hi]}, {float: [lo, hi]}")
        bounds = self.bounds(kinds[0])
        if kinds[0] == "choice":
            if self.log or self.step is not None:
                raise ValueError("`log` and `step` are for int and float ranges, not choice")
            return self
        lo, hi = bounds
        if lo > hi or (kinds[0] == "float" and lo == hi):
            raise ValueError(f"[lo, hi] with lo < hi, got [{lo}, {hi}]")
        if self.log and lo <= 0:
            raise ValueError(f"log: true needs lo > 0, got {lo}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot go together (Optuna draws one or the other)")
        if kinds[0] == "int" and self.step is not None and self.step != int(self.step):
            raise ValueError(f"an int range steps by a whole number, got step {self.step}")
        return self

    def bounds(self, kind: str) -> Any:
        return {"choice": self.choice, "int": self.int_range, "float": self.float_range}[kind]

    def grid(self) -> list[Any] | None:
        """Every value, for a grid; None for a float range without `step`."""
        if self.choice is not None:
            return list(self.choice)
        if self.int_range is not None:
            lo, hi = self.int_range
            return list(range(lo, hi + 1, int(self.step or 1)))
        if self.step is None:
            return None
        lo, hi = self.float_range
        return [round(lo + i * self.step, 12) for i in range(int(math.floor((hi - lo) / self.step + 1e-9)) + 1)]

    def ends(self) -> list[Any]:
        """The values a trial's config is checked with before the sweep starts: every choice, or lo and hi."""
        return self.grid() if self.choice is not None else list(self.int_range or self.float_range)

    def suggest(self, trial, name: str) -> Any:
        """The value of this param for an Optuna trial (`suggest_categorical`, `suggest_int`, `suggest_float`)."""
        if self.choice is not None:
            # Optuna stores str, int, float, bool or None; other YAML values (lists) travel as JSON text
            plain = all(v is None or isinstance(v, str | int | float | bool) for v in self.choice)
            picked = trial.suggest_categorical(name, self.choice if plain else [json.dumps(v) for v in self.choice])
            return picked if plain else json.loads(picked)
        if self.int_range is not None:
            return trial.suggest_int(name, *self.int_range, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, *self.float_range, step=self.step, log=self.log)


class Objective(Section):
    metric: str = Field("val_loss", description="The logged value a trial is judged by, e.g. `val_accuracy` "
                        "(its best epoch's value).")
    mode: Literal["auto", "min", "max"] = Field("auto", description="min, max, or auto from the name.")


class SweepConfig(Section):
    """The `sweep:` section of a sweep file."""

    params: dict[str, Space] = Field(min_length=1, description="Dotted config paths (as `--set` takes them) and "
                                     "their spaces: `compile.optimizer.learning_rate: {float: [1.0e-4, 1.0e-2], "
                                     "log: true}`, `train.batch_size: {choice: [32, 64]}`.")
    method: Literal["grid", "random", "tpe"] = Field("tpe", description="grid: every combination once; random: "
                                                     "Optuna's RandomSampler; tpe: its TPESampler.")
    objective: Objective = Field(default_factory=Objective, description="`{metric: val_accuracy, mode: max}`.")
    trials: int | None = Field(None, ge=1, description="Trials to finish in all (over every run of the command and "
                               "every worker). Default for grid: every combination; random and tpe need it.")
    timeout: float | None = Field(None, gt=0, description="Seconds after which a command starts no new trial.")
    pruner: Literal["none", "median", "hyperband"] = Field("none", description="Stop trials that do badly, "
                                                           "judged every epoch (Optuna's MedianPruner or "
                                                           "HyperbandPruner); their run folders say `pruned`.")
    startup_trials: int = Field(1, ge=0, description="median: trials to finish before any is pruned.")
    storage: str | None = Field(None, description="An RDB URL (`sqlite:///sweep.db`, `postgresql://user@host/db`, "
                                "`mysql://…`) that machines share to join one study. Default: `study.journal` "
                                "in the sweep's folder (Optuna's journal file storage).")
    heartbeat: int = Field(60, ge=1, description="An RDB storage: seconds between a trial's heartbeats; a trial "
                           "silent for twice as long (a machine that died) is failed and retried.")

    @model_validator(mode="after")
    def _enough(self) -> "SweepConfig":
        if self.method == "grid":
            open_ = [name for name, space in self.params.items() if space.grid() is None]
            if open_:
                raise ValueError(f"grid: {', '.join(open_)} is a float range without `step`; give a step or use "
                                 f"method random or tpe")
        elif self.trials is None:
            raise ValueError(f"method {self.method} needs `trials:` (how many to finish)")
        if self.storage is not None and self.storage.split(":", 1)[0].split("+")[0] not in STORAGE_SCHEMES:
            raise ValueError(f"storage: an RDB URL ({', '.join(s + '://…' for s in STORAGE_SCHEMES)}), got "
                             f"{self.storage!r}")
        return self


@dataclass
class Sweep:
    """A checked sweep file: the experiment every trial starts from, and the `sweep:` section."""

    source: str
    doc: dict[str, Any]
    experiment: Experiment
    config: SweepConfig
    monitor: str = ""  # the objective metric as a run logs it, once checked (`cnnrun.training.sweep.with_objective`)

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the params' values, in order (method grid), at most `MAX_GRID`."""
        names = list(self.config.params)
        values = [self.config.params[name].grid() for name in names]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.islice(itertools.product(*values),
                                                                                   MAX_GRID)]

    def points(self) -> list[dict[str, Any]]:
        """The params a trial's config is checked with before the sweep starts: every grid point, or every
        combination of the ends of the ranges and the choices (method random or tpe); at most `MAX_GRID`."""
        if self.config.method == "grid":
            return self.grid()
        ends = itertools.product(*(space.ends() for space in self.config.params.values()))
        return [dict(zip(self.config.params, combo, strict=True)) for combo in itertools.islice(ends, MAX_GRID)]

    @property
    def planned(self) -> int:
        return self.config.trials or len(self.grid())

    def describe(self) -> str:
        """One line: what the sweep trains, and the command that runs it."""
        what = f"a grid of {len(self.grid())} points" if self.config.method == "grid" else \
            f"{self.config.method} sampling"
        return (f"{self.source} is a sweep file: {what}, {self.planned} trials, over {', '.join(self.config.params)}"
                f"; shown: the experiment every trial starts from. Run the sweep with: cnnrun sweep {self.source}")

    def to_yaml(self) -> str:
        """The sweep file resolved: the complete experiment (as `config show` writes it) and its `sweep:` section
        with every default; it loads back to the same sweep."""
        section = self.config.model_dump(mode="json", by_alias=True, exclude_none=True)
        section["params"] = {name: space.model_dump(mode="json", by_alias=True, exclude_none=True,
                                                    exclude_defaults=True)
                             for name, space in self.config.params.items()}
        return experiment_to_yaml(self.experiment) + yaml.safe_dump(
            {"sweep": section}, sort_keys=False, allow_unicode=True, width=float("inf"))

    def trial_experiment(self, params: dict[str, Any], seed: int) -> Experiment:
        """The experiment of one trial: the sweep's, with `seed` and the params set, validated."""
        doc = copy.deepcopy(self.doc)
        doc["seed"] = seed
        for path, value in params.items():
            # as YAML, which reads it back as it was (PyYAML reads JSON's 1e-09 as a string)
            apply_override(doc, f"{path}={yaml.safe_dump(value, default_flow_style=True, width=float('inf'))}")
        return validate_experiment(doc, self.source)


def _at(tree: Any, path: str) -> tuple[bool, Any]:
    """Whether the dotted `path` (list items by number) is in `tree`, and what is there."""
    for part in path.split(".") if path else []:
        if isinstance(tree, dict) and part in tree:
            tree = tree[part]
        elif isinstance(tree, list) and part.isdigit() and int(part) < len(tree):
            tree = tree[int(part)]
        else:
            return False, None
    return True, tree


def _check_path(path: str, doc: dict[str, Any], full: dict[str, Any], source: str) -> None:
    """A param path must name a key the experiment has: in the file, or as a default of the schema. Otherwise a
    UserError with the closest path the experiment has, and the keys (or items) of the deepest part that exists."""
    def found(part: str) -> tuple[bool, Any]:
        return next(((True, tree) for ok, tree in (_at(full, part), _at(doc, part)) if ok), (False, None))

    if found(path)[0]:
        return
    parts = path.split(".")
    depth = max(i for i in range(len(parts)) if found(".".join(parts[:i]))[0])  # the top level (0) always is
    parent_path, parent = ".".join(parts[:depth]), found(".".join(parts[:depth]))[1]
    paths = {".".join(key.split(".")[:n]) for key in [*dotted_keys(doc), *dotted_keys(full)]
             for n in range(1, key.count(".") + 2)}
    known = ", ".join(map(str, parent)) if isinstance(parent, dict) else \
        f"items 0 to {len(parent) - 1}" if isinstance(parent, list) and parent else ""
    raise UserError(f"{source}: sweep.params: '{path}' is not a key of the experiment{did_you_mean(path, paths)}"
                    + (f"; {parent_path or 'the top level'} takes: {known}" if known else ""))


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> Sweep:
    """Read and check a sweep file (see the module's description); every problem is a one-line UserError.

    Args:
        path: the sweep file.
        overrides: `KEY=VALUE` strings, as given to `--set` (`sweep.trials=2` too).
    """
    return _sweep_of(resolve_config(path, overrides), str(path))


def _sweep_of(doc: dict[str, Any], source: str) -> Sweep:
    """The checked sweep of a resolved sweep file `doc` (read from `source`); see `load_sweep`."""
    section = doc.pop("sweep", None)
    if not isinstance(section, dict):
        raise UserError(f"{source}: a sweep file is an experiment with a `sweep:` section (params, method, "
                        f"objective, trials); found none")
    try:
        config = SweepConfig.model_validate(section)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in ("sweep", *first["loc"]) if not str(p).startswith("function-"))
        raise UserError(f"{source}: {where}: {first['msg'].removeprefix('Value error, ')}") from e
    experiment = validate_experiment(doc, source)
    full = experiment.model_dump(mode="json")
    for name in config.params:
        _check_path(name, doc, full, source)
    sweep = Sweep(source, doc, experiment, config)
    size = math.prod(len(space.grid()) for space in config.params.values()) if config.method == "grid" else 0
    if size > MAX_GRID:
        raise UserError(f"{source}: sweep.params: {size:,} grid points; at most {MAX_GRID:,}")
    for params in sweep.points():
        with naming_the_point(sweep, params):
            sweep.trial_experiment(params, experiment.seed)
    return sweep


@contextlib.contextmanager
def naming_the_point(sweep: Sweep, params: dict[str, Any]) -> Iterator[None]:
    """Turn a UserError about the config of one point of the sweep into one naming the file and the point."""
    try:
        yield
    except UserError as e:
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        raise e.at(f"{sweep.source}: sweep.params ({shown})", replacing=sweep.source) from e


def load_experiment_or_sweep(path: str | Path, overrides: list[str] | None = None, *,
                             sweeps: bool = True) -> tuple[Experiment, Sweep | None]:
    """An experiment file's experiment; for a sweep file (one with a `sweep:` section), the checked sweep too,
    its experiment the one every trial starts from. The file is read and resolved once.

    Args:
        path: the experiment or sweep file.
        overrides: `KEY=VALUE` strings, as given to `--set`.
        sweeps: whether a sweep file is welcome (`inspect`, `config show`); False for `train`, which refuses one
            in one line naming the command that runs it, before checking anything else in it.
    """
    doc = resolve_config(path, overrides)
    if "sweep" not in doc:
        return validate_experiment(doc, str(path)), None
    if not sweeps:
        raise UserError(f"{path}: a sweep file (it has a `sweep:` section); run it with: cnnrun sweep {path} "
                        f"(`cnnrun inspect {path}` shows its experiment)")
    sweep = _sweep_of(doc, str(path))
    return sweep.experiment, sweep
