"""The heat maps are right: against a hand computation on a nested model, and where the class is decided."""

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import run_here

SIZE, HALF = 24, 12


def test_gradcam_inside_a_nested_model_equals_a_hand_computation():
    import keras
    import tensorflow as tf

    from cnnrun.explain.gradients import heat_maps
    from cnnrun.explain.network import find_layer

    keras.utils.set_random_seed(0)
    inner = keras.Input((12, 12, 3))
    first, second = keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Conv2D(6, 3, activation="relu")
    backbone = keras.Model(inner, second(first(inner)), name="backbone")
    outer = keras.Input((12, 12, 3))
    pool, dense = keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")
    model = keras.Model(outer, dense(pool(backbone(outer))))
    x = np.random.default_rng(1).uniform(size=(2, 12, 12, 3)).astype("float32")

    path = find_layer(model, "auto")
    assert path.name == f"backbone/{second.name}"
    maps = heat_maps(model, x, [0, 2], "gradcam", path)

    features = tf.constant(second(first(x)))  # by hand: the class logit as a function of the feature maps
    with tf.GradientTape() as tape:
        tape.watch(features)
        logits = tf.matmul(pool(features), dense.kernel) + dense.bias
        score = tf.reduce_sum(logits * tf.one_hot([0, 2], 3))
    grads = tape.gradient(score, features).numpy()
    cam = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * features.numpy()).sum(-1), 0)
    expected = tf.image.resize(cam[..., None], (12, 12)).numpy()[..., 0]  # bilinear, as skimage's order 1
    expected /= expected.reshape(2, -1).max(axis=1)[:, None, None]
    assert np.allclose(maps, expected, atol=1e-4)


def _quadrant_pictures(folder, count: int, seed: int, shuffled: bool = False) -> None:
    """Dark noisy pictures; a bright bar in the top-left quadrant, horizontal or vertical, decides the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    for i, label in enumerate(labels):
        image = rng.normal(0, 10, (SIZE, SIZE))
        r, c = rng.integers(1, 4, 2)
        if label == 0:
            image[r + 3:r + 5, c:c + 8] += 140
        else:
            image[r:r + 8, c + 3:c + 5] += 140
        name = ("horizontal", "vertical")[rng.integers(0, 2) if shuffled else label]
        (folder / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / name / f"{i}.png")


def _in_quadrant(maps: np.ndarray) -> np.ndarray:
    return maps[:, :HALF, :HALF].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))


@pytest.fixture(scope="module")
def quadrant_runs(tmp_path_factory):
    """A model trained on the quadrant pictures and one trained on the same pictures with shuffled labels."""
    root = tmp_path_factory.mktemp("quadrant")
    _quadrant_pictures(root / "test", 20, seed=99)
    runs = {}
    for shuffled in (False, True):
        data = root / f"train_{shuffled}"
        _quadrant_pictures(data, 300, seed=1, shuffled=shuffled)
        config = {
            "name": f"quadrant_{shuffled}", "seed": 1,
            "dataset": {"name": "image_folder", "path": str(data), "image_size": SIZE, "color_mode": "grayscale",
                        "validation_split": 0.2},
            "model": {"layers": [
                {"Conv2D": {"filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"}},
                {"MaxPooling2D": {"pool_size": 2}},
                {"Conv2D": {"filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu",
                            "name": "last_conv"}},
                {"MaxPooling2D": {"pool_size": 2}},
                {"Flatten": {}},
                {"Dense": {"units": 2, "activation": "softmax", "kernel_regularizer": {"l2": 0.01}}}]},
            "compile": {"optimizer": {"name": "adam", "learning_rate": 0.003}},
            "train": {"epochs": 8, "batch_size": 32}, "output": {"plots": False},
        }
        path = root / f"{shuffled}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert run_here("train", path, "--output-dir", root / "outputs").returncode == 0
        (runs[shuffled],) = (root / "outputs" / f"quadrant_{shuffled}").iterdir()
    return runs, root / "test"


def _maps(run, pictures, out, *options: str) -> np.ndarray:
    result = run_here("explain", run, pictures, "--out", out, *options)
    assert result.returncode == 0, result.stderr
    return np.load(next(out.glob("*_heat_maps.npz")))["maps"]


@pytest.mark.slow
def test_gradcam_and_saliency_look_where_the_class_is_decided(quadrant_runs, tmp_path):
    runs, pictures = quadrant_runs
    gradcam = _in_quadrant(_maps(runs[False], pictures, tmp_path / "g", "--layer", "last_conv"))
    saliency = _in_quadrant(_maps(runs[False], pictures, tmp_path / "s", "--method", "saliency"))
    assert np.mean(gradcam > 0.5) >= 0.8, gradcam  # most of the mass in the quadrant, for most pictures
    assert np.mean(saliency > 0.5) >= 0.8, saliency


@pytest.mark.slow
def test_a_model_trained_on_shuffled_labels_does_not_look_there(quadrant_runs, tmp_path):
    runs, pictures = quadrant_runs
    gradcam = _in_quadrant(_maps(runs[True], pictures, tmp_path / "g", "--layer", "last_conv"))
    assert np.mean(gradcam > 0.5) < 0.5, gradcam
