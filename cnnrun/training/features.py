"""Features computed once: a phase that trains only the head after a frozen backbone trains it on the backbone's
outputs, computed at the phase's start, instead of running the backbone on every batch of every epoch.

On a CPU a frozen backbone's forward pass is almost all of such a phase's time, and its output never changes:
with `train.phases[i].cache_features` the Trainer calls `cache_phase` when phase i starts (or resumes), then fits
the returned head on the returned data. The head is the model's own layers (`cnnrun.model.features`), compiled
with the model's optimizer, so the run is the same run: `best.keras` and `last.keras` are the whole model with
that optimizer's state, resume and the next phase (which runs the backbone again) work as before, and the head
sees, batch for batch, the examples the slow way gives it (`cnnrun.data.features`).

The features of the training pictures (K views of each with `cache_features: K` and augmentation) and of the
validation pictures are held in memory, or, beyond `MEMORY_LIMIT` bytes, in `features/*.npy` in the run folder,
read as memory maps and removed when the phase ends. The front runs in inference mode: a backbone with Dropout
inside (EfficientNet) gives its features without it, where the slow way would drop units at random.

Example:
>>> cached = cache_phase(model, splits, experiment, epoch=0, folder=run.path)
>>> cached.head.fit(cached.train, validation_data=cached.validation, epochs=3, steps_per_epoch=splits.steps_per_epoch)
"""

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnrun.config import Experiment
from cnnrun.config.phases import feature_views, phase_index
from cnnrun.data import Splits
from cnnrun.data.features import feature_pass, feature_stream, stored_pass
from cnnrun.model.compiling import compile_model
from cnnrun.model.features import same_order, split_at_backbone

MEMORY_LIMIT = 2 << 30  # bytes of features held in memory; more go to a file in the run folder
FEATURES = "features"  # the run folder's subfolder for features kept in files (removed when the phase ends)


@dataclass(frozen=True)
class CachedPhase:
    """What `cache_phase` computed: the head to fit and its data.

    Attributes:
        head: the model's layers after the backbone, compiled with the model's optimizer.
        train: every remaining epoch's `(features, labels)` batches, as the pictures' training stream.
        validation: the validation split's `(features, labels)` batches, or None.
        phase: the phase's number, from 1.
        views: views of every training picture computed (1 without augmentation).
        pictures: training and validation pictures run through the front.
        seconds: the time the front took over them.
        folder: the folder of the features' files, or None when they are in memory.
    """

    head: Any
    train: Any
    validation: Any | None
    phase: int
    views: int
    pictures: int
    seconds: float
    folder: Path | None = field(default=None)

    def line(self) -> str:
        """What the Trainer says at the phase's start."""
        kept = f"in {self.folder}" if self.folder else "in memory"
        views = f" ({self.views} views of each training picture)" if self.views > 1 else ""
        return (f"phase {self.phase}: backbone features of {self.pictures:,} pictures{views} computed once in "
                f"{self.seconds:.1f} s, kept {kept}; the head trains on them")

    def record(self) -> dict[str, Any]:
        """meta.json's entry for the phase."""
        return {"phase": self.phase, "views": self.views, "pictures": self.pictures,
                "seconds": round(self.seconds, 2), "kept": "file" if self.folder else "memory"}

    def remove_files(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _features(front, batches, count: int, views: int, view: int, out: np.ndarray | None, path: Path | None,
              limit: int):
    """Run `front` over `batches` (`count` pictures), into view `view` of `out` (made at the first view)."""
    shape = tuple(int(d) for d in front.output.shape[1:])
    if out is None:
        size = views * count * math.prod(shape) * 4
        if size > limit and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(views, count, *shape))
        else:
            out = np.empty((views, count, *shape), np.float32)
    start = 0
    for images, _ in batches:
        found = np.asarray(front.predict_on_batch(images), np.float32)
        out[view, start:start + len(found)] = found
        start += len(found)
    if start != count:
        raise RuntimeError(f"the front gave features of {start} pictures, not {count}")
    return out


def caches(experiment: Experiment, epoch: int) -> bool:
    """Whether the phase that trains from `epoch` epochs done caches its features."""
    train = experiment.train
    return bool(train.phases) and bool(feature_views(train.phases[phase_index(train, epoch)]))


def cache_phase(model, splits: Splits, experiment: Experiment, epoch: int, folder: Path | None = None,
                limit: int = MEMORY_LIMIT) -> CachedPhase:
    """Compute the backbone's features for the phase that trains from `epoch` epochs done, and the head to fit.

    Args:
        model: the whole model, its phase's flags set and compiled (`cnnrun.model.phases.start_phase`).
        splits: the data as loaded (before the distribution reshapes it): its examples and stream settings.
        experiment: the experiment.
        epoch: epochs done; the training stream starts after them (a resumed phase goes on where it stopped).
        folder: the run folder, where features beyond `limit` bytes go (`features/`). Defaults to None: memory.
        limit: bytes of features held in memory. Defaults to `MEMORY_LIMIT`.
    """
    train = experiment.train
    index = phase_index(train, epoch)
    views = feature_views(train.phases[index]) if experiment.augmentation else 1
    split = split_at_backbone(model, f"train.phases.{index}.cache_features")
    if not same_order(split, model):  # the checkpoint's optimizer state would be read back into other variables
        raise RuntimeError("the head's trainable variables are not in the model's order")
    started = time.perf_counter()
    kept = Path(folder) / FEATURES if folder is not None else None
    examples = splits.examples["train"]
    features = None
    for view in range(views):
        features = _features(split.front, stored_pass(examples, splits.info, experiment,
                                                      view if experiment.augmentation else None),
                             len(examples), views, view, features, kept and kept / "train.npy", limit)
    validation, pictures = None, len(examples)
    if splits.validation is not None and "validation" in splits.examples:
        held_out = splits.examples["validation"]
        found = _features(split.front, stored_pass(held_out, splits.info, experiment), len(held_out), 1, 0, None,
                          kept and kept / "validation.npy", limit)
        validation = feature_pass(found, np.asarray(held_out.labels), splits.info, train.batch_size)
        pictures += len(held_out)
    seconds = time.perf_counter() - started
    stream = feature_stream(features, np.asarray(examples.labels), examples, splits.info, experiment, epoch)
    compile_model(split.head, experiment, splits.steps_per_epoch, optimizer=model.optimizer)
    in_file = kept if kept is not None and kept.is_dir() else None
    return CachedPhase(split.head, stream, validation, index + 1, views, pictures, seconds, in_file)


def cache_for(trainer, epoch: int) -> CachedPhase | None:
    """The Trainer's step before a phase's fit from `epoch` epochs done: with `cache_features`, the features
    computed (told, and kept in meta.json at once: a resumed process adds its own entry); else None."""
    if not caches(trainer.experiment, epoch):
        return None
    cached = cache_phase(trainer.model, trainer.splits, trainer.experiment, epoch, trainer.run.path)
    trainer.say(cached.line())
    trainer.meta.setdefault("cached_features", []).append(cached.record())
    trainer.run.write_meta(trainer.meta)
    return cached
