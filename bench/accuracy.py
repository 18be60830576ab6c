"""Train a course experiment with `cnnrun train` on real data and print its test accuracy and training time.

Usage (from the project root):
    .venv/bin/python bench/accuracy.py configs/fashion_mnist.yaml --set dataset.data_dir=../shared/data/fashion-mnist

Extra arguments go to `cnnrun train` unchanged. Prints one line of figures, read from the run folder that
the training wrote (scores.json, state.json), so the numbers are the ones a user would see.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(args: list[str]) -> int:
    if not args:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as output:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "cnnrun", "train", *args, "--output-dir", output])
        wall = time.perf_counter() - started
        if result.returncode != 0:
            return result.returncode
        run = next(Path(output).glob("*/*/"))
        scores = json.loads((run / "scores.json").read_text())
        state = json.loads((run / "state.json").read_text())
    best, last = scores.get("best", {}), scores.get("last", {})
    print(
        f"RESULT config={args[0]} epochs={state['epochs_completed']} "
        f"test_accuracy_best={best.get('accuracy', float('nan')):.4f} "
        f"test_accuracy_last={last.get('accuracy', float('nan')):.4f} "
        f"fit_seconds={state.get('fit_seconds', float('nan')):.1f} wall_seconds={wall:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
