"""Lookahead (`callbacks.lookahead`), as airbench94 uses it: every few steps, pull a slow copy of the weights toward
the trained ones and carry on training from the slow copy.

The optimizer trains the model's weights (the *fast* ones) as usual. Every `every` steps, with `decay` d:

    slow ← d · slow + (1 − d) · fast        then        fast ← slow

so the weights training goes on from are an average over the last windows of steps: the noise of single steps is
smoothed away while the direction they share is kept. airbench94 (Jordan 2024, `legacy/airbench94.py`) lets d grow
over the run, `d = decay × (t / T) ** power` at step t of T (decay 0.95⁵ = 0.7738, power 3): hardly any averaging at
first, more and more towards the end. Like airbench, every float variable of the model takes part, BatchNorm's
moving statistics included, but not the optimizer's state (momentum stays the fast weights').

Steps are batches trained, counted over the whole run (epochs × steps an epoch, so `T` is known from the start);
with `steps_per_execution` the update happens at the end of the first execution that reaches a multiple of
`every`. cnnrun also updates at the last step of every epoch (airbench only at the very end), so that at the end of
an epoch the fast weights *are* the slow ones: validation, the checkpoints and the test scores see the averaged
weights, and a resumed run, whose slow copy starts from the checkpoint, goes on exactly as a straight one.

Example:
>>> model.fit(x, y, epochs=10, callbacks=[Lookahead(every=5, decay=0.95**5, power=3, epochs=10)])
"""

from typing import Any

import keras
import numpy as np


def lookahead_decay(step: int, total: int, decay: float, power: float) -> float:
    """The decay at `step` of `total`: `decay × (step / total) ** power`, at most `decay`.

    >>> lookahead_decay(50, 100, decay=0.8, power=3)
    0.1
    """
    return decay * min(step / total, 1.0) ** power


class Lookahead(keras.callbacks.Callback):
    """Pulls a slow copy of the weights toward the trained ones every `every` steps, and trains on from it.

    Args:
        every: steps (batches) between updates. Defaults to 5, as airbench94.
        decay: the slow copy's share at the end of training. Defaults to 0.95**5 = 0.7738, as airbench94.
        power: how the share grows over training, `decay × (t/T) ** power`; 0 keeps it at `decay` throughout.
            Defaults to 3, as airbench94.
        epochs: the epochs of the whole run (T = epochs × steps an epoch, the steps from Keras' fit).
    """

    def __init__(self, every: int = 5, decay: float = 0.95**5, power: float = 3.0, epochs: int = 1):
        super().__init__()
        self.every, self.decay, self.power, self.epochs = every, decay, power, epochs
        self.slow: list[np.ndarray] = []
        self.variables: list = []
        self.epoch = 0
        self.updated_at = 0  # the step of the last update, counted over the run

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.variables = [v for v in self.model.weights if "float" in str(v.dtype)]
        self.slow = [keras.ops.convert_to_numpy(v) for v in self.variables]  # resumed: the checkpoint's weights

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch
        self.updated_at = epoch * (self.params.get("steps") or 0)  # every epoch ends with an update

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        steps = self.params.get("steps") or 0
        done = self.epoch * steps + batch + 1
        crossed = done // self.every > self.updated_at // self.every
        if crossed or batch + 1 == steps:
            self.update(lookahead_decay(done, self.epochs * steps, self.decay, self.power))
            self.updated_at = done

    def update(self, decay: float) -> None:
        """`slow ← decay · slow + (1 − decay) · fast`, then `fast ← slow`.

        On the JAX backend the state a step leaves stays outside the variables until something asks for the model:
        reading `self.model` (Keras' `Callback.model`) puts it back, and the next step starts from what is assigned.
        """
        self.model  # noqa: B018 (the JAX backend's state into the variables)
        for index, variable in enumerate(self.variables):
            slow = decay * self.slow[index] + (1.0 - decay) * keras.ops.convert_to_numpy(variable)
            self.slow[index] = slow.astype(self.slow[index].dtype)
            variable.assign(self.slow[index])


def describe_lookahead(every: int, decay: float, power: float) -> str:
    """The header's row: `every 5 steps, decay 0.774 × (step/total)^3`."""
    shape = f" × (step/total)^{power:g}" if power else ""
    return f"every {every} steps, decay {decay:.3g}{shape}"
