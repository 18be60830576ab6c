"""The shape of the code: packages by stage, each importing only the ones below it, no circle, no giant module.

The tower, lowest first, is the README's architecture map; a module that imports a package above its own (at the
top of the file or inside a function) fails here, with the file and line.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cnnrun"

# lowest first; the base modules (errors, atomic, report, figures) stand below every package
TOWER = ["errors", "atomic", "report", "figures", "config", "devices", "data", "run_folder", "model", "training",
         "explain", "teach", "tasks", "cli", "__main__"]
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cnnrun"


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of cnnrun's own in the file, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cnnrun"):
            found += [(node.lineno, node.module)] if node.module != "cnnrun" else \
                [(node.lineno, f"cnnrun.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("cnnrun")]
    return found


def upward_imports() -> list[str]:
    wrong = []
    for module, path in sorted(modules().items()):
        here = stage(module)
        for line, target in imports(path):
            there = stage(target)
            if here in TOWER and there in TOWER and TOWER.index(there) > TOWER.index(here):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} imports {target}")
    return wrong


def test_every_module_belongs_to_a_stage_of_the_tower():
    stray = sorted(m for m in modules() if stage(m) not in TOWER and m != "cnnrun")
    assert not stray, f"modules outside the tower (add them to a package, or the tower to the README): {stray}"


def test_no_module_imports_a_package_above_its_own():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a copy of the package with one upward import is caught."""
    import shutil

    copy = tmp_path / "cnnrun"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    config = copy / "config" / "expressions.py"
    config.write_text(config.read_text() + "\n\ndef _up():\n    from cnnrun.training.trainer import Trainer\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    assert upward_imports() == [f"cnnrun/config/expressions.py:{len(config.read_text().splitlines())}: "
                                f"config imports cnnrun.training.trainer"]


def test_no_import_circle_between_modules():
    graph = {m: set() for m in modules()}
    for module, path in modules().items():
        for _, target in imports(path):
            while target and target not in graph:
                target = target.rpartition(".")[0]
            if target and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    done: set[str] = set()

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            if found := cycle_from(target, path + [node]):
                return found
        done.add(node)
        return None

    for module in sorted(graph):
        assert cycle_from(module, []) is None


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.parametrize("module", ["cnnrun.config", "cnnrun.run_folder.folder", "cnnrun.cli",
                                    "cnnrun.tasks.report.one_run", "cnnrun.tasks.report.many_runs"])
def test_light_modules_import_without_keras_or_tensorflow(module):
    """The config (errors at once), the run folder (`cnnrun runs` over many folders), the CLI (`--help`) and the
    report's pages (written from files in a second, never a model)."""
    code = f"import sys, {module}; print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent)
    assert result.stdout.strip() == "[]"
