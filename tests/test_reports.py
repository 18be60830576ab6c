"""Commands compute, the CLI renders: no module below `cnnrun/cli/` prints, its task functions return reports.

The static check reads every module with `ast` and lists each call that writes to the terminal: `print(...)`,
a method of a Rich console (`console.print`, `error_console.log`, …), `sys.stdout.write` / `sys.stderr.write`,
and the printing helpers of `cnnrun.report` (`results_table`, `header_panel`, `show_warnings`).
"""

import ast
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cnnrun.errors import UserError
from tests.conftest import run_here, tiny_config

PACKAGE = Path(__file__).resolve().parents[1] / "cnnrun"
PRINTING_HELPERS = {"results_table", "header_panel", "show_warnings"}  # cnnrun.report's, they print

ALLOWED = {
    "cnnrun/report.py": "the Rich helpers the CLI uses (consoles, tables, warnings)",
    "cnnrun/config/reference.py": "the `make docs` script (python -m cnnrun.config.reference): its own entry point",
}
KNOWN = {
    # Not converted yet: the lead turns these into report objects after merging the other helpers' branches
    # (issue 21, A.4). Remove a line once its module prints nothing; the test below fails until you do.
}


def _named(node: ast.AST) -> str:
    """`console` for `console`, `self.console` or `report.console`; `sys.stdout` for `sys.stdout`; else ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _named(node.value)
        return f"{inner}.{node.attr}" if inner in ("sys",) else node.attr
    return ""


def printing_calls(path: Path) -> list[int]:
    """The lines of the calls in a module that write to the terminal."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name):
            printing = function.id == "print" or function.id in PRINTING_HELPERS
        elif isinstance(function, ast.Attribute):
            owner = _named(function.value)
            printing = (function.attr in PRINTING_HELPERS or "console" in owner.lower()
                        or (owner in ("sys.stdout", "sys.stderr") and function.attr in ("write", "writelines")))
        else:
            printing = False
        if printing:
            lines.append(node.lineno)
    return lines


def printing_modules(package: Path) -> dict[str, list[int]]:
    """Every module below `cli/` that writes to the terminal, and where (report.py and the scripts allowed)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package.parent).as_posix()
        if name.startswith("cnnrun/cli/") or name == "cnnrun/__main__.py" or name in ALLOWED:
            continue
        if lines := printing_calls(path):
            found[name] = lines
    return found


def test_no_module_below_the_cli_prints():
    printing = printing_modules(PACKAGE)
    unexpected = {name: lines for name, lines in printing.items() if name not in KNOWN}
    assert unexpected == {}, "return a report object and render it in cnnrun/cli/render.py"


def test_every_known_exception_still_prints():
    """The list of modules not converted yet shrinks: a module that no longer prints comes off it."""
    printing = printing_modules(PACKAGE)
    assert sorted(name for name in KNOWN if name not in printing) == []
    assert all((PACKAGE.parent / name).is_file() for name in ALLOWED)


def test_the_check_sees_every_way_of_printing(tmp_path):
    copy = tmp_path / "cnnrun"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    planted = {
        "explain/filters.py": "    print('drawn')",
        "teach/kernels.py": "    from cnnrun.report import console\n    console.print('x')",
        "tasks/inspect.py": "    self.error_console.log('x')",
        "tasks/evaluate.py": "    import sys\n    sys.stderr.write('x')",
        "data/samples.py": "    from cnnrun import report\n    report.results_table('t', [])",
        "devices/backend.py": "    show_warnings(['x'])",
    }
    for name, body in planted.items():
        path = copy / name
        path.write_text(path.read_text() + f"\n\ndef _planted(self):\n{body}\n")
    found = printing_modules(copy)
    for name in planted:
        assert found.get(f"cnnrun/{name}") == [len((copy / name).read_text().splitlines())], name


def test_teaching_commands_return_their_lines_and_print_nothing(tmp_path, capsys):
    from cnnrun.teach.channels import image_info
    from cnnrun.teach.kernels import kernel_demo

    pixels = np.zeros((6, 8), np.uint8)
    pixels[:, 4:] = 200
    Image.fromarray(pixels).save(tmp_path / "edge.png")
    lesson = kernel_demo(tmp_path / "edge.png", kernels=["vertical"], out=tmp_path / "k.png")
    info = image_info(tmp_path / "edge.png", out=tmp_path / "c.png")
    assert capsys.readouterr() == ("", "")
    # (n + 2p − f)/s + 1 by hand: rows (6 − 3)/1 + 1 = 4, columns (8 − 3)/1 + 1 = 6
    assert "  vertical: rows (6 + 2·0 − 3)/1 + 1 = 4, columns (8 + 2·0 − 3)/1 + 1 = 6 -> (4, 6)" in lesson.lines
    assert lesson.files == (tmp_path / "k.png",) and lesson.figure.is_file()
    assert info.lines[1:3] == ("Shape: (6, 8) (height, width)", "dtype: uint8, values from 0 to 200")
    assert info.figure == tmp_path / "c.png"


def test_the_cli_renders_a_lesson_with_its_figure_line(tmp_path):
    Image.fromarray(np.full((5, 5), 9, np.uint8)).save(tmp_path / "flat.png")
    result = run_here("image-info", tmp_path / "flat.png", "--out", tmp_path / "f.png")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"Image: {tmp_path / 'flat.png'}", "Shape: (5, 5) (height, width)",
                                          "dtype: uint8, values from 9 to 9", "Channels: 1 (gray); alpha: no",
                                          "  gray: min 9, max 9, mean 9.0", f"Figure: {tmp_path / 'f.png'}"]


def test_inspect_returns_the_layers_and_counts_and_prints_nothing(write_config, capsys):
    from cnnrun.config import load_experiment
    from cnnrun.tasks.inspect import inspect_experiment

    inspection = inspect_experiment(load_experiment(write_config(tiny_config())))
    assert capsys.readouterr() == ("", "")
    # 16×16×1 shapes, 3 classes: Conv2D (3·3·1 + 1)·4 = 40, pooling to 8×8×4 = 256, Dense (256 + 1)·3 = 771
    assert [(row.kind, row.output_shape, row.params) for row in inspection.layers] == [
        ("Conv2D", "(None, 16, 16, 4)", 40), ("MaxPooling2D", "(None, 8, 8, 4)", 0),
        ("Flatten", "(None, 256)", 0), ("Dense", "(None, 3)", 771)]
    assert (inspection.total, inspection.trainable, inspection.non_trainable) == (811, 811, 0)
    assert inspection.layers[0].params_formula == "(3·3·1 + 1)·4 = 40"
    assert not inspection.graph and inspection.init_from is None and inspection.drawn is None


def test_inspect_counts_batch_normalization_moving_statistics_as_non_trainable(write_config):
    from cnnrun.config import load_experiment
    from cnnrun.tasks.inspect import inspect_experiment

    layers = [{"Conv2D": {"filters": 4, "kernel_size": 3, "padding": "same"}}, {"BatchNormalization": {}},
              {"Flatten": {}}, {"Dense": {"units": "${num_classes}", "activation": "softmax"}}]
    inspection = inspect_experiment(load_experiment(write_config(tiny_config(model={"layers": layers}))))
    # Conv2D 40 + BatchNormalization 4 γ + 4 β + Dense (16·16·4 + 1)·3 = 3,075 trained; 4 means + 4 variances not
    assert (inspection.total, inspection.trainable, inspection.non_trainable) == (3131, 3123, 8)


def test_explain_lists_unreadable_pictures_as_one_error(tmp_path):
    from cnnrun.explain.pictures import ExplainedPicture, Explanation

    picture = ExplainedPicture(tmp_path / "a.png", "circle", 0.9, "circle", None, tmp_path / "a_gradcam.png")
    done = Explanation("Grad-CAM at conv, best.keras", tmp_path, (picture,), (), ((Path("b.txt"), "not an image"),))
    assert str(done.problem()) == f"b.txt: not a readable picture (not an image); the other 1 explained into {tmp_path}"
    assert Explanation("x", tmp_path, (), (), ()).problem() is None


def test_a_placed_error_reaches_the_terminal_as_where_what_fix():
    result = run_here("conv-shape", "--input", "2x2x1", "--kernel", "3")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("error: --kernel/--stride/--filters: a 3-wide window does not fit in an input of size 2 "
                             "with padding 'valid'; use a smaller kernel or padding 'same'\n")


def test_the_error_line_is_the_error_with_its_place_in_bold():
    from cnnrun.cli.render import error_text

    for error in (UserError("whole message, as older call sites write it"),
                  UserError("got 0", where="--stride", fix="give 1 or more"),
                  UserError("no such file", where="a.png").at("--then conv:3x3x1"),
                  UserError("too big", fix="use a smaller kernel")):
        text = error_text(error)
        assert text.plain == f"error: {error}"
        bold = [text.plain[span.start:span.end] for span in text.spans if span.style == "bold"]
        assert bold == ([error.where] if error.where else [])


def test_the_explain_error_counts_the_pictures_explained_not_the_unreadable_ones(tmp_path):
    from cnnrun.explain.pictures import ExplainedPicture, Explanation

    pictures = tuple(ExplainedPicture(tmp_path / f"{n}.png", "circle", 0.9, "circle", None, tmp_path / f"{n}_g.png")
                     for n in "ab")
    done = Explanation("saliency, best.keras", tmp_path, pictures, (), ((Path("c.txt"), "empty"),))
    assert str(done.problem()) == f"c.txt: not a readable picture (empty); the other 2 explained into {tmp_path}"


def test_the_file_names_spell_gradcam_plus_plus_as_gradcampp():
    from cnnrun.explain.pictures import file_name

    assert [file_name(m) for m in ("gradcam", "gradcam++", "saliency")] == ["gradcam", "gradcampp", "saliency"]
