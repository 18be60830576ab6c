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

Example:
>>> export_run("outputs/quickstart/20261127-101500", "onnx")
True
"""

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from cnnrun.atomic import os_error_reason, partial_path, replacing
from cnnrun.errors import UserError
from cnnrun.report import c_messages_hidden
from cnnrun.run_folder.files import EXPORT
from cnnrun.run_folder.folder import Run, open_run

KERAS_FORMATS = {"saved_model": "tf_saved_model", "onnx": "onnx", "litert": "litert"}
"""cnnrun's format names and Keras' `model.export(format=...)` names."""

PACKAGES = {"saved_model": (), "onnx": ("tf2onnx", "onnx", "onnxruntime"), "litert": ("ai_edge_litert",)}
"""The Python modules each format needs beyond TensorFlow: the converter and the runtime of the check."""

SUFFIXES = {"saved_model": "", "onnx": ".onnx", "litert": ".tflite"}
TOLERANCE = 1e-4  # the largest difference allowed between the exported model's probabilities and the checkpoint's
SAMPLES = 8  # test images the check predicts


def check_packages(format_: str) -> None:
    """A one-line UserError naming the extra to install when a module `format_` needs is missing.

    Checked without importing anything, before the run's model is loaded.
    """
    missing = [name for name in PACKAGES[format_] if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"--format {format_} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'}"
                        f" not installed: pip install 'cnnrun[export]'")


def export_path(run: Run, format_: str, checkpoint: str, out: Path | None) -> Path:
    """Where the export goes: `out`, else `RUN_DIR/export/<checkpoint>_saved_model`, `<checkpoint>.onnx` or
    `<checkpoint>.tflite`; a name that does not fit the format is a UserError."""
    if out is None:
        run.check_writable(EXPORT)
        name = f"{checkpoint}_saved_model" if format_ == "saved_model" else f"{checkpoint}{SUFFIXES[format_]}"
        return run.export_folder / name
    suffix = SUFFIXES[format_]
    if suffix and out.suffix.lower() != suffix:
        raise UserError(f"--out {out}: a {format_} model is one file ending in {suffix}")
    if not suffix and out.is_file():
        raise UserError(f"--out {out}: a SavedModel is a folder, and a file is there")
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
    serving = keras.Model(pixels, inner(normalised), name=f"{model.name}_serving")
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
    """Write `serving` with Keras' `model.export` to `path`, whole or not at all (written beside, then moved)."""
    writing = _replacing_folder(path) if format_ == "saved_model" else replacing(path)
    with writing as tmp:
        serving.export(str(tmp), format=KERAS_FORMATS[format_], verbose=False)


def exported_predictor(path: Path, format_: str) -> Callable[[np.ndarray], np.ndarray]:
    """The exported model loaded back with its own runtime: float32 pixels in, probabilities out."""
    if format_ == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # kept: its endpoint needs the variables it owns
        return lambda images: loaded.serve(tf.constant(images)).numpy()
    if format_ == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda images: session.run(None, {name: images})[0]
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


def _output_text(width: int, class_names: list[str], loss) -> str:
    """What the exported model gives per image, in words: probabilities (or logits) of which classes."""
    kind = "logit" if isinstance(loss, dict) and loss.get("from_logits", False) else "probability"
    if width == 1:
        return f"1 value per image: the {kind} of {class_names[-1]} (against {class_names[0]})"
    plural = "logits" if kind == "logit" else "probabilities"
    return f"{width} {plural} per image: {', '.join(class_names)}"


def export_run(run_path: str | Path | None, format_: str, checkpoint: str = "best", out: Path | None = None) -> bool:
    """Export a run's checkpoint for serving and check the exported model against the checkpoint.

    Args:
        run_path: the run folder; None means the most recently started run under `outputs/`.
        format_: `saved_model`, `onnx` or `litert`.
        checkpoint: `best` or `last`. Defaults to `best`.
        out: where the export goes. Defaults to None: `RUN_DIR/export/<checkpoint>_saved_model`,
            `<checkpoint>.onnx` or `<checkpoint>.tflite`.

    Returns:
        Whether the exported model's probabilities equal the checkpoint's within `TOLERANCE`.
    """
    from cnnrun.data import preprocess
    from cnnrun.model.checkpoints import load_run_model
    from cnnrun.report import console, results_table

    check_packages(format_)
    run = open_run(run_path)
    path = export_path(run, format_, checkpoint, out)
    experiment, info, model = load_run_model(run, checkpoint)
    images, split = sample_images(run, experiment, info)
    mixed = not computes_in_float32(model)  # then the reference is the checkpoint's weights computing in float32
    expected = (inference_model(model) if mixed else model).predict(preprocess(images, info), verbose=0)
    serving = serving_model(model, info)
    write_export(serving, format_, path)
    got = exported_predictor(path, format_)(images.astype(np.float32))
    difference = float(np.abs(got - expected).max())
    ok = difference <= TOLERANCE
    shape = ", ".join(["batch", *map(str, info.input_shape)])
    left_out = " (augmentation layers left out)" if any(layer.name == "augmentation" for layer in model.layers) \
        else ""
    results_table(f"{experiment.name}: {checkpoint}.keras exported as {format_}", [
        ("wrote", str(path)),
        ("input", f"pixels: float32 ({shape}), values 0-255; normalisation {info.normalize} inside{left_out}"),
        ("output", _output_text(expected.shape[-1], info.class_names, experiment.compile.loss)),
        ("check", f"max difference {difference:.2e} from the .keras model{' (in float32)' if mixed else ''} on "
                  f"{len(images)} {split} images ({'within' if ok else 'MORE than'} {TOLERANCE:g})"),
    ])
    if not ok:
        console.print(f"[red]the exported model does not predict what {checkpoint}.keras predicts[/]")
    return ok
