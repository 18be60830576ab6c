"""The Trainer: one experiment, its run folder, its distribution, its data, its model, trained and scored.

A Trainer has two ways in, `Trainer.new(experiment)` (a new run folder) and `Trainer.from_run(folder)` (a run
that stopped: after Ctrl-C, a kill, early stopping, or with more epochs), then one `fit()` and one `finish()`.
Both ways in check everything that can be checked before reading any data: the monitors, and the model built
and compiled on the dataset's declared shape (a misspelt layer argument answers at once, not after the data
has loaded). While a Trainer is open it holds the run folder's `run.lock`.

Example:
>>> with Trainer.new(load_experiment("configs/quickstart.yaml")) as trainer:
...     trainer.fit()
...     run = trainer.finish()
>>> sorted(p.name for p in run.path.iterdir())
['checkpoints', 'config.yaml', 'dataset.json', 'history.csv', 'history.png', 'meta.json', 'scores.json', ...]
"""

import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from cnnrun.config import Experiment, experiment_to_yaml, load_saved_experiment
from cnnrun.config.phases import begins_phase, fit_spans, phase_spans, with_total_epochs
from cnnrun.data import Splits, augmentation_in_model, data_error, load_splits
from cnnrun.data.samples import write_samples
from cnnrun.devices.distribute import Placement, place
from cnnrun.errors import UserError
from cnnrun.model.build import declared_info, emulated_bfloat16, new_model, seed_everything
from cnnrun.model.compiling import compile_model
from cnnrun.model.features import check_cacheable
from cnnrun.model.init_from import init_record
from cnnrun.model.phases import announce_phase, check_phases, start_phase, summary_text
from cnnrun.model.scoring import score_checkpoints
from cnnrun.model.state import build_state
from cnnrun.model.whitening import adapt_whitening
from cnnrun.report import Notice, Say, silent
from cnnrun.run_folder.files import CHECKPOINTS
from cnnrun.run_folder.folder import Run, create_run, open_run
from cnnrun.training.callbacks import (
    Configured,
    RunRecorder,
    configured_callbacks,
    ctrl_c_between_batches,
    keras_verbosity,
    resolve_monitor,
)
from cnnrun.training.features import cache_for
from cnnrun.training.header import fit_class_weight, header_rows, plural, results_rows
from cnnrun.training.provenance import new_meta, now
from cnnrun.training.reopen import check_config, continue_from

FINISHED = ("completed", "stopped_early", "pruned")


@dataclass
class Trainer:
    """Trains one experiment into one run folder: the only thing in cnnrun that trains.

    Made by `Trainer.new` or `Trainer.from_run`, used as a context manager (leaving it releases the run folder's
    lock and the distribution's scope), then `fit()` and `finish()`.

    Attributes:
        experiment: the experiment (for a resumed run, its own `config.yaml`, with the new epoch total).
        run: the run folder this process writes.
        placement: where training runs (backend, strategy, replicas, process).
        splits: the data, its pipelines starting at `initial_epoch`.
        model: the compiled Keras model.
        recorder: the callback that keeps the run folder current.
        configured: the experiment's other callbacks.
        meta: what `meta.json` holds.
        initial_epoch: the epochs already trained.
        fit_ended: how training ended (`completed` or `stopped_early`) once it has, else None.
        say: where the Trainer tells what it does (header, phases, warnings, results; `cnnrun.report.Say`); it
            prints nothing itself. Defaults to nowhere; the CLI shows it all.
    """

    experiment: Experiment
    run: Run
    placement: Placement
    splits: Splits
    model: Any
    recorder: RunRecorder
    configured: Configured
    meta: dict[str, Any]
    initial_epoch: int = 0
    fit_ended: str | None = None
    say: Say = silent
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def __enter__(self) -> "Trainer":
        self.resources.enter_context(self.configured)  # leaving it ends the callbacks' run (MLflow's tracker)
        return self

    def __exit__(self, *exc: object) -> None:
        self.resources.close()

    # ------------------------------------------------------------------ two ways in

    @classmethod
    def new(cls, experiment: Experiment, output_dir: str | None = None, name: str | None = None,
            callbacks: Sequence[Any] = (), say: Say = silent) -> "Trainer":
        """A Trainer for a new run folder `<output_dir>/<name>/<time>/`.

        The model is built and compiled on the dataset's declared shape before any data is read; the run folder
        is made only once the data has loaded. In a cluster only process 0 writes the run folder; the others work
        in a private temporary folder, removed at the end.

        Args:
            experiment: the validated experiment.
            output_dir: where run folders go. Defaults to the experiment's `output.dir`.
            name: the run's name. Defaults to the experiment's name.
            callbacks: Keras callbacks of the caller's own (a sweep's pruning). Defaults to none.
            say: where the Trainer tells what it does (`cnnrun.report.Say`). Defaults to nowhere.
        """
        resources = contextlib.ExitStack()
        try:
            placement = place(experiment)
            resources.enter_context(placement.scope())
            private = resources.enter_context(placement.private_folder())
            monitor = resolve_monitor(experiment.callbacks.checkpoint.monitor, experiment,
                                      "callbacks.checkpoint.monitor")
            configured_callbacks(experiment, None)  # the monitors of the other callbacks
            in_model = augmentation_in_model(experiment)
            declared = declared_info(experiment)
            model = new_model(experiment, declared, in_model, placement.replicas)  # every config error, before any data
            check_phases(model, experiment)  # the layer names of `trainable: {from: X}` too
            check_cacheable(model, experiment, placement.replicas)  # cache_features: a model cut at its backbone
            schedule = experiment.compile.schedule
            if slow := emulated_bfloat16(experiment):  # bfloat16 on a CPU that only emulates it
                say(Notice(slow))

            splits = load_splits(experiment, augment=not in_model)
            for line in splits.warnings:
                say(Notice(line))
            if (in_model and experiment.dataset.normalize == "standardize") or \
                    list(splits.info.input_shape) != list(declared.input_shape) or \
                    splits.info.class_names != declared.class_names:
                # built again for the data's statistics
                model = new_model(experiment, splits.info, in_model, placement.replicas, splits.steps_per_epoch)
            elif schedule is not None and schedule.unit == "epochs":  # converted with the real steps per epoch
                compile_model(model, experiment, splits.steps_per_epoch, placement.replicas)
            adapt_whitening(model, splits)  # PatchWhitening layers, from the training split only
            start_phase(model, experiment, 0, splits.steps_per_epoch, placement.replicas)
            splits = placement.feed(splits, experiment.train.batch_size)

            run = create_run(private or output_dir or experiment.output.dir, name or experiment.name)
            resources.enter_context(run.hold())
            configured = configured_callbacks(experiment, run, private=not placement.writes_run_folder,
                                              extra=callbacks)
            recorder = RunRecorder(run, monitor, experiment.callbacks.checkpoint, plots=experiment.output.plots,
                                   stateful=configured.stateful, phases=phase_spans(experiment.train), say=say)
            trainer = cls(experiment, run, placement, splits, model, recorder, configured,
                          new_meta(experiment, placement) | init_record(experiment, model), say=say,
                          resources=resources)
            trainer._write_start(augmentation="model" if in_model else "pipeline" if experiment.augmentation
                                 else None)
            return trainer
        except BaseException:
            resources.close()
            raise

    @classmethod
    def from_run(cls, run_path: str | Path | None, epochs: int | None = None,
                 say: Say = silent) -> "Trainer | None":
        """A Trainer that continues a run where it stopped, with everything a straight run would have had.

        Weights, optimizer state and its iteration count come from `checkpoints/last.keras` (from `best.keras`
        when last.keras is missing or not whole; see `cnnrun.training.reopen`), the epochs done from that
        checkpoint's own record; the history, the callbacks' state and the split of the data from the run folder;
        the value `best.keras` holds from the checkpoint itself. A run without any whole checkpoint (killed
        before its first epoch ended, or both checkpoints lost) starts again from the beginning in the same folder
        (the same seed, so the same initial weights). A run whose epochs are done but whose test scoring is not
        (Ctrl-C or a vanished picture during scoring) is scored. A config.yaml changed where it decides the
        training is refused. Everything is read and checked (both checkpoints included) before anything is
        written, so a run folder resume refuses is left as it was.

        Args:
            run_path: the run folder; None means the most recently started run under `outputs/`.
            epochs: the new total number of epochs. Defaults to the planned total. With `train.phases` the last
                phase grows or shrinks to make this total.
            say: where the Trainer tells what it does (`cnnrun.report.Say`). Defaults to nowhere.

        Returns:
            The Trainer, or None when there is nothing left to do (said in one line).
        """
        run = open_run(run_path)
        state = run.read_state()
        if state.status in FINISHED and epochs is None:
            say(f"{run.path} is {state.status} after {plural(state.epochs_completed, 'epoch')}; nothing to resume. "
                f"Give --epochs N to train on to N epochs.")
            return None
        experiment = load_saved_experiment(run.config_file)
        if epochs is not None:
            experiment = experiment.model_copy(update={"train": with_total_epochs(experiment.train, epochs)})
        resources = contextlib.ExitStack()
        try:
            placement = place(experiment)
            resources.enter_context(placement.scope())
            private = resources.enter_context(placement.private_folder())
            if private:
                run = run.copy(Path(private) / run.path.name)
            resources.enter_context(run.hold())
            run.check_writable(CHECKPOINTS)
            trainer = cls._reopen(run, experiment, placement, epochs is not None, say)
            if trainer is not None:
                trainer.resources = resources
                return trainer
        except BaseException:
            resources.close()
            raise
        resources.close()
        return None

    @classmethod
    def _reopen(cls, run: Run, experiment: Experiment, placement: Placement, more_epochs: bool,
                say: Say) -> "Trainer | None":
        """Read and check everything a resumed run needs (`cnnrun.training.reopen`); record it runs again."""
        seed_everything(experiment)  # as a new run is seeded before its pipelines are made (and op determinism)
        state = run.read_state()  # again, now that this process holds the lock
        stored_info, stored_files, meta = run.dataset_info(required=False), run.read_splits(), run.read_meta()
        note = check_config(run, experiment, meta)
        monitor = resolve_monitor(experiment.callbacks.checkpoint.monitor, experiment, "callbacks.checkpoint.monitor")
        configured_callbacks(experiment, None)
        start = continue_from(run, experiment, state, stored_info, more_epochs)
        done, fit_ended, model = start.done, start.fit_ended, start.model
        if done >= experiment.train.epochs or fit_ended:
            if state.status in FINISHED and start.checkpoint == "last":
                say(f"{run.path} already has {plural(done, 'epoch')}; give --epochs N with N > {done} to train on.")
                return None
            start.check_scorable(run)
            fit_ended = fit_ended or "completed"  # trained, not yet scored: score it
        for line in ([note] if note else []) + start.notes:
            say(line)

        if "augmentation" in state.model_fields_set:  # where augmentation runs was decided once, when the run began
            in_model = state.augmentation == "model"
        elif model is not None:  # a run from before cnnrun recorded it
            in_model = any(layer.name == "augmentation" for layer in model.layers)
        else:
            in_model = augmentation_in_model(experiment)
        splits = load_splits(experiment, stored=stored_info, stored_files=stored_files, initial_epoch=done,
                             augment=not in_model)
        for line in splits.warnings:
            say(Notice(line))
        if model is None:  # no epoch to go on from: start again from the beginning
            model = new_model(experiment, splits.info, in_model, placement.replicas, splits.steps_per_epoch)
        start_phase(model, experiment, done, splits.steps_per_epoch, placement.replicas)
        splits = placement.feed(splits, experiment.train.batch_size)

        configured = configured_callbacks(experiment, run, private=not placement.writes_run_folder)
        restored = state.callbacks if start.restore_callbacks and done and not begins_phase(experiment.train, done) \
            else None
        recorder = RunRecorder(run, monitor, experiment.callbacks.checkpoint, plots=experiment.output.plots,
                               history=start.history, best=start.best, stateful=configured.stateful,
                               restored=restored, phases=phase_spans(experiment.train), say=say)
        record = meta.to_dict() if meta is not None else \
            new_meta(experiment, placement) | init_record(experiment, model)  # killed before meta.json was written
        record["resumed"] = [*record.get("resumed", []),
                             {"at_epoch": done, "time": now(), "command": sys.argv, "checkpoint": start.checkpoint,
                              "distribution": placement.to_dict()}]
        trainer = cls(experiment, run, placement, splits, model, recorder, configured, record, initial_epoch=done,
                      fit_ended=fit_ended, say=say)
        trainer._write_start(augmentation="model" if in_model else "pipeline" if experiment.augmentation else None)
        return trainer

    def _write_start(self, augmentation: str | None) -> None:
        """Write the run's own files before training: config, data description, summary, meta and state."""
        run, experiment, info = self.run, self.experiment, self.splits.info
        run.write_config(experiment_to_yaml(experiment))
        run.update_state(status="running", epochs_completed=self.initial_epoch,
                         epochs_planned=experiment.train.epochs, best=self.recorder.best, augmentation=augmentation,
                         fit_ended=self.fit_ended, **({} if self.initial_epoch else {"callbacks": {}}))
        run.write_dataset_info(info)
        if (files := self.splits.files()) is not None:
            run.write_splits(files)
        if self.splits.bad_files:
            run.write_bad_files(list(self.splits.bad_files))
        run.write_summary(summary_text(self.model).splitlines())
        self.meta.update(ended=None, config=experiment.model_dump(mode="json"))  # resume compares config.yaml with it
        run.write_meta(self.meta)
        write_samples(run, self.splits, experiment)  # samples.png: what the model sees

    # ------------------------------------------------------------------ fit and finish

    def fit(self) -> str:
        """Train from `initial_epoch` to the experiment's epoch total; return how it ended.

        With `train.phases`, one Keras fit per phase, each phase started by `cnnrun.model.phases.start_phase` (its
        trainable set, a fresh optimizer; `cnnrun.training.features` for `cache_features`); early stopping ends the run.

        Returns `completed` or `stopped_early`. Ctrl-C marks the run `interrupted` and exits with 130; an error
        marks it `failed` (a picture that vanished from the data folder is one line naming it).
        """
        if self.fit_ended:
            return self.fit_ended
        experiment, splits = self.experiment, self.splits
        self.say(header_rows(self))
        started = time.perf_counter()
        # a distributed validation set does not know its length; Keras would warn after the first pass
        validation_steps = -(-splits.info.sizes.get("validation", 0) // experiment.train.batch_size) or None
        stopped, train = False, splits.train
        self.recorder.whole = self.model  # a cached phase fits the head: the checkpoints still hold the model
        try:
            with ctrl_c_between_batches() as ctrl_c:
                for first, end in fit_spans(experiment.train, self.initial_epoch):  # one fit per phase
                    if first > self.initial_epoch:  # a later phase: its trainable set, a fresh optimizer, and
                        start_phase(self.model, experiment, first, splits.steps_per_epoch, self.placement.replicas)
                        # the stream from its first epoch on (a new fit reads the stream from its start)
                        train = self.placement.feed(splits.from_epoch(first), experiment.train.batch_size).train
                    if line := announce_phase(self.model, experiment, self.run, first):
                        self.say(line)
                    model, data, validation = self.model, train, splits.validation
                    if cached := cache_for(self, first):  # the head alone, on the backbone's features
                        model, data, validation = cached.head, cached.train, cached.validation
                    try:
                        build_state(model, data.element_spec)  # its step traced once, not twice (model/state.py)
                        model.fit(data, validation_data=validation, epochs=end, initial_epoch=first,
                                  steps_per_epoch=splits.steps_per_epoch, validation_steps=validation_steps,
                                  class_weight=fit_class_weight(experiment, splits.info), shuffle=False,  # tf.data's
                                  callbacks=[*self.configured.callbacks, self.recorder, ctrl_c],  # seeded shuffle
                                  verbose=keras_verbosity(experiment.train.verbose))
                    finally:
                        cached and cached.remove_files()  # a cached phase's files of features, if any
                    stops = (getattr(c, "stopped_epoch", 0) for c in self.configured.callbacks)
                    if stopped := model.stop_training or any(stops):  # early stopping ends the run, in any phase
                        break
        except KeyboardInterrupt:
            self._interrupted(started)
        except BaseException as e:
            self._failed(e, started)
        self.fit_ended = "stopped_early" if stopped else "completed"
        self._add_fit_seconds(started, fit_ended=self.fit_ended)
        return self.fit_ended

    def finish(self) -> Run:
        """Score both checkpoints on the test split, set the final status and tell the results.

        Each process scores on its own device, every test example; in a cluster the results show a fingerprint of
        the final weights, the same in every process. Ctrl-C here ends like Ctrl-C during training; `resume`
        then scores the run.
        """
        if self.fit_ended is None:
            raise RuntimeError("Trainer.finish() before fit()")
        run, status = self.run, self.fit_ended
        try:
            with ctrl_c_between_batches() as ctrl_c, self.placement.locally():
                scores = score_checkpoints(self.run, self.splits, self.experiment, [ctrl_c])
        except KeyboardInterrupt:
            self._interrupted(None)
        except Exception as e:  # the epochs are kept (state.json says how the fit ended): resume scores the run
            self._failed(e)
        if scores:
            run.write_scores(scores)
        state = run.update_state(status=status, ended=now())
        self.meta["ended"] = state.ended
        run.write_meta(self.meta)

        self.say(results_rows(self, state, scores))
        return run

    def _add_fit_seconds(self, started: float | None, **changes: Any) -> None:
        seconds = self.run.read_state().fit_seconds
        if started is not None:
            seconds += time.perf_counter() - started
        self.run.update_state(fit_seconds=round(seconds, 2), **changes)

    def _failed(self, error: BaseException, started: float | None = None) -> NoReturn:
        """Mark the run `failed` and raise `error`, as one line when it is a picture that vanished or changed."""
        with contextlib.suppress(UserError):  # a full disk must not hide the first error
            self._add_fit_seconds(started, status="failed", ended=now())
        one_line = data_error(error) if isinstance(error, Exception) else None
        if one_line is not None:
            raise one_line from error
        raise error

    def _interrupted(self, started: float | None) -> NoReturn:
        self._add_fit_seconds(started, status="interrupted", ended=now())
        self.say(Notice(f"The run folder keeps every finished epoch: {self.run.path}\n"
                        f"Continue with: cnnrun resume {self.run.path}", "interrupted"))
        raise SystemExit(130) from None


def train_experiment(experiment: Experiment, output_dir: str | None = None, name: str | None = None,
                     say: Say = silent) -> Run:
    """Train `experiment` from scratch into a new run folder and return it (see `Trainer.new`)."""
    with Trainer.new(experiment, output_dir, name, say=say) as trainer:
        trainer.fit()
        return trainer.finish()


def resume_run(run_path: str | Path | None, epochs: int | None = None, say: Say = silent) -> Run | None:
    """Continue a run where it stopped (see `Trainer.from_run`); None when there was nothing left to do."""
    if (trainer := Trainer.from_run(run_path, epochs, say)) is None:
        return None
    with trainer:
        trainer.fit()
        return trainer.finish()
