"""Learning rates per variable (`compile.rate_multipliers`): some weights trained at a multiple of the rate.

airbench94 trains BatchNorm's biases (Keras' `beta`) at 64 times the rate of the other weights, without
multiplying their weight decay. `compile.rate_multipliers: {beta: 64}` does that: each key is a regular expression
searched in every trainable variable's path (`group_1_batch_normalization/beta`), and the variables it matches
are updated with the optimizer's rate (a number or the schedule's value at that step) times its multiplier. The
first key that matches a variable decides; the variables no key matches keep the rate.

It is the optimizer's own update with another rate, so it means the same in every optimizer: SGD's step and
momentum, Adam's step, ... Weight decay given to the optimizer (`weight_decay`, AdamW's) is applied at the plain
rate, as airbench's is; an L2 penalty in the loss (`model.weight_decay`) is part of the gradient, so it is
multiplied with it.

Each of cnnrun's optimizers (`cnnrun.config.registry.OPTIMIZERS`) has a subclass that does this, registered with
Keras as `cnnrun>SGDWithRates` and so on: a checkpoint keeps the multipliers in its optimizer's config, and
`resume` goes on with them. The same subclass can also freeze a variable in the middle of training (`freeze`):
its update is skipped, momentum and weight decay included, as PyTorch skips a parameter without a gradient. That
is how the whitening layer's bias stops training after `bias_epochs` (`cnnrun.model.whitening`) on every backend:
JAX's optimizer keeps one state per variable it was built with, so the list of trainable variables cannot shrink.

Example:
>>> optimizer = with_rate_multipliers(keras.optimizers.SGD(0.1), model, {"beta": 64.0})
>>> rates_of(optimizer, model)["group_1_batch_normalization/beta"]
64.0
"""

import re
from collections import Counter
from typing import Any

import keras

from cnnrun.config.rates import WHERE
from cnnrun.config.registry import OPTIMIZERS
from cnnrun.errors import UserError
from cnnrun.model.muon import optimizer_class


def deciding_pattern(path: str, multipliers: dict[str, float]) -> str | None:
    """The first pattern `re.search` finds in `path`, or None."""
    return next((pattern for pattern in multipliers if re.search(pattern, path)), None)


def multiplier_for(path: str, multipliers: dict[str, float]) -> float:
    """The multiplier of the variable at `path`: that of the first pattern found in it, else 1.

    >>> multiplier_for("block_batch_normalization/beta", {"beta": 64.0, "batch_norm": 2.0})
    64.0
    >>> multiplier_for("conv2d/kernel", {"beta": 64.0})
    1.0
    """
    pattern = deciding_pattern(path, multipliers)
    return 1.0 if pattern is None else float(multipliers[pattern])


class _WithRates:
    """The update of the optimizer it is mixed into, at the rate times each variable's multiplier."""

    def __init__(self, *args: Any, rate_multipliers: dict[str, float] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rate_multipliers = {str(k): float(v) for k, v in (rate_multipliers or {}).items()}
        self._multipliers: list[float] = []
        self.frozen: set = set()  # the keys (Keras' `_var_key`) of the variables whose updates are skipped

    def freeze(self, variables: list) -> None:
        """Skip the updates of `variables` (momentum and weight decay too) in every step traced from now on: the
        caller builds the train step again (`model.make_train_function(force=True)`)."""
        self.frozen |= {self._var_key(variable) for variable in variables}

    def is_frozen(self, variable) -> bool:
        return self._var_key(variable) in self.frozen

    def build(self, variables: list) -> None:
        super().build(variables)
        self._multipliers = [multiplier_for(variable.path, self.rate_multipliers) for variable in variables]

    def update_step(self, gradient, variable, learning_rate):
        if self._var_key(variable) in self.frozen:
            return None
        multiplier = self._multipliers[self._get_variable_index(variable)]
        if multiplier != 1.0:
            learning_rate = learning_rate * multiplier
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        return super()._apply_weight_decay([v for v in variables if self._var_key(v) not in self.frozen])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate_multipliers": dict(self.rate_multipliers)}


def _rated(base: type) -> type:
    rated = type(f"{base.__name__}WithRates", (_WithRates, base),
                 {"__doc__": f"Keras' {base.__name__}, each variable at its multiple of the rate "
                             f"(`cnnrun.model.rates`).", "__module__": __name__})
    return keras.saving.register_keras_serializable(package="cnnrun")(rated)


RATED: dict[str, type] = {name: _rated(optimizer_class(name)) for name in OPTIMIZERS.values()}
"""Keras' optimizer class name → its subclass with per-variable rates, registered as `cnnrun>NameWithRates`."""


def with_rate_multipliers(optimizer, model, multipliers: dict[str, float] | None, freezing: bool = False):
    """`optimizer` again, as its subclass with per-variable rates (`RATED`); itself when there are no multipliers
    (and no variable will be frozen: `freezing`) or it already has them.

    Raises:
        UserError: a pattern that matches none of `model`'s variables, trainable now or not (a phase may train
            them later; some of the paths it has are named), or an optimizer without such a subclass.
    """
    if not (multipliers or freezing) or isinstance(optimizer, _WithRates):
        return optimizer
    paths = [variable.path for variable in model.weights]
    for pattern in multipliers or {}:
        if not any(re.search(pattern, path) for path in paths):
            shown = ", ".join(paths[:6]) + (", …" if len(paths) > 6 else "")
            raise UserError(f"{WHERE}: '{pattern}' matches none of the model's variables ({shown})")
    rated = RATED.get(type(optimizer).__name__)
    if rated is None:
        raise UserError(f"{WHERE}: not for {type(optimizer).__name__}; use one of "
                        f"{', '.join(sorted(OPTIMIZERS))}")
    return rated.from_config({**optimizer.get_config(), "rate_multipliers": multipliers or {}})


def rates_of(optimizer, model) -> dict[str, float]:
    """Each trainable variable's multiplier in `optimizer` (built on `model`'s variables), by path."""
    multipliers = getattr(optimizer, "rate_multipliers", {})
    return {variable.path: multiplier_for(variable.path, multipliers) for variable in model.trainable_variables}


def describe_multipliers(multipliers: dict[str, float], model) -> str:
    """The header's row: `beta ×64 (6 variables)`, each pattern with the variables it decides."""
    counts = Counter(deciding_pattern(variable.path, multipliers) for variable in model.trainable_variables)
    return ", ".join(f"{pattern} ×{multiplier:g} ({counts[pattern]} variable{'' if counts[pattern] == 1 else 's'})"
                     for pattern, multiplier in multipliers.items())
