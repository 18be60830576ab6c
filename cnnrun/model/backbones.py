"""Backbones: a `keras.applications` network as one node of a model, with its own preprocessing in front.

A `- backbone: {name: MobileNetV2, weights: imagenet, trainable: false, pooling: avg}` node (its keys:
`cnnrun.config.backbone`) becomes two layers of the built model:

1. `<name>_preprocessing`, a `BackbonePreprocessing` layer: the family's `preprocess_input`
   (`keras.applications.mobilenet_v2.preprocess_input` for MobileNetV2: pixels 0–255 to −1…1), so the model
   takes the images as the data gives them with `dataset.normalize: none`, and evaluate, predict and export
   need nothing extra. Families whose networks hold their preprocessing (EfficientNet, ConvNeXt, MobileNetV3)
   have an identity `preprocess_input`.
   The node's `preprocessing:` chooses another for weights trained elsewhere: `torch` is torchvision's
   `(x/255 − mean)/std`, `caffe` and `tf` Keras' other modes (`keras.applications.imagenet_utils.preprocess_input`),
   `none` nothing; the choice is in the layer's config, so checkpoints load and resume with it.
2. `<name>` (`backbone`, or the node's `id:`): the application built with `include_top=False` on the shape of its
   input, a nested `keras.Model`, one layer of the outer model.

The convention other parts rely on: **a backbone is a nested `keras.Model` layer of the built model, fed by the
`BackbonePreprocessing` layer named after it (`find_backbones`); its BatchNormalization layers are never
trainable.** In Keras 3 a BatchNormalization layer whose `trainable` is False runs in inference mode, training or
not, so the pretrained moving statistics stay as they are whether the rest of the backbone is frozen or
fine-tuned (keras-io, "Transfer learning & fine-tuning"). `set_trainable` keeps that rule when the flag changes.

Example:
>>> node = Backbone({"name": "MobileNetV2", "weights": None, "alpha": 0.35}, "model.layers[0] (backbone)")
>>> [layer.name for layer in node.layers((32, 32, 3))]
['backbone_preprocessing', 'backbone']
"""

import inspect
import os
import re
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cnnrun.config.backbone import BACKBONES, OWN_KEYS, PREPROCESSINGS, REFUSED, check_backbone
from cnnrun.errors import UserError, did_you_mean


@keras.saving.register_keras_serializable(package="cnnrun")
class BackbonePreprocessing(keras.layers.Layer):
    """The `preprocess_input` of a `keras.applications` family, as a layer in front of its backbone.

    It computes in float32 whatever the dtype policy (the backbone after it casts to its own): ImageNet's mean
    subtracted in 16 bits would lose a pixel value's precision.

    Args:
        application: the `keras.applications` model it prepares images for (`MobileNetV2`).
        mode: what it applies, one of `PREPROCESSINGS`. Defaults to `"family"`: the application module's
            `preprocess_input` (`keras.applications.mobilenet_v2.preprocess_input`). `"caffe"`, `"tf"` and
            `"torch"` are `keras.applications.imagenet_utils.preprocess_input(x, mode=mode)` (`"torch"`:
            `(x/255 − [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]`, for torchvision's weights); `"none"`
            passes the pixels as they come. Checkpoints written before the argument existed load as `"family"`.
    """

    def __init__(self, application: str, mode: str = "family", **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if application not in BACKBONES:
            raise ValueError(f"unknown keras.applications model {application!r}")
        if mode not in PREPROCESSINGS:
            raise ValueError(f"unknown preprocessing {mode!r}: one of {', '.join(PREPROCESSINGS)}")
        self.application, self.mode = application, mode

    def call(self, inputs):
        if self.mode == "none":
            return inputs
        if self.mode == "family":
            return getattr(keras.applications, BACKBONES[self.application]).preprocess_input(inputs)
        return keras.applications.imagenet_utils.preprocess_input(inputs, mode=self.mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "application": self.application, "mode": self.mode}


class Backbone:
    """A backbone node of the config: made once its arguments are known, built once its input shape is.

    In a chain the model builder adds `layers(shape)` one after the other; in a graph `cnnrun.model.graph.connect`
    calls the node on its input tensor. Either way the backbone is built on the shape it receives (the data's,
    or what a `Resizing` before it gives).

    Args:
        config: the node's mapping, `{name: MobileNetV2, weights: imagenet, trainable: false, pooling: avg,
            alpha: 0.35}`, `${…}` already filled.
        where: the node's place in the config, for messages.
        name: the nested model's layer name. Defaults to `backbone`; a graph node's `id:` names it.
        dtype: unused: a backbone computes under the global dtype policy, and is never the output layer (which
            keeps float32 under mixed precision).
    """

    def __init__(self, config: dict[str, Any], where: str, name: str = "backbone", dtype: str | None = None):
        self.application = check_backbone(config, where)
        self.where, self.name = where, name
        self.weights = config.get("weights", "imagenet")
        self.trainable = config.get("trainable", True)
        self.pooling = config.get("pooling")
        self.preprocessing = config.get("preprocessing", "family")
        self.arguments = {key: value for key, value in config.items() if key not in OWN_KEYS}
        accepted = [p for p in inspect.signature(self.constructor).parameters if p not in (*REFUSED, "weights",
                                                                                            "pooling", "name")]
        for key in self.arguments:
            if key not in accepted:
                raise UserError(f"{where}: {self.application} has no argument '{key}'"
                                f"{did_you_mean(str(key), accepted)}; it takes {', '.join(accepted) or 'none'} "
                                f"besides {', '.join(OWN_KEYS)}")

    @property
    def constructor(self):
        """The `keras.applications` function that builds the network."""
        return getattr(keras.applications, self.application)

    def layers(self, input_shape: tuple[int, ...]) -> list[Any]:
        """The preprocessing layer and the backbone built for inputs of `input_shape` (no batch axis)."""
        return [BackbonePreprocessing(self.application, self.preprocessing, name=f"{self.name}_preprocessing"),
                self.network(tuple(input_shape))]

    def __call__(self, inputs):
        """Apply the preprocessing and the backbone to a tensor of a functional model (a graph's node)."""
        preprocessing, network = self.layers(tuple(inputs.shape[1:]))
        return network(preprocessing(inputs))

    def network(self, input_shape: tuple[int, ...]):
        """The application without its top, with its weights, trainable as configured, its BN layers frozen."""
        weights = self.weights
        file = None if weights in ("imagenet", None) else Path(weights)
        if file is not None and not file.is_file():
            raise UserError(f"{self.where}.weights: {file} not found; give imagenet, null (random) or a "
                            f".weights.h5 file saved from {self.application} (or Keras' .h5 no-top file)")
        try:
            model = self.constructor(include_top=False, weights="imagenet" if weights == "imagenet" else None,
                                     input_shape=input_shape, pooling=self.pooling, name=self.name,
                                     **self.arguments)
        except ValueError as e:
            raise self._refused(e, input_shape) from e
        except Exception as e:  # keras.utils.get_file raises a bare Exception when a download fails
            if "URL fetch failure on " not in str(e):
                raise
            raise self._not_downloaded(e) from e
        if file is not None:
            self._load(model, file)
        set_trainable(model, self.trainable)
        return model

    def _load(self, model, file: Path) -> None:
        """Load a weights file into the built network, or say in one line what the file holds against what the
        network needs: its arrays are compared first (Keras may otherwise load a file of another network in
        part, with a warning per layer), then Keras' own loading checks each one."""
        held, needed = _arrays_in(file), sorted(tuple(w.shape) for w in model.weights)
        if held is not None and sorted(held) != needed:
            raise UserError(f"{self.where}.weights: {file} does not fit {self.application} {self._described()}: "
                            f"the file holds {_counted(held)}, the network needs {_counted(needed)} (a file of "
                            f"another network, or of other arguments)")
        try:
            with warnings.catch_warnings():  # Keras warns per layer it skips; the error below says it once
                warnings.simplefilter("ignore")
                model.load_weights(file)
        except (ValueError, OSError, KeyError) as e:
            raise UserError(f"{self.where}.weights: {file} does not fit {self.application} "
                            f"{self._described()}: {_first_reason(e)}") from e

    def _described(self) -> str:
        arguments = ", ".join(f"{k} {v}" for k, v in self.arguments.items())
        return f"({arguments})" if arguments else "without arguments"

    def _refused(self, error: ValueError, input_shape: tuple[int, ...]) -> UserError:
        """One line for a ValueError of the application: its minimum input size, or Keras' reason."""
        reason = _first_reason(error)
        given = "×".join(str(side) for side in input_shape[:2])
        smallest = re.search(r"at least (\d+)x(\d+)", reason)
        if smallest:
            return UserError(f"{self.where}: {self.application} needs inputs of at least "
                             f"{smallest[1]}×{smallest[2]} pixels; its input here is {given} (make the images "
                             f"larger: dataset.image_size, or a Resizing layer before the backbone)")
        if "must have 3 channels" in reason:
            return UserError(f"{self.where}: {self.application} with weights: imagenet takes colour images (3 "
                             f"channels); its input here has {input_shape[-1]} (dataset.channels: 3, or "
                             f"color_mode: rgb)")
        if "Incomplete or corrupted file" in reason:
            return UserError(f"{self.where}: weights: imagenet: the file in {keras_models_folder()} is damaged "
                             f"({reason}); delete it and download it again")
        return UserError(f"{self.where}: {self.application} cannot be built on input {input_shape}: {reason}")

    def _not_downloaded(self, error: Exception) -> UserError:
        """weights: imagenet, not in Keras' cache, and the download failed: name the file and where it goes."""
        text = " ".join(str(error).split())
        url, _, why = text.removeprefix("URL fetch failure on ").partition(": ")
        folder = keras_models_folder()
        return UserError(f"{self.where}: weights: imagenet needs {url.rsplit('/', 1)[-1]}, which is not in "
                         f"{folder} and could not be downloaded ({why}); download {url} where there is network "
                         f"and put it in {folder} (Keras' cache: $KERAS_HOME/models, else ~/.keras/models)")


def _arrays_in(file: Path) -> list[tuple[int, ...]] | None:
    """The shapes of the weight arrays a `.weights.h5` or Keras `.h5` file holds (a whole-model `.h5`: those
    under `model_weights`); None when h5py cannot read it (Keras' loading then says why)."""
    import h5py

    shapes: list[tuple[int, ...]] = []
    try:
        with h5py.File(file, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            root.visititems(lambda _, item: shapes.append(tuple(item.shape))
                            if isinstance(item, h5py.Dataset) else None)
    except (OSError, KeyError):
        return None
    return shapes


def _counted(shapes: list[tuple[int, ...]]) -> str:
    """`260 arrays, 2,257,984 parameters`: what a list of weight shapes adds up to."""
    parameters = sum(int(np.prod(shape)) for shape in shapes)
    return f"{len(shapes)} arrays, {parameters:,} parameters"


def _first_reason(error: BaseException) -> str:
    """Keras' message in one line, without the variables' values it may go on to print."""
    text = " ".join(str(error).split())
    text = text.split(" Target variable:")[0].split(" List of objects")[0]
    return text if len(text) <= 400 else text[:400] + "…"


def keras_models_folder() -> str:
    """Where `keras.utils.get_file` keeps the applications' weights: `$KERAS_HOME/models`, else
    `~/.keras/models`; `/tmp/.keras/models` where those cannot be written (Keras' own rule)."""
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp", ".keras")
    return os.path.join(home, "models")


def layers_within(model) -> list[Any]:
    """Every layer of a model, those of its nested models included (depth first)."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found += layers_within(layer)
    return found


def set_trainable(backbone, trainable: bool) -> None:
    """Set a backbone's layers trainable or frozen; its BatchNormalization layers stay frozen either way.

    Keras' `Model.trainable = True` makes every layer inside trainable, BatchNormalization included; this puts
    those back, so they keep running in inference mode (their pretrained moving statistics are kept).

    Args:
        backbone: the nested `keras.Model` (see `find_backbones`).
        trainable: whether its other layers train.
    """
    backbone.trainable = trainable
    for layer in layers_within(backbone):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def find_backbones(model) -> list[tuple[str, Any]]:
    """`(application, nested model)` for each backbone of a built or loaded model, in order.

    Example:
    >>> [(application, backbone.name) for application, backbone in find_backbones(model)]
    [('MobileNetV2', 'backbone')]
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, BackbonePreprocessing):
            found.append((layer.application, model.get_layer(layer.name.removesuffix("_preprocessing"))))
    return found


def describe_backbones(model) -> list[str]:
    """One line per backbone for `inspect`: its application, size, and what trains.

    Example:
    >>> describe_backbones(model)
    ["backbone 'backbone': MobileNetV2, 154 layers, 410,208 params, frozen (0 trainable); its 52
    BatchNormalization layers run in inference mode"]
    """
    lines = []
    for application, backbone in find_backbones(model):
        inner = [layer for layer in layers_within(backbone) if not isinstance(layer, keras.layers.InputLayer)]
        norms = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in inner)
        trainable = sum(int(w.numpy().size) for w in backbone.trainable_weights)
        state = "trainable" if trainable else "frozen"
        lines.append(f"backbone '{backbone.name}': {application}, {len(inner)} layers, "
                     f"{backbone.count_params():,} params, {state} ({trainable:,} trainable)"
                     + (f"; its {norms} BatchNormalization layers run in inference mode" if norms else ""))
    return lines
