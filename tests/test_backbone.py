"""A `keras.applications` backbone as a model node: the same network as written by hand with Keras, its family's
preprocessing inside the model, BatchNormalization frozen, weights files, and one line for every mistake."""

import csv
import inspect
import json

import keras
import numpy as np
import pytest

from cnnrun.config import validate_experiment
from tests.conftest import run_here, tiny_config
from tests.test_errors import assert_user_error

BACKBONE = {"name": "MobileNetV2", "weights": None, "alpha": 0.35, "pooling": "avg"}
HEAD = {"Dense": {"units": "${num_classes}", "activation": "softmax"}}
DATA = {"name": "shapes", "image_size": 32, "channels": 3, "num_samples": 48, "test_samples": 8,
        "validation_split": 0.25, "normalize": "none"}


def backbone_config(backbone=None, layers=None, **sections):
    """A 32×32 colour shapes experiment on a MobileNetV2 (alpha 0.35, random weights) and a softmax head."""
    node = {**BACKBONE, **(backbone or {})}
    return tiny_config(**{"dataset": DATA, "model": {"layers": layers or [{"backbone": node}, HEAD]},
                          "compile": {"optimizer": "adam", "jit_compile": False},
                          "train": {"epochs": 1, "batch_size": 16}, **sections})


def built(config: dict, shape=(32, 32, 3), classes=3):
    from cnnrun.model.build import build_model

    return build_model(validate_experiment(config, "test.yaml"), shape, classes)


# MobileNet (v1) at alpha 0.25: 86 layers where MobileNetV2 has 154, so a run on it builds, traces and saves in
# about half the time; for the tests about what cnnrun does with any nested backbone
SMALL = {"name": "MobileNet", "alpha": 0.25}


def mobilenet_small(shape=(32, 32, 3)):
    """SMALL written with Keras alone: no top, random weights."""
    return keras.applications.MobileNet(include_top=False, weights=None, alpha=SMALL["alpha"], input_shape=shape)


def mobilenet_v2(shape=(32, 32, 3)):
    """The backbone written with Keras alone: MobileNetV2, alpha 0.35, no top, random weights."""
    return keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35, input_shape=shape)


def by_hand(backbone, dense, images: np.ndarray, network=None) -> np.ndarray:
    """`mobilenet_v2()` (or `network`) after its preprocess_input, average pooling, then the head: written with
    Keras alone, the weights copied from `backbone` and `dense`."""
    network = network or mobilenet_v2(images.shape[1:])
    network.set_weights(backbone.get_weights())
    head = keras.layers.Dense(dense.units, activation="softmax")
    head.build((None, network.output_shape[-1]))
    head.set_weights(dense.get_weights())
    features = network(keras.applications.mobilenet_v2.preprocess_input(images.copy()), training=False)
    return keras.ops.convert_to_numpy(head(keras.ops.mean(features, axis=(1, 2))))


def pictures(count=4, size=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3)).astype("float32")


def test_the_table_of_backbones_is_keras_applications_with_each_model_s_module():
    from cnnrun.config.backbone import BACKBONES

    applications = {name: getattr(keras.applications, name) for name in dir(keras.applications)
                    if name[0].isupper() and inspect.isfunction(getattr(keras.applications, name))}
    assert BACKBONES == {name: function.__module__.rsplit(".", 1)[-1] for name, function in applications.items()}


@pytest.mark.parametrize("application, family", [
    ("MobileNetV2", keras.applications.mobilenet_v2), ("Xception", keras.applications.xception),
    ("ResNet50", keras.applications.resnet50), ("DenseNet121", keras.applications.densenet),
    ("EfficientNetB0", keras.applications.efficientnet),
])
def test_the_preprocessing_layer_is_the_family_s_preprocess_input(application, family):
    from cnnrun.model.backbones import BackbonePreprocessing

    images = pictures(seed=1)
    layer = BackbonePreprocessing(application)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(images)), family.preprocess_input(images.copy()),
                               rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("graph", [False, True], ids=["chain trainable", "graph frozen"])
def test_the_model_is_mobilenet_v2_with_its_preprocessing_and_the_head_as_written_by_hand(graph):
    frozen = {**BACKBONE, "trainable": False}
    layers = [{"backbone": frozen, "id": "features"}, {**HEAD, "inputs": "features"}] if graph else None
    model = built(backbone_config(layers=layers))
    name = "features" if graph else "backbone"
    assert [layer.name for layer in model.layers[-3:-1]] == [f"{name}_preprocessing", name]
    backbone = model.get_layer(name)
    assert isinstance(backbone, keras.Model)  # one nested model, one layer of the outer one
    images = pictures()
    np.testing.assert_allclose(model(images, training=False), by_hand(backbone, model.layers[-1], images),
                               rtol=1e-5, atol=1e-6)
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(norms) == 52 and not any(layer.trainable for layer in norms)  # frozen either way
    assert convs and all(layer.trainable != graph for layer in convs)
    if graph:  # trainable: false: only the head trains
        assert [id(w) for w in model.trainable_weights] == [id(w) for w in model.layers[-1].trainable_weights]


def test_a_weights_file_saved_from_the_backbone_is_loaded(tmp_path, monkeypatch):
    network = mobilenet_v2()
    rng = np.random.default_rng(2)
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):  # statistics a new network would not have
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape))
    network.save_weights(tmp_path / "mine.weights.h5")
    monkeypatch.chdir(tmp_path)  # a relative path is read from the current folder and recorded absolute
    config = backbone_config({"weights": "mine.weights.h5"})
    assert validate_experiment(config, "test.yaml").model.layers[0]["backbone"]["weights"] == \
        str(tmp_path / "mine.weights.h5")
    loaded = built(config).get_layer("backbone")
    for mine, theirs in zip(network.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@pytest.mark.parametrize("change, fragments", [
    ({"backbone": {"name": "MobilenetV2"}}, ["model.layers[0] (backbone)", "unknown backbone 'MobilenetV2'",
                                             "did you mean 'MobileNetV2'"]),
    ({"backbone": {"include_top": True}}, ["include_top", "never has its ImageNet classifier"]),
    ({"backbone": {"pooling": "mean"}}, ["pooling", "avg or max"]),
    ({"dataset": {**DATA, "normalize": "rescale"}}, ["dataset.normalize: rescale", "twice",
                                                     "MobileNetV2's own preprocess_input", "normalize: none"]),
    ({"backbone": {"alpah": 0.35}}, ["MobileNetV2 has no argument 'alpah'", "did you mean 'alpha'"]),
    ({"dataset": {**DATA, "image_size": 16}}, ["MobileNetV2 needs inputs of at least 32×32 pixels",
                                               "its input here is 16×16"]),
    ({"backbone": {"weights": "missing.weights.h5"}}, ["missing.weights.h5 not found"]),
    ({"backbone": {"weights": "missing.keras"}}, ["imagenet, null (random) or the path of a .weights.h5"]),
], ids=["unknown name", "include_top", "pooling", "normalised twice", "unknown argument", "input too small",
        "missing weights file", "not a weights file"])
def test_a_mistake_in_a_backbone_is_one_line_before_anything_is_written(write_config, tmp_path, change, fragments):
    backbone = change.get("backbone")
    sections = {key: value for key, value in change.items() if key != "backbone"}
    result = run_here("train", write_config(backbone_config(backbone, **sections)), "--output-dir", tmp_path / "o")
    assert_user_error(result, *fragments)
    assert not (tmp_path / "o").exists()


def test_a_weights_file_of_another_network_is_one_line(write_config, tmp_path):
    other = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3)])
    other.save_weights(tmp_path / "other.weights.h5")
    config = backbone_config({"weights": str(tmp_path / "other.weights.h5")})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "o")
    assert_user_error(result, "other.weights.h5 does not fit MobileNetV2 (alpha 0.35)", "the file holds 2 arrays")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_imagenet_weights_without_network_name_the_file_and_the_folder(write_config, tmp_path, offline):
    config = backbone_config({"weights": "imagenet"}, dataset={**DATA, "image_size": 96})
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "o")
    assert_user_error(result, "weights: imagenet needs mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_"
                      "no_top.h5", f"put it in {offline / 'models'}")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_backbone_fine_tuned_in_phases_trains_from_the_named_layer_keeps_its_statistics_and_predicts(write_config,
                                                                                                      tmp_path):
    """The keras-io recipe end to end from the command line: a pretrained backbone (a weights file with BN
    statistics of its own), phase 1 the head alone, phase 2 the backbone from `conv_dw_13` on. Every earlier
    layer keeps the file's weights, the named block's change, no BatchNormalization weight moves, history.csv
    numbers the phases; the checkpoint loads in safe mode and evaluate and predict see the model written by hand.

    On SMALL (MobileNet v1), whose five builds, traces and saves take half MobileNetV2's time; its preprocessing
    is MobileNetV2's (both scale to [-1, 1]), so `by_hand` holds."""
    from cnnrun.model.checkpoints import load_checkpoint

    network = mobilenet_small()
    rng = np.random.default_rng(3)
    for layer in network.layers:  # "pretrained" statistics, which training must keep
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, size=layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, size=layer.moving_variance.shape))
    network.save_weights(tmp_path / "pretrained.weights.h5")
    phases = [{"epochs": 1, "trainable": "none"}, {"epochs": 1, "trainable": {"from": "conv_dw_13"}}]
    config = backbone_config({**SMALL, "weights": str(tmp_path / "pretrained.weights.h5")},
                             dataset={**DATA, "validation_split": None},  # no validation: one trace less
                             output={"plots": False, "report": False},  # no page: this test is not about it
                             # best.keras every epoch, so it is last.keras and the test split is scored once
                             callbacks={"checkpoint": {"save_best_only": False}},
                             train={"batch_size": 16, "phases": phases})
    trained = run_here("train", write_config(config), "--output-dir", tmp_path / "runs")
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run,) = [p for p in (tmp_path / "runs").glob("*/*") if p.is_dir()]
    with open(run / "history.csv") as f:
        assert [(row["epoch"], row["phase"]) for row in csv.DictReader(f)] == [("1", "1"), ("2", "2")]

    model = load_checkpoint(run / "checkpoints" / "last.keras")  # safe mode
    backbone = model.get_layer("backbone")
    tuned = [layer.name for layer in network.layers].index("conv_dw_13")
    for index, before in enumerate(network.layers):
        if before.weights:
            same = all(np.array_equal(b, a) for b, a in zip(
                before.get_weights(), backbone.get_layer(before.name).get_weights(), strict=True))
            assert same == (index < tuned or isinstance(before, keras.layers.BatchNormalization)), before.name
    images = pictures(2, seed=4).astype("uint8")  # written as PNG files, read back exactly
    expected = by_hand(backbone, model.layers[-1], images.astype("float32"), network)

    assert run_here("evaluate", run, "--checkpoint", "last").returncode == 0
    for i, image in enumerate(images):
        keras.utils.save_img(tmp_path / f"{i}.png", image)
    predicted = run_here("predict", tmp_path / "0.png", tmp_path / "1.png", "--run", run, "--top-k", "3",
                         "--checkpoint", "last",
                         "--output", tmp_path / "predictions.csv")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    names = json.loads((run / "dataset.json").read_text())["class_names"]
    with open(tmp_path / "predictions.csv") as f:
        for row, probabilities in zip(csv.DictReader(f), expected, strict=True):
            got = {row[f"class_{k}"]: float(row[f"probability_{k}"]) for k in (1, 2, 3)}
            np.testing.assert_allclose([got[name] for name in names], probabilities, atol=2e-6)
    np.testing.assert_allclose(model(images.astype("float32")), expected, rtol=1e-5, atol=1e-6)
    assert "backbone (Functional)" in (run / "summary.txt").read_text()


def test_inspect_counts_the_backbones_layers_without_its_input():
    from cnnrun.model.backbones import Backbone, describe_backbones

    node = Backbone({**SMALL, "weights": None, "pooling": "avg", "trainable": False}, "model.layers[0] (backbone)")
    model = keras.Sequential([keras.Input((32, 32, 3)), *node.layers((32, 32, 3))])
    (line,) = describe_backbones(model)
    # MobileNet without its top: conv1 (Conv2D, BN, ReLU) = 3, 13 depthwise blocks of 6 (depthwise conv, BN, ReLU,
    # pointwise conv, BN, ReLU) = 78, a ZeroPadding2D before each of the 4 strided blocks, GlobalAveragePooling2D:
    # 3 + 78 + 4 + 1 = 86 layers, 1 + 2·13 = 27 of them BatchNormalization
    assert line.startswith("backbone 'backbone': MobileNet, 86 layers, ")
    assert "frozen (0 trainable); its 27 BatchNormalization layers run in inference mode" in line
