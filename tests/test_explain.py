"""explain, filters, activations, evaluate --explain, data show and samples.png on one tiny trained run."""

import re
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_here, tiny_config
from tests.test_errors import assert_user_error

LAYERS = [
    {"Conv2D": {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu", "name": "edges"}},
    {"MaxPooling2D": {"pool_size": 2, "name": "pool"}},
    {"Flatten": {"name": "flat"}},
    {"Dense": {"units": "${num_classes}", "activation": "softmax", "name": "scores"}},
]
VERTICAL = np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], np.float32)  # kernel-demo's vertical edge


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`tiny_run`, once for this module."""
    return tiny_run(tmp_path_factory.mktemp("explain"))


def tiny_run(folder):
    """One tiny run (16×16 shapes, 1 epoch) in `folder`, and a folder of its kind of pictures, one per class
    folder: (run, pictures, config)."""
    import yaml

    from cnnrun.data.shapes import make_shapes

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(model={"layers": LAYERS}, train={"epochs": 1, "batch_size": 16},
                                             output={"plots": True, "report": False})))
    result = run_here("train", config, "--output-dir", folder / "outputs")
    assert result.returncode == 0, result.stderr
    (run,) = (folder / "outputs").glob("*/*")
    pictures, names = make_shapes(4, image_size=16, seed=11)[0], make_shapes(4, image_size=16, seed=11)[2]
    labels = make_shapes(4, image_size=16, seed=11)[1]
    for i, (image, label) in enumerate(zip(pictures, labels, strict=True)):
        (folder / "pictures" / names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(folder / "pictures" / names[label] / f"p{i}.png")
    return run, folder / "pictures", config


def test_explain_writes_a_figure_per_picture_a_grid_and_the_maps(trained, tmp_path):
    run, pictures, _ = trained
    result = run_here("explain", run, pictures, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["gradcam_grid.png", "gradcam_heat_maps.npz"] + sorted(f"p{i}_gradcam.png" for i in range(4))
    saved = np.load(tmp_path / "out" / "gradcam_heat_maps.npz")
    assert saved["maps"].shape == (4, 16, 16)
    assert np.allclose(saved["maps"].reshape(4, -1).max(axis=1), 1) or saved["maps"].max() == 0
    assert np.array_equal(saved["classes"], saved["probabilities"].argmax(axis=1))
    assert "Grad-CAM at pool" in result.stdout  # auto: the last layer with a spatial output


def test_a_class_by_name_is_explained_for_every_picture(trained, tmp_path):
    run, pictures, _ = trained
    result = run_here("explain", run, pictures, "--class", "square", "--method", "saliency", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(np.load(tmp_path / "saliency_heat_maps.npz")["classes"]) == {1}


def test_a_file_that_is_not_a_picture_is_named_and_the_others_are_explained(trained, tmp_path):
    run, pictures, _ = trained
    (tmp_path / "notes.png").write_text("not a picture")
    result = run_here("explain", run, pictures, tmp_path / "notes.png", "--out", tmp_path / "out")
    assert_user_error(result, "notes.png", "not a readable picture", "the other 4 explained")
    assert len(list((tmp_path / "out").glob("p*_gradcam.png"))) == 4


@pytest.mark.parametrize("args, fragments", [
    (["--layer", "edgs"], ["--layer edgs", "did you mean 'edges'"]),
    (["--layer", "scores"], ["--layer scores", "no height and width", "e.g. pool"]),
    (["--class", "sqare"], ["--class sqare", "did you mean 'square'"]),
    (["--method", "saliency", "--layer", "edges"], ["--layer edges", "on the input picture"]),
])
def test_bad_explain_arguments_are_one_line(trained, tmp_path, args, fragments):
    run, pictures, _ = trained
    assert_user_error(run_here("explain", run, pictures, *args, "--out", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()


def test_filters_draw_a_hand_set_vertical_edge_kernel_as_that_kernel(trained, tmp_path):
    from cnnrun.atomic import atomic_save_model
    from cnnrun.explain.filters import conv_layer, kernel_tiles
    from cnnrun.model.checkpoints import load_checkpoint

    run, _, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    model = load_checkpoint(copy / "checkpoints" / "best.keras")
    kernel, bias = model.get_layer("edges").get_weights()
    kernel[:, :, 0, 0] = VERTICAL
    model.get_layer("edges").set_weights([kernel, bias])
    atomic_save_model(model, copy / "checkpoints" / "best.keras")

    path, drawn = conv_layer(load_checkpoint(copy / "checkpoints" / "best.keras"), None)
    tiles, _, how = kernel_tiles(drawn)
    assert path.name == "edges" and how == "one input channel"
    assert np.array_equal(tiles[0], [[0, 0.5, 1]] * 3)  # black, gray, white columns: kernel-demo's picture
    result = run_here("filters", copy, "--out", tmp_path / "f.png")
    assert result.returncode == 0, result.stderr
    assert "edges (Conv2D): 4 kernels of 3×3×1" in result.stdout and (tmp_path / "f.png").stat().st_size > 0
    assert_user_error(run_here("filters", copy, "--layer", "flat"), "--layer flat", "no convolution kernel")


def test_filters_without_a_layer_draw_the_first_convolution_of_several():
    import keras

    from cnnrun.explain.filters import conv_layer

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="first"),
                              keras.layers.Conv2D(3, 3, name="second")])
    path, kernel = conv_layer(model, None)
    assert path.name == "first"
    np.testing.assert_array_equal(kernel, model.get_layer("first").get_weights()[0])


def test_a_deeper_kernel_is_drawn_as_its_mean_over_the_input_channels():
    from cnnrun.explain.filters import kernel_tiles

    kernel = np.zeros((3, 3, 2, 1), np.float32)
    kernel[:, :, 0, 0], kernel[:, :, 1, 0] = VERTICAL, 3 * VERTICAL.clip(max=0) + VERTICAL.clip(min=0)
    tiles, labels, how = kernel_tiles(kernel)
    # mean of [-1, 0, 1] and [-3, 0, 1] is [-2, 0, 1]; scaled by 2·2 and shifted by 0.5: [0, 0.5, 0.75]
    assert how == "averaged over the 2 input channels" and labels == ["#0"]
    np.testing.assert_allclose(tiles[0], [[0, 0.5, 0.75]] * 3)


def test_per_channel_draws_each_input_channel_of_a_kernel_upright():
    from cnnrun.explain.filters import kernel_tiles

    kernel = np.zeros((3, 3, 2, 1), np.float32)
    kernel[:, :, 0, 0], kernel[:, :, 1, 0] = VERTICAL, -VERTICAL.T  # a vertical edge, then a horizontal one
    tiles, labels, _ = kernel_tiles(kernel, per_channel=True)
    assert labels == ["#0 in 0", "#0 in 1"]
    np.testing.assert_array_equal(tiles[0], [[0, 0.5, 1]] * 3)  # black, gray, white columns
    np.testing.assert_array_equal(tiles[1], [[1] * 3, [0.5] * 3, [0] * 3])  # white, gray, black rows


def test_activations_have_the_shapes_inspect_prints(trained, tmp_path):
    run, pictures, config = trained
    result = run_here("activations", run, next(pictures.glob("*/*.png")), "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    shown = dict(re.findall(r"^(\w+) \(\w+\): output shape (\(.*?\))", result.stdout, re.MULTILINE))
    table = run_here("inspect", config).stdout
    inspected = {name: re.search(rf"│ {name}\s.*?(\(None[^)]*\))", table).group(1) for name in shown}
    assert list(shown) == ["edges", "pool"] and shown == inspected
    assert len(list(tmp_path.glob("*.png"))) == 2
    assert_user_error(run_here("activations", run, pictures / "nope.png"), "nope.png", "no such file")


def test_evaluate_draws_the_top_losses_unless_told_explain_0(trained, tmp_path):
    run, _, _ = trained
    copy = shutil.copytree(run, tmp_path / "run")
    result = run_here("evaluate", copy, "--explain", "0")
    assert result.returncode == 0, result.stderr
    assert not (copy / "eval" / "best_test_explained.png").exists()
    result = run_here("evaluate", copy)  # 12 by default (which ones: test_predictions.py)
    assert result.returncode == 0, result.stderr
    with Image.open(copy / "eval" / "best_test_explained.png") as image:
        assert image.size[1] > 3 * 200  # 12 pictures, 5 a row: 3 rows


def test_the_top_losses_show_p_true_with_two_decimals_and_a_power_of_ten_below_0_005():
    from cnnrun.explain.mistakes import _probability

    assert [_probability(p) for p in (0.9, 0.03, 0.005, 0.004, 3e-5)] == ["0.90", "0.03", "0.01", "4e-03", "3e-05"]


@pytest.mark.slow
def test_evaluate_of_a_model_without_a_spatial_layer_shows_the_top_losses_without_grad_cam(tmp_path, write_config):
    from cnnrun.tasks.evaluate import evaluate_run

    config = tiny_config(model={"layers": [{"Flatten": {}}, {"Dense": {"units": "${num_classes}",
                                                                     "activation": "softmax"}}]},
                         train={"epochs": 1, "batch_size": 16})
    assert run_here("train", write_config(config), "--output-dir", tmp_path / "outputs").returncode == 0
    (run,) = (tmp_path / "outputs").glob("*/*")
    evaluation = evaluate_run(run, explain=3)
    assert len(evaluation.explained) == 3 and (run / "eval" / "best_test_explained.png").stat().st_size > 0


def test_a_run_shows_what_it_saw_and_data_show_draws_the_same(trained, tmp_path):
    run, _, config = trained
    assert (run / "samples.png").stat().st_size > 0
    result = run_here("data", "show", config, "--per-class", "3", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class_counts.png", "samples.png"]
    counts = re.search(r"│ all\s+│\s+(\d+)\s+│\s+(\d+)\s+│\s+(\d+)", result.stdout).groups()
    assert tuple(map(int, counts)) == (90, 30, 40)  # 120 · 0.75, 120 · 0.25, the test samples
