"""`cnnrun evaluate --explain N`: Grad-CAM over the most confidently misclassified examples of a split."""

from pathlib import Path

import numpy as np

from cnnrun.atomic import atomic_write_figure
from cnnrun.explain.gradients import heat_maps
from cnnrun.explain.network import find_layer
from cnnrun.figures import overlay_grid


def explain_misclassified(model, info, pixels, truth: np.ndarray, probs: np.ndarray, count: int, target: Path) -> int:
    """Grad-CAM over the `count` most confidently misclassified examples of a split, as one grid (`evaluate`).

    Args:
        model: the checkpoint's model.
        info: the run's DatasetInfo (class names, normalisation).
        pixels: gives the uint8 pictures at some indices of the split (`Examples.pixels`).
        truth: the split's true classes.
        probs: the model's probabilities for the split.
        count: how many examples at most.
        target: the PNG to write.

    Returns:
        How many examples the grid shows.
    """
    from cnnrun.data import preprocess

    predicted = probs.argmax(axis=-1)
    wrong = np.flatnonzero(predicted != truth)
    chosen = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:count]
    names = info.class_names
    images = pixels(chosen)
    path = find_layer(model, "auto")
    maps = heat_maps(model, preprocess(images, info).numpy(), predicted[chosen], "gradcam", path) if len(chosen) \
        else np.zeros((0, *images.shape[1:3]))
    titles = [f"{names[truth[i]]} → {names[predicted[i]]} {probs[i, predicted[i]]:.2f}" for i in chosen]
    title = f"Grad-CAM at {path.name} for the predicted class: the {len(chosen)} most confident mistakes"
    if not len(chosen):
        title = "no misclassified examples"
    atomic_write_figure(overlay_grid(images, maps, titles, ["firebrick"] * len(chosen), title), target)
    return len(chosen)
