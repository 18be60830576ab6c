"""Train an experiment into a run folder: compile, callbacks, fit, test scores.

Example:
>>> run = train_experiment(load_experiment("configs/quickstart.yaml"))
>>> sorted(p.name for p in run.path.iterdir())
['checkpoints', 'config.yaml', 'dataset.json', 'history.csv', 'history.png', 'meta.json', 'scores.json', ...]
"""

import contextlib
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnrun import __version__
from cnnrun.atomic import atomic_save_model, atomic_write_text
from cnnrun.config import Experiment, experiment_to_yaml, load_experiment
from cnnrun.distribute import Placement, fingerprint, place
from cnnrun.errors import UserError
from cnnrun.report import console, format_metrics, header_panel, plot_history, results_table, show_warnings
from cnnrun.runs import Run, create_run, load_checkpoint, open_run


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


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _environment(placement: Placement) -> dict[str, Any]:
    import keras
    import numpy as np
    import tensorflow as tf

    versions = {"cnnrun": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__, "numpy": np.__version__}
    if placement.backend == "jax":
        import jax

        versions["jax"] = jax.__version__
    return {"versions": versions, "devices": placement.devices, "distribution": placement.to_dict(),
            "platform": platform.platform()}


# What each stateful Keras callback must carry across a resume (its on_train_begin resets these).
CALLBACK_STATE = {
    "early_stopping": ("wait", "best", "best_epoch", "stopped_epoch"),
    "reduce_lr_on_plateau": ("wait", "best", "cooldown_counter"),
}


def _plain(value: Any) -> Any:
    """A callback attribute as JSON can hold it (numpy scalars become floats)."""
    return None if value is None else float(value) if not isinstance(value, int) else value


class RunRecorder:
    """Builds the Keras callback that keeps the run folder current after every epoch.

    After each epoch it writes, in this order: `checkpoints/best.keras` when the monitored value improved,
    `history.csv`, `state.json` (epoch count, best value, the other callbacks' state), `checkpoints/last.keras`
    and `history.png`, each replaced whole. `last.keras` is the truth about how far training got: its optimizer's
    iteration count says how many epochs it holds, and resume trims the history to match.

    Args:
        run: the run folder.
        experiment: the experiment being trained.
        monitor: the logged value that decides `best.keras`.
        history: rows of the epochs already done (resume), appended to.
        best: `{"monitor", "value", "epoch"}` carried over from before (resume), or None.
        stateful: the Keras callbacks whose state is saved every epoch and restored at the start, by name.
        restored: their saved state (resume), or None.
    """

    def __init__(self, run: Run, experiment: Experiment, monitor: str, history: list[dict[str, Any]],
                 best: dict[str, Any] | None, stateful: dict[str, Any], restored: dict[str, Any] | None = None):
        import keras

        checkpoint = experiment.callbacks.checkpoint
        recorder = self
        self.run, self.history, self.plots = run, history, experiment.output.plots
        self.monitor = monitor
        self.mode = monitor_mode(monitor, checkpoint.mode)
        self.save_best_only, self.verbose = checkpoint.save_best_only, checkpoint.verbose
        self.best = best or {"monitor": monitor, "value": checkpoint.initial_value_threshold, "epoch": None}
        self.stateful, self.restored = stateful, restored or {}

        class _Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
                recorder.restore_callbacks()

            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                recorder.epoch_done(self.model, epoch + 1, dict(logs or {}))

        self.callback = _Callback()

    def restore_callbacks(self) -> None:
        """Put the saved wait counts and best values back (runs after the callbacks' own reset)."""
        for name, values in self.restored.items():
            if name in self.stateful:
                for attr, value in values.items():
                    setattr(self.stateful[name], attr, value)

    def improved(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.best["value"] is None:
            return True
        return value < self.best["value"] if self.mode == "min" else value > self.best["value"]

    def epoch_done(self, model, epoch: int, logs: dict[str, Any]) -> None:
        row = {"epoch": epoch, **{k: float(v) for k, v in logs.items()}}
        row["learning_rate"] = float(model.optimizer.learning_rate.numpy())
        value = row.get(self.monitor)
        if self.improved(value) or not self.save_best_only:
            if self.verbose:
                console.print(f"epoch {epoch}: {self.monitor} {value:.5f}, saving best.keras")
            atomic_save_model(model, self.run.checkpoints / "best.keras")
            self.best = {"monitor": self.monitor, "value": value, "epoch": epoch}
        self.history.append(row)
        self.run.write_history(self.history)
        callbacks = {name: {attr: _plain(getattr(cb, attr)) for attr in CALLBACK_STATE[name]}
                     for name, cb in self.stateful.items()}
        self.run.update_state(epochs_completed=epoch, best=self.best, callbacks=callbacks)
        atomic_save_model(model, self.run.checkpoints / "last.keras")
        if self.plots:
            plot_history(self.history, self.run.file("history.png"))


def make_callbacks(experiment: Experiment, run: Run, private: bool = False) -> tuple[list, dict[str, Any]]:
    """The Keras callbacks the experiment asks for, besides the run recorder.

    Returns the list and, by config name, those whose state must survive a resume.

    Args:
        experiment: the experiment.
        run: the run folder.
        private: the run folder is this process's private one (a cluster's process other than 0): TensorBoard
            logs go into it even when `log_dir` names a shared place.
    """
    import keras

    config = experiment.callbacks
    callbacks, stateful = [], {}
    if config.early_stopping:
        args = config.early_stopping.model_dump()
        args["monitor"] = resolve_monitor(args["monitor"], experiment, "callbacks.early_stopping.monitor")
        stateful["early_stopping"] = keras.callbacks.EarlyStopping(**args)
    if config.reduce_lr_on_plateau:
        args = config.reduce_lr_on_plateau.model_dump()
        args["monitor"] = resolve_monitor(args["monitor"], experiment, "callbacks.reduce_lr_on_plateau.monitor")
        stateful["reduce_lr_on_plateau"] = keras.callbacks.ReduceLROnPlateau(**args)
    callbacks += stateful.values()
    if config.terminate_on_nan:
        callbacks.append(keras.callbacks.TerminateOnNaN())
    if config.tensorboard:
        args = config.tensorboard.model_dump()
        args["log_dir"] = str(run.file("tensorboard")) if private or not args["log_dir"] else args["log_dir"]
        callbacks.append(keras.callbacks.TensorBoard(**args))
    return callbacks, stateful


def evaluate_checkpoints(run: Run, test_data) -> dict[str, dict[str, float]]:
    """Test-split metrics of `best.keras` and `last.keras`, loaded from the run folder in safe mode."""
    scores = {}
    for which in ("best", "last"):
        path = run.checkpoints / f"{which}.keras"
        if path.exists():
            model = load_checkpoint(path)
            scores[which] = {k: float(v) for k, v in model.evaluate(test_data, verbose=0, return_dict=True).items()}
    return scores


def _verbosity(setting: str | int) -> int:
    if setting == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(setting)


def _seed_everything(experiment: Experiment) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(experiment.seed)
    if experiment.train.deterministic:
        tf.config.experimental.enable_op_determinism()


def _header(experiment: Experiment, splits, model, monitor: str, run: Run, placement: Placement,
            title: str, first_epoch: int = 1) -> None:
    info = splits.info
    sizes = ", ".join(f"{k} {v:,}" for k, v in info.sizes.items())
    classes = ", ".join(info.class_names[:10]) + (" …" if info.num_classes > 10 else "")
    epochs = experiment.train.epochs
    header_panel({
        "experiment": experiment.name + (f" — {experiment.description}" if experiment.description else ""),
        "dataset": f"{experiment.dataset.name}: {sizes}",
        "classes": f"{info.num_classes}: {classes}",
        "model": f"{len(model.layers)} layers, {model.count_params():,} parameters, input {tuple(info.input_shape)}",
        "training": (f"epochs {first_epoch}–{epochs}" if first_epoch > 1 else f"{epochs} epochs")
        + f", batch {experiment.train.batch_size}, best by {monitor}"
        + (f", {model.dtype_policy.name}" if model.dtype_policy.name != "float32" else ""),
        "backend": f"{placement.backend}, learning rate {float(model.optimizer.learning_rate.numpy()):g}",
        "distribution": placement.describe(experiment.train.batch_size),
        "run folder": str(run.path) if placement.writes_run_folder else
        f"written by process 0; process {placement.process_id} works in {run.path}, removed at the end",
    }, title=title)


def train_experiment(experiment: Experiment, output_dir: str | None = None, name: str | None = None) -> Run:
    """Train `experiment` from scratch into a new run folder and return it.

    The model is built, compiled, trained and checkpointed under the experiment's distribution (see
    `cnnrun.distribute`). In a cluster only process 0 writes the run folder; the others work in a private
    temporary folder, removed at the end (the returned run is then that folder).

    Args:
        experiment: the validated experiment.
        output_dir: where run folders go (default: the experiment's `output.dir`).
        name: the run's name (default: the experiment's name).
    """
    placement = place(experiment)
    with placement.scope(), placement.private_folder() as private:
        return _train(experiment, placement, private or output_dir, name)


def _train(experiment: Experiment, placement: Placement, output_dir: str | None, name: str | None) -> Run:
    from cnnrun.data import augmentation_in_model, load_splits, model_augmenter
    from cnnrun.model import build_model, compile_model

    _seed_everything(experiment)
    monitor = resolve_monitor(experiment.callbacks.checkpoint.monitor, experiment, "callbacks.checkpoint.monitor")
    in_model = augmentation_in_model(experiment)
    splits = load_splits(experiment, augment=not in_model)
    show_warnings(splits.warnings)
    splits = placement.feed(splits, experiment.train.batch_size)
    info = splits.info
    augmenter = model_augmenter(experiment, info) if in_model else None
    model = build_model(experiment, tuple(info.input_shape), info.num_classes, augmenter)
    compile_model(model, experiment)
    if experiment.train.scale_learning_rate == "linear":
        model.optimizer.learning_rate = float(model.optimizer.learning_rate.numpy()) * placement.replicas
    run = create_run(output_dir or experiment.output.dir, name or experiment.name)
    callbacks, stateful = make_callbacks(experiment, run, private=not placement.writes_run_folder)

    atomic_write_text(run.file("config.yaml"), experiment_to_yaml(experiment))
    run.write_json("dataset.json", info.to_dict())
    if splits.bad_files:
        run.write_json("bad_files.json", list(splits.bad_files))
    if splits.files() is not None:  # evaluate and resume reuse exactly these files
        run.write_json("splits.json", splits.files())
    summary: list[str] = []
    model.summary(print_fn=lambda line, **_: summary.append(line))
    atomic_write_text(run.file("summary.txt"), "\n".join(summary) + "\n")
    meta = {"command": sys.argv, "seed": experiment.seed, "git_commit": _git_commit(), **_environment(placement),
            "started": _now(), "ended": None, "resumed": []}
    run.write_json("meta.json", meta)
    run.update_state(status="running", epochs_completed=0, epochs_planned=experiment.train.epochs,
                     best={"monitor": monitor, "value": None, "epoch": None}, callbacks={})

    _header(experiment, splits, model, monitor, run, placement, "cnnrun train")
    recorder = RunRecorder(run, experiment, monitor, history=[], best=None, stateful=stateful)
    status = _fit(model, experiment, splits, run, [*callbacks, recorder.callback])
    return finish(run, experiment, splits, recorder, status, meta, placement)


@contextlib.contextmanager
def ctrl_c_between_batches():
    """Make Ctrl-C during `fit` stop training at the end of the current batch, as a KeyboardInterrupt.

    Python runs a signal handler wherever the interpreter happens to be; inside a garbage-collection callback (JAX,
    which Keras imports when it is installed, registers one) the KeyboardInterrupt is swallowed and training goes
    on. So the handler only notes the press, and the callback this yields raises it between batches. A second
    Ctrl-C raises at once. A process started with Ctrl-C ignored keeps ignoring it.
    """
    import keras

    pressed: list[bool] = []

    class RaiseBetweenBatches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if pressed:
                raise KeyboardInterrupt

        on_test_batch_end = on_train_batch_end

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


def _fit(model, experiment: Experiment, splits, run: Run, callbacks: list, initial_epoch: int = 0) -> str:
    """Run Keras' fit; return the status it ended with. Ctrl-C marks the run interrupted and exits 130."""
    started = time.perf_counter()
    # a distributed validation set does not know its length; Keras would warn after the first pass
    validation_steps = -(-splits.info.sizes.get("validation", 0) // experiment.train.batch_size) or None
    try:
        with ctrl_c_between_batches() as ctrl_c:
            model.fit(splits.train, validation_data=splits.validation, epochs=experiment.train.epochs,
                      initial_epoch=initial_epoch, steps_per_epoch=splits.steps_per_epoch,
                      callbacks=[*callbacks, ctrl_c], validation_steps=validation_steps,
                      shuffle=False,  # the tf.data pipeline shuffles, seeded per epoch
                      verbose=_verbosity(experiment.train.verbose))
    except KeyboardInterrupt:
        run.update_state(status="interrupted", ended=_now())
        console.print(f"[yellow]Interrupted.[/] The run folder keeps every finished epoch: {run.path}\n"
                      f"Continue with: cnnrun resume {run.path}")
        raise SystemExit(130) from None
    except BaseException as e:
        run.update_state(status="failed", ended=_now())
        from cnnrun.data import data_error

        error = data_error(e)  # a picture that vanished or changed mid-training: one line naming it
        if error is not None:
            raise error from e
        raise
    state = run.read_json("state.json")
    run.update_state(fit_seconds=round(state.get("fit_seconds", 0) + time.perf_counter() - started, 2))
    stopped = any(getattr(c, "stopped_epoch", 0) for c in callbacks) or model.stop_training
    return "stopped_early" if stopped else "completed"


def finish(run: Run, experiment: Experiment, splits, recorder: RunRecorder, status: str,
           meta: dict[str, Any], placement: Placement) -> Run:
    """Score the checkpoints on the test split, close the run's files and print the results.

    Each process scores on its own device, every test example; in a cluster the results show a fingerprint of the
    final weights, the same in every process.
    """
    with placement.locally():
        scores = evaluate_checkpoints(run, splits.test) if splits.test is not None else {}
    if scores:
        run.write_json("scores.json", scores)
    state = run.update_state(status=status, ended=_now())
    meta["ended"] = state["ended"]
    run.write_json("meta.json", meta)

    best = recorder.best
    rows = [("status", status), ("epochs", f"{state['epochs_completed']} of {state['epochs_planned']}")]
    if best["epoch"] is not None:
        rows.append(("best epoch", f"{best['epoch']} ({best['monitor']} {best['value']:.4f})"))
    for which, metrics in scores.items():
        rows.append((f"test, {which}.keras", format_metrics(metrics)))
    if not scores:
        rows.append(("test", "no test split"))
    if placement.processes > 1:
        rows.append(("final weights", f"fingerprint {fingerprint(recorder.callback.model)}"))
    rows.append(("training time", f"{state.get('fit_seconds', 0):.1f} s"))
    rows.append(("run folder", str(run.path)))
    results_table(f"{experiment.name}: results", rows)
    return run



def resume_run(run_path: str | Path | None, epochs: int | None = None) -> Run | None:
    """Continue a run where it stopped, with everything a straight run would have had.

    Weights, optimizer state and its iteration count come from `checkpoints/last.keras`; the history, the best
    value behind `best.keras` and the early-stopping and learning-rate callbacks' state from the run folder.
    Everything is read and checked before anything is written, so a damaged run folder is left as it was.

    The run continues under the distribution its config asks for here, which may differ from the first one's. In a
    cluster every process reads the run folder at the same path (shared, or copied to each machine); only process
    0 writes it, the others work on a private temporary copy.

    Args:
        run_path: the run folder; None means the most recently started run under `outputs/`.
        epochs: the new total number of epochs; None keeps the planned total.

    Returns:
        The run, or None when there was nothing left to train.
    """
    run = open_run(run_path)
    experiment = load_experiment(run.file("config.yaml"))
    state = run.read_json("state.json")
    meta = run.read_json("meta.json")
    if epochs is not None:
        experiment.train.epochs = epochs
    finished = state.get("status") in ("completed", "stopped_early")
    if finished and epochs is None:
        console.print(f"{run.path} is {state['status']} after {state.get('epochs_completed', 0)} epochs; "
                      f"nothing to resume. Give --epochs N to train on to N epochs.")
        return None
    placement = place(experiment)
    with placement.scope(), placement.private_folder() as private:
        if private:
            run = Run(Path(shutil.copytree(run.path, Path(private) / run.path.name)))
        return _resume(run, experiment, state, meta, placement)


def _resume(run: Run, experiment: Experiment, state: dict[str, Any], meta: dict[str, Any],
            placement: Placement) -> Run | None:
    model = load_checkpoint(run.checkpoints / "last.keras")

    from cnnrun.data import DatasetInfo, load_splits

    _seed_everything(experiment)
    monitor = resolve_monitor(experiment.callbacks.checkpoint.monitor, experiment, "callbacks.checkpoint.monitor")
    in_model = any(layer.name == "augmentation" for layer in model.layers)  # as the run was built, on any machine
    stored_files = run.read_json("splits.json") if run.file("splits.json").exists() else None
    splits = load_splits(experiment, stored=DatasetInfo(**run.read_json("dataset.json")), stored_files=stored_files,
                         augment=not in_model)
    show_warnings(splits.warnings)
    done = int(model.optimizer.iterations.numpy()) // splits.steps_per_epoch
    if done >= experiment.train.epochs:
        console.print(f"{run.path} already has {done} epochs; give --epochs N with N > {done} to train on.")
        return None
    splits = placement.feed(splits.from_epoch(done), experiment.train.batch_size)
    history = run.read_history()[:done]
    best = state.get("best")
    callbacks, stateful = make_callbacks(experiment, run, private=not placement.writes_run_folder)

    atomic_write_text(run.file("config.yaml"), experiment_to_yaml(experiment))
    meta["resumed"] = [*meta.get("resumed", []), {"at_epoch": done, "time": _now(), "command": sys.argv,
                                                  "distribution": placement.to_dict()}]
    meta["ended"] = None
    run.write_json("meta.json", meta)
    run.update_state(status="running", epochs_completed=done, epochs_planned=experiment.train.epochs)
    _header(experiment, splits, model, monitor, run, placement, "cnnrun resume", first_epoch=done + 1)
    recorder = RunRecorder(run, experiment, monitor, history=history, best=best, stateful=stateful,
                           restored=state.get("callbacks"))
    status = _fit(model, experiment, splits, run, [*callbacks, recorder.callback], initial_epoch=done)
    return finish(run, experiment, splits, recorder, status, meta, placement)
