"""The `backbone` node of `model.layers`: a network from `keras.applications`, as a config writes it.

```yaml
model:
  layers:
    - backbone: {name: MobileNetV2, weights: imagenet, trainable: false, pooling: avg, alpha: 0.35}
    - Dense: {units: "${num_classes}", activation: softmax}
```

`name` is a `keras.applications` model (`BACKBONES`); `weights` is `imagenet`, `null` (random) or a weights file;
`trainable` (default true), `pooling` (null, avg, max) and `preprocessing` (`PREPROCESSINGS`, default `family`)
are cnnrun's; every other key goes to the application's
constructor (`alpha`), checked against its signature when the model is built. Keys that belong to the classifier
top or to cnnrun (`include_top`, `input_shape`, …) are refused here.

Checking a node needs neither TensorFlow nor Keras: the names are strings in `BACKBONES`, which a test keeps equal
to `keras.applications`. `cnnrun.model.backbones` builds the Keras model.

Example:
>>> check_backbone({"name": "MobileNetV2", "weights": None, "alpha": 0.35}, "model.layers[0]")
'MobileNetV2'
"""

import os
from typing import Any

from cnnrun.errors import UserError, did_you_mean

# every model of `keras.applications` -> its module there, whose `preprocess_input` prepares its images
BACKBONES: dict[str, str] = {
    **{f"ConvNeXt{size}": "convnext" for size in ("Tiny", "Small", "Base", "Large", "XLarge")},
    **{f"DenseNet{depth}": "densenet" for depth in (121, 169, 201)},
    **{f"EfficientNetB{i}": "efficientnet" for i in range(8)},
    **{f"EfficientNetV2{size}": "efficientnet_v2" for size in ("B0", "B1", "B2", "B3", "S", "M", "L")},
    "InceptionResNetV2": "inception_resnet_v2",
    "InceptionV3": "inception_v3",
    "MobileNet": "mobilenet",
    "MobileNetV2": "mobilenet_v2",
    "MobileNetV3Large": "mobilenet_v3",
    "MobileNetV3Small": "mobilenet_v3",
    "NASNetLarge": "nasnet",
    "NASNetMobile": "nasnet",
    **{f"ResNet{depth}": "resnet" for depth in (50, 101, 152)},
    **{f"ResNet{depth}V2": "resnet_v2" for depth in (50, 101, 152)},
    "VGG16": "vgg16",
    "VGG19": "vgg19",
    "Xception": "xception",
}

# the node's own keys; the others are the application's constructor arguments
OWN_KEYS = ("name", "weights", "trainable", "pooling", "preprocessing")

# what `preprocessing:` may name -> what it does to pixels 0-255 (the layer: `cnnrun.model.backbones`)
PREPROCESSINGS: dict[str, str] = {
    "family": "the application module's own preprocess_input (MobileNetV2's: -1...1)",
    "caffe": "RGB to BGR, ImageNet's mean subtracted (keras imagenet_utils mode caffe)",
    "tf": "x/127.5 - 1, to -1...1 (mode tf)",
    "torch": "(x/255 - ImageNet mean)/std, torchvision's (mode torch)",
    "none": "pixels as they come",
}

# constructor arguments a config may not give, and why
REFUSED = {
    "include_top": "a backbone never has its ImageNet classifier (include_top is always false): end the model with "
                   "your own layers, e.g. Dense: {units: ${num_classes}}",
    "classes": "it sizes the ImageNet classifier, which a backbone never has: the head after it is yours",
    "classifier_activation": "it belongs to the ImageNet classifier, which a backbone never has",
    "input_shape": "the input shape comes from the data (dataset.image_size, channels)",
    "input_tensor": "the backbone takes the output of the node before it",
    "include_preprocessing": "cnnrun applies the family's preprocessing itself (dataset.normalize: none gives it "
                             "pixel values 0-255)",
}

POOLINGS = (None, "avg", "max")
WEIGHT_SUFFIXES = (".weights.h5", ".h5")


def _written_later(value: Any) -> bool:
    """A `${…}` the model builder fills (a block's parameter, `${num_classes}`): checked once it has a value."""
    return isinstance(value, str) and "${" in value


def check_backbone(args: Any, where: str) -> str:
    """Check a backbone node's keys that need no Keras; return its application's name.

    Args:
        args: the node's mapping, `{name: MobileNetV2, weights: …, …}`.
        where: its place in the config, for messages (`model.layers[0] (backbone)`).

    Raises:
        UserError: no mapping, no or an unknown `name` (with a did-you-mean), a refused key, a `weights`,
            `trainable` or `pooling` of the wrong kind, a `preprocessing` not in `PREPROCESSINGS`.
    """
    if not isinstance(args, dict) or "name" not in args:
        raise UserError(f"{where}: a backbone is `backbone: {{name: MobileNetV2, weights: imagenet}}` with a "
                        f"keras.applications model name, got {args!r}")
    name = args["name"]
    if not _written_later(name) and name not in BACKBONES:
        raise UserError(f"{where}: unknown backbone {name!r}{did_you_mean(str(name), BACKBONES)}; "
                        f"keras.applications has {', '.join(BACKBONES)}")
    for key in args:
        if key in REFUSED:
            raise UserError(f"{where}.{key}: not a backbone key: {REFUSED[key]}")
    weights = args.get("weights", "imagenet")
    if weights not in ("imagenet", None) and not _written_later(weights) and \
            not (isinstance(weights, str) and weights.endswith(WEIGHT_SUFFIXES)):
        raise UserError(f"{where}.weights: imagenet, null (random) or the path of a .weights.h5 or .h5 file of "
                        f"this backbone, got {weights!r}")
    trainable = args.get("trainable", True)
    if not isinstance(trainable, bool) and not _written_later(trainable):
        raise UserError(f"{where}.trainable: true or false, got {trainable!r}")
    pooling = args.get("pooling")
    if pooling not in POOLINGS and not _written_later(pooling):
        raise UserError(f"{where}.pooling: null (the feature maps), avg or max (one vector per image), "
                        f"got {pooling!r}")
    preprocessing = args.get("preprocessing", "family")
    if preprocessing not in PREPROCESSINGS and not _written_later(preprocessing):
        raise UserError(f"{where}.preprocessing: unknown preprocessing {preprocessing!r}"
                        f"{did_you_mean(str(preprocessing), PREPROCESSINGS)}; the known names are "
                        f"{', '.join(PREPROCESSINGS)}")
    return name


def resolve_weights_path(args: dict[str, Any]) -> None:
    """Make a node's weights file absolute (`~` expanded), in place, so the run's `config.yaml` finds it from any
    folder; `imagenet`, null and `${…}` stay as written. Whether the file exists is checked when the model is
    built (evaluate and predict never need it: the checkpoint holds the weights)."""
    weights = args.get("weights", "imagenet")
    if isinstance(weights, str) and weights != "imagenet" and not _written_later(weights):
        args["weights"] = os.path.abspath(os.path.expanduser(weights))
