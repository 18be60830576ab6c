"""`cnnrun export`: a run's model for serving, through Keras' own `model.export`, checked after writing.

The exported model takes raw pixel values (0-255, float32, the run's image size) and gives class probabilities:
the run's normalisation (`rescale`: ÷ 255, `standardize`: the training set's mean and std) is a `Rescaling` layer
inside it, so a server needs no cnnrun code. Augmentation layers placed in the model (`placement: model`) are
left out: they do nothing at inference, and a server needs none of their code. The exported model computes in
float32, a mixed-precision run's too. After writing, the exported file is loaded back with its own runtime (a
reloaded SavedModel, ONNX Runtime, the LiteRT interpreter) and must predict what the `.keras` checkpoint predicts
(a mixed-precision one's weights computing in float32), on a few of the run's test images, within `TOLERANCE`.

| format | file | runtime used for the check | packages |
|---|---|---|---|
| `saved_model` | a folder (`tf.saved_model`, endpoint `serve`) | `tf.saved_model.load` | TensorFlow |
| `onnx` | `.onnx` (tf2onnx) | `onnxruntime` | `pip install 'cnnrun[export]'` |
| `litert` | `.tflite` (TFLite converter) | `ai_edge_litert.interpreter` | `pip install 'cnnrun[export]'` |

Each row is one `ExportFormat` record of `FORMATS` (its name, suffix, packages, Keras' exporter and the runtime
that loads it back for the check); a name that is not in the table is an error naming the known ones, never a
default.

Example:
>>> export_run("outputs/quickstart/20261127-101500", "onnx")
True
"""

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnrun.atomic import os_error_reason, partial_path, replacing
from cnnrun.errors import UserError, did_you_mean
from cnnrun.model.regression import denormalized
from cnnrun.report import c_messages_hidden
from cnnrun.run_folder.files import EXPORT
from cnnrun.run_folder.folder import Run, open_run

TOLERANCE = 1e-4  # the largest difference allowed between the exported model's probabilities and the checkpoint's
SAMPLES = 8  # test images the check predicts

Predictor = Callable[[np.ndarray], np.ndarray]
"""An exported model loaded back with its own runtime: float32 pixels in, probabilities out."""


@dataclass(frozen=True)
class ExportFormat:
    """One format `cnnrun export` writes: how it is named, written and loaded back for the check.

    Attributes:
        name: the name `--format` takes.
        suffix: the file's suffix (`.onnx`); empty for a format written as a folder.
        packages: the Python modules it needs beyond TensorFlow (the converter and the runtime of the check).
        keras_format: Keras' own name for it, `model.export(format=...)`.
        loader: loads a written export with the format's own runtime, for the check (`Predictor`).
    """

    name: str
    suffix: str
    packages: tuple[str, ...]
    keras_format: str
    loader: Callable[[Path], Predictor]

    @property
    def is_folder(self) -> bool:
        return not self.suffix

    def default_name(self, checkpoint: str) -> str:
        """`best_saved_model` (a folder), `best.onnx`, `best.tflite`."""
        return f"{checkpoint}{self.suffix}" if self.suffix else f"{checkpoint}_{self.name}"

    def export(self, serving, path: Path) -> None:
        """Write `serving` with Keras' `model.export` to `path`, whole or not at all (written beside, then moved)."""
        with (_replacing_folder(path) if self.is_folder else replacing(path)) as tmp:
            serving.export(str(tmp), format=self.keras_format, verbose=False)

    def check(self, path: Path, images: np.ndarray, expected: np.ndarray) -> float:
        """The largest difference between what the export at `path`, loaded with its own runtime, predicts for
        `images` (raw pixels) and `expected`."""
        return float(np.abs(self.loader(path)(images.astype(np.float32)) - expected).max())


def _load_saved_model(path: Path) -> Predictor:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept: its endpoint needs the variables it owns
    return lambda images: loaded.serve(tf.constant(images)).numpy()


def _load_onnx(path: Path) -> Predictor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


def _load_litert(path: Path) -> Predictor:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))

    def predict(images: np.ndarray) -> np.ndarray:
        (given,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.resize_tensor_input(given["index"], images.shape)
        with c_messages_hidden():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            interpreter.allocate_tensors()
            interpreter.set_tensor(given["index"], images)
            interpreter.invoke()
        return interpreter.get_tensor(output["index"])

    return predict


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("saved_model", "", (), "tf_saved_model", _load_saved_model),
    ExportFormat("onnx", ".onnx", ("tf2onnx", "onnx", "onnxruntime"), "onnx", _load_onnx),
    ExportFormat("litert", ".tflite", ("ai_edge_litert",), "litert", _load_litert),
)}
"""Every format `cnnrun export` writes, by the name `--format` takes."""


def export_format(name: str) -> ExportFormat:
    """The format called `name`; any other name is a one-line UserError naming the known ones."""
    if name not in FORMATS:
        raise UserError(f"--format {name}: not a format cnnrun exports; choose one of {', '.join(FORMATS)}"
                        f"{did_you_mean(name, FORMATS)}")
    return FORMATS[name]


def check_packages(format_: str) -> None:
    """A one-line UserError naming the extra to install when a module `format_` needs is missing.

    Checked without importing anything, before the run's model is loaded.
    """
    missing = [name for name in export_format(format_).packages if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"--format {format_} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'}"
                        f" not installed: pip install 'cnnrun[export]'")


def export_path(run: Run, format_: str, checkpoint: str, out: Path | None) -> Path:
    """Where the export goes: `out`, else `RUN_DIR/export/<checkpoint>_saved_model`, `<checkpoint>.onnx` or
    `<checkpoint>.tflite`; a name that does not fit the format is a UserError."""
    kind = export_format(format_)
    if out is None:
        run.check_writable(EXPORT)
        return run.export_folder / kind.default_name(checkpoint)
    if not kind.is_folder and out.suffix.lower() != kind.suffix:
        raise UserError(f"--out {out}: a {format_} model is one file ending in {kind.suffix}")
    if kind.is_folder and out.is_file():
        raise UserError(f"--out {out}: {format_} is written as a folder, and a file is there")
    return out


def computes_in_float32(model) -> bool:
    """Whether every layer of `model` computes in float32 (not a mixed-precision run's bfloat16 or float16)."""
    return all(layer.dtype_policy.compute_dtype == "float32" for layer in model._flatten_layers())


def inference_model(model):
    """`model` without its `augmentation` layers, computing in float32.

    A float32 model's layers are shared (the same objects, the same weights). A mixed-precision run's layers are
    copied with a float32 policy and given the same weights (mixed precision keeps float32 weights anyway), since
    a served model computes in float32 (ONNX refuses the mix of bfloat16 and float32).
    """
    import keras

    mixed = not computes_in_float32(model)

    def copy(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"}) if mixed else layer

    if isinstance(model, keras.Sequential):
        inner = keras.Sequential([keras.Input(shape=tuple(model.input_shape[1:])),
                                  *(copy(layer) for layer in model.layers if layer.name != "augmentation")],
                                 name=model.name)
    else:
        def skip_augmentation(layer, *args, **kwargs):
            return args[0] if layer.name == "augmentation" else layer(*args, **kwargs)

        inner = keras.models.clone_model(model, clone_function=copy, call_function=skip_augmentation)
    if mixed:
        for layer in inner.layers:
            if layer.weights:
                layer.set_weights(model.get_layer(layer.name).get_weights())
    return inner


def serving_model(model, info):
    """A Keras model that takes raw pixel values and gives what `model` gives for the normalised pixels.

    `Rescaling` does the run's normalisation (as `cnnrun.data.preprocess` does it for training); the layers of
    `model` follow, without the augmentation layers, in float32 (`inference_model`).

    Args:
        model: the run's checkpoint, loaded.
        info: the run's `DatasetInfo` (normalisation, mean, std, input shape).
    """
    import keras

    pixels = keras.Input(shape=tuple(info.input_shape), dtype="float32", name="pixels")
    if info.normalize == "rescale":
        normalised = keras.layers.Rescaling(1 / 255.0, dtype="float32", name="normalisation")(pixels)
    elif info.normalize == "standardize":
        scale = 1 / (info.std + 1e-7)
        normalised = keras.layers.Rescaling(scale, offset=-info.mean * scale, dtype="float32",
                                            name="normalisation")(pixels)
    else:
        normalised = pixels
    inner = inference_model(model)
    outputs = inner(normalised)
    if info.label_mode == "regression":  # numbers in the targets' own units: output × std + mean
        outputs = keras.layers.Rescaling(np.asarray(info.target_std, np.float32),
                                         offset=np.asarray(info.target_mean, np.float32), dtype="float32",
                                         name="target_units")(outputs)
    serving = keras.Model(pixels, outputs, name=f"{model.name}_serving")
    serving(np.zeros((1, *info.input_shape), np.float32))  # Keras exports only a model that has been called
    return serving


def sample_images(run: Run, experiment, info, count: int = SAMPLES) -> tuple[np.ndarray, str]:
    """Up to `count` uint8 images of the run's test split (else validation, else training), read as training
    reads them, and the split's name.

    An image folder's images are the first files its splits.json lists (only those are read); an array dataset
    is loaded as training loads it.
    """
    from cnnrun.data import load_splits
    from cnnrun.data.pictures import read_images

    files = run.read_splits()
    if files is not None:
        name = next(split for split in ("test", "validation", "train") if files.get(split))
        paths = [Path(files["root"]) / relative for relative in files[name][:count]]
        images, _, _ = read_images(paths, info.input_shape)
        if images is None:
            raise UserError(f"{files['root']}: none of the first {len(paths)} {name} images splits.json lists can be "
                            f"read, so the export cannot be checked; is the dataset still there?")
        return images, name
    splits = load_splits(experiment, stored=run.dataset_info())
    name = next(split for split in ("test", "validation", "train") if split in splits.examples)
    examples = splits.examples[name]
    return examples.pixels(np.arange(min(count, len(examples)))), name


@contextlib.contextmanager
def _replacing_folder(path: Path) -> Iterator[Path]:
    """Yield a partial folder to write; when the block ends it takes the place of `path` (an older one at
    `path` is removed only then). On an error the partial folder is removed."""
    tmp = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        old = partial_path(path) if path.exists() else None
        if old is not None:
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({os_error_reason(e)})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_export(serving, format_: str, path: Path) -> None:
    """Write `serving` in the format called `format_` to `path`, whole or not at all (`ExportFormat.export`)."""
    export_format(format_).export(serving, path)


def _output_text(width: int, class_names: list[str], loss) -> str:
    """What the exported model gives per image, in words: probabilities (or logits) of which classes."""
    kind = "logit" if isinstance(loss, dict) and loss.get("from_logits", False) else "probability"
    if width == 1:
        return f"1 value per image: the {kind} of {class_names[-1]} (against {class_names[0]})"
    plural = "logits" if kind == "logit" else "probabilities"
    return f"{width} {plural} per image: {', '.join(class_names)}"


@dataclass(frozen=True)
class Exported:
    """What `cnnrun export` did: the rows of its table (wrote, input, output, check) and whether the check held."""

    title: str
    rows: list[tuple[str, str]]
    ok: bool
    checkpoint: str


def export_run(run_path: str | Path | None, format_: str, checkpoint: str = "best",
               out: Path | None = None) -> Exported:
    """Export a run's checkpoint for serving and check the exported model against the checkpoint.

    Args:
        run_path: the run folder; None means the most recently started run under `outputs/`.
        format_: `saved_model`, `onnx` or `litert`.
        checkpoint: `best` or `last`. Defaults to `best`.
        out: where the export goes. Defaults to None: `RUN_DIR/export/<checkpoint>_saved_model`,
            `<checkpoint>.onnx` or `<checkpoint>.tflite`.

    Returns:
        What was written, and whether the exported model's probabilities equal the checkpoint's within
        `TOLERANCE` (`ok`; the CLI exits 1 when not).
    """
    from cnnrun.data import preprocess
    from cnnrun.model.checkpoints import load_run_model

    kind = export_format(format_)
    check_packages(format_)
    run = open_run(run_path)
    path = export_path(run, format_, checkpoint, out)
    experiment, info, model = load_run_model(run, checkpoint)
    images, split = sample_images(run, experiment, info)
    mixed = not computes_in_float32(model)  # then the reference is the checkpoint's weights computing in float32
    expected = (inference_model(model) if mixed else model).predict(preprocess(images, info), verbose=0)
    if info.label_mode == "regression":  # the exported model gives the numbers in their own units
        expected = denormalized(expected, info.target_mean, info.target_std)
    serving = serving_model(model, info)
    kind.export(serving, path)
    difference = kind.check(path, images, expected)
    ok = difference <= TOLERANCE
    shape = ", ".join(["batch", *map(str, info.input_shape)])
    left_out = " (augmentation layers left out)" if any(layer.name == "augmentation" for layer in model.layers) \
        else ""
    return Exported(f"{experiment.name}: {checkpoint}.keras exported as {format_}", [
        ("wrote", str(path)),
        ("input", f"pixels: float32 ({shape}), values 0-255; normalisation {info.normalize} inside{left_out}"),
        ("output", f"{expected.shape[-1]} number(s) per image in their own units (normalisation undone inside): "
                   f"{', '.join(info.class_names)}" if info.label_mode == "regression" else
         _output_text(expected.shape[-1], info.class_names, experiment.compile.loss)),
        ("check", f"max difference {difference:.2e} from the .keras model{' (in float32)' if mixed else ''} on "
                  f"{len(images)} {split} images ({'within' if ok else 'MORE than'} {TOLERANCE:g})"),
    ], ok, checkpoint)
