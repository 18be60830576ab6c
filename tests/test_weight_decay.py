"""The two weight decays, against a hand computation in numpy.

`model.weight_decay: wd` is the papers' L2 term, `wd / 2 × Σ w²` in the loss (Keras' `L2(wd / 2)` on every kernel):
its gradient `wd × w` joins the data's gradient, so it passes through momentum. `compile.optimizer.weight_decay:
wd` is Keras' decoupled decay: `w ← w − learning_rate × wd × w` before each update, outside the gradient. With plain
SGD one step of either is `w − lr × (∇ + wd × w)`; with momentum they part from the second step on.
"""

import keras
import numpy as np
import pytest

from cnnrun.config import load_experiment
from cnnrun.model.build import build_model
from cnnrun.model.compiling import compile_model
from tests.conftest import PROJECT, tiny_config

LR, WD, MOMENTUM = 0.5, 0.1, 0.9
SHAPE, CLASSES = (2, 2, 1), 3
SOFTMAX = [{"Flatten": {}}, {"Dense": {"units": "${num_classes}", "activation": "softmax", "use_bias": False}}]


def compiled(write_config, optimizer: dict, weight_decay: float = 0.0, layers=None):
    """A cnnrun model from a config, compiled with `optimizer`, `model.weight_decay` set."""
    config = tiny_config(model={"layers": layers or SOFTMAX, "weight_decay": weight_decay},
                         compile={"optimizer": optimizer})
    experiment = load_experiment(write_config(config))
    model = build_model(experiment, SHAPE, CLASSES)
    compile_model(model, experiment)
    return model


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, *SHAPE)).astype("float32")
    y = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, size=8)]
    return x, y


def data_gradient(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∇ of the mean softmax crossentropy of `x @ w` with respect to `w`: `xᵀ (p − y) / n`."""
    flat = x.reshape(len(x), -1).astype("float64")
    logits = flat @ w
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return flat.T @ (p - y) / len(x)


def steps(model, batches) -> np.ndarray:
    for x, y in batches:
        model.train_on_batch(x, y)
    return model.layers[-1].kernel.numpy().astype("float64")


def test_model_weight_decay_puts_half_of_it_as_l2_on_every_conv_and_dense_kernel(write_config):
    layers = [{"Conv2D": {"filters": 2, "kernel_size": 1}},
              {"SeparableConv2D": {"filters": 2, "kernel_size": 1}},
              {"Conv2D": {"filters": 2, "kernel_size": 1, "kernel_regularizer": {"l1": 0.3}}},
              {"Conv2D": {"filters": 2, "kernel_size": 1, "kernel_regularizer": None}},
              {"BatchNormalization": {}}, *SOFTMAX]
    model = compiled(write_config, "sgd", WD, layers)
    conv, separable, own, none, norm, _, dense = model.layers
    for regularizer in (conv.kernel_regularizer, separable.depthwise_regularizer,
                        separable.pointwise_regularizer, dense.kernel_regularizer):
        assert isinstance(regularizer, keras.regularizers.L2)
        assert regularizer.l2 == pytest.approx(WD / 2)
    assert isinstance(own.kernel_regularizer, keras.regularizers.L1)  # a layer's own regularizer is kept
    assert none.kernel_regularizer is None  # `null` turns it off for that layer
    assert conv.bias_regularizer is None and norm.gamma_regularizer is None  # kernels only

    model(np.zeros((1, *SHAPE), "float32"))  # the regularization losses are computed on a call
    decayed = [conv.kernel, separable.depthwise_kernel, separable.pointwise_kernel, dense.kernel]
    by_hand = WD / 2 * sum(float(np.sum(np.square(w.numpy()))) for w in decayed) \
        + 0.3 * float(np.sum(np.abs(own.kernel.numpy())))
    assert float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses)) == pytest.approx(by_hand, rel=1e-5)


def test_one_sgd_step_of_either_weight_decay_is_w_minus_lr_times_gradient_plus_decay_times_w(write_config):
    x, y = data()
    as_paper = compiled(write_config, {"name": "sgd", "learning_rate": LR}, WD)
    decoupled = compiled(write_config, {"name": "sgd", "learning_rate": LR, "weight_decay": WD})
    decoupled.set_weights(as_paper.get_weights())
    w = as_paper.layers[-1].kernel.numpy().astype("float64")
    by_hand = w - LR * (data_gradient(w, x, y) + WD * w)
    np.testing.assert_allclose(steps(as_paper, [(x, y)]), by_hand, atol=1e-6)
    np.testing.assert_allclose(steps(decoupled, [(x, y)]), by_hand, atol=1e-6)
    without = w - LR * data_gradient(w, x, y)
    assert np.abs(by_hand - without).max() > 1e-3  # the decay is large enough to be seen


def test_with_momentum_the_two_weight_decays_part_as_computed_by_hand(write_config):
    batches = [data(0), data(1)]
    as_paper = compiled(write_config, {"name": "sgd", "learning_rate": LR, "momentum": MOMENTUM}, WD)
    decoupled = compiled(write_config, {"name": "sgd", "learning_rate": LR, "momentum": MOMENTUM,
                                        "weight_decay": WD})
    decoupled.set_weights(as_paper.get_weights())
    w0 = as_paper.layers[-1].kernel.numpy().astype("float64")

    # L2 in the loss: the decay's gradient goes through the momentum
    w, m = w0, np.zeros_like(w0)
    for x, y in batches:
        m = MOMENTUM * m - LR * (data_gradient(w, x, y) + WD * w)
        w = w + m
    paper_by_hand = w
    # decoupled (Keras): the gradient at w, then w shrinks by lr × wd × w, then the momentum step without decay
    w, m = w0, np.zeros_like(w0)
    for x, y in batches:
        gradient = data_gradient(w, x, y)
        m = MOMENTUM * m - LR * gradient
        w = w - LR * WD * w + m
    decoupled_by_hand = w

    np.testing.assert_allclose(steps(as_paper, batches), paper_by_hand, atol=1e-6)
    np.testing.assert_allclose(steps(decoupled, batches), decoupled_by_hand, atol=1e-6)
    assert np.abs(paper_by_hand - decoupled_by_hand).max() > 1e-3


def test_the_papers_weight_decay_reaches_every_kernel_of_a_graph():
    model = build_model(load_experiment(PROJECT / "configs" / "cifar10_resnet20.yaml"), (32, 32, 3), 10)
    kernels = [layer for layer in model.layers if type(layer).__name__ in ("Conv2D", "Dense")]
    assert len(kernels) == 19 + 2 + 1  # 19 convolutions on the main path, 2 projection shortcuts, the classifier
    for layer in kernels:
        assert layer.kernel_regularizer.get_config() == {"l2": pytest.approx(0.5e-4)}, layer.name
