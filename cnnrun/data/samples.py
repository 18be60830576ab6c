"""`cnnrun data show` and the run folder's `samples.png`: look at the data before (and while) training on it.

The course opens every experiment with a look at the data: its shape and a picture. Here that look is a grid of
training pictures per class exactly as the model receives them (after the resize and colour mode of the data
layer, before normalisation), a second grid after the experiment's augmentation, and the images per class and
split as a bar chart. With numbers a picture (`label_mode: regression`) the grid has a row per target, its
pictures sorted by it, and there is no bar chart.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnrun.atomic import atomic_write_figure
from cnnrun.figures import counts_figure, mosaic_figure, tile_grid

SAMPLES = "samples.png"


@dataclass(frozen=True)
class DataShow:
    """What `show_data` found and wrote: images per class and split, the figures, the data layer's warnings."""

    title: str  # `<experiment>: <dataset>, input (h, w, c), N classes`
    splits: tuple[str, ...]  # train, validation, test (those the experiment has)
    counts: tuple[tuple[str, tuple[int, ...]], ...]  # (class, images per split) in class order
    folder: Path
    files: tuple[Path, ...]
    warnings: tuple[str, ...] = ()
    sizes: tuple[int, ...] | None = None  # the images per split, where a picture may count under several classes

    @property
    def totals(self) -> tuple[int, ...]:
        """The images per split, all classes together (each picture once, with several labels a picture too)."""
        if self.sizes is not None:
            return self.sizes
        return tuple(sum(column) for column in zip(*(row for _, row in self.counts), strict=True))


def sample_indices(labels: np.ndarray, classes: int, per_class: int, seed: int) -> list[np.ndarray]:
    """Up to `per_class` example indices of each class, drawn in a seeded order (the same seed, the same ones);
    with multi-hot labels (several a picture), of the pictures having each label."""
    order = np.random.default_rng(seed).permutation(len(labels))
    if np.ndim(labels) > 1:
        return [order[labels[order, c] > 0][:per_class] for c in range(classes)]
    return [order[labels[order] == c][:per_class] for c in range(classes)]


def number_indices(numbers: np.ndarray, targets: int, per_row: int, seed: int) -> list[np.ndarray]:
    """Numbers a picture (`label_mode: regression`): for each target, `per_row` pictures drawn in a seeded order,
    then sorted by that target's number, smallest first."""
    numbers = np.asarray(numbers).reshape(len(numbers), -1)
    drawn = np.random.default_rng(seed).permutation(len(numbers))[:per_row]
    return [drawn[np.argsort(numbers[drawn, j], kind="stable")] for j in range(targets)]


def samples_figure(examples, class_names: list[str], per_class: int, seed: int, title: str, augmenter=None,
                   numbers: bool = False):
    """A row of training pictures per class (uint8, as the model receives them); augmented when `augmenter`. With
    `numbers` (`label_mode: regression`), a row per target of pictures sorted by it, named by its range."""
    labels = np.asarray(examples.labels)
    chosen = number_indices(labels, len(class_names), per_class, seed) if numbers else \
        sample_indices(labels, len(class_names), per_class, seed)
    if numbers:
        class_names = [f"{name} {labels[row[0], j]:.4g} … {labels[row[-1], j]:.4g}" if len(row) else name
                       for j, (name, row) in enumerate(zip(class_names, chosen, strict=True))]
    rows = [examples.pixels(indices) for indices in chosen]
    if augmenter is not None:
        rows = [np.clip(np.rint(np.asarray(augmenter(row.astype(np.float32), training=True))), 0, 255)
                .astype(np.uint8) if len(row) else row for row in rows]
    kept = [(row, name) for row, name in zip(rows, class_names, strict=True) if len(row)]
    return mosaic_figure([row for row, _ in kept], [name for _, name in kept], title)


def shares(label: np.ndarray, class_names: list[str]) -> str:
    """A blended label as words: its classes by share, largest first (`cat .62 · dog .38`)."""
    order = [i for i in np.argsort(-label, kind="stable") if label[i] > 0.005][:2]
    return " · ".join(f"{class_names[i]} {label[i]:.2f}".replace(" 0.", " .") for i in order)


def mixed_figure(examples, class_names: list[str], count: int, seed: int, mixer, title: str):
    """`count` training pictures as one batch through `mixer` (MixUp, CutMix), each titled with its label's shares."""
    import tensorflow as tf

    picked = np.concatenate(sample_indices(np.asarray(examples.labels), len(class_names), count, seed))
    picked = np.random.default_rng(seed).permutation(picked)[:count]
    one_hot = np.eye(len(class_names), dtype=np.float32)[np.asarray(examples.labels)[picked]]
    batch = tf.data.Dataset.from_tensors((examples.pixels(picked).astype(np.float32), one_hot))
    images, labels = (np.asarray(part) for part in next(iter(mixer(batch))))
    pixels = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return tile_grid(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, [shares(label, class_names)
                                                                          for label in labels],
                     title, vmin=0, vmax=255, size=1.4)


def write_samples(run, splits, experiment, per_class: int = 8) -> None:
    """Write the run folder's `samples.png` once (a resumed run keeps the first), when `output.plots` is on."""
    target = run.samples
    if not experiment.output.plots or target.exists():
        return
    shape = "×".join(map(str, splits.info.input_shape))
    title = f"{experiment.name}: training pictures as the model receives them ({shape}, before normalisation)"
    atomic_write_figure(samples_figure(splits.examples["train"], splits.info.class_names, per_class,
                                       experiment.seed, title, numbers=splits.info.label_mode == "regression"),
                        target)


def show_data(experiment, per_class: int = 8, out: Path | None = None) -> DataShow:
    """Write `samples.png`, `samples_augmented.png` (with an `augmentation:` section that changes single
    pictures), `samples_mixed.png` (with `mixup` or `cutmix`) and `class_counts.png`, and count the images per
    class and split.

    Args:
        experiment: the validated experiment.
        per_class: pictures per class. Defaults to 8.
        out: the folder. Defaults to `data_show/` in the current folder.

    Returns:
        `DataShow`: the counts and the files written (nothing is printed).
    """
    from cnnrun.data import build_augmenter, load_splits
    from cnnrun.data.mixing import batch_mixer

    splits = load_splits(experiment, augment=False)
    info, train = splits.info, splits.examples["train"]
    folder = Path(out) if out is not None else Path.cwd() / "data_show"
    shape = "×".join(map(str, info.input_shape))
    written = [folder / SAMPLES]
    numbers = info.label_mode == "regression"
    atomic_write_figure(samples_figure(train, info.class_names, per_class, experiment.seed,
                                       f"{experiment.name}: training pictures as the model receives them ({shape}, "
                                       f"before normalisation)", numbers=numbers), written[-1])
    if experiment.augmentation is not None:
        zero = info.mean if info.normalize == "standardize" else 0.0
        augmenter = build_augmenter(experiment.augmentation, experiment.seed, zero=zero)
        if augmenter is not None:
            written.append(folder / "samples_augmented.png")
            atomic_write_figure(samples_figure(train, info.class_names, per_class, experiment.seed,
                                               f"{experiment.name}: the same pictures after the augmentation "
                                               f"(one random draw)", augmenter, numbers), written[-1])
    mixer = batch_mixer(experiment.augmentation, experiment.seed)
    if mixer is not None:
        written.append(folder / "samples_mixed.png")
        atomic_write_figure(mixed_figure(train, info.class_names, per_class, experiment.seed, mixer,
                                         f"{experiment.name}: a training batch after mixup/cutmix, each picture "
                                         f"with its label's shares"), written[-1])
    if numbers:  # no classes to count: the pictures of each split, under the targets' names
        return DataShow(f"{experiment.name}: {experiment.dataset.name}, input {tuple(info.input_shape)}, "
                        f"{info.num_classes} target(s)", tuple(info.sizes),
                        ((", ".join(info.class_names), tuple(info.sizes.values())),), folder, tuple(written),
                        tuple(splits.warnings))
    counts = dict(info.class_counts)  # of each class (several labels a picture: the pictures having each)
    written.append(folder / "class_counts.png")
    atomic_write_figure(counts_figure(counts, info.class_names, f"{experiment.name}: images per class"), written[-1])
    return DataShow(f"{experiment.name}: {experiment.dataset.name}, input {tuple(info.input_shape)}, "
                    f"{info.num_classes} classes", tuple(counts),
                    tuple((name, tuple(values[i] for values in counts.values()))
                          for i, name in enumerate(info.class_names)), folder, tuple(written), tuple(splits.warnings),
                    tuple(info.sizes[name] for name in counts) if info.label_mode == "multi_label" else None)
