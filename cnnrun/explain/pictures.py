"""`cnnrun explain` and `cnnrun evaluate --explain N`: heat maps of where a run's model looked, over the pictures.

Pictures are read exactly as `predict` reads them (the training's conversion, decoding, resize and
normalisation). For each picture `explain` writes `<stem>_<method>.png` (the picture, the heat map over it, the
top-k probabilities), and for all of them `<method>_grid.png` and `<method>_heat_maps.npz` (the maps as numbers:
`files`, `maps` `(n, height, width)` in [0, 1], `classes`, `probabilities`).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnrun.atomic import atomic_write_bytes, atomic_write_figure
from cnnrun.errors import UserError, did_you_mean
from cnnrun.explain.gradients import LAYER_METHODS, heat_maps
from cnnrun.explain.network import find_layer, is_spatial
from cnnrun.figures import explained_figure, overlay_grid
from cnnrun.model.scoring import probabilities
from cnnrun.run_folder.folder import open_run

TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "saliency": "saliency", "smoothgrad": "SmoothGrad"}


@dataclass(frozen=True)
class ExplainedPicture:
    """One picture `explain` read: what the model predicted, the class explained, and the PNG written."""

    file: Path
    predicted: str
    probability: float  # of the predicted class
    explained: str  # the class whose map was drawn
    true: str | None  # the picture's folder, when it is named after a class of the run
    written: Path


@dataclass(frozen=True)
class Explanation:
    """What `explain_files` did: the pictures explained, the files written, and those it could not read."""

    what: str  # `Grad-CAM at conv_2, best.keras`
    folder: Path
    pictures: tuple[ExplainedPicture, ...]
    files: tuple[Path, ...]  # the folder's grid and maps (`<method>_grid.png`, `<method>_heat_maps.npz`)
    unreadable: tuple[tuple[Path, str], ...] = ()  # (file, reason) of each input that is not a readable picture

    def problem(self) -> UserError | None:
        """The inputs that were not readable pictures as one UserError (exit 2 after the others are shown)."""
        if not self.unreadable:
            return None
        done = f"; the other {len(self.pictures)} explained into {self.folder}" if self.pictures else ""
        return UserError("; ".join(f"{p}: not a readable picture ({reason})" for p, reason in self.unreadable) + done)


def file_name(method: str) -> str:
    """The method as it appears in file names: `gradcam++` is `gradcampp`."""
    return method.replace("+", "p")


def class_index(name: str, class_names: list[str]) -> int | None:
    """The index of `--class NAME`; None for `top1` (each picture's predicted class).

    Raises:
        UserError: the run has no class of that name.
    """
    if name == "top1":
        return None
    if name not in class_names:
        raise UserError(f"the run has no such class{did_you_mean(name, class_names)}", where=f"--class {name}",
                        fix=f"its classes: {', '.join(class_names)} (or top1, each picture's predicted class)")
    return class_names.index(name)


def chosen_layer(model, method: str, layer: str):
    """The layer Grad-CAM weighs (a LayerPath), or None for the input-gradient methods.

    Raises:
        UserError: the layer does not exist, has no spatial output, or is given to saliency or smoothgrad.
    """
    if method not in LAYER_METHODS:
        if layer != "auto":
            raise UserError(f"{method} maps are taken on the input picture", where=f"--layer {layer}",
                            fix=f"--layer is for {' and '.join(LAYER_METHODS)}")
        return None
    path = find_layer(model, layer)
    if not is_spatial(path):
        last = find_layer(model, "auto").name if layer != "auto" else ""
        raise UserError(f"its output {path.output_shape} has no height and width", where=f"--layer {path.name}",
                        fix=f"{method} needs a layer with a spatial output (batch, height, width, channels)"
                        + (f", e.g. {last} (the last one)" if last else ""))
    return path


def explain_files(run_path: str | Path | None, paths: list[Path], method: str = "gradcam", class_name: str = "top1",
                  layer: str = "auto", checkpoint: str = "best", out: Path | None = None,
                  top_k: int = 3) -> Explanation:
    """Explain a run's predictions for image files: one PNG per picture, a grid of all, the maps as numbers.

    Everything given is checked before a picture is read: the class, the layer, the method. A file that is not a
    readable picture is left out and listed in the result (`Explanation.problem()`, which the CLI raises after
    showing the others: one line, exit code 2).

    Args:
        run_path: the run folder; None means the most recently started run under `outputs/`.
        paths: image files or folders of them.
        method: `gradcam`, `gradcam++`, `saliency` or `smoothgrad`. Defaults to `gradcam`.
        class_name: the class explained: `top1` (each picture's predicted class) or a class name of the run.
        layer: the layer Grad-CAM weighs: `auto` (the last with a spatial output, inside a nested model too) or
            a layer's name (`backbone/conv_3` or `conv_3`). Defaults to `auto`.
        checkpoint: `best` or `last`.
        out: the folder the files go to. Defaults to `explained/` in the current folder.
        top_k: probabilities shown per picture. Defaults to 3.

    Returns:
        An `Explanation` (nothing is printed).
    """
    from cnnrun.data import preprocess
    from cnnrun.data.pictures import collect_images, read_images
    from cnnrun.model.checkpoints import load_run_model

    files = collect_images(paths)
    run = open_run(run_path)
    if run.dataset_info().label_mode == "regression":  # no class whose evidence to show
        raise UserError(f"{run.path}: cnnrun explain shows what makes the model choose a class, but this run "
                        f"(dataset.label_mode: regression) gives numbers; `cnnrun evaluate {run.path}` writes each "
                        f"picture's residual and a scatter of predicted against true")
    wanted = class_index(class_name, run.dataset_info().class_names)
    experiment, info, model = load_run_model(run, checkpoint)
    path = chosen_layer(model, method, layer)
    out = Path(out) if out is not None else Path.cwd() / "explained"
    if out.exists() and not out.is_dir():
        raise UserError("is a file", where=f"--out {out}", fix="give a folder for the pictures")
    images, readable, reasons = read_images(files, info.input_shape)
    what = f"{TITLES[method]}" + (f" at {path.name}" if path is not None else "") + f", {checkpoint}.keras"
    pictures, written = (), ()
    if readable:
        batch = preprocess(images, info).numpy()
        probs = probabilities(model.predict(batch, verbose=0), experiment)
        classes = probs.argmax(axis=-1) if wanted is None else np.full(len(batch), wanted)
        maps = heat_maps(model, batch, classes, method, path)
        pictures, written = _write(out, method, readable, images, maps, probs, classes, info.class_names, top_k,
                                   what)
    return Explanation(what, out, pictures, written, tuple(reasons.items()))


def _write(out: Path, method: str, files: list[Path], images: np.ndarray, maps: np.ndarray, probs: np.ndarray,
           classes: np.ndarray, names: list[str], top_k: int,
           what: str) -> tuple[tuple[ExplainedPicture, ...], tuple[Path, ...]]:
    """Write the per-picture figures, the grid and the maps; return the pictures and the folder's files."""
    import io

    pictures = []
    titles, colors, used = [], [], set()
    for i, path in enumerate(files):
        predicted = int(probs[i].argmax())
        true = path.parent.name if path.parent.name in names else None
        top = [(names[j], float(probs[i, j])) for j in np.argsort(-probs[i])[:min(top_k, len(names))]]
        title = f"{names[predicted]} {probs[i, predicted]:.2f}" + (f" · true {true}" if true else "")
        stem, n = path.stem, 2
        while stem in used:  # two pictures of one name in different folders
            stem, n = f"{path.stem}_{n}", n + 1
        used.add(stem)
        target = out / f"{stem}_{file_name(method)}.png"
        explained = f"{TITLES[method]} for {names[classes[i]]}"
        figure = explained_figure(images[i], maps[i], top, f"{path.name}: predicted {title}", explained)
        atomic_write_figure(figure, target)
        titles.append(title)
        colors.append("black" if true is None else "darkgreen" if true == names[predicted] else "firebrick")
        pictures.append(ExplainedPicture(path, names[predicted], float(probs[i, predicted]), names[classes[i]],
                                         true, target))
    grid, numbers = out / f"{file_name(method)}_grid.png", out / f"{file_name(method)}_heat_maps.npz"
    atomic_write_figure(overlay_grid(images, maps, titles, colors, what), grid)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, files=np.array([str(p) for p in files]), maps=maps, classes=classes,
                        probabilities=probs.astype(np.float32))
    atomic_write_bytes(numbers, buffer.getvalue())
    return tuple(pictures), (grid, numbers)
