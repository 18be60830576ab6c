"""The layer registry and model building: the course's parameter counts, regularizers, repeat blocks."""

import keras
import pytest

from cnnrun.config import load_experiment, validate_experiment
from cnnrun.config.registry import LAYERS
from cnnrun.data import describe
from cnnrun.errors import UserError
from cnnrun.model.build import build_model
from cnnrun.model.compiling import compile_model
from tests.conftest import PROJECT, tiny_config

COURSE_PARAMS = {
    "fashion_mnist.yaml": 412_778,
    "fashion_mnist_sparse.yaml": 412_778,
    "fashion_mnist_early_stopping.yaml": 412_778,
    "fashion_mnist_checkpoint.yaml": 412_778,
    "cifar10.yaml": 307_498,
    "cifar10_bn.yaml": 309_290,
    "cats_vs_dogs.yaml": 3_453_121,
}


@pytest.mark.parametrize("name, params", COURSE_PARAMS.items())
def test_course_parameter_counts(name, params):
    experiment = load_experiment(PROJECT / "configs" / name)
    shape, classes = describe(experiment.dataset)
    model = build_model(experiment, shape, len(classes))
    assert model.count_params() == params


def cifar10_params(base: int, classes: int = 10) -> int:
    """The course's CIFAR-10 network counted by hand: six 3×3 Conv2D (base, base, 2·base, 2·base, 4·base,
    4·base filters, with biases) on 32×32×3, three 2×2 poolings (32 → 4), Flatten, Dense(classes)."""
    filters = [base, base, 2 * base, 2 * base, 4 * base, 4 * base]
    conv = sum((3 * 3 * c_in + 1) * c_out for c_in, c_out in zip([3, *filters[:-1]], filters, strict=True))
    return conv + (4 * 4 * filters[-1] + 1) * classes


@pytest.mark.parametrize("name, classes", [("cifar10_8class.yaml", 8), ("cifar10_pets_transfer.yaml", 2)])
def test_the_transfer_configs_are_the_batch_norm_network_with_a_head_for_their_classes(name, classes):
    experiment = load_experiment(PROJECT / "configs" / name)
    shape, names = describe(experiment.dataset)
    assert len(names) == classes
    batch_norm = 2 * (32 + 32 + 64 + 64 + 128 + 128)  # its six BatchNormalization layers' offsets and scales…
    moving = batch_norm  # … and moving means and variances
    assert build_model(experiment, shape, classes).count_params() == cifar10_params(32, classes) + batch_norm + moving


def test_cats_vs_dogs_transfer_is_xception_without_its_top_and_a_sigmoid():
    import keras

    experiment = load_experiment(PROJECT / "configs" / "cats_vs_dogs_transfer.yaml",
                                 ["model.layers.0.backbone.weights=null"])
    xception = keras.applications.Xception(include_top=False, weights=None, pooling="avg", input_shape=(150, 150, 3))
    model = build_model(experiment, (150, 150, 3), 2)
    assert model.count_params() == xception.count_params() + 2048 + 1


def test_pets_imagenet_is_the_pets_pictures_upscaled_on_the_shared_mobilenet_v2_with_a_new_head(monkeypatch):
    """The same pictures as cifar10_pets_transfer.yaml; from the project root its weights path is the shared file;
    Keras' MobileNetV2 without its top at 128×128 plus Dense(1280 → 2); phase 2 starts at a layer it has."""
    monkeypatch.chdir(PROJECT)  # the weights path is relative to the folder cnnrun runs in
    imagenet = load_experiment(PROJECT / "configs" / "cifar10_pets_imagenet.yaml")
    pets = load_experiment(PROJECT / "configs" / "cifar10_pets_transfer.yaml")
    picked = ("name", "classes", "samples_per_class", "holdout_first", "validation_split", "test_split")
    assert [getattr(imagenet.dataset, key) for key in picked] == [getattr(pets.dataset, key) for key in picked]
    assert (imagenet.seed, imagenet.dataset.normalize, imagenet.augmentation) == (pets.seed, "none", None)
    node = imagenet.model.layers[1]["backbone"]
    shared = PROJECT.parent / "shared" / "weights"
    assert node["weights"] == str(shared / "mobilenet_v2_imagenet_torchvision.weights.h5")
    assert (node["preprocessing"], node["trainable"]) == ("torch", False)
    first, second = imagenet.train.phases
    assert (first.trainable, first.cache_features, second.trainable) == ("none", True, {"from": "block_16_expand"})
    random = load_experiment(PROJECT / "configs" / "cifar10_pets_imagenet.yaml",
                             ["model.layers.1.backbone.weights=null"])
    model = build_model(random, (32, 32, 3), 2)
    mobilenet = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(128, 128, 3))
    assert model.count_params() == mobilenet.count_params() + 1280 * 2 + 2
    assert model.layers[0].get_config()["height"] == 128
    assert model.get_layer("backbone").get_layer("block_16_expand").name == "block_16_expand"


def test_inspect_prints_the_exact_total_of_the_course_and_the_wider_cifar10_network():
    from tests.conftest import run_here

    assert cifar10_params(32) == 307_498  # the course's number
    for base in (32, 64):
        result = run_here("inspect", PROJECT / "configs" / "cifar10.yaml", "--set", f"model.vars.base_filters={base}")
        assert result.returncode == 0, result.stderr
        assert f"Total params: {cifar10_params(base):,} (trainable {cifar10_params(base):,}" in result.stdout


def test_every_seed_layer_and_alias_is_registered():
    for name in ["Conv2D", "MaxPooling2D", "MaxPool2D", "AveragePooling2D", "Dropout", "Flatten", "Dense",
                 "Activation", "BatchNormalization", "GlobalAveragePooling2D", "SeparableConv2D",
                 "SpatialDropout2D"]:
        assert hasattr(keras.layers, LAYERS[name]), name


def _build(layers, **sections):
    experiment = validate_experiment(tiny_config(model={"layers": layers}, **sections), "test")
    return build_model(experiment, (16, 16, 3), 3)


def test_regularizers_on_kernel_and_bias():
    model = _build([
        {"Conv2D": {"filters": 2, "kernel_size": 3, "kernel_regularizer": {"l2": 0.01},
                    "bias_regularizer": {"l1": 0.02}}},
        {"SeparableConv2D": {"filters": 2, "kernel_size": 3, "depthwise_regularizer": {"l1_l2": {"l1": 0.1,
                                                                                                 "l2": 0.2}}}},
        {"GlobalAveragePooling2D": {}},
        {"Dense": {"units": 3, "kernel_regularizer": {"l1": 0.1, "l2": 0.3}}},
    ])
    conv, sep, _, dense = model.layers
    assert isinstance(conv.kernel_regularizer, keras.regularizers.L2)
    assert conv.kernel_regularizer.l2 == pytest.approx(0.01)
    assert isinstance(conv.bias_regularizer, keras.regularizers.L1)
    assert sep.depthwise_regularizer.get_config() == pytest.approx({"l1": 0.1, "l2": 0.2})
    assert dense.kernel_regularizer.get_config() == pytest.approx({"l1": 0.1, "l2": 0.3})


def test_repeat_and_short_forms():
    model = _build([
        {"repeat": {"times": 3, "layers": [{"Conv2D": {"filters": 2, "kernel_size": 3, "padding": "same"}},
                                           {"SpatialDropout2D": 0.1}]}},
        {"Activation": "relu"},
        "Flatten",
        {"Dense": {"units": "${num_classes}"}},
    ])
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "SpatialDropout2D"] * 3 + ["Activation", "Flatten", "Dense"]
    assert model.layers[1].rate == pytest.approx(0.1)
    assert model.output_shape == (None, 3)


def test_bad_regularizer_and_shape_mismatch_are_user_errors():
    with pytest.raises(UserError, match="regularizer"):
        _build([{"Dense": {"units": 3, "kernel_regularizer": {"l3": 1}}}])
    with pytest.raises(UserError, match=r"model.layers\[1\]"):
        _build([{"Flatten": {}}, {"Conv2D": {"filters": 2, "kernel_size": 3}}])


def test_an_output_of_one_value_per_class_at_every_pixel_is_refused():
    # Conv2D of 3 filters, kernel 3, on 16×16: (None, 14, 14, 3), a last axis of 3 for 3 classes, but not 2-D
    with pytest.raises(UserError, match=r"the model's output has shape \(None, 14, 14, 3\)"):
        _build([{"Conv2D": {"filters": 3, "kernel_size": 3, "activation": "softmax"}}])


def test_loss_must_fit_label_mode():
    experiment = validate_experiment(
        tiny_config(dataset={"name": "shapes", "label_mode": "sparse"},
                    compile={"loss": "categorical_crossentropy"}), "test")
    model = build_model(experiment, (16, 16, 1), 3)
    with pytest.raises(UserError, match="sparse_categorical_crossentropy"):
        compile_model(model, experiment)


def test_optimizer_arguments_are_checked():
    experiment = validate_experiment(tiny_config(compile={"optimizer": {"name": "adam", "lr": 0.1}}), "test")
    model = build_model(experiment, (16, 16, 1), 3)
    with pytest.raises(UserError, match="did you mean 'learning_rate'"):
        compile_model(model, experiment)


def test_cifar10_fast_is_airbench94_written_by_hand():
    # airbench94's network in plain Keras (a trained 2×2 Conv2D stands in for the frozen whitening: the same
    # weights); airbench counts 1,975,096 with its frozen BatchNorm scales, which `scale: false` leaves out
    import keras

    def group(filters):
        return [keras.layers.Conv2D(filters, 3, padding="same", use_bias=False), keras.layers.MaxPooling2D(2),
                keras.layers.BatchNormalization(momentum=0.4, epsilon=1e-12, scale=False),
                keras.layers.Activation("gelu"), keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
                keras.layers.BatchNormalization(momentum=0.4, epsilon=1e-12, scale=False),
                keras.layers.Activation("gelu")]

    hand = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(24, 2), keras.layers.Activation("gelu"),
                             *group(64), *group(256), *group(256), keras.layers.MaxPooling2D(3),
                             keras.layers.Flatten(), keras.layers.Dense(10, use_bias=False),
                             keras.layers.Rescaling(1 / 9)])
    experiment = load_experiment(PROJECT / "configs" / "cifar10_fast.yaml")
    shape, classes = describe(experiment.dataset)
    ours = build_model(experiment, shape, len(classes))
    assert ours.count_params() == hand.count_params() == 1_975_096 - 2 * 64 - 4 * 256
    assert [layer.output.shape for layer in ours.layers[-4:]] == [layer.output.shape for layer in hand.layers[-4:]]
