"""The one table of cnnrun's own Keras objects: complete, and enough to load a checkpoint that uses each kind."""

import importlib
import inspect
import pkgutil

import keras

import cnnrun
from cnnrun.model.custom_objects import custom_objects

KERAS_BASES = (keras.layers.Layer, keras.optimizers.schedules.LearningRateSchedule, keras.losses.Loss)


def cnnrun_keras_classes() -> set[type]:
    """Every class defined in a cnnrun module that subclasses a Keras layer, schedule or loss (found by walking
    the package, independently of the table)."""
    found = set()
    for info in pkgutil.walk_packages(cnnrun.__path__, "cnnrun."):
        if info.name.startswith("cnnrun.cli") or info.name == "cnnrun.__main__":
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module.__name__ and issubclass(obj, KERAS_BASES):
                found.add(obj)
    return found


def test_every_keras_class_of_cnnrun_is_in_the_one_table():
    table = custom_objects()
    classes = cnnrun_keras_classes()
    assert {"cnnrun>PatchWhitening", "cnnrun>PiecewiseLinearDecay", "cnnrun>SmoothedSparseCategoricalCrossentropy",
            "cnnrun>BackbonePreprocessing", "cnnrun>RandomCutout", "cnnrun>RandomPaddedCrop"} <= set(table)
    missing = {cls.__qualname__ for cls in classes} - {cls.__qualname__ for cls in table.values()}
    assert not missing, f"defined but not registered: {missing}"
    assert all(name == f"cnnrun>{cls.__name__}" for name, cls in table.items())
