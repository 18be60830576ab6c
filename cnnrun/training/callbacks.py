"""The Keras callbacks a Trainer trains with: the run recorder, the configured ones, and Ctrl-C between batches.

`RunRecorder` keeps the run folder current after every epoch; `configured_callbacks` turns the experiment's
`callbacks:` section into Keras' own callbacks (and `tracking:` into MLflow's tracker); `ctrl_c_between_batches`
makes Ctrl-C stop training cleanly.

Example:
>>> recorder = RunRecorder(run, "val_loss", experiment.callbacks.checkpoint, plots=True)
>>> model.fit(train, epochs=3, callbacks=[*configured.callbacks, recorder])
"""

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from cnnrun.atomic import atomic_copy_model, atomic_save_model
from cnnrun.config import CheckpointConfig, Experiment
from cnnrun.errors import UserError
from cnnrun.model.schedules import batches_taken, last_step_learning_rate
from cnnrun.model.whitening import FreezeWhiteningBias
from cnnrun.report import Say, plot_history, silent
from cnnrun.run_folder.folder import Run
from cnnrun.training.lookahead import Lookahead
from cnnrun.training.tracking import MlflowTracker, check_mlflow, tracking_uri

# What each stateful Keras callback must carry across a resume (its on_train_begin resets these). EarlyStopping's
# `stopped_epoch` is not carried: it says whether *this* fit stopped early, and a resumed run that then completes
# is completed.
CALLBACK_STATE = {
    "early_stopping": ("wait", "best", "best_epoch"),
    "reduce_lr_on_plateau": ("wait", "best", "cooldown_counter"),
}


def monitor_mode(monitor: str, mode: str) -> str:
    """`min` or `max` for a monitored value; `auto` decides as Keras does (accuracy-like is max)."""
    if mode != "auto":
        return mode
    return "max" if any(word in monitor for word in ("acc", "auc", "precision", "recall", "f1")) else "min"


def resolve_monitor(monitor: str, experiment: Experiment, where: str) -> str:
    """Check that `monitor` will be logged; without validation data, `val_x` falls back to `x`."""
    if monitor.startswith("val_") and not experiment.has_validation:
        monitor = monitor.removeprefix("val_")
    logged = ["loss", *experiment.compile.metrics]
    if experiment.has_validation:
        logged += [f"val_{k}" for k in logged]
    if monitor not in logged:
        raise UserError(f"{where}: '{monitor}' is not logged; choose one of {', '.join(logged)}")
    return monitor


def _plain(value: Any) -> Any:
    """A callback attribute as JSON can hold it (numpy scalars become floats)."""
    return None if value is None else float(value) if not isinstance(value, int) else value


def keras_verbosity(setting: str | int) -> int:
    """`train.verbose` as Keras' fit takes it: `auto` is a progress bar in a terminal, one line per epoch in a pipe."""
    return (1 if sys.stdout.isatty() else 2) if setting == "auto" else int(setting)


PLOT_EVERY = 5.0  # seconds: history.png is drawn at most this often between a fit's epochs
SAVE_EVERY = 5.0  # seconds: in a fit on cached features, last.keras is written at most this often between epochs


def variable_values(model) -> list:
    """Copies of the values a checkpoint holds: the model's variables and its optimizer's."""
    return [np.array(v) for v in [*model.variables, *model.optimizer.variables]]


def set_variable_values(model, values: list) -> None:
    """Put back what `variable_values` copied."""
    for variable, value in zip([*model.variables, *model.optimizer.variables], values, strict=True):
        variable.assign(value)


class RunRecorder(keras.callbacks.Callback):
    """Keeps the run folder current after every epoch, so that a run killed at any moment can be resumed.

    After each epoch it writes, in this order: `checkpoints/best.keras` when the monitored value improved,
    `history.csv`, `state.json` (epoch count, best value, the other callbacks' state), `checkpoints/last.keras` and
    `history.png`, each replaced whole. `history.png` (about 0.1 s to draw) waits while it was drawn, or the first
    fit began, less than `PLOT_EVERY` seconds before, as a cached phase's epochs of a second or less would
    otherwise spend a fifth of their time drawing (an epoch of 5 s or more is drawn as it ends); it is always drawn
    after a fit's last epoch. Each checkpoint carries its own record
    (monitor, value, epoch; with phases, the phase) inside the `.keras` file, so what it holds is known from the
    file itself at every instant, even when the process dies between two writes. `last.keras` is the truth about how
    far training got: its record says how many epochs it holds (checked against its optimizer's iteration count),
    and resume trims the history to match. One recorder serves a whole run, so `best.keras` is judged across phases.
    In a fit on cached features (fit trains a head on a frozen backbone's outputs, `whole` is the model around it),
    whose epochs take a fraction of a second and a whole-model save about 0.3 s, `state.json` and `last.keras` wait
    too, while they were written less than `SAVE_EVERY` seconds before, and so does `best.keras`: the better epoch's
    values (the model's and the optimizer's variables) are held in memory and written when the wait ends. A killed
    run loses the waiting epochs (resume trains them again, as it trims the history to `last.keras`); the fit's last
    epoch, or the one early stopping ends it at, never waits.

    Args:
        run: the run folder.
        monitor: the logged value that decides `best.keras` (already resolved, e.g. `val_accuracy`).
        checkpoint: the experiment's `callbacks.checkpoint` section (mode, save_best_only, verbose, threshold).
        plots: write `history.png` after every epoch (at most every `PLOT_EVERY` seconds). Defaults to True.
        history: rows of the epochs already done (resume), appended to. Defaults to none.
        best: `{"monitor", "value", "epoch"}` of the current `best.keras` (resume), or None.
        stateful: the Keras callbacks whose state is saved every epoch and restored at the start, by config name.
        restored: their saved state (resume), or None. Put back at the start of the first fit only: with
            phases, each later phase's fit starts the callbacks afresh, as in a run that was never stopped.
        phases: `(first, end)` epochs of each of `train.phases` (`cnnrun.config.phases.phase_spans`): each
            epoch's history row, state.json and `last.keras`'s record then say its phase (from 1). Defaults to
            none (no phases, no `phase` column).
        say: where `epoch N: … saving best.keras` goes (with `callbacks.checkpoint.verbose`). Defaults to nowhere.
    """

    def __init__(self, run: Run, monitor: str, checkpoint: CheckpointConfig, plots: bool = True,
                 history: list[dict[str, Any]] | None = None, best: dict[str, Any] | None = None,
                 stateful: dict[str, keras.callbacks.Callback] | None = None,
                 restored: dict[str, Any] | None = None, phases: Sequence[tuple[int, int]] = (),
                 say: Say = silent):
        super().__init__()
        self.run, self.monitor, self.plots, self.say = run, monitor, plots, say
        self.mode = monitor_mode(monitor, checkpoint.mode)
        self.save_best_only, self.verbose = checkpoint.save_best_only, checkpoint.verbose
        self.history = list(history or [])
        self.best = best or {"monitor": monitor, "value": checkpoint.initial_value_threshold, "epoch": None}
        self.stateful, self.restored = stateful or {}, restored or {}
        self.phases = list(phases)
        self.whole = None  # the model the checkpoints hold when fit trains a part of it (a cached phase's head)
        self.drawn_at: float | None = None  # time.monotonic() when history.png was last drawn (or fit began)
        self.saved_at: float | None = None  # time.monotonic() when last.keras was last written
        self.held = None  # (values, record) of a best epoch not yet written while the checkpoints wait
        self.undrawn = False  # epochs are done that history.png does not show

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Put the saved wait counts and best values back (this runs after the callbacks' own reset)."""
        for name, values in self.restored.items():
            if name in self.stateful:
                for attr, value in values.items():
                    if attr in CALLBACK_STATE[name]:
                        setattr(self.stateful[name], attr, value)
        self.restored = {}
        if self.drawn_at is None:  # the first draw waits PLOT_EVERY seconds from the start too
            self.drawn_at = time.monotonic()

    @property
    def saved(self):
        """The model the checkpoints hold: `whole` when set, else the one fit trains."""
        return self.model if self.whole is None else self.whole

    def improved(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.best["value"] is None:
            return True
        return value < self.best["value"] if self.mode == "min" else value > self.best["value"]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        epoch += 1
        number = next((i for i, (first, end) in enumerate(self.phases, 1) if first < epoch <= end), None)
        phase = {"phase": number} if number else {}
        row = {"epoch": epoch, **phase, **{k: float(v) for k, v in (logs or {}).items()}}
        row["learning_rate"] = last_step_learning_rate(self.model.optimizer)  # with a schedule: the epoch's own
        value = row.get(self.monitor)
        saved_best, waiting = self.improved(value) or not self.save_best_only, self.waits(epoch)
        if saved_best:
            if self.verbose:
                self.say(f"epoch {epoch}: {self.monitor} {value:.5f}, saving best.keras")
            self.best = {"monitor": self.monitor, "value": value, "epoch": epoch}
            self.held = (variable_values(self.saved), {**self.best, **phase}) if waiting else None
            if not waiting:
                atomic_save_model(self.saved, self.run.checkpoint("best"), info={**self.best, **phase})
        self.history.append(row)
        self.run.write_history(self.history)
        if not waiting:
            if self.held is not None:  # an earlier epoch's best, kept in memory while the checkpoints waited
                self.write_held()
            callbacks = {name: {attr: _plain(getattr(cb, attr)) for attr in CALLBACK_STATE[name]}
                         for name, cb in self.stateful.items()}
            self.run.update_state(epochs_completed=epoch, best=self.best, callbacks=callbacks, **phase)
            last, info = self.run.checkpoint("last"), {"epoch": epoch, **phase}
            if saved_best:  # the same weights and optimizer state: a copy, with last.keras's own record
                atomic_copy_model(self.run.checkpoint("best"), last, info=info)
            else:
                atomic_save_model(self.saved, last, info=info)
            self.saved_at = time.monotonic()
        self.undrawn = True
        if time.monotonic() - self.drawn_at >= PLOT_EVERY:
            self.draw()

    def waits(self, epoch: int) -> bool:
        """Whether `last.keras` and state.json wait for a later epoch: in a fit on cached features (fit trains
        the head, not `whole`, the model the checkpoints hold), when they were written less than `SAVE_EVERY`
        seconds ago and this is neither the fit's last epoch nor one early stopping ends it at."""
        cached = self.whole is not None and self.whole is not self.model
        return (cached and self.saved_at is not None and not self.model.stop_training
                and epoch < (self.params or {}).get("epochs", 0) and time.monotonic() - self.saved_at < SAVE_EVERY)

    def write_held(self) -> None:
        """Write the held best epoch's state as `best.keras`: put its values in the model, save, put back."""
        values, info = self.held
        now = variable_values(self.saved)
        set_variable_values(self.saved, values)
        try:
            atomic_save_model(self.saved, self.run.checkpoint("best"), info=info)
        finally:
            set_variable_values(self.saved, now)
        self.held = None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.draw()  # the fit's last epochs, also when early stopping ended it before its planned end

    def draw(self) -> None:
        """Draw `history.png` when epochs are done that it does not show (and plots are on)."""
        if self.plots and self.undrawn:
            plot_history(self.history, self.run.history_plot)
            self.drawn_at, self.undrawn = time.monotonic(), False


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Judge and save the optimizer's moving average of the weights (`compile.optimizer.use_ema: true`).

    Keras' `SwapEMAWeights(swap_on_epoch=True)`: validation, `best.keras`, `last.keras` and so the test scores,
    `evaluate` and `predict` all see the averaged weights, while training goes on from the trained ones. A
    checkpoint holds the averaged weights in the model and the trained ones in the optimizer's average slots, so a
    model whose optimizer has already taken steps (a resumed run) swaps them back before its first epoch, and a
    resumed run trains exactly as a straight one, also past its planned end (Keras' callback would make both the
    average after the last planned epoch; this one keeps the trained weights; cnnrun scores the checkpoints, not
    the model left in memory).
    """

    def __init__(self):
        super().__init__(swap_on_epoch=True)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._ema_weights_in_model = batches_taken(self.model.optimizer) > 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True


def uses_ema(experiment: Experiment) -> bool:
    """Whether the optimizer keeps a moving average of the weights (`use_ema: true`)."""
    optimizer = experiment.compile.optimizer
    return isinstance(optimizer, dict) and bool(optimizer.get("use_ema"))


@dataclass
class Configured:
    """The Keras callbacks an experiment asks for, and those whose state must survive a resume (by name).

    Used as a context manager around a run (the Trainer holds it): leaving it calls `on_run_end()` of every
    callback that has one (MLflow's tracker: scores, files, final status), after the run is scored or failed.
    """

    callbacks: list[keras.callbacks.Callback] = field(default_factory=list)
    stateful: dict[str, keras.callbacks.Callback] = field(default_factory=dict)

    def __enter__(self) -> "Configured":
        return self

    def __exit__(self, *exc: object) -> None:
        for callback in self.callbacks:
            if hasattr(callback, "on_run_end"):
                callback.on_run_end()


def configured_callbacks(experiment: Experiment, run: Run | None, private: bool = False,
                         extra: Sequence[keras.callbacks.Callback] = ()) -> Configured:
    """The Keras callbacks of the experiment's `callbacks:` and `tracking:` sections, besides the run recorder.

    Called once before any data is read (with `run=None`) to check the monitors and that MLflow is installed
    when asked for, and again with the run.

    Args:
        experiment: the experiment.
        run: the run folder (TensorBoard's default log folder is inside it), or None to check only.
        private: the run folder is this process's private one (a cluster's process other than 0): TensorBoard
            logs go into it even when `log_dir` names a shared place. Defaults to False.
        extra: callbacks of the caller's own (a sweep's pruning), run after the configured ones. Defaults to none.
    """
    config = experiment.callbacks
    configured = Configured()
    if uses_ema(experiment):  # first: every other callback sees the averaged weights at the end of an epoch
        configured.callbacks.append(AveragedWeights())
    if config.early_stopping:
        args = config.early_stopping.model_dump()
        args["monitor"] = resolve_monitor(args["monitor"], experiment, "callbacks.early_stopping.monitor")
        configured.stateful["early_stopping"] = keras.callbacks.EarlyStopping(**args)
    if config.reduce_lr_on_plateau:
        args = config.reduce_lr_on_plateau.model_dump()
        args["monitor"] = resolve_monitor(args["monitor"], experiment, "callbacks.reduce_lr_on_plateau.monitor")
        configured.stateful["reduce_lr_on_plateau"] = keras.callbacks.ReduceLROnPlateau(**args)
    configured.callbacks += configured.stateful.values()
    if config.terminate_on_nan:
        configured.callbacks.append(keras.callbacks.TerminateOnNaN())
    if config.tensorboard and run is not None:
        args = config.tensorboard.model_dump()
        args["log_dir"] = str(run.tensorboard_folder) if private or not args["log_dir"] else args["log_dir"]
        configured.callbacks.append(keras.callbacks.TensorBoard(**args))
    check_mlflow(experiment)
    uri = tracking_uri(experiment)
    if uri is not None and run is not None and not private:
        configured.callbacks.append(MlflowTracker(run, experiment, uri))
    if config.lookahead is not None:
        configured.callbacks.append(Lookahead(**config.lookahead.model_dump(), epochs=experiment.train.epochs))
    if _freezes_whitening_bias(experiment.model.model_dump(mode="json")):
        configured.callbacks.append(FreezeWhiteningBias())
    configured.callbacks += extra
    return configured


def _freezes_whitening_bias(config: Any) -> bool:
    """Whether a `PatchWhitening` entry anywhere in the model's config (layers, graphs, blocks) sets `bias_epochs`."""
    if isinstance(config, dict):
        whitening = config.get("PatchWhitening")
        if isinstance(whitening, dict) and whitening.get("bias_epochs") is not None:
            return True
        return any(_freezes_whitening_bias(value) for value in config.values())
    return isinstance(config, list) and any(_freezes_whitening_bias(value) for value in config)


@contextlib.contextmanager
def ctrl_c_between_batches():
    """Make Ctrl-C stop training (or scoring) at the end of the current batch, as a KeyboardInterrupt.

    Python runs a signal handler wherever the interpreter happens to be; inside a garbage-collection callback (JAX,
    which Keras imports when it is installed, registers one) the KeyboardInterrupt is swallowed and training goes
    on. So the handler only notes the press, and the callback this yields raises it between batches. A second
    Ctrl-C raises at once. A process started with Ctrl-C ignored keeps ignoring it.
    """
    pressed: list[bool] = []

    class RaiseBetweenBatches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if pressed:
                raise KeyboardInterrupt

        on_test_batch_end = on_predict_batch_end = on_train_batch_end

    def note(signum, frame) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)

    in_charge = threading.current_thread() is threading.main_thread() \
        and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    previous = signal.signal(signal.SIGINT, note) if in_charge else None
    try:
        yield RaiseBetweenBatches()
    finally:
        if in_charge:
            signal.signal(signal.SIGINT, previous)
        if pressed:
            raise KeyboardInterrupt
