"""One split's examples, in memory (arrays) or on disk (image files that stream through `tf.data`).

Both kinds give the same things to the rest of cnnrun: their labels, a `tf.data` dataset of `(uint8 image, label)`
in a fixed order, the same shuffled per epoch, and the pixels of a few examples for plots.

Every pass starts from a `source()`: the examples as stored, decoded and cached once when a cache is asked for.
A pipeline that passes over the examples many times (one pass per epoch) builds the source once and asks
`ordered(source, seed)` for each pass, so every epoch reads the same cache; `dataset()` and `epoch()` are one
pass over a source of their own.

Image files are decoded and resized by TensorFlow in parallel as they stream, so a folder larger than memory
trains with bounded memory. Files TensorFlow cannot decode as they are (CMYK JPEGs, 16-bit or palette PNGs,
GIF, BMP) were converted by the folder check into PNG bytes held in memory; those few are looked up by path.

Example:
>>> examples = FileExamples(paths, labels, size=(150, 150), channels=3, converted={}, cache="memory")
>>> source = examples.source()                  # decoded, resized, cached during the first pass
>>> first, second = examples.ordered(source, seed=7), examples.ordered(source, seed=8)  # one cache for both
"""

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cnnrun.data.traced import as_written

DISK_SHUFFLE_BUFFER = 10_000  # images held for shuffling when the decoded images are cached on disk
SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")  # how JPEG, PNG, GIF and BMP files begin
NOT_A_PICTURE = "cnnrun: no longer a picture:"  # the decoder's assertion names the file after these words


@dataclass
class ArrayExamples:
    """Examples held as one array of images and one of labels."""

    images: np.ndarray
    labels: np.ndarray

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, part: slice | np.ndarray) -> "ArrayExamples":
        """The examples in `part`: a slice, or an array of indices."""
        return replace(self, images=self.images[part], labels=self.labels[part])

    def source(self):
        """The `(image, label)` pairs as stored, for `ordered`."""
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((self.images, self.labels))

    def ordered(self, source, seed=None):
        """One pass over `source` in the order of the epoch with `seed` (a number or a scalar tensor); None
        keeps the stored order."""
        return self.shuffled(source, seed)

    def shuffled(self, source, seed=None):
        """`source` (any dataset as long as the examples) in the order `ordered` gives the epoch with `seed`."""
        return source if seed is None else source.shuffle(len(self), seed=seed, reshuffle_each_iteration=False)

    def endless(self, source, seed):
        """Endless passes over `source`, each in a new order drawn from `seed` (balanced sampling's class streams)."""
        return source.shuffle(len(self), seed=seed, reshuffle_each_iteration=True).repeat()

    def dataset(self):
        """`(image, label)` pairs in stored order."""
        return self.source()

    def epoch(self, seed: int):
        """`(image, label)` pairs in the order of the epoch with `seed`."""
        return self.ordered(self.source(), seed)

    def pixels(self, indices: np.ndarray) -> np.ndarray:
        return self.images[indices]

    def moments(self) -> tuple[float, float]:
        """Mean and standard deviation of every pixel value."""
        return float(self.images.mean(dtype=np.float64)), float(self.images.std(dtype=np.float64))


@dataclass
class FileExamples:
    """Examples held as image files, decoded and resized to `size` as they stream.

    Args:
        paths: the image files.
        labels: their class numbers.
        size: `(height, width)` every image is resized to (bilinear, antialiased).
        channels: 1, 3 or 4.
        converted: PNG bytes, by path, for the files TensorFlow cannot decode as they are.
        cache: `none` (decode every epoch), `memory` (decode once, keep the pixels in memory) or `disk`
            (decode once, keep them in `cache_dir`).
        cache_dir: a folder for `disk`.
    """

    paths: list[str]
    labels: np.ndarray
    size: tuple[int, int]
    channels: int
    converted: dict[str, bytes] = field(default_factory=dict)
    cache: str = "none"
    cache_dir: str | None = None

    @property
    def image_shape(self) -> tuple[int, ...]:
        return (*self.size, self.channels)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, part: slice | np.ndarray) -> "FileExamples":
        """The examples in `part`: a slice, or an array of indices."""
        paths = self.paths[part] if isinstance(part, slice) else [self.paths[i] for i in part]
        return replace(self, paths=paths, labels=self.labels[part])

    def _files(self):
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((np.asarray(self.paths, dtype=object).astype(str), self.labels))

    def _decoded(self, files):
        import tensorflow as tf

        decode = decoder(self.size, self.channels, self.converted)
        return files.map(as_written(lambda path, label: (decode(path), label)), num_parallel_calls=tf.data.AUTOTUNE)

    def source(self):
        """The examples as stored, for `ordered`: file names (no cache), or the decoded `(uint8 image, label)`
        pairs, cached in memory or in a file of their own in `cache_dir` during the first pass over them.

        Build it once and pass it to `ordered` for every epoch: each call makes a new, empty cache.
        """
        if self.cache == "none":
            return self._files()
        data = self._decoded(self._files())
        if self.cache == "memory":
            return data.cache()
        return data.cache(f"{self.cache_dir}/{uuid.uuid4().hex}")  # a file of its own for each source

    def ordered(self, source, seed=None):
        """One pass of `(uint8 image, label)` pairs over `source`, in the order of the epoch with `seed` (a
        number or a scalar tensor; None keeps the stored order).

        Without a cache the file names are shuffled and then decoded, so memory stays bounded; with one, the
        decoded images are (through a buffer of `DISK_SHUFFLE_BUFFER` images when cached on disk).
        """
        if self.cache == "none":
            return self._decoded(self.shuffled(source, seed))
        return self.shuffled(source, seed)

    def shuffled(self, source, seed=None):
        """`source` (any dataset as long as the examples: file names, decoded pictures, their indices) in the
        order `ordered` gives the epoch with `seed`."""
        if seed is None:
            return source
        return source.shuffle(self._buffer(), seed=seed, reshuffle_each_iteration=False)

    def endless(self, source, seed):
        """Endless passes of `(uint8 image, label)` pairs over `source`, each in a new order drawn from `seed`
        (balanced sampling's class streams); decoded as `ordered` decodes them."""
        passes = source.shuffle(self._buffer(), seed=seed, reshuffle_each_iteration=True).repeat()
        return self._decoded(passes) if self.cache == "none" else passes

    def _buffer(self) -> int:
        return min(len(self), DISK_SHUFFLE_BUFFER) if self.cache == "disk" else len(self)

    def dataset(self):
        """`(uint8 image, label)` pairs in stored order (cached as `cache` says)."""
        return self.ordered(self.source())

    def epoch(self, seed: int):
        """`(uint8 image, label)` pairs in the order of the epoch with `seed`."""
        return self.ordered(self.source(), seed)

    def pixels(self, indices: np.ndarray) -> np.ndarray:
        """The decoded images at `indices`, as training sees them."""
        decode = decoder(self.size, self.channels, self.converted)
        return np.stack([decode(self.paths[i]).numpy() for i in indices]) if len(indices) else \
            np.zeros((0, *self.image_shape), np.uint8)

    def moments(self) -> tuple[float, float]:
        """Mean and standard deviation of every pixel value, in one streaming pass."""
        total = squares = count = 0.0
        for images, _ in self._decoded(self._files()).batch(512).as_numpy_iterator():
            values = images.astype(np.float64)
            total, squares, count = total + values.sum(), squares + (values**2).sum(), count + values.size
        mean = total / count
        return float(mean), float(np.sqrt(max(squares / count - mean**2, 0.0)))


def decoder(size: tuple[int, int], channels: int, converted: dict[str, bytes] | None = None):
    """A TensorFlow function from an image file's path to its uint8 pixels, `(height, width, channels)`.

    The first frame of an animation is used. Args are those of `FileExamples`.
    """
    import tensorflow as tf

    table = None
    if converted:
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(list(converted), list(converted.values())), default_value="")

    def decode(path):
        path = tf.convert_to_tensor(path, tf.string)
        if table is None:
            data = tf.io.read_file(path)
        else:
            stored = table.lookup(path)
            data = tf.cond(stored == "", lambda: tf.io.read_file(path), lambda: stored)
        # a file that changed after the check fails here with its name, not inside the decoder without it
        known = tf.reduce_any(tf.stack([tf.strings.substr(data, 0, len(m)) == m for m in SIGNATURES]))
        with tf.control_dependencies([tf.debugging.Assert(known, [NOT_A_PICTURE, path])]):
            image = tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)
        image.set_shape([None, None, channels])

        def resized():
            pixels = tf.image.resize(image, size, method="bilinear", antialias=True)
            return tf.cast(tf.clip_by_value(tf.round(pixels), 0, 255), tf.uint8)

        image = tf.cond(tf.reduce_all(tf.shape(image)[:2] == size), lambda: image, resized)
        image.set_shape((*size, channels))
        return image

    return decode


Examples = ArrayExamples | FileExamples


@dataclass(frozen=True)
class RawData:
    """A dataset's examples before splitting and normalisation.

    Args:
        train: the training examples (all of them, before validation and test are held out).
        test: a test split that comes with the data, or None.
        class_names: the class names, in label order.
        validation: a validation split that comes with the data (an image folder's validation/), or None.
        bad_files: an image folder's files left out (on_bad_file: skip), as `{"path", "reason"}`.
        warnings: what the caller should show the user (files left out, empty class folders), one line each.
        root: an image folder's root (the paths of `Splits.files()` are relative to it); None for arrays.
        presplit: the splits are a run's recorded ones (`stored_files`): hold nothing more out.
        table: a csv dataset's table: its labels come from the table, so `Splits.files()` records them beside
            the paths; None for other kinds.
    """

    train: Examples
    test: Examples | None
    class_names: list[str]
    validation: Examples | None = None
    bad_files: tuple[dict[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    root: Path | None = None
    presplit: bool = False
    table: Path | None = None
