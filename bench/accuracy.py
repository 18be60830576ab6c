"""Train a course experiment with `cnnrun train` on real data and print its test accuracy and training time.

Usage (from any folder):
    .venv/bin/python bench/accuracy.py configs/fashion_mnist.yaml --set dataset.data_dir=../shared/data/fashion-mnist

Extra arguments go to `cnnrun train` unchanged. Prints one line of figures, read from the run folder that
the training wrote (scores.json, state.json), so the numbers are the ones a user would see. The run folder is
made in a temporary folder and removed, unless `--output-dir DIR` is given: then it is kept there.

Tiny mode (what tests/test_bench.py runs): a small `shapes` config of two epochs, with `--output-dir`.
"""

import json
import sys
import tempfile
from pathlib import Path

from machine import cnnrun, cpu_line


def output_dir(args: list[str]) -> str | None:
    """The `--output-dir DIR` (or `--output-dir=DIR`) among `cnnrun train`'s arguments, the last if several."""
    found = None
    for i, arg in enumerate(args):
        if arg == "--output-dir" and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--output-dir="):
            found = arg.partition("=")[2]
    return found


def train(args: list[str], output: str, kept: bool) -> int:
    """Run `cnnrun train ARGS` into `output` and print the figures of the run folder it made (and its path if kept)."""
    before = set(Path(output).glob("*/*/"))
    wall = cnnrun("train", *args, *([] if kept else ["--output-dir", output]), cwd=Path.cwd())  # kept: in args
    made = set(Path(output).glob("*/*/")) - before
    if len(made) != 1:
        raise SystemExit(f"cnnrun train made {len(made)} run folders; this bench reads one (no --seeds)")
    (run,) = made
    scores = json.loads((run / "scores.json").read_text())
    state = json.loads((run / "state.json").read_text())
    best, last = scores.get("best", {}), scores.get("last", {})
    print(cpu_line())
    print(
        f"RESULT config={args[0]} epochs={state['epochs_completed']} "
        f"test_accuracy_best={best.get('accuracy', float('nan')):.4f} "
        f"test_accuracy_last={last.get('accuracy', float('nan')):.4f} "
        f"fit_seconds={state.get('fit_seconds', float('nan')):.1f} wall_seconds={wall:.1f}"
        + (f" run={run.resolve()}" if kept else "")
    )
    return 0


def main(args: list[str]) -> int:
    if not args or args[0].startswith("-"):
        print(__doc__)
        return 2
    kept = output_dir(args)
    if kept is not None:
        Path(kept).mkdir(parents=True, exist_ok=True)
        return train(args, kept, True)
    with tempfile.TemporaryDirectory() as output:
        return train(args, output, False)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
