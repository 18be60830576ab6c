"""The commands that use a finished run work on a run whose model nests a `keras.applications` backbone: explain
(Grad-CAM inside the backbone), filters, activations and export, on one tiny run. (evaluate and predict on a
backbone run: tests/test_backbone.py, against the model written by hand.)"""

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import run_here
from tests.test_backbone import DATA, SMALL, backbone_config, mobilenet_small

slow = pytest.mark.slow
SIZE = 64  # MobileNet divides by 32: its last feature map is 2×2 here (1×1 at 48, a constant Grad-CAM map)


@pytest.fixture(scope="module")
def backbone_run(tmp_path_factory):
    """One tiny run on a frozen MobileNet (alpha 0.25, a random weights file, average pooling) at 64×64, 1 epoch, and
    four colour shapes pictures written as PNG files."""
    from cnnrun.data.shapes import make_shapes

    folder = tmp_path_factory.mktemp("backbone_commands")
    # Random weights with BatchNormalization's moving variance 1 let the signal die out over MobileNet's depth
    # (every picture gives the same features, export's check would pass whatever the input); 0.01 blows it up
    # until a rounding error changes the class. Variance 0.1, as statistics learnt on such small activations
    # would be, keeps the features different from picture to picture and steady under float32 rounding.
    keras.utils.set_random_seed(0)
    network = mobilenet_small((SIZE, SIZE, 3))
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 0.1, "float32"))
    network.save_weights(folder / "backbone.weights.h5")
    config = backbone_config({**SMALL, "trainable": False, "weights": str(folder / "backbone.weights.h5")},
                             output={"plots": False, "report": False},
                             dataset={**DATA, "image_size": SIZE, "num_samples": 32, "validation_split": None})
    (folder / "backbone.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = run_here("train", folder / "backbone.yaml", "--output-dir", folder / "outputs")
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = [p for p in (folder / "outputs").glob("*/*") if p.is_dir()]
    (folder / "pictures").mkdir()
    for i, image in enumerate(make_shapes(4, image_size=SIZE, channels=3, seed=11)[0]):
        Image.fromarray(image).save(folder / "pictures" / f"p{i}.png")
    return run, folder / "pictures"


@slow
def test_grad_cam_on_a_backbone_weighs_its_last_feature_map(backbone_run, tmp_path):
    """`--layer auto` is MobileNet's `conv_pw_13_relu` (its last convolutional feature map), not the
    input-level preprocessing layer before the backbone; the maps vary inside each picture and between pictures.
    A layer inside the backbone is found by its own name too."""
    from cnnrun.explain.network import find_layer
    from cnnrun.model.checkpoints import load_checkpoint

    run, pictures = backbone_run
    model = load_checkpoint(run / "checkpoints" / "best.keras")
    assert find_layer(model, "conv_dw_12_relu").name == "backbone/conv_dw_12_relu"
    result = run_here("explain", run, pictures, "--out", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Grad-CAM at backbone/conv_pw_13_relu" in result.stdout
    maps = np.load(tmp_path / "gradcam_heat_maps.npz")["maps"]
    assert maps.shape == (4, SIZE, SIZE)
    assert maps.reshape(4, -1).std(axis=1).min() > 0  # no map is constant
    assert not all(np.allclose(maps[0], other) for other in maps[1:])
    probabilities = np.load(tmp_path / "gradcam_heat_maps.npz")["probabilities"]
    assert not np.allclose(probabilities[0], probabilities[1:])  # the network sees the pictures (see the fixture)


@slow
def test_filters_and_activations_reach_inside_the_backbone(backbone_run, tmp_path):
    """filters' default is the backbone's first convolution (`conv1`, drawn in colour); activations takes layers
    inside the backbone by name and draws each at its output shape."""
    run, pictures = backbone_run
    result = run_here("filters", run, "--out", tmp_path / "first.png")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "backbone/conv1 (Conv2D): 8 kernels of 3×3×3, drawn in colour" in result.stdout  # 32 × alpha 0.25 → 8
    assert (tmp_path / "first.png").is_file()

    result = run_here("activations", run, pictures / "p0.png", "--layers", "conv_pw_1,conv_pw_13_relu",
                      "--out", tmp_path / "maps")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "p0_backbone_conv_pw_1.png", "p0_backbone_conv_pw_13_relu.png"]
    assert "(None, 2, 2, 256)" in result.stdout  # conv_pw_13_relu at 64×64: 64 / 32; 1024 × alpha 0.25 channels


@slow
def test_export_of_a_backbone_run_to_onnx_predicts_what_the_checkpoint_predicts(backbone_run, tmp_path):
    """export's own check (the exported model against the checkpoint on the run's test pictures, within 1e-4)."""
    run, _ = backbone_run
    result = run_here("export", run, "--format", "onnx", "--out", tmp_path / "served.onnx")
    assert result.returncode == 0, result.stderr[-2000:] + result.stdout[-2000:]
    assert "max difference" in result.stdout and "within" in result.stdout
