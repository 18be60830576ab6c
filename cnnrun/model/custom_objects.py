"""The one table of cnnrun's own Keras objects: every layer, schedule, loss, initializer and optimizer a checkpoint
may name.

Each class registers itself once, where it is defined, with Keras' own decorator
`@keras.saving.register_keras_serializable(package="cnnrun")`, which files it in Keras' table of custom objects as
`cnnrun>ClassName`. This module imports every module that defines one, so the table is complete whichever
command runs, and hands `keras.saving.load_model` the `cnnrun>` part of Keras' table.

A new layer, schedule or loss of cnnrun's own is one decorator where it is defined, plus its module in the imports
below when that module is new (a test walks the package and fails on a Keras subclass missing from the table).

Example:
>>> keras.saving.load_model(path, safe_mode=True, custom_objects=custom_objects())
"""

import keras

from cnnrun.data import layers as _data_layers  # noqa: F401  (RandomAffine, RandomPaddedCrop, RandomCutout, ...)
from cnnrun.model import backbones as _backbones  # noqa: F401  (BackbonePreprocessing)
from cnnrun.model import initializers as _initializers  # noqa: F401  (PartialDirac)
from cnnrun.model import losses as _losses  # noqa: F401  (SmoothedSparseCategoricalCrossentropy)
from cnnrun.model import muon as _muon  # noqa: F401  (ConvolutionMuon)
from cnnrun.model import rates as _rates  # noqa: F401  (SGDWithRates, AdamWithRates, ...)
from cnnrun.model import schedules as _schedules  # noqa: F401  (PiecewiseLinearDecay)
from cnnrun.model import whitening as _whitening  # noqa: F401  (PatchWhitening)

PACKAGE = "cnnrun"


def custom_objects() -> dict[str, type]:
    """`{"cnnrun>ClassName": class}` for every object of cnnrun's own, as Keras' registry holds them."""
    prefix = f"{PACKAGE}>"
    return {name: obj for name, obj in keras.saving.get_custom_objects().items() if name.startswith(prefix)}
