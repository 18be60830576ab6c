"""Where a resumed run goes on from: its config checked against the one it began with, the newest whole
checkpoint and the epochs it holds, and the history of those epochs.

Resume never rewrites a finished epoch and never trains on with a run that is not the one it began as:

- `config.yaml` is compared with the experiment the run began with (`meta.json`'s `config`). A change to what
  decides the training itself (data, model, optimizer, batch size, seed, ...) is refused in one line naming each
  changed key; a change to what only watches or reports (`KEPT`: callbacks, the epoch total, verbosity, outputs,
  evaluation, tracking, the description) is said in one line and kept.
- The epochs a checkpoint holds come from its own record (`cnnrun.atomic.checkpoint_info`), checked against
  Keras' optimizer iteration count: a run folder of the previous release (no `config` in meta.json) whose batch
  size was edited is refused by that check.
- `last.keras` is the truth about how far training got; when it is missing or not whole (a full disk, a cut
  copy), the run goes on from `best.keras`, and without any whole checkpoint it trains again from the first
  epoch (the same seed, so the same initial weights). Each case is said in one line.
- history.csv must hold every epoch the checkpoint holds; it is trimmed to them and appended to.

Example:
>>> check_config(run, experiment, run.read_meta())
>>> start = continue_from(run, experiment, run.read_state(), run.dataset_info(required=False))
>>> start.done, start.checkpoint
(4, 'last')
"""

import json
from dataclasses import dataclass, field
from typing import Any

from cnnrun.atomic import checkpoint_info
from cnnrun.config import Experiment
from cnnrun.config.load import differing_keys
from cnnrun.config.phases import phase_spans, with_total_epochs
from cnnrun.errors import UserError
from cnnrun.model.checkpoints import load_checkpoint
from cnnrun.model.schedules import batches_taken
from cnnrun.run_folder.files import CHECKPOINT_NAMES, CHECKPOINTS, HISTORY, Meta, RunState, checkpoint_name
from cnnrun.run_folder.folder import Run

KEPT = ("callbacks", "train.epochs", "train.verbose", "output", "evaluate", "tracking", "description")
"""The config keys (and the sections under them) a resumed run may change: they watch and report, they do not
decide what a trained epoch is."""


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def config_changes(recorded: dict[str, Any], experiment: Experiment) -> list[tuple[str, Any, Any]]:
    """`(key, before, now)` for every dotted key whose value differs between the experiment the run began with
    (`recorded`, as meta.json holds it) and `experiment` (its config.yaml now), the epoch total aside (it is what
    `resume --epochs` sets; with phases, the last phase's length)."""

    total = (recorded.get("train") or {}).get("epochs")
    train = experiment.train
    if isinstance(total, int) and total >= 1:
        try:
            train = with_total_epochs(train, total)
        except UserError:
            pass  # the earlier phases alone take more: it differs, and says so below
    now = experiment.model_copy(update={"train": train}).model_dump(mode="json")
    return [(key, before, after) for key, (before, after) in differing_keys([recorded, now]).items()]


def _described(changes: list[tuple[str, Any, Any]]) -> str:
    shown = ", ".join(f"{key} {_shown(before)} → {_shown(now)}" for key, before, now in changes[:4])
    return shown + (f" and {len(changes) - 4} more" if len(changes) > 4 else "")


def check_config(run: Run, experiment: Experiment, meta: Meta | None) -> str | None:
    """Refuse a config.yaml changed since the run began where it decides the training (one line, each changed
    key with its old and new value); return the note that says the kept changes, or None when nothing changed.
    A run folder that records no config (the previous release's) is checked by `continue_from` instead."""
    if meta is None or meta.config is None:
        return None
    changes = config_changes(meta.config, experiment)
    kept = [c for c in changes if any(c[0] == key or c[0].startswith(f"{key}.") for key in KEPT)]
    refused = [c for c in changes if c not in kept]
    if refused:
        raise UserError(f"{run.config_file}: changed since the run began: {_described(refused)}; resume goes on "
                        f"with the run as it began: put the old values back (or train a new run from the changed "
                        f"file: cnnrun train {run.config_file})")
    if kept:
        return f"note: {run.config_file} changed since the run began: {_described(kept)}; resume goes on with " \
               f"the changes"
    return None


def _phase_start(info: dict[str, Any], epoch: int, experiment: Experiment, shown: str) -> int:
    """The epochs before the phase a checkpoint of `epoch` was written in (0 without phases)."""
    spans = phase_spans(experiment.train)
    if not spans:
        return 0
    phase = info.get("phase", next((i for i, (first, end) in enumerate(spans, 1) if first < epoch <= end), None))
    if not isinstance(phase, int) or not 1 <= phase <= len(spans):
        raise UserError(f"{shown}: records epoch {epoch} in phase {phase!r}, but the run's config.yaml has phases 1 "
                        f"to {len(spans)}")
    return spans[phase - 1][0]


def epochs_in(run: Run, which: str, model: Any, experiment: Experiment, steps: int) -> int:
    """The epochs the checkpoint `which` holds: its own record, checked against Keras' optimizer iterations (with
    phases, those of the phase it was written in); a checkpoint without a record, as the iterations say."""
    from cnnrun.model.phases import phase_start_in_checkpoint

    path, shown = run.checkpoint(which), f"{CHECKPOINTS}/{checkpoint_name(which)}"
    info = checkpoint_info(path) or {}
    iterations = batches_taken(model.optimizer)  # Keras' iterations count updates: k batches each with accumulation
    epoch = info.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        return phase_start_in_checkpoint(path, experiment) + iterations // steps
    trained = epoch - _phase_start(info, epoch, experiment, shown)
    if iterations != trained * steps:
        batch = experiment.train.batch_size
        raise UserError(f"{run.config_file}: train.batch_size {batch} makes {steps} steps an epoch, but {shown} took "
                        f"{iterations / max(trained, 1):g} steps an epoch ({iterations} for its {trained} epoch(s)); "
                        f"the run began with another batch size: put it back")
    return epoch


@dataclass
class Start:
    """Where a resumed run goes on from.

    Attributes:
        model: the model of the checkpoint it goes on from, or None to train again from the first epoch.
        done: the epochs that checkpoint holds.
        checkpoint: `last`, `best`, or None (from the beginning).
        best: what best.keras holds (`{"monitor", "value", "epoch"}`), or None when it is not whole (the next
            epoch's model replaces it).
        history: history.csv's rows of the `done` epochs.
        restore_callbacks: whether state.json's callback state belongs to this point (it does for last.keras).
        fit_ended: how training ended, when it has and the checkpoint is where it ended, else None.
        notes: lines for the user: a changed config kept, a checkpoint passed over and why.
        unusable: what is wrong with each checkpoint file that is there but not whole.
    """

    model: Any
    done: int
    checkpoint: str | None
    best: dict[str, Any] | None
    history: list[dict[str, Any]]
    restore_callbacks: bool
    fit_ended: str | None
    notes: list[str] = field(default_factory=list)
    unusable: dict[str, str] = field(default_factory=dict)

    def check_scorable(self, run: Run) -> None:
        """With no epoch left to train, a checkpoint that is there but not whole cannot be replaced: one line
        that says what can be done."""
        for which, problem in self.unusable.items():
            other = "last" if which == "best" else "best"
            raise UserError(f"{run.checkpoint(which)}: {problem}; the run's {self.done} epoch(s) are done, so no "
                            f"new {checkpoint_name(which)} will be written: give --epochs N (N > {self.done}) to "
                            f"train on, or score the other checkpoint with cnnrun evaluate {run.path} --checkpoint "
                            f"{other}")


def continue_from(run: Run, experiment: Experiment, state: RunState, info: Any, more_epochs: bool) -> Start:
    """Choose the newest whole checkpoint, count its epochs and take the history of those epochs.

    Args:
        run: the run folder (held by this process).
        experiment: the run's experiment (its config.yaml, with the new epoch total).
        state: its state.json.
        info: its dataset.json (`DatasetInfo`), or None when there is none (killed before writing it).
        more_epochs: `resume --epochs` was given: a finished fit trains on.
    """
    models, problems = {}, {}
    for which in CHECKPOINT_NAMES:
        path = run.checkpoint(which)
        if not path.exists():
            problems[which] = "missing"
            continue
        try:
            models[which] = load_checkpoint(path, use_other=None)
        except UserError as e:
            problems[which] = str(e).removeprefix(f"{path}: ")
    source = "last" if "last" in models else "best" if "best" in models else None
    done = 0
    if source is not None:
        if info is None:
            info = run.dataset_info()  # says it is missing
        steps = -(-info.sizes["train"] // experiment.train.batch_size)
        done = epochs_in(run, source, models[source], experiment, steps)

    notes, named = [], {which: f"{CHECKPOINTS}/{checkpoint_name(which)}" for which in CHECKPOINT_NAMES}
    if source == "last":
        notes.append(f"going on from {named['last']} after epoch {done}")
    elif source == "best":
        notes.append(f"{named['last']}: {problems['last']}; going on from {named['best']} after epoch {done}"
                     + (f": epochs {done + 1}–{state.epochs_completed} are trained again"
                        if state.epochs_completed > done else ""))
    elif state.epochs_completed or any(problem != "missing" for problem in problems.values()):
        notes.append(f"no whole checkpoint ({'; '.join(f'{named[w]}: {p}' for w, p in problems.items())}): "
                     f"training starts again from epoch 1")
    best = run.recorded_best() if "best" in models else None
    if source is not None and "best" not in models and (problems["best"] != "missing" or
                                                        (state.best is not None and state.best.epoch is not None)):
        notes.append(f"{named['best']}: {problems['best']}; the best model from epoch {done + 1} on replaces it")

    rows = run.read_history()
    if len(rows) < done:
        raise UserError(f"{run.file(HISTORY)}: holds {len(rows)} epochs, "
                        f"but {named[source or 'last']} holds {done}: the rows of finished epochs are gone, and "
                        f"resume never writes a finished epoch again; put the whole file back")
    return Start(model=models.get(source) if source else None, done=done, checkpoint=source, best=best,
                 history=rows[:done], restore_callbacks=source == "last",
                 fit_ended=None if more_epochs or source != "last" else state.fit_ended, notes=notes,
                 unusable={which: problem for which, problem in problems.items() if problem != "missing"})
