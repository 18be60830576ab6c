"""Grad-CAM++ and SmoothGrad against hand computations in NumPy, on tiny models with known weights.

Both guard bugs a review put in and the suite let through: Grad-CAM++ replaced by Grad-CAM, and SmoothGrad
averaging 1 noisy copy instead of 16.
"""

import keras
import numpy as np

from cnnrun.explain.gradients import heat_maps
from cnnrun.explain.network import find_layer


def one_conv_model(seed: int = 4) -> keras.Model:
    """6×6×1 pictures → a 3×3 convolution of 2 channels (same padding, ReLU) → Flatten → Dense(3, softmax),
    with weights drawn from `seed`."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((6, 6, 1))
    conv = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(conv(inputs))))
    conv.set_weights([rng.normal(size=(3, 3, 1, 2)), np.array([0.1, -0.05])])
    dense.set_weights([rng.normal(size=(72, 3)), rng.normal(size=3) * 0.1])
    return model


def hand_feature_maps(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """ReLU of a 3×3 cross-correlation with zero padding 1, one picture (6, 6, 1) → (6, 6, 2)."""
    padded = np.pad(x[..., 0], 1)
    out = np.zeros((6, 6, kernel.shape[-1]))
    for i in range(6):
        for j in range(6):
            for k in range(kernel.shape[-1]):
                out[i, j, k] = (padded[i:i + 3, j:j + 3] * kernel[:, :, 0, k]).sum() + bias[k]
    return np.maximum(out, 0)


def hand_gradcam_plus_plus(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Chattopadhay et al. 2018, eq. 19 (the score an exponential of the logit): for every channel k and position
    (i, j), α = g² / (2g² + Σ_ab A_ab · g³), w_k = Σ_ij α · ReLU(g); the map is ReLU(Σ_k w_k A_k)."""
    height, width, channels = features.shape
    weights = np.zeros(channels)
    for k in range(channels):
        total = features[:, :, k].sum()
        for i in range(height):
            for j in range(width):
                g = grads[i, j, k]
                denominator = 2 * g**2 + total * g**3
                alpha = g**2 / denominator if denominator != 0 else 0.0
                weights[k] += alpha * max(g, 0.0)
    return np.maximum((features * weights).sum(axis=-1), 0)


def hand_gradcam(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    return np.maximum((features * grads.mean(axis=(0, 1))).sum(axis=-1), 0)


def scaled(maps: np.ndarray) -> np.ndarray:
    return maps / maps.max()


def test_gradcam_plus_plus_equals_the_papers_weights_computed_by_hand_and_not_gradcam():
    model = one_conv_model()
    (kernel, bias), (dense_kernel, _) = model.get_layer("conv").get_weights(), model.layers[-1].get_weights()
    x = np.random.default_rng(5).uniform(0, 1, (2, 6, 6, 1)).astype("float32")
    classes = [0, 2]
    maps = heat_maps(model, x, classes, "gradcam++", find_layer(model, "conv"))
    plain = heat_maps(model, x, classes, "gradcam", find_layer(model, "conv"))
    for n, c in enumerate(classes):
        features = hand_feature_maps(x[n].astype(np.float64), kernel, bias)
        grads = dense_kernel[:, c].reshape(6, 6, 2)  # the logit is Σ A · W[:, c]: its gradient is W (h, w, c order)
        expected = hand_gradcam_plus_plus(features, grads)
        assert expected.max() > 0
        np.testing.assert_allclose(maps[n], scaled(expected), atol=1e-5)
        np.testing.assert_allclose(plain[n], scaled(hand_gradcam(features, grads)), atol=1e-5)
        assert np.abs(scaled(expected) - scaled(hand_gradcam(features, grads))).max() > 0.1  # they differ here
    assert np.abs(maps - plain).max() > 0.1


def tanh_model(seed: int = 6) -> keras.Model:
    """3×3×2 pictures → Flatten → Dense(4, tanh) → Dense(3, softmax): a gradient that changes with the picture."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((3, 3, 2))
    hidden, out = keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, out(hidden(keras.layers.Flatten()(inputs))))
    hidden.set_weights([rng.normal(size=(18, 4)), rng.normal(size=4) * 0.1])
    out.set_weights([rng.normal(size=(4, 3)), np.zeros(3)])
    return model


def test_smoothgrad_is_the_mean_gradient_over_16_noisy_copies_computed_by_hand():
    model = tanh_model()
    (w1, b1), (w2, _) = model.layers[2].get_weights(), model.layers[3].get_weights()
    x = np.random.default_rng(7).uniform(0, 2, (3, 3, 3, 2)).astype("float32")
    classes = [1, 0, 2]

    def gradient(picture: np.ndarray, c: int) -> np.ndarray:  # ∂ logit_c / ∂ picture, by the chain rule
        h = np.tanh(picture.reshape(-1).astype(np.float64) @ w1 + b1)
        return (w1 @ ((1 - h**2) * w2[:, c])).reshape(picture.shape)

    def hand_maps(samples: int) -> np.ndarray:
        # cnnrun's documented noise: a generator seeded 0; per picture, 15 % of its value range; all pictures of a
        # batch drawn together, one draw per noisy copy
        rng = np.random.default_rng(0)
        spread = (x.max(axis=(1, 2, 3), keepdims=True) - x.min(axis=(1, 2, 3), keepdims=True)) * 0.15
        total = np.zeros(x.shape)
        for _ in range(samples):
            noisy = (x + rng.normal(size=x.shape) * spread).astype(np.float32)
            total += np.stack([gradient(noisy[n], c) for n, c in enumerate(classes)])
        maps = np.abs(total / samples).max(axis=-1)
        return maps / maps.reshape(len(maps), -1).max(axis=1)[:, None, None]

    got = heat_maps(model, x, classes, "smoothgrad")
    np.testing.assert_allclose(got, hand_maps(16), atol=1e-3)  # (float32 gradients, a mean that cancels)
    assert np.abs(hand_maps(16) - hand_maps(1)).max() > 0.05  # the number of copies shows in the map
