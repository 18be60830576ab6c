"""`cnnrun profile`: where a training step's time goes on this machine."""

from pathlib import Path
from typing import Annotated

import typer

from cnnrun.cli.common import ConfigArg, SetOption, app, quiet_imports
from cnnrun.errors import UserError


@app.command()
def profile(
    config: ConfigArg,
    set_: SetOption = None,
    steps: Annotated[int, typer.Option("--steps", help="Training steps timed (at least 1).")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", help="Training steps run first and not timed (the first "
                                        "compiles the step).")] = 2,
    trace: Annotated[Path | None, typer.Option("--trace", help="Also write a profiler trace of a few more steps "
                                               "into this folder (needs tensorboard-plugin-profile).",
                                               show_default=False)] = None,
    compare_jit: Annotated[bool, typer.Option("--compare-jit", help="Also time the steps with compile.jit_compile "
                                              "the other way (XLA on or off) and say which is faster here.")] = False,
) -> None:
    """Time CONFIG's training step: its wait for input, each layer's share and FLOPs, and the machine's ceiling.

    The model and the data are made as `train` makes them; no run folder is written. A sweep file: the experiment
    every trial starts from.

    Example: cnnrun profile configs/cifar10_fast.yaml --steps 5 --compare-jit
    """
    if steps < 1:
        raise UserError(f"must be at least 1, got {steps}", where="--steps", fix="time 1 step or more")
    if warmup < 0:
        raise UserError(f"must be 0 or more, got {warmup}", where="--warmup")
    from cnnrun.config.sweep import load_experiment_or_sweep
    from cnnrun.devices.backend import prepare

    experiment, sweep = load_experiment_or_sweep(config, set_)
    prepare(experiment)
    quiet_imports()
    from cnnrun.cli.render_profile import show_profile
    from cnnrun.tasks.profile import profile_experiment

    show_profile(profile_experiment(experiment, steps, warmup, trace, compare_jit=compare_jit))
    if sweep is not None:
        from cnnrun.cli.render import say

        say(sweep.describe())
