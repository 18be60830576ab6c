"""`cnnrun evaluate --explain N`: Grad-CAM over the top losses of a split, the pictures the model got most wrong."""

from pathlib import Path

import numpy as np

from cnnrun.atomic import atomic_write_figure
from cnnrun.explain.gradients import heat_maps
from cnnrun.explain.network import last_spatial
from cnnrun.figures import overlay_grid
from cnnrun.model.scoring import top_losses


def _probability(p: float) -> str:
    """Two decimals (`0.03`), or the power of ten of a probability that would show as 0.00 (`3e-05`)."""
    return f"{p:.2f}" if p >= 0.005 else f"{p:.0e}"


def explain_top_losses(model, info, pixels, truth: np.ndarray, probs: np.ndarray, count: int,
                       target: Path) -> np.ndarray:
    """Grad-CAM for the predicted class over the `count` pictures of largest loss, as one grid (`evaluate`).

    The loss of a picture is `−log p(true class)` (`cnnrun.model.scoring.top_losses`): its top losses are
    normally mistakes, the most confident first; a model with fewer mistakes than `count` shows its least sure
    right answers after them (titled in green, mistakes in red). Each picture is titled
    `true → predicted p(true)=0.03`. A model without a layer of spatial output gets the pictures without heat
    maps, and the figure's title says so.

    Args:
        model: the checkpoint's model.
        info: the run's DatasetInfo (class names, normalisation).
        pixels: gives the uint8 pictures at some indices of the split (`Examples.pixels`).
        truth: the split's true classes.
        probs: the model's class probabilities for the split (averaged over the views with `evaluate.tta`).
        count: how many pictures at most.
        target: the PNG to write.

    Returns:
        The indices (into the split) of the pictures the grid shows, largest loss first.
    """
    from cnnrun.data import preprocess

    chosen = top_losses(probs, truth, count)
    predicted = probs.argmax(axis=-1)
    names = info.class_names
    images = pixels(chosen)
    path = last_spatial(model)
    if len(chosen) and path is not None:
        maps = heat_maps(model, preprocess(images, info).numpy(), predicted[chosen], "gradcam", path)
    else:
        maps = [None] * len(chosen)
    titles = [f"{names[truth[i]]} → {names[predicted[i]]} p(true)={_probability(probs[i, truth[i]])}" for i in chosen]
    colors = ["firebrick" if predicted[i] != truth[i] else "darkgreen" for i in chosen]
    wrong = int(sum(predicted[i] != truth[i] for i in chosen))
    what = f"the {len(chosen)} top losses ({wrong} misclassified)"
    title = f"Grad-CAM at {path.name} for the predicted class: {what}" if path is not None else \
        f"{what}; no Grad-CAM: {model.name} has no layer with a spatial output"
    if not len(chosen):
        title = "no pictures to show"
    atomic_write_figure(overlay_grid(images, maps, titles, colors, title), target)
    return chosen
