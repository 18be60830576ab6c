"""Graphs in YAML build the same functional Keras models as the same networks written by hand in Keras.

The reference is always a model written here with `keras.Input`, layers and `keras.Model`: the parameter counts,
output shapes and layer kinds of the two must be equal, exactly.
"""

import keras
import pytest

from cnnrun.config import resolve_config, validate_experiment
from cnnrun.model.build import build_model
from tests.conftest import PROJECT, tiny_config

SHAPE, CLASSES = (16, 16, 3), 3


def build(layers, blocks=None, **model_keys):
    """The model cnnrun builds from these layers (and blocks) for 16×16×3 inputs and 3 classes."""
    model = {"layers": layers, **({"blocks": blocks} if blocks else {}), **model_keys}
    return build_model(validate_experiment(tiny_config(model=model), "test.yaml"), SHAPE, CLASSES)


def layers_of(model) -> list[tuple[str, tuple, int]]:
    """Every layer's kind, output shape and parameter count, sorted: equal for two models of one structure."""
    return sorted((type(layer).__name__, tuple(layer.output.shape), layer.count_params())
                  for layer in model.layers if type(layer).__name__ != "InputLayer")


def assert_same_network(mine, reference) -> None:
    assert not isinstance(mine, keras.Sequential)
    assert mine.count_params() == reference.count_params()
    assert tuple(mine.output_shape) == tuple(reference.output_shape)
    assert layers_of(mine) == layers_of(reference)


def head(x):
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.layers.Dense(CLASSES, activation="softmax")(x)


HEAD = ["GlobalAveragePooling2D", {"Dense": {"units": "${num_classes}", "activation": "softmax"}}]


def test_a_residual_block_equals_the_same_block_written_in_keras():
    mine = build([
        {"Conv2D": {"filters": 8, "kernel_size": 3, "padding": "same"}, "id": "stem"},
        {"Conv2D": {"filters": 8, "kernel_size": 3, "padding": "same", "use_bias": False}},
        {"BatchNormalization": {}},
        "ReLU",
        {"Conv2D": {"filters": 8, "kernel_size": 3, "padding": "same", "use_bias": False}},
        {"BatchNormalization": {}, "id": "body"},
        {"Add": {}, "inputs": ["stem", "body"]},
        "ReLU",
        *HEAD,
    ])
    inputs = keras.Input(SHAPE)
    stem = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(stem)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU()(keras.layers.Add()([stem, keras.layers.BatchNormalization()(x)]))
    assert_same_network(mine, keras.Model(inputs, head(x)))
    add = next(layer for layer in mine.layers if type(layer).__name__ == "Add")
    assert [p.operation.name for p in add._inbound_nodes[0].parent_nodes] == ["stem", "body"]  # ids name layers


INCEPTION = [
    {"Conv2D": {"filters": "${a}", "kernel_size": 1}, "id": "one"},
    {"Conv2D": {"filters": 2, "kernel_size": 1}, "inputs": "in"},
    {"Conv2D": {"filters": "${b}", "kernel_size": 3, "padding": "same"}, "id": "three"},
    {"MaxPooling2D": {"pool_size": 3, "strides": 1, "padding": "same"}, "inputs": "in"},
    {"Conv2D": {"filters": 3, "kernel_size": 1}, "id": "pool"},
    {"Concatenate": {}, "inputs": ["one", "three", "pool"]},
]


def test_a_concatenation_of_branches_in_a_block_equals_the_same_network_written_in_keras():
    mine = build([{"Conv2D": {"filters": 6, "kernel_size": 3}},
                  {"block": "inception", "args": {"a": 4, "b": 5}},
                  {"block": "inception", "args": {"a": 7, "b": 1}},
                  *HEAD], {"inception": INCEPTION})

    def inception(x, a, b):
        one = keras.layers.Conv2D(a, 1)(x)
        three = keras.layers.Conv2D(b, 3, padding="same")(keras.layers.Conv2D(2, 1)(x))
        pool = keras.layers.Conv2D(3, 1)(keras.layers.MaxPooling2D(3, strides=1, padding="same")(x))
        return keras.layers.Concatenate()([one, three, pool])

    inputs = keras.Input(SHAPE)
    x = inception(inception(keras.layers.Conv2D(6, 3)(inputs), 4, 5), 7, 1)
    assert_same_network(mine, keras.Model(inputs, head(x)))
    assert tuple(mine.get_layer("inception2_5").output.shape) == (None, 14, 14, 7 + 1 + 3)


BASIC = [  # DESIGN.md's block: a projection shortcut in every copy, the stride a parameter
    {"Conv2D": {"filters": "${f}", "kernel_size": 3, "strides": "${stride}", "padding": "same", "use_bias": False}},
    {"BatchNormalization": {}},
    "ReLU",
    {"Conv2D": {"filters": "${f}", "kernel_size": 3, "padding": "same", "use_bias": False}},
    {"BatchNormalization": {}, "id": "body"},
    {"Conv2D": {"filters": "${f}", "kernel_size": 1, "strides": "${stride}"}, "id": "short", "inputs": "in"},
    {"Add": {}, "inputs": ["body", "short"]},
    "ReLU",
]


def test_a_block_repeated_with_first_equals_the_loop_written_in_keras():
    mine = build([{"Conv2D": {"filters": 4, "kernel_size": 3, "padding": "same"}},
                  {"block": "basic", "repeat": 3, "args": {"f": 6, "stride": 1}, "first": {"stride": 2}},
                  *HEAD], {"basic": BASIC})
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    for stride in (2, 1, 1):
        body = keras.layers.Conv2D(6, 3, strides=stride, padding="same", use_bias=False)(x)
        body = keras.layers.ReLU()(keras.layers.BatchNormalization()(body))
        body = keras.layers.Conv2D(6, 3, padding="same", use_bias=False)(body)
        body = keras.layers.BatchNormalization()(body)
        short = keras.layers.Conv2D(6, 1, strides=stride)(x)
        x = keras.layers.ReLU()(keras.layers.Add()([body, short]))
    assert_same_network(mine, keras.Model(inputs, head(x)))
    # ids are local to each copy: three `body` layers, named by their copy; only the first halves the size
    assert [tuple(mine.get_layer(f"basic{n}_body").output.shape) for n in (1, 2, 3)] == [(None, 8, 8, 6)] * 3


def test_a_block_parameter_takes_the_args_else_the_var_of_its_name():
    block = {"wide": [{"Conv2D": {"filters": "${f * 2}", "kernel_size": 1}}]}
    mine = build([{"block": "wide"}, {"block": "wide", "args": {"f": 5}}, *HEAD], block, vars={"f": 2})
    assert [layer.filters for layer in mine.layers if type(layer).__name__ == "Conv2D"] == [4, 10]


def test_a_plain_list_and_todays_repeat_still_build_a_sequential():
    model = build([{"repeat": {"times": 2, "layers": [{"Conv2D": {"filters": 2, "kernel_size": 3}}]}}, *HEAD])
    assert isinstance(model, keras.Sequential)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "Conv2D", "GlobalAveragePooling2D",
                                                                 "Dense"]


def test_a_graph_under_mixed_precision_keeps_its_output_in_float32():
    config = tiny_config(model={"layers": [{"Conv2D": {"filters": 2, "kernel_size": 3}, "id": "a"}, *HEAD]},
                         train={"mixed_precision": True})
    model = build_model(validate_experiment(config, "test.yaml"), SHAPE, CLASSES)
    try:
        assert model.get_layer("a").dtype_policy.name == "mixed_bfloat16"
        assert model.layers[-1].dtype_policy.name == "float32"
    finally:
        keras.config.set_dtype_policy("float32")


def keras_io_resnet_v1(depth: int):
    """ResNet v1 for CIFAR-10 as Keras' own example writes it (keras-io, "cifar10_resnet"): conv-BN-ReLU layers
    with biases, a 1×1 projection (no BN) where a stage starts, 8×8 average pooling, Flatten, Dense softmax."""

    def conv(x, filters, kernel=3, strides=1, activation=True, batch_norm=True):
        x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", kernel_initializer="he_normal",
                                kernel_regularizer=keras.regularizers.L2(1e-4))(x)
        x = keras.layers.BatchNormalization()(x) if batch_norm else x
        return keras.layers.Activation("relu")(x) if activation else x

    inputs = keras.Input((32, 32, 3))
    x, filters = conv(inputs, 16), 16
    for stack in range(3):
        for block in range((depth - 2) // 6):
            strides = 2 if stack > 0 and block == 0 else 1
            y = conv(conv(x, filters, strides=strides), filters, activation=False)
            if stack > 0 and block == 0:
                x = conv(x, filters, kernel=1, strides=strides, activation=False, batch_norm=False)
            x = keras.layers.Activation("relu")(keras.layers.add([x, y]))
        filters *= 2
    x = keras.layers.Flatten()(keras.layers.AveragePooling2D(pool_size=8)(x))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", kernel_initializer="he_normal")(x))


@pytest.mark.parametrize("name, depth, params", [("cifar10_resnet20.yaml", 20, 274_442),
                                                 ("cifar10_resnet56.yaml", 56, 861_770)])
def test_the_resnet_configs_have_the_parameters_of_keras_own_resnet_v1(name, depth, params):
    doc = resolve_config(PROJECT / "configs" / name)
    # the schedule and the pad-and-crop are the other parts of issue 12: the model does not depend on them
    doc["compile"]["optimizer"].pop("learning_rate")
    doc["augmentation"].pop("random_crop")
    model = build_model(validate_experiment(doc, name), (32, 32, 3), 10)
    reference = keras_io_resnet_v1(depth)
    assert model.count_params() == reference.count_params() == params
    assert tuple(model.output_shape) == tuple(reference.output_shape) == (None, 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == depth - 1 + 2 and kinds.count("Add") == (depth - 2) // 2  # + 2 projections


def test_the_inception_config_joins_four_branches_with_concatenate():
    doc = resolve_config(PROJECT / "configs" / "cifar10_inception.yaml")
    model = build_model(validate_experiment(doc, "cifar10_inception.yaml"), (32, 32, 3), 10)
    assert model.count_params() == 914_154
    joins = [layer for layer in model.layers if type(layer).__name__ == "Concatenate"]
    assert [tuple(layer.output.shape) for layer in joins] == [(None, 32, 32, 256), (None, 32, 32, 480),
                                                            (None, 16, 16, 512)]
