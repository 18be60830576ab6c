"""`kernel_initializer: dirac`, airbench's identity initialisation of a convolution, against the identity itself
and Keras' own initializer for the filters it leaves random."""

import keras
import numpy as np
import pytest

from cnnrun.errors import UserError
from cnnrun.model.build import layer_specs
from cnnrun.model.custom_objects import custom_objects


def _layer(args: dict):
    ((_, cls, kwargs),) = layer_specs([("model.layers.0", "Conv2D", args)])
    return cls(**kwargs)


def test_the_first_filters_pass_their_channel_through_and_the_others_are_keras_own():
    layer = _layer({"filters": 8, "kernel_size": 3, "padding": "same", "use_bias": False,
                    "kernel_initializer": {"name": "dirac", "seed": 3}})
    x = np.random.default_rng(0).normal(size=(2, 6, 7, 5)).astype("float32")
    out = np.asarray(layer(x))
    np.testing.assert_array_equal(out[..., :5], x)  # filter i is channel i, exactly
    assert not np.allclose(out[..., 5:], 0)
    kernel = np.asarray(layer.kernel)
    reference = np.asarray(keras.initializers.GlorotUniform(seed=3)((3, 3, 5, 8)))
    np.testing.assert_array_equal(kernel[..., 5:], reference[..., 5:])
    fewer = _layer({"filters": 2, "kernel_size": 5, "padding": "same", "use_bias": False,
                    "kernel_initializer": "dirac"})
    np.testing.assert_array_equal(np.asarray(fewer(x)), x[..., :2])  # fewer filters than channels: the first


def test_a_model_with_it_saves_and_loads_in_safe_mode(tmp_path):
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, _layer({"filters": 4, "kernel_size": 3, "kernel_initializer": "dirac"})(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, custom_objects=custom_objects())
    np.testing.assert_array_equal(loaded.layers[-1].kernel, model.layers[-1].kernel)
    assert type(loaded.layers[-1].kernel_initializer).__name__ == "PartialDirac"


@pytest.mark.parametrize("name, args, words", [
    ("Dense", {"units": 3, "kernel_initializer": "dirac"}, "dirac initialises a convolution's kernel"),
    ("Conv2D", {"filters": 3, "kernel_size": 3, "kernel_initializer": {"name": "dirac", "gain": 2}},
     "dirac takes base .* not gain"),
])
def test_dirac_where_it_means_nothing_is_one_line(name, args, words):
    with pytest.raises(UserError, match=words):
        layer_specs([("model.layers.0", name, args)])
