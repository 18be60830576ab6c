"""Muon for convolution filters (`compile.optimizer: muon`): Keras' Muon, with the 4-D kernels of convolutions
orthogonalised as matrices too.

Muon (Jordan et al. 2024) takes SGD's momentum of a weight matrix and replaces it by the nearest orthogonal matrix
(five Newton–Schulz iterations), so that every direction of the update gets the same step. airbench94_muon trains
its convolution filters this way, each `(out, in, h, w)` filter bank flattened into a matrix. Keras' own
`keras.optimizers.Muon` orthogonalises only 2-D variables (Dense kernels) and hands everything else, 4-D
convolution kernels included, to AdamW. cnnrun's `muon` is Keras' Muon with one change: a 4-D kernel
`(h, w, in, out)` is orthogonalised as the `(h·w·in) × out` matrix, then reshaped back. Dense kernels are Muon's as
in Keras; biases, BatchNorm's and other 0/1-D variables stay AdamW's (at `adam_lr_ratio` × the rate), and
`exclude_layers` sends whole layers to AdamW, as in Keras. Its arguments are Keras' Muon's.

Example:
>>> model.compile(optimizer=ConvolutionMuon(learning_rate=0.02), loss="mse")
"""

import re

import keras
from keras import ops

from cnnrun.errors import UserError


@keras.saving.register_keras_serializable(package="cnnrun")
class ConvolutionMuon(keras.optimizers.Muon):
    """Keras' Muon, each 4-D convolution kernel orthogonalised as its `(h·w·in) × out` matrix (see the module)."""

    def _should_use_adamw(self, variable) -> bool:
        if len(variable.shape) == 4 and not any(re.search(keyword, variable.path) for keyword in self.exclude_layers):
            return False
        return super()._should_use_adamw(variable)

    def _muon_update_step(self, gradient, variable, lr, m):
        if len(variable.shape) != 4:
            return super()._muon_update_step(gradient, variable, lr, m)
        self.assign_add(m, ops.add(gradient, m * (self.momentum - 1)))
        direction = ops.add(gradient, self.momentum * m) if self.nesterov else m
        matrix = ops.reshape(direction, (-1, variable.shape[-1]))
        update = self.lr_adjust(lr * self.zeropower_via_newtonschulz5(matrix, self.ns_steps))
        self.assign_sub(variable, ops.reshape(update, variable.shape))


def check_muon_fits(model, optimizer) -> None:
    """A UserError when `compile.optimizer` is `muon` and `model` has no convolution kernel (a 4-D variable) for
    it to orthogonalise, trainable now or in a later phase."""
    name = optimizer if isinstance(optimizer, str) else optimizer.get("name")
    if str(name).lower() == "muon" and not any(len(variable.shape) == 4 for variable in model.weights):
        raise UserError("compile.optimizer: muon orthogonalises the filters of convolutions, and this model has "
                        "none; use adam or sgd (or add a Conv2D)")


OWN_OPTIMIZERS: dict[str, type] = {"ConvolutionMuon": ConvolutionMuon}
"""cnnrun's optimizer classes, by the class name `cnnrun.config.registry.OPTIMIZERS` gives them; the others are
Keras' (`keras.optimizers`)."""


def optimizer_class(name: str) -> type:
    """The class of an optimizer named as `OPTIMIZERS`' values name them: cnnrun's own, else Keras'."""
    return OWN_OPTIMIZERS.get(name) or getattr(keras.optimizers, name)
