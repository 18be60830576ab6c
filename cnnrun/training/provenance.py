"""What a run records about how and where it ran (`meta.json`): command, seed, versions, devices, times.

Example:
>>> meta = new_meta(experiment, placement)
>>> meta["versions"]["keras"], meta["started"]
('3.15.1', '2026-11-27T14:05:09+00:00')
"""

import platform
import subprocess
import sys
from datetime import datetime
from typing import Any

from cnnrun import __version__
from cnnrun.config import Experiment
from cnnrun.devices.distribute import Placement


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def new_meta(experiment: Experiment, placement: Placement) -> dict[str, Any]:
    """What a new run's `meta.json` holds: command line, seed, git commit, package versions, devices, times."""
    import keras
    import numpy as np
    import tensorflow as tf

    versions = {"cnnrun": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__, "numpy": np.__version__}
    if placement.backend == "jax":
        import jax

        versions["jax"] = jax.__version__
    return {"command": sys.argv, "seed": experiment.seed, "git_commit": _git_commit(), "versions": versions,
            "devices": placement.devices, "distribution": placement.to_dict(), "platform": platform.platform(),
            "started": now(), "ended": None, "resumed": []}
