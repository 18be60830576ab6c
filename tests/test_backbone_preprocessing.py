"""`backbone.preprocessing`: the input normalisation a backbone's weights expect, chosen in the config, checked
against Keras' own `preprocess_input` and hand formulas, kept in checkpoints; the ImageNet MobileNetV2 of
`../shared/weights` (torchvision's weights) on real CIFAR-10 pictures; and a weights file of another network
refused in one line."""

import keras
import numpy as np
import pytest

from cnnrun.config import validate_experiment
from tests.conftest import PROJECT, SHARED_DATA, run_here
from tests.test_backbone import BACKBONE, DATA, HEAD, backbone_config, built, pictures
from tests.test_errors import assert_user_error

SHARED_WEIGHTS = PROJECT.parent / "shared" / "weights"
IMAGENET_MOBILENET_V2 = SHARED_WEIGHTS / "mobilenet_v2_imagenet_torchvision.weights.h5"
needs_weights = pytest.mark.skipif(not IMAGENET_MOBILENET_V2.is_file(),
                                   reason="../shared/weights (the ImageNet MobileNetV2 file) is absent")

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # torchvision's, ImageNet's RGB
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])


@pytest.mark.parametrize("mode, by_hand", [
    ("torch", lambda x: (x / 255 - MEAN) / STD),
    ("tf", lambda x: x / 127.5 - 1),
    ("caffe", lambda x: x[..., ::-1] - CAFFE_MEAN_BGR),
    ("none", lambda x: x),
    ("family", lambda x: x / 127.5 - 1),  # MobileNetV2's own: -1...1
])
def test_each_preprocessing_is_keras_own_and_the_formula(mode, by_hand):
    from cnnrun.model.backbones import BackbonePreprocessing

    images = pictures(2, size=8, seed=5)
    got = keras.ops.convert_to_numpy(BackbonePreprocessing("MobileNetV2", mode)(images))
    np.testing.assert_allclose(got, by_hand(images.astype("float64")), rtol=1e-5, atol=1e-4)
    if mode in ("torch", "tf", "caffe"):
        keras_own = keras.applications.imagenet_utils.preprocess_input(images.copy(), mode=mode)
        np.testing.assert_allclose(got, keras_own, rtol=1e-6, atol=1e-5)


def test_the_config_s_preprocessing_is_the_model_s_and_survives_its_checkpoint(tmp_path):
    from cnnrun.model.backbones import BackbonePreprocessing
    from cnnrun.model.checkpoints import load_checkpoint

    model = built(backbone_config({"preprocessing": "torch"}))
    assert model.get_layer("backbone_preprocessing").mode == "torch"
    model.save(tmp_path / "best.keras")
    loaded = load_checkpoint(tmp_path / "best.keras")  # safe mode, as evaluate, predict and resume load it
    assert loaded.get_layer("backbone_preprocessing").mode == "torch"
    images = pictures(3, seed=6)
    np.testing.assert_allclose(loaded(images, training=False), model(images, training=False), rtol=1e-6, atol=1e-7)
    # a checkpoint written before the key existed has no mode in its config: its layer is the family's
    old = BackbonePreprocessing.from_config({"application": "MobileNetV2", "name": "backbone_preprocessing"})
    assert old.mode == "family"


def test_preprocessing_none_lets_the_data_normalise():
    rescaled = backbone_config({"preprocessing": "none"}, dataset={**DATA, "normalize": "rescale"})
    assert validate_experiment(rescaled, "test.yaml").dataset.normalize == "rescale"


def cifar10_pictures(count_per_class: int = 2) -> np.ndarray:
    """A few cats and dogs of CIFAR-10's test split, 32×32 upscaled to 96×96 (each pixel 3×3), 0-255 float32."""
    paths = [path for kind in ("cat", "dog")
             for path in sorted((SHARED_DATA / "cifar10-jpeg" / "test" / kind).glob("*.jpg"))[:count_per_class]]
    images = np.stack([keras.utils.img_to_array(keras.utils.load_img(path)) for path in paths])
    return images.repeat(3, axis=1).repeat(3, axis=2).astype("float32")


@needs_weights
@pytest.mark.skipif(not (SHARED_DATA / "cifar10-jpeg").is_dir(), reason="../shared/data/cifar10-jpeg is absent")
def test_the_imagenet_mobilenet_v2_with_torch_preprocessing_gives_keras_own_features_on_real_pictures():
    """The shared torchvision weights as a config gives them: the pooled features of the model's backbone equal
    Keras' MobileNetV2 loaded with the file, on `(x/255 − mean)/std` computed in numpy."""
    node = {"name": "MobileNetV2", "weights": str(IMAGENET_MOBILENET_V2), "preprocessing": "torch",
            "pooling": "avg", "trainable": False}
    config = backbone_config(layers=[{"backbone": node}, HEAD], dataset={**DATA, "image_size": 96})
    model = built(config, shape=(96, 96, 3), classes=2)
    preprocessing, backbone = model.get_layer("backbone_preprocessing"), model.get_layer("backbone")
    images = cifar10_pictures()

    reference = keras.applications.MobileNetV2(include_top=False, weights=None, pooling="avg",
                                               input_shape=(96, 96, 3))
    reference.load_weights(IMAGENET_MOBILENET_V2)
    expected = keras.ops.convert_to_numpy(reference(((images / 255 - MEAN) / STD).astype("float32"),
                                                    training=False))
    got = keras.ops.convert_to_numpy(backbone(preprocessing(images), training=False))
    assert expected.shape == (4, 1280) and expected.std() > 0.1  # features, not zeros
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("node, fragments", [
    ({"preprocessing": "pytorch"}, ["model.layers[0] (backbone).preprocessing", "unknown preprocessing 'pytorch'",
                                    "family, caffe, tf, torch, none"]),
    ({"preprocessing": None}, ["preprocessing", "unknown preprocessing None", "did you mean 'none'"]),
], ids=["misspelt", "null"])
def test_an_unknown_preprocessing_is_one_line_before_anything_is_written(write_config, tmp_path, node, fragments):
    result = run_here("train", write_config(backbone_config(node)), "--output-dir", tmp_path / "o")
    assert_user_error(result, *fragments)
    assert not (tmp_path / "o").exists()


@needs_weights
@pytest.mark.parametrize("node, needs", [
    ({**BACKBONE, "alpha": 0.35}, "fit MobileNetV2 (alpha 0.35): the file holds 260 arrays, 2,257,984 parameters, "
                                  "the network needs 260 arrays, 410,208 parameters"),
    ({"name": "ResNet50", "weights": None, "pooling": "avg"}, "fit ResNet50 without arguments: the file holds 260 "
                                                             "arrays, 2,257,984 parameters, the network needs 318"),
], ids=["MobileNetV2 alpha 0.35", "ResNet50"])
def test_the_imagenet_mobilenet_v2_file_given_to_another_network_is_one_line(write_config, tmp_path, node, needs):
    node = {**node, "weights": str(IMAGENET_MOBILENET_V2)}
    config = backbone_config(layers=[{"backbone": node}, HEAD])
    result = run_here("train", write_config(config), "--output-dir", tmp_path / "o")
    assert_user_error(result, f"{IMAGENET_MOBILENET_V2} does not ", needs)
    assert not (tmp_path / "o").exists()


def test_inspect_draws_a_backbone_model(write_config, tmp_path):
    """`inspect --plot` on a model with a nested keras.applications backbone: a PNG of the model, its three layers
    (preprocessing, the backbone as one node, the head) one under the other."""
    import importlib.util
    import shutil

    from PIL import Image

    if not (importlib.util.find_spec("pydot") and shutil.which("dot")):
        pytest.skip("pydot or Graphviz's dot is missing (make install puts them in)")
    result = run_here("inspect", write_config(backbone_config()), "--plot", tmp_path / "model.png")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "model.png") as drawn:
        assert drawn.format == "PNG" and drawn.height > 3 * 120  # a box is about 110 pixels high at 96 dpi
