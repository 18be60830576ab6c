"""A model cut at its backbone: the front that computes the backbone's outputs, and the head that trains on them.

A phase with `cache_features` (`cnnrun.config.phases`) trains only the layers after a frozen backbone. Their
input, the backbone's output, does not change from epoch to epoch, so `cnnrun.training.features` computes it once
with `front` and trains `head` on it. Both are Keras functional models made of the model's own layers (Keras 3
builds a model from an intermediate tensor of another), so training the head trains the model: nothing is copied
back. The words:

- the **front**: the model from its input to the backbone's output (the input-level layers, the backbone's
  `BackbonePreprocessing`, the backbone);
- the **head**: the model from the backbone's output to the model's output.

`check_cacheable` refuses, before any data is read, what would make cached features differ from what the slow
way computes: no backbone, or two; a front layer with weights that would train in the phase (outside the backbone
everything trains); a random layer in the front (in-model augmentation, Dropout, GaussianNoise) without a number
of views; a head that takes more than the backbone's output.

Example:
>>> front, head = split_at_backbone(model)
>>> head(front(images))  # what model(images) computes
"""

from dataclasses import dataclass
from typing import Any

from cnnrun.config import Experiment
from cnnrun.config.phases import feature_views
from cnnrun.errors import UserError
from cnnrun.model.backbones import layers_within
from cnnrun.model.build import naming_the_file
from cnnrun.model.phases import AUGMENTATION, find_base


@dataclass(frozen=True)
class Split:
    """A model cut at its backbone.

    Attributes:
        front: the model from its input to the backbone's output.
        head: the model from the backbone's output to the model's output (sharing the model's layers).
        backbone: the backbone's name.
    """

    front: Any
    head: Any
    backbone: str


def _is_random(layer) -> bool:
    """A layer that draws random numbers when training (Keras keeps a SeedGenerator in such layers: Dropout,
    GaussianNoise, RandomFlip, RandAugment, ...), or a model holding one."""
    import keras

    return any(isinstance(value, keras.random.SeedGenerator) for inner in [layer, *_inner(layer)]
               for value in vars(inner).values())


def _inner(layer) -> list:
    import keras

    return layers_within(layer) if isinstance(layer, keras.Model) else []


def split_at_backbone(model, where: str = "cache_features") -> Split:
    """Cut `model` at the output of its one backbone (see the module's words); a one-line UserError naming
    `where` when it has none, two, or a head that takes more than the backbone's output."""
    import keras

    backbones = find_base(model).backbones
    if len(backbones) != 1:
        says = "no backbone" if not backbones else f"{len(backbones)} backbones ({', '.join(backbones)})"
        raise UserError(f"{where}: the model has {says}; features can be cached for a model with one "
                        f"`- backbone:` node, whose outputs the head trains on")
    backbone = model.get_layer(backbones[0])
    graph = getattr(model, "_functional", None) or model  # a Sequential's graph is a functional model inside it
    calls = [node.outputs for nodes in graph._nodes_by_depth.values() for node in nodes  # the model's own call
             if node.operation is backbone]
    output = calls[0][0] if len(calls) == 1 and len(calls[0]) == 1 else None
    if output is None:
        raise UserError(f"{where}: the backbone '{backbone.name}' has no single output in the model")
    try:
        front = keras.Model(graph.inputs, output, name=f"{model.name}_front")
        head = keras.Model(output, graph.outputs, name=f"{model.name}_head")
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}: the layers after the backbone '{backbone.name}' take more than its output "
                        f"({' '.join(str(e).split())[:160]}); features can be cached only for a head fed by the "
                        f"backbone alone") from None
    return Split(front, head, backbone.name)


def check_cacheable(model, experiment: Experiment, replicas: int = 1) -> None:
    """Refuse, before any data is read, a phase whose `cache_features` would train on features other than those
    the slow way computes (see the module's docstring), or that would train on several devices (`replicas`,
    default 1: cached features are fed to one)."""
    import keras

    with naming_the_file(experiment):
        for index, phase in enumerate(experiment.train.phases or []):
            if not feature_views(phase):
                continue
            where = f"train.phases.{index}.cache_features"
            if replicas > 1:
                raise UserError(f"{where}: not with a distribution over {replicas} replicas (cached features are "
                                f"fed to one device); leave it out, or train on one device (train.devices)")
            split = split_at_backbone(model, where)
            for layer in split.front.layers:
                if layer.name == split.backbone or isinstance(layer, keras.layers.InputLayer):
                    continue
                learning = [w for inner in [layer, *_inner(layer)] if inner.weights
                            and not isinstance(inner, keras.layers.BatchNormalization) for w in inner.weights]
                if learning:
                    raise UserError(f"{where}: the layer '{layer.name}' before the backbone has weights, which "
                                    f"train in this phase (everything outside the backbone does), so the "
                                    f"backbone's input changes every step; move it after the backbone or leave "
                                    f"cache_features out")
                if phase.cache_features is True and _is_random(layer):
                    what = "in-model augmentation" if layer.name == AUGMENTATION else type(layer).__name__
                    raise UserError(f"{where}: true, but the layer '{layer.name}' ({what}) before the backbone is "
                                    f"random in training, so the features differ every epoch; give "
                                    f"cache_features: K for K fixed views of every picture, or remove it")


def same_order(split: Split, model) -> bool:
    """Whether the head's trainable variables come in the model's order (the optimizer's saved state is read
    back in the model's order when a checkpoint is loaded)."""
    return [id(v) for v in split.head.trainable_variables] == [id(v) for v in model.trainable_variables]
