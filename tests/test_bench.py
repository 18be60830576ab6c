"""Every bench/ script (the README's figures) in its tiny mode, run as a user runs it, its output checked by hand.

Each runs on tiny data in tmp_path (a `shapes` config, random JPEGs in CIFAR-10's tree, Fashion-MNIST's idx files);
its rows must be there and every number that can be worked out independently (a parameter count, a split's size,
an accuracy from a saved model or a CSV, a ratio of printed figures) must be that number. bench/gpu.sh only chains
the others: every command it runs must exist and take its flags and config overrides.
"""

import contextlib
import csv
import gzip
import importlib.util
import io
import json
import math
import os
import re
import runpy
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.browser import CHROMIUM
from tests.conftest import PROJECT, history, only_run, run_here, tiny_config
from tests.files import CIFAR10, fashion_files, jpeg_tree

BENCH = PROJECT / "bench"
IN_PROCESS = "CNNRUN_BENCH_IN_PROCESS"  # bench/machine.py's `cnnrun(...)` runs here
# tiny_config's network on 16×16 grey pictures of 3 classes: Conv2D 3×3×1×4 + 4, then Dense (8·8·4)·3 + 3
TINY_PARAMS = (3 * 3 * 1 * 4 + 4) + (8 * 8 * 4 * 3 + 3)
TINY_TEST = 40  # tiny_config's test pictures
# instead of cifar10_bn.yaml's 27 layers, which take seconds to trace and save: the benches' code is the same
SMALL_NETWORK = ["--set", "model.layers=[{Conv2D: {filters: 4, kernel_size: 3}}, {MaxPooling2D: {pool_size: 4}}, "
                          "{Flatten: {}}, {Dense: {units: '${num_classes}', activation: softmax}}]"]


def cpu_by_hand() -> str:
    """The line bench/machine.py should print, read from /proc/cpuinfo here with regular expressions."""
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE).group(1).strip()
    cores = len(re.findall(r"^processor\s*:", text, re.MULTILINE))
    flags = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE).group(1).split()
    notable = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8") if f in flags]
    return (f"CPU: {model}, {cores} logical cores ({len(os.sched_getaffinity(0))} usable), "
            f"flags: {' '.join(notable) or 'none of note'}")


def bench(script: str, *args, cwd: Path, code: int = 0, process: bool = False) -> str:
    """Run `python bench/SCRIPT ARGS` in `cwd` with this tree's cnnrun; check its exit code and CPU line.

    The script runs as `__main__` in this process, with CNNRUN_BENCH_IN_PROCESS=1 so that the cnnrun commands it
    starts through `machine.cnnrun` run here too (bench/machine.py): the same code, without TensorFlow's 5–7 s start
    in each new process. `process=True` runs it as its own process, as a user does.
    """
    if process:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])),
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        result = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=600)
        returncode, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:
        returncode, stdout, stderr = in_this_process(BENCH / script, [str(a) for a in args], cwd)
    assert returncode == code, f"{script}: exit {returncode}\n{stdout[-4000:]}\n{stderr[-4000:]}"
    if code == 0:
        assert cpu_by_hand() in stdout.splitlines(), stdout[:2000]
    return stdout + stderr if code else stdout


def in_this_process(script: Path, args: list[str], cwd: Path) -> tuple[int, str, str]:
    """`python SCRIPT ARGS` from `cwd` as `__main__` in this process: its exit code, stdout and stderr."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved = sys.argv, list(sys.path), os.environ.get(IN_PROCESS)
    sys.argv, os.environ[IN_PROCESS] = [str(script), *args], "1"
    sys.path.insert(0, str(script.parent))
    try:
        with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stop:
        if isinstance(stop.code, str):
            err.write(stop.code + "\n")
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        sys.argv, sys.path[:] = saved[0], saved[1]
        if saved[2] is None:
            os.environ.pop(IN_PROCESS)
        else:
            os.environ[IN_PROCESS] = saved[2]
    return code, out.getvalue(), err.getvalue()


def results(out: str) -> list[dict[str, str]]:
    """The `RESULT key=value …` lines, as dicts."""
    return [dict(token.split("=", 1) for token in line.split()[1:] if "=" in token)
            for line in out.splitlines() if line.startswith("RESULT ")]


def rounded_ratio(numerator: float, denominator: float, digits: int) -> tuple[float, float]:
    """The range of `a / b` for the a and b that print as `numerator` and `denominator` with `digits` decimals."""
    half = 0.5 * 10 ** -digits
    return (numerator - half) / (denominator + half), (numerator + half) / (denominator - half)


def shapes_config(folder: Path) -> Path:
    """tiny_config (two epochs of 16×16 shapes), plots off, written to `folder`."""
    (path := folder / "tiny.yaml").write_text(yaml.safe_dump(tiny_config(output={"plots": False}), sort_keys=False))
    return path


def load_bench(name: str, monkeypatch):
    """A bench script as a module (bench/ on the path, as when it runs), to reach its parser."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    spec.loader.exec_module(module := importlib.util.module_from_spec(spec))
    return module


TESTED = {"machine", "backends", "cli", "accuracy", "runs_listing", "step_speed", "time_to_accuracy", "pipeline",
          "memory", "overhead", "throughput", "distribution", "transfer", "report", "report_screenshots", "imbalance",
          "multilabel", "regression", "airbench_reference", "airbench94_cpu"}


def test_every_bench_script_has_a_tiny_mode_tested_here_and_machine_names_the_cpu(tmp_path):
    assert {p.stem for p in BENCH.glob("*.py")} == TESTED
    for path in BENCH.glob("*.py"):
        helper = path.stem in ("machine", "airbench94_cpu")  # modules the scripts import
        assert helper or "Tiny mode (what tests/test_bench.py runs)" in path.read_text(), path.name
    assert bench("machine.py", cwd=tmp_path, process=True).splitlines() == [cpu_by_hand()]


def test_mistakes_stop_a_bench_before_it_trains(tmp_path):
    assert "Usage" in bench("accuracy.py", cwd=tmp_path, code=2)
    assert "--ablate flips: give a name, then overrides KEY=VALUE" in bench(
        "time_to_accuracy.py", "tiny.yaml", "--ablate", "flips", cwd=tmp_path, code=2)
    assert "--judge-every 0: give a whole number of epochs, 1 or more" in bench(
        "time_to_accuracy.py", "tiny.yaml", "--judge-every", "0", cwd=tmp_path, code=2)
    assert "at least 2" in bench("distribution.py", "--epochs", "1", cwd=tmp_path, code=2)
    tree = jpeg_tree(tmp_path / "tree", train=4, test=1)  # memory.py: a smaller folder than it names
    out = bench("memory.py", "--data", tree, "--sizes", "20", "50", "--test-size", "10", cwd=tmp_path, code=1)
    assert "holds 4 pictures; 5 are needed" in out
    out = bench("memory.py", "--data", tree, "--sizes", "25", "40", "--test-size", "10", cwd=tmp_path, code=1)
    assert "train: 25 pictures do not share evenly among 10 classes" in out


def test_machine_runs_cnnrun_as_a_new_process_from_the_folder_given_and_here_where_told(tmp_path, monkeypatch,
                                                                                         capfd):
    machine = load_bench("machine", monkeypatch)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(tiny_config(), sort_keys=False))
    monkeypatch.delenv(IN_PROCESS, raising=False)
    monkeypatch.setattr(sys, "argv", ["pytest"])  # were it run here, Typer would show "pytest" for cnnrun
    assert machine.cnnrun("config", "show", "a.yaml", cwd=tmp_path) > 0  # a.yaml: found from cwd
    out = capfd.readouterr().out  # the child writes to the file descriptor it inherits, not to sys.stdout
    assert out.startswith("$ -m cnnrun config show a.yaml\n") and "name: tiny" in out
    with pytest.raises(SystemExit) as stop:
        machine.cnnrun("config", "show", "missing.yaml", cwd=tmp_path)
    assert stop.value.code == 2 and "missing.yaml" in capfd.readouterr().err
    monkeypatch.setenv(IN_PROCESS, "1")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))  # a new process could not start
    assert machine.cnnrun("config", "show", "a.yaml", cwd=tmp_path) > 0
    assert "name: tiny" in capfd.readouterr().out
    with pytest.raises(SystemExit) as stop:
        machine.cnnrun("config", "show", "missing.yaml", cwd=tmp_path)
    assert stop.value.code == 2 and sys.argv == ["pytest"] and Path.cwd() != tmp_path


def test_cli(tmp_path):
    out = bench("cli.py", "--repeat", "1", cwd=tmp_path)
    timed = {m[1]: (float(m[2]), float(m[3]), float(m[4]))
             for m in re.finditer(r"^(.+): median ([\d.]+) s \(min ([\d.]+), max ([\d.]+)\)$", out, re.MULTILINE)}
    assert list(timed) == ["python -c pass", "cnnrun --help", "cnnrun config show configs/cifar10_bn.yaml",
                           "cnnrun train (config error)"]
    for median, low, high in timed.values():
        assert median == low == high > 0  # one run each
    (result,) = results(out)
    assert (float(result["help_s"]), float(result["python_pass_s"]), float(result["slowest_s"])) == (
        timed["cnnrun --help"][0], timed["python -c pass"][0], max(median for median, _, _ in timed.values()))
    assert result["under_half_second"] == str(float(result["slowest_s"]) < 0.5)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """bench/accuracy.py on a two-epoch shapes config, its run folder kept: its output and the run folder."""
    folder = tmp_path_factory.mktemp("accuracy")
    out = bench("accuracy.py", shapes_config(folder), "--output-dir", "runs", cwd=folder)
    return out, only_run(folder / "runs")


@pytest.mark.slow
def test_accuracy_prints_what_keras_measures_on_the_saved_models(tiny_run):
    out, run = tiny_run
    (result,) = results(out)
    assert Path(result["run"]) == run.resolve()
    assert int(result["epochs"]) == len(history(run)) == 2
    assert float(result["fit_seconds"]) > 0 and float(result["wall_seconds"]) >= float(result["fit_seconds"])
    import keras

    from cnnrun.config import load_saved_experiment
    from cnnrun.data import load_splits

    splits = load_splits(load_saved_experiment(run / "config.yaml"), augment=False)
    labels = splits.examples["test"].labels
    assert len(labels) == TINY_TEST
    for which in ("best", "last"):
        model = keras.saving.load_model(run / "checkpoints" / f"{which}.keras")
        accuracy = np.mean(model.predict(splits.test, verbose=0).argmax(-1) == labels)
        assert result[f"test_accuracy_{which}"] == f"{accuracy:.4f}"


@pytest.mark.slow
def test_runs_listing_lists_every_copy(tiny_run, tmp_path):
    out = bench("runs_listing.py", tiny_run[1], "--count", "100", "--repeat", "1", cwd=tmp_path)
    timed, (result,) = dict(re.findall(r"^(.+): median ([\d.]+) s", out, re.MULTILINE)), results(out)
    assert len(timed) == 5 and "python -c pass" in timed
    # 100 copies, every 100th with a damaged state.json: all listed, one of them damaged
    assert (result["folders"], result["rows_listed"], result["damaged_listed"]) == ("100", "100", "1")
    assert result["table_s"] == timed["cnnrun runs DIR (table)"]
    assert result["under_2_s"] == str(float(result["table_s"]) < 2)


@pytest.mark.slow
def test_report_trains_a_run_and_times_its_page_and_three_copies_page(tmp_path):
    (config := tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_config(), sort_keys=False))  # plots on
    out = bench("report.py", "--config", config, "--repeat", "1", "--output-dir", "kept", cwd=tmp_path)
    kept = tmp_path / "kept"
    run = only_run(kept / "runs")
    assert len(history(run)) == 2  # it trained the config given
    copies = sorted(path.name for path in (kept / "three").glob("*/*"))
    assert copies == [f"{run.name}-copy{i}" for i in (1, 2, 3)]
    (result,) = results(out)
    assert result["repeat"] == "1"
    for page, kind, runs in (("run", "run", 1), ("runs", "runs", 3)):
        size = (kept / f"{page}.html").stat().st_size
        line = re.search(rf"^{page} (.+): {kind} page of {runs} run\(s\), ([\d.]+) MB \(([\d,]+) bytes\); "
                         r"write_report median ([\d.]+) s \(min ([\d.]+), max ([\d.]+)\); cnnrun report \(a new "
                         r"process\) median ([\d.]+) s \(min ([\d.]+), max ([\d.]+)\)$", out, re.MULTILINE)
        assert Path(line[1]) == (run if page == "run" else kept / "three").resolve()
        assert (line[2], line[3].replace(",", "")) == (f"{size / 1e6:.2f}", str(size))
        assert (result[f"{page}_mb"], result[f"{page}_bytes"]) == (line[2], str(size))
        assert line[4] == line[5] == line[6] == result[f"{page}_s"] and float(line[4]) > 0  # one write each
        assert line[7] == line[8] == line[9] == result[f"{page}_command_s"] and float(line[7]) > 0
    # the pages are the report's of this run: its test accuracy as scores.json holds it, three rows of runs
    best = json.loads((run / "scores.json").read_text())["best"]["accuracy"]
    assert f'data-value="{best!r}" data-score="best.accuracy"' in (kept / "run.html").read_text()
    assert "<title>3 cnnrun runs</title>" in (kept / "runs.html").read_text()


@pytest.mark.slow
@pytest.mark.browser
def test_report_screenshots_are_whole_pages_1200_pixels_wide(tiny_run, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: `make install` as root installs Debian's chromium package")
    from PIL import Image

    run = tiny_run[1]
    out = bench("report_screenshots.py", run, "--runs", run.parent.parent, "--out", "pictures", cwd=tmp_path,
                process=True)  # its own process: Playwright's sync API, beside tests/browser.py's in this one
    for name in ("report_run", "report_runs"):
        with Image.open(tmp_path / "pictures" / f"{name}.png") as picture:
            assert picture.format == "PNG"
            size = picture.size
        printed = re.search(rf"^pictures/{name}\.png: (\d+) × (\d+) pixels$", out, re.MULTILINE)
        assert size == (1200, int(printed[2])) and printed[1] == "1200"  # the README's width: nothing wider
        assert size[1] > 900  # the whole page, taller than the window (1200 × 900)
    assert "give RUN_DIR and --runs FOLDER together" in bench("report_screenshots.py", run, cwd=tmp_path, code=2)


@pytest.mark.slow
def test_step_speed(tmp_path, monkeypatch, capsys):
    out = bench("step_speed.py", shapes_config(tmp_path), "--steps", "2", "--warmup", "1", cwd=tmp_path)
    (result,) = results(out)
    assert (result["batch"], result["params"], result["steps"]) == ("16", str(TINY_PARAMS), "2")
    low, high = rounded_ratio(16, float(result["seconds_per_step"]), 4)
    assert low - 0.5 <= int(result["images_per_second"]) <= high + 0.5
    # the state built ahead as `cnnrun train` builds it: one trace; left to Keras: two (in this process, as the
    # script's main; the same script, a second TensorFlow start saved)
    assert (result["state"], result["traces"]) == ("ahead", "1") and float(result["first_step_seconds"]) > 0
    step_speed = load_bench("step_speed", monkeypatch)
    assert step_speed.main([str(tmp_path / "tiny.yaml"), "--steps", "1", "--warmup", "1", "--deferred-state"]) == 0
    (result,) = results(capsys.readouterr().out)
    assert (result["state"], result["traces"], result["steps"]) == ("deferred", "2", "1")


@pytest.mark.slow
def test_backends_times_the_configs_model_on_each_backend_and_skips_one_not_installed(tmp_path):
    # this environment has TensorFlow and JAX, not PyTorch: its line says so and the others are measured
    out = bench("backends.py", shapes_config(tmp_path), "--steps", "2", "--warmup", "1", cwd=tmp_path)
    assert (f"tiny.yaml: {TINY_PARAMS:,} parameters, batch 16 of 16×16×1, 2 steps timed after 2, XLA off on "
            f"TensorFlow") in out
    assert re.search(r"^torch: skipped: not installed for .+ \(No module named 'torch'\)$", out, re.MULTILINE), out
    shown = {r["backend"]: r for r in results(out)}
    assert list(shown) == ["tensorflow", "jax"]
    for backend, result in shown.items():
        line = re.search(rf"^{backend} [\d.]+ \(Keras [\d.]+\): ([\d.]+) images/s, ([\d.]+) ms a step, first step "
                         rf"([\d.]+) s$", out, re.MULTILINE)
        assert line.groups() == (result["images_per_s"], result["step_ms"], result["first_step_s"])
        low, high = rounded_ratio(16 * 1000, float(result["step_ms"]), 1)  # 16 pictures a step
        assert low - 0.05 <= float(result["images_per_s"]) <= high + 0.05
    low, high = rounded_ratio(float(shown["jax"]["images_per_s"]), float(shown["tensorflow"]["images_per_s"]), 1)
    ratio = float(re.search(r"^against TensorFlow: tensorflow 1\.00×, jax ([\d.]+)×$", out, re.MULTILINE)[1])
    assert low - 0.005 <= ratio <= high + 0.005
    for wrong, said in ((["--backends", "tensorflow,theano"], "--backends: unknown theano"),
                        (["--python", "torch"], "--python torch: give BACKEND=PATH")):
        assert said in bench("backends.py", "tiny.yaml", *wrong, cwd=tmp_path, code=2)


# early stopping that ends the 2nd epoch whatever the losses: no change of the training loss counts as an improvement
STOP_AFTER_2 = "callbacks.early_stopping={monitor: loss, min_delta: 1.0e+9, patience: 1}"


@pytest.mark.slow
def test_time_to_accuracy(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("config,seed,epoch,minutes,test_accuracy,test_accuracy_tta\n"
                     "other.yaml,1,1,0.500,0.2000,0.2500\nother.yaml,1,2,1.000,0.4000,0.4500\n")
    out = bench("time_to_accuracy.py", shapes_config(tmp_path), "--seeds", "2", "--targets", "0.3,0.99",
                "--out", "curve.png", "--with", other, "--set", "callbacks.lookahead=true", "--set", "train.epochs=3",
                "--judge-every", "2", "--ablate", "lookahead", "callbacks.lookahead=false", STOP_AFTER_2, cwd=tmp_path)
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = list(csv.DictReader((tmp_path / "curve.csv").open()))
    assert [(r["ablated"], r["seed"], r["epoch"]) for r in table] == [
        (variant, seed, epoch) for variant, epochs in (("", "23"), ("lookahead", "2")) for seed in "34"
        for epoch in epochs]  # every 2nd epoch and the last: the 3rd, or the 2nd (once) where early stopping ended it
    assert f"seed 3, without lookahead (callbacks.lookahead=false {STOP_AFTER_2})" in out
    # the ablation table: per variant the final epochs' mean ± std over the two seeds, and the change with TTA
    finals = {variant: [(float(r["test_accuracy"]), float(r["test_accuracy_tta"])) for r in table
                        if r["ablated"] == variant and r["epoch"] == {"": "3", "lookahead": "2"}[variant]]
              for variant in ("", "lookahead")}
    shown = {}
    for variant, name in (("", r"nothing \(as configured\)"), ("lookahead", "lookahead")):
        row = re.search(rf"^{name} +2  ([\d.]+) ± ([\d.]+)  ([\d.]+) ± ([\d.]+) +(\S+) +[\d.]+$", out, re.MULTILINE)
        assert row, out[-3000:]
        plain, tta = ([value[column] for value in finals[variant]] for column in (0, 1))
        assert row.groups()[:4] == (f"{statistics.fmean(plain):.4f}", f"{statistics.stdev(plain):.4f}",
                                    f"{statistics.fmean(tta):.4f}", f"{statistics.stdev(tta):.4f}")
        shown[variant] = row[5], statistics.fmean(tta)
    change = shown["lookahead"][1] - shown[""][1]
    assert shown[""][0] == "—" and shown["lookahead"][0] == f"{change:+.4f}"
    assert results(out)[-1] == {"ablated": "lookahead", "seeds": "2", "change_tta": f"{change:+.4f}",
                                "final_tta": f"{statistics.fmean(v[1] for v in finals['lookahead']):.4f}±"
                                             f"{statistics.stdev(v[1] for v in finals['lookahead']):.4f}"}
    rows = [(int(r["seed"]), int(r["epoch"]), float(r["minutes"]), float(r["test_accuracy"]),
             float(r["test_accuracy_tta"])) for r in table if not r["ablated"]]
    assert [(seed, epoch) for seed, epoch, *_ in rows] == [(3, 2), (3, 3), (4, 2), (4, 3)]  # seed 3 (the config's), 4
    for *_, plain, tta in rows:  # a share of the 40 test pictures
        assert round(plain * TINY_TEST, 6) % 1 == 0 and round(tta * TINY_TEST, 6) % 1 == 0
    printed = re.findall(r"epoch (\d): +([\d.]+) min, test accuracy ([\d.]+), with flip\+translate ([\d.]+)", out)
    assert [(int(e), f"{p:.4f}", f"{t:.4f}") for _, e, _, p, t in rows] == [(int(e), p, t) for e, _, p, t in
                                                                           printed[:4]]  # then the variant's
    # the last epoch's accuracy, judged by the bench's callback, is what cnnrun's own scoring gives last.keras
    last_keras = re.findall(r"test, last\.keras\s*│\s*accuracy ([\d.]+)", out)
    assert last_keras[:2] == [f"{plain:.4f}" for seed, epoch, _, plain, _ in rows if epoch == 3]
    for seed, target in ((3, 0.3), (3, 0.99), (4, 0.3), (4, 0.99)):  # the first epoch at each target
        said = re.search(rf"^seed {seed}: {target:.0%} (.+); with TTA (.+)$", out, re.MULTILINE).groups()
        firsts = [next((f"(epoch {r[1]})" for r in rows if r[0] == seed and r[column] >= target), "not reached")
                  for column in (3, 4)]
        assert [text.rpartition(" min ")[2] for text in said] == firsts
    for result, (key, column) in zip(results(out)[:2], (("final_plain", 3), ("final_tta", 4)), strict=True):
        finals = [r[column] for r in rows if r[1] == 3]
        assert result[key] == f"{statistics.fmean(finals):.4f}±{statistics.stdev(finals):.4f}"
        assert abs(float(result["minutes"]) - statistics.fmean(r[2] for r in rows if r[1] == 3)) <= 0.0505


@pytest.mark.slow
def test_pipeline(tmp_path):
    tree = jpeg_tree(tmp_path / "tree", train=8, test=2)
    installed = importlib.util.find_spec("tf_keras") is not None
    out = bench("pipeline.py", "--data", tree, "--set", "dataset.holdout_first=20", "--set", "train.batch_size=16",
                cwd=tmp_path, code=0 if installed else 1)
    # 80 training pictures, the first 20 held out for validation: one epoch is 60 pictures
    ours = re.search(r"^cnnrun: (\d+) images, check\+load ([\d.]+) s, first epoch ([\d.]+) s = (\d+) images/s "
                     r"\(cache memory: next epoch (\d+) images/s\), peak RSS (\d+) MB$", out, re.MULTILINE)
    assert ours and ours[1] == "60" and int(ours[4]) > 0 and int(ours[5]) > 0
    assert 200 < int(ours[6]) < 8000  # TensorFlow alone holds a few hundred MB
    if not installed:
        assert "course: tf_keras is not installed: pip install tf-keras==2.21.*" in out
    else:
        course = re.search(r"^course: (\d+) images", out, re.MULTILINE)
        assert int(course[1]) >= 60 and "RESULT first_epoch_with_setup" in out


@pytest.mark.slow
def test_memory(tmp_path):
    tree = jpeg_tree(tmp_path / "tree", train=4, test=1)
    out = bench("memory.py", "--data", tree, "--sizes", "20", "40", "--test-size", "10", "--cache", "none",
                "--set", "output.plots=false", "--set", "callbacks.tensorboard=false", *SMALL_NETWORK, cwd=tmp_path)
    assert "tree of 20: 20 training and 10 test pictures linked" in out
    assert "tree of 40: 40 training and 10 test pictures linked" in out
    peaks = {}
    for size in (20, 40):  # validation_split 0.1 of the linked pictures
        line = re.search(rf"^cache=none images={size}: peak RSS (\d+) MB, \d+ s \(trained on (\d+), validation "
                         rf"(\d+), test (\d+)\)$", out, re.MULTILINE)
        assert line.groups()[1:] == (str(size - size // 10), str(size // 10), "10")
        peaks[size] = int(line[1])
        assert 200 < peaks[size] < 8000
    (result,) = results(out)
    assert (result["peak_mb_20"], result["peak_mb_40"]) == (str(peaks[20]), str(peaks[40]))
    low, high = rounded_ratio(peaks[40], peaks[20], 0)
    assert low - 0.005 <= float(result["ratio"]) <= high + 0.005


@pytest.mark.slow
def test_overhead(tmp_path):
    data = fashion_files(tmp_path / "fashion", train=300, test=50)
    out = bench("overhead.py", "--data", data, "--epochs", "1", "--repeat", "1", cwd=tmp_path)
    runs = {m[1]: (float(m[2]), float(m[3]), float(m[4])) for m in re.finditer(
        r"^(plain|cnnrun): fit ([\d.]+) s, process ([\d.]+) s, val_accuracy ([\d.]+)$", out, re.MULTILINE)}
    (result,) = results(out)
    assert set(runs) == {"plain", "cnnrun"}
    for name, (fit, process, val_accuracy) in runs.items():
        assert 0 < fit < process and (result[f"{name}_fit_s"], result[f"{name}_process_s"]) == (f"{fit}", f"{process}")
        assert round(val_accuracy * 90, 2) % 1 == 0  # a share of the last 30 % of 300 pictures
    for key, column in (("fit", 0), ("process", 1)):
        low, high = rounded_ratio(runs["cnnrun"][column], runs["plain"][column], 1)
        assert low <= float(result[f"{key}_ratio"]) <= high


@pytest.mark.slow
def test_throughput(tmp_path):
    from PIL import Image

    tree = jpeg_tree(tmp_path / "tree", train=8, test=2)
    arrays = tmp_path / "arrays.npz"
    written = bench("throughput.py", "--write-arrays", "--cifar10", tree, "--arrays", arrays, cwd=tmp_path)
    assert written.strip().splitlines()[-1] == f"arrays: {arrays}" and arrays.is_file()  # and nothing measured
    out = bench("throughput.py", "--configs", "cifar10_bn_arrays", "--settings", "bf16", "course", "--steps", "2",
                "--cifar10", tree, "--arrays", arrays, "--set", "dataset.holdout_first=20", "--set",
                "train.batch_size=8", *SMALL_NETWORK, cwd=tmp_path)
    with np.load(arrays) as f:  # the tree decoded once: every picture with its class, in the loader's order
        x_train, y_train, x_test = f["x_train"], f["y_train"], f["x_test"]
    assert x_train.shape == (80, 32, 32, 3) and x_test.shape == (20, 32, 32, 3)
    files = sorted(tree.glob("train/*/*.jpg"))
    pictures = np.stack([np.asarray(Image.open(p)) for p in files]).reshape(80, 1, -1).astype(np.float32)
    # each array is one picture of the tree as Pillow decodes it (TensorFlow's decoder differs by a few levels;
    # two different noise pictures by about 85)
    distance = np.abs(x_train.reshape(1, 80, -1) - pictures).mean(-1)  # [picture, array]
    match = distance.argmin(0)
    assert sorted(match) == list(range(80)) and distance.min(0).max() < 5
    assert y_train.tolist() == [CIFAR10.index(files[i].parent.name) for i in match]
    installed = importlib.util.find_spec("tf_keras") is not None
    assert [r["setting"] for r in results(out)] == ["bf16", "course"][:1 + installed]
    assert installed or "cifar10_bn_arrays course: skipped: tf_keras is not installed" in out
    result = results(out)[0]  # on a CPU mixed precision is bfloat16
    assert (result["config"], result["policy"], result["batch"], result["steps"]) == (
        "cifar10_bn_arrays", "mixed_bfloat16", "8", "2")
    low, high = rounded_ratio(2 * 8, float(result["seconds"]), 4)
    assert low - 0.5 <= int(result["images_per_s"]) <= high + 0.5


def test_distribution_setups_are_valid_configs(monkeypatch):
    from cnnrun.config import load_experiment

    distribution = load_bench("distribution", monkeypatch)
    for sets, processes, replicas in distribution.SETUPS.values():
        experiment = load_experiment(distribution.PROJECT / "configs" / "quickstart.yaml",
                                     distribution.overrides(2, 64) + sets)
        assert (experiment.dataset.num_samples, experiment.train.epochs, experiment.train.batch_size) == (64, 2, 32)
        assert replicas == max(processes, len(experiment.train.devices or [])) > 0


@pytest.mark.slow
def test_distribution(tmp_path):
    out = bench("distribution.py", "--epochs", "2", "--samples", "64", "--setups", "2", cwd=tmp_path)
    assert "quick start, 64 training images, global batch 32, 2 epochs" in out
    rows = re.findall(r"^\| (.+) \| (\d) \| (\d+) \| (\d+) \| ([\d,]+) \| ([\d.]+) \|$", out, re.MULTILINE)
    assert [(name, replicas) for name, replicas, *_ in rows] == [
        ("tensorflow, MirroredStrategy, 2 logical CPU devices", "2")]
    for _, _, first, step_ms, images, fit in rows:
        low, high = rounded_ratio(32_000, int(step_ms), 0)  # images/s: the global batch over the step time
        assert low - 0.5 <= int(images.replace(",", "")) <= high + 0.5
        assert float(fit) > 0 and int(first) >= 0


# the ImageNet rows' network in tiny mode: MobileNet at its narrowest (fewer layers than MobileNetV2's, so quicker
# to trace and save), random weights, on the 32×32 pictures
TINY_BACKBONE = ("model.layers=[{Resizing: {height: 32, width: 32}}, {backbone: {name: MobileNet, alpha: 0.25, "
                 "weights: null, preprocessing: torch, pooling: avg, trainable: false}}, {Dropout: 0.2}, "
                 "{Dense: {units: '${num_classes}', activation: softmax}}]")


@pytest.mark.slow
def test_transfer(tmp_path):
    """The rows in tiny mode: the 8-class pretraining, scratch and 8-class runs on a small network, and the ImageNet
    config's first phase alone on a tiny backbone with and without cached features (the same head). The `imagenet`
    row (the whole ImageNet config, its cached phase then fine-tuning) is left out for the suite's time: its runs
    are `cnnrun train` of that config, as the speed rows', and test_cached_features trains such a run."""
    tree = jpeg_tree(tmp_path / "tree", train=6, test=2)
    phases = "[{epochs: 1, trainable: none, learning_rate: 0.001}, {epochs: 1, trainable: all, learning_rate: 0.001}]"
    imagenet_phases = ("[{epochs: 1, trainable: none, learning_rate: 0.01, cache_features: true}, "
                       "{epochs: 1, trainable: {from: conv_pw_13}, learning_rate: 0.001}]")
    out = bench("transfer.py", "--data-dir", tree, "--output-dir", "runs", "--seeds", "1", "--speed-epochs", "2",
                "--rows", "scratch,8class,speed",
                "--set", "dataset.holdout_first=4", "--set", "dataset.samples_per_class=3",
                "--set", "train.batch_size=4", "--set", "callbacks.tensorboard=false", "--set", "output.plots=false",
                "--set", "output.report=false", "--pretrain-set", "train.epochs=1",
                "--pets-set", f"train.phases={phases}", "--pets-set", "train.epochs=2",
                "--pets-set", SMALL_NETWORK[1], "--pretrain-set", SMALL_NETWORK[1],
                "--imagenet-set", TINY_BACKBONE, "--imagenet-set", f"train.phases={imagenet_phases}", cwd=tmp_path)
    runs = {name: list((tmp_path / "runs" / name).iterdir()) for name in (
        "cifar10_8class", "pets_scratch", "pets_transfer", "speed_cached", "speed_uncached")}
    assert all(len(found) == 1 for found in runs.values()), runs
    assert not (tmp_path / "runs" / "pets_imagenet").exists()  # not asked for
    pretrained, scratch, transfer, cached, uncached = (found[0] for found in runs.values())
    # the from-scratch run trains as many epochs as the overridden phases add up to: 1 + 1; the speed runs 2
    assert [len(history(run)) for (run,) in runs.values()] == [1, 2, 2, 2, 2]
    assert yaml.safe_load((scratch / "config.yaml").read_text())["train"]["phases"] is None
    assert yaml.safe_load((transfer / "config.yaml").read_text())["model"]["init_from"] == f"{pretrained}:best"
    best = {}
    for label, run in (("8 classes (pretraining)", pretrained), ("cat vs dog, from scratch", scratch),
                       ("cat vs dog, from the 8 classes", transfer)):
        scores = json.loads((run / "scores.json").read_text())
        row = re.search(rf"^{re.escape(label)} +1 +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)$", out, re.MULTILINE)
        assert row.groups()[:2] == (f"{scores['best']['accuracy']:.4f}", f"{scores['last']['accuracy']:.4f}")
        best[label] = scores["best"]["accuracy"]
    for accuracy in list(best.values())[1:]:  # a share of the 4 cat and dog test pictures
        assert math.isclose(accuracy * 4, round(accuracy * 4), abs_tol=1e-6)
    transfer_result, speed_result = results(out)
    gain = best["cat vs dog, from the 8 classes"] - best["cat vs dog, from scratch"]
    assert (transfer_result["epochs"], transfer_result["seeds"], transfer_result["transfer_gain_best"]) == (
        "2", "1", f"{gain:.4f}")
    # the speed runs: the config's first phase alone, 2 epochs, cached or not; the same head, so the same scores
    for run, flag in ((cached, True), (uncached, False)):
        (phase,) = yaml.safe_load((run / "config.yaml").read_text())["train"]["phases"]
        assert (phase["epochs"], phase["trainable"], phase["cache_features"]) == (2, "none", flag)
    assert "cached_features" not in json.loads((uncached / "meta.json").read_text())
    (entry,) = json.loads((cached / "meta.json").read_text())["cached_features"]
    assert entry["pictures"] == 10  # the features of its 6 training and 4 validation pictures
    scores = [json.loads((run / "scores.json").read_text()) for run in (cached, uncached)]
    assert scores[0]["best"]["accuracy"] == scores[1]["best"]["accuracy"]
    assert scores[0]["last"]["accuracy"] == scores[1]["last"]["accuracy"]
    np.testing.assert_allclose(scores[0]["last"]["loss"], scores[1]["last"]["loss"], rtol=1e-4)
    # epoch by epoch (random weights give nearly the same features to every tiny picture, so the test scores alone
    # would hardly tell two heads apart; the losses of the training batches do)
    for epoch_cached, epoch_uncached in zip(history(cached), history(uncached), strict=True):
        assert epoch_cached.keys() == epoch_uncached.keys()
        np.testing.assert_allclose(list(epoch_cached.values()), list(epoch_uncached.values()), rtol=1e-5)
    assert speed_result["same_accuracy_seeds"] == "1" and speed_result["epochs"] == "2"
    figures = {}
    for label, run in (("phase 1, features cached", cached), ("phase 1, backbone every batch", uncached)):
        row = re.search(rf"^{re.escape(label)} +1 +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)$",
                        out, re.MULTILINE)
        state = json.loads((run / "state.json").read_text())
        best_, last, features, per_epoch, fit, wall = row.groups()
        assert (best_, last) == (f"{scores[0]['best']['accuracy']:.4f}", f"{scores[0]['last']['accuracy']:.4f}")
        seconds = entry["seconds"] if run == cached else 0
        assert (features, fit) == (f"{seconds:.1f}", f"{state['fit_seconds']:.1f}")
        assert per_epoch == f"{(state['fit_seconds'] - seconds) / 2:.2f}"
        figures[run == cached] = float(per_epoch), float(fit), float(wall)
    for index, key in enumerate(("epoch", "phase", "run")):  # the speed-ups are the printed figures' ratios
        low, high = rounded_ratio(figures[False][index], figures[True][index], 2 if index == 0 else 1)
        assert low - 0.05 <= float(speed_result[f"cache_speedup_{key}"]) <= high + 0.05, key


def test_gpu_sh_runs_scripts_that_take_its_flags_and_overrides(monkeypatch):
    assert subprocess.run(["bash", "-n", str(BENCH / "gpu.sh")]).returncode == 0
    text = (BENCH / "gpu.sh").read_text().replace("\\\n", " ")  # its commands as bash runs them, by default
    throughput, time_to_accuracy = load_bench("throughput", monkeypatch), load_bench("time_to_accuracy", monkeypatch)
    for name, value in (('"$STEPS"', "200"), ('"$NPZ"', str(throughput.ARRAYS)), ("$NPZ", str(throughput.ARRAYS)),
                        ('"$JPEG"', "../shared/data/cifar10-jpeg"), ("$OUTDIR", ".")):
        text = text.replace(name, value)
    commands = [(found[1], shlex.split(found[2])) for line in text.splitlines() if not line.lstrip().startswith("#")
                for found in re.finditer(r"\$PY (bench/\S+)([^|]*)", line)]
    assert sorted(script for script, _ in commands) == ["bench/accuracy.py"] * 2 + ["bench/machine.py"] + [
        "bench/throughput.py"] * 2 + ["bench/time_to_accuracy.py"] * 2
    assert all("$" not in arg for _, args in commands for arg in args), commands  # every variable stood in for
    from cnnrun.config import load_experiment

    checked = 0
    for script, args in commands:
        assert (PROJECT / script).is_file()
        if script == "bench/throughput.py":
            parsed = throughput.parse(args)
            assert parsed.arrays == throughput.ARRAYS
            if parsed.write_arrays:  # the npz the others read, before them
                assert parsed.cifar10 == (PROJECT / "../shared/data/cifar10-jpeg").resolve()
                continue
            for config in parsed.configs:
                path, sets = throughput.sources(parsed)[config]
                for setting in parsed.settings:
                    load_experiment(path, [*sets, *parsed.sets, *throughput.SETTINGS[setting]])
                    checked += 1
        elif script == "bench/time_to_accuracy.py":
            parsed = time_to_accuracy.parse(args)
            experiment = load_experiment(PROJECT / parsed.config, parsed.sets)
            assert (experiment.dataset.name, str(experiment.dataset.path)) == ("npz", str(throughput.ARRAYS))
            checked += 1
        elif script == "bench/accuracy.py":  # cnnrun train's arguments: a config and its overrides
            config, *rest = args
            assert rest[::2] == ["--set"] * (len(rest) // 2) and len(rest) % 2 == 0
            # the full runs read the npz that throughput.py writes
            assert f"dataset.path={throughput.ARRAYS}" in rest
            assert (shown := run_here("config", "show", config, *rest)).returncode == 0, shown.stderr
            checked += 1
    assert checked == 2 + 2 + 2
    assert re.search(r"^install:", (PROJECT / "Makefile").read_text(), re.MULTILINE)  # its set-up: make install,
    assert "gpu = [" in (PROJECT / "pyproject.toml").read_text()  # and the gpu extra


@pytest.mark.slow
def test_imbalance(tmp_path):
    """Tiny mode: a table of 3, 2 and 1 training pictures a class from a JPEG tree, one seed, one epoch, trained
    without and with balanced class weights, and with balanced sampling; the recalls from the stored predictions
    against scores.json's."""
    tree = jpeg_tree(tmp_path / "tree", train=4, test=3)
    out = bench("imbalance.py", "--data-dir", tree, "--output-dir", "out", "--counts", "airplane=3,ship=2,truck=1",
                "--seeds", "1", "--set", "train.epochs=1", cwd=tmp_path)
    with (tmp_path / "out" / "imbalanced.csv").open() as f:
        rows = list(csv.DictReader(f))
    counted = {(row["split"], row["label"]) for row in rows}
    assert len(rows) == 6 + 3 + 6 and len(counted) == 9  # train, one validation row a class, test as train
    assert "pictures per class: train airplane 3, ship 2, truck 1; validation airplane 1, ship 1, truck 1; " \
           "test airplane 3, ship 2, truck 1" in out
    (unweighted,), (weighted,), (sampled,) = (list((tmp_path / "out" / name).iterdir())
                                              for name in ("unweighted", "weighted", "sampled"))
    assert yaml.safe_load((weighted / "config.yaml").read_text())["train"]["class_weight"] == "balanced"
    assert yaml.safe_load((unweighted / "config.yaml").read_text())["train"]["class_weight"] is None
    assert yaml.safe_load((sampled / "config.yaml").read_text())["dataset"]["sampling"] == "balanced"
    for run, label in ((unweighted, "no class weights"), (weighted, "class_weight: balanced"),
                       (sampled, "sampling: balanced")):
        scores = json.loads((run / "scores.json").read_text())["best"]
        row = re.search(rf"^{re.escape(label)} +1 +([\d.]+) +([\d.]+) ", out, re.MULTILINE)
        assert row.groups() == (f"{scores['accuracy']:.4f}", f"{scores['balanced_accuracy']:.4f}"), out
    (result,) = results(out)
    assert result["seeds"] == "1" and "balanced_gain" in result and "sampled_gain" in result


@pytest.mark.slow
def test_multilabel(tmp_path):
    """Tiny mode: a table of 2 training, 1 validation and 1 test picture a class from a JPEG tree, each labelled
    with its class and animal or vehicle, one epoch; the printed rows and figures against evaluate's files."""
    tree = jpeg_tree(tmp_path / "tree", train=3, test=1)
    out = bench("multilabel.py", "--data-dir", tree, "--output-dir", "out", "--per-class", "2",
                "--validation-per-class", "1", "--test-per-class", "1", "--set", "train.epochs=1", cwd=tmp_path)
    with (tmp_path / "out" / "multilabel.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and "pictures: train 20, validation 10, test 10" in out
    vehicles = ("airplane", "automobile", "ship", "truck")
    assert {row["label"] for row in rows} == {f"{name};{'vehicle' if name in vehicles else 'animal'}"
                                             for name in CIFAR10}
    (run,) = (tmp_path / "out" / "multilabel").iterdir()
    info = json.loads((run / "dataset.json").read_text())
    expected = {**dict.fromkeys(CIFAR10, 1), "animal": 6, "vehicle": 4}  # test pictures having each label
    assert dict(zip(info["class_names"], info["class_counts"]["test"], strict=True)) == expected
    metrics = json.loads((run / "eval" / "best_test_metrics.json").read_text())
    with (run / "eval" / "best_test_per_label.csv").open() as f:
        labels = list(csv.DictReader(f))
    assert len(labels) == 12  # ten classes, animal, vehicle
    for label in labels:  # each printed row: its threshold, F1 and its share of the 10 test pictures
        row = re.search(rf"^{label['label']} +([\d.]+) +[\d.]+ +[\d.]+ +([\d.]+) +\S+ +([\d.]+) +(\d+)$", out,
                        re.MULTILINE)
        assert row.groups() == (f"{float(label['threshold']):.4f}", f"{float(label['f1']):.4f}",
                                f"{int(label['support']) / 10:.4f}", label["support"]), out
    (result,) = results(out)
    assert result["map"] == f"{metrics['mean_average_precision']:.4f}"
    assert result["macro_f1"] == f"{metrics['macro_f1']:.4f}"
    assert float(result["chance_map"]) == pytest.approx((10 * 0.1 + 0.6 + 0.4) / 12, abs=1e-4)


@pytest.mark.slow
def test_regression(tmp_path):
    """Tiny mode: 8 training, 4 validation and 4 test pictures of idx files rotated by seeded angles, one epoch; the
    pictures against the idx pixels turned here by their table angle, the printed figures against evaluate's file
    and the mean baseline worked out here from the table."""
    from PIL import Image

    data = fashion_files(tmp_path / "fashion", train=14, test=5)
    out = bench("regression.py", "--data-dir", data, "--output-dir", "out", "--train", "8", "--validation", "4",
                "--test", "4", "--set", "train.epochs=1", cwd=tmp_path)
    assert "pictures: train 8, validation 4, test 4" in out
    with (tmp_path / "out" / "regression.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["split"] for row in rows] == ["train"] * 8 + ["validation"] * 4 + ["test"] * 4
    angles = np.array([float(row["angle"]) for row in rows])
    assert np.all(np.abs(angles) <= 45) and len(set(angles)) == 16
    with gzip.open(data / "train-images-idx3-ubyte.gz") as f:
        first = np.frombuffer(f.read(), np.uint8, 784, 16).reshape(28, 28)
    turned = Image.fromarray(first).rotate(angles[0], resample=Image.Resampling.BILINEAR, fillcolor=0)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / rows[0]["path"])), np.asarray(turned))
    (run,) = (tmp_path / "out" / "regression").iterdir()
    metrics = json.loads((run / "eval" / "best_test_metrics.json").read_text())
    train, test = angles[:8], angles[12:]
    (result,) = results(out)
    assert result["mae"] == f"{metrics['mae']:.3f}" and result["r2"] == f"{metrics['r2']:.4f}"
    assert float(result["baseline_mae"]) == pytest.approx(np.abs(test - train.mean()).mean(), abs=1e-3)
    r2 = 1 - ((test - train.mean()) ** 2).sum() / ((test - test.mean()) ** 2).sum()
    assert float(result["baseline_r2"]) == pytest.approx(r2, abs=1e-4)


def test_airbench_reference_reads_the_tree_as_cifar10_and_runs_airbench_where_pytorch_is(tmp_path, monkeypatch):
    from PIL import Image

    tree = jpeg_tree(tmp_path / "cifar10", train=2, test=1)
    module = load_bench("airbench_reference", monkeypatch)
    images, labels = module.read_split(tree, "train", None)
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [k for k in range(10) for _ in range(2)]  # CIFAR-10's class numbers
    np.testing.assert_array_equal(images[5], np.asarray(Image.open(tree / "train" / "bird" / "0001.jpg")))
    assert module.read_split(tree, "train", 12)[1].tolist() == [*range(10), 0, 1]  # a class each in turn
    if importlib.util.find_spec("torch") is None:  # cnnrun does not depend on PyTorch
        said = bench("airbench_reference.py", "--data-dir", tree, cwd=tmp_path, code=2)
        assert said.strip() == "bench/airbench_reference.py needs PyTorch: run it with a Python that has torch"
        return
    out = bench("airbench_reference.py", "--data-dir", tree, "--epochs", "1", "--batch-size", "8", cwd=tmp_path)
    result = results(out)[0]
    assert result["steps"] == "2" and 0 <= float(result["val_acc"]) <= 1 and 0 <= float(result["tta_val_acc"]) <= 1
