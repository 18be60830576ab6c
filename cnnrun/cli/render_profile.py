"""What `cnnrun profile` measured, shown to a person: the step, the layers, the machine. Like `render`, the one
place its report object (`cnnrun.tasks.profile.Profile`) becomes text."""

from rich.markup import escape
from rich.table import Table

from cnnrun.model.flops import TRAIN_FACTOR
from cnnrun.report import console, results_table, show_warnings


def _flops(n: float) -> str:
    """FLOPs in the unit that suits them: 14.1 kFLOP, 3.52 MFLOP, 1.20 GFLOP. Rounded to 3 figures before the unit
    is chosen, so 999,700 is 1 MFLOP, not 1e+03 kFLOP."""
    n = float(f"{n:.3g}")
    for unit, size in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} FLOP"


def _ms(seconds: float) -> str:
    """12.3 ms below a second (3 figures, rounded first: 0.9996 s is 1 s), 4.81 s from it."""
    seconds = float(f"{seconds:.3g}")
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _jit_row(profile) -> str:
    """`with XLA 5.9 s, without 4.81 s (medians): without XLA, 1.23× faster: set compile.jit_compile: false`."""
    times = {profile.jit_compile: profile.steps.median, not profile.jit_compile: profile.other_jit.median}
    return f"with XLA {_ms(times[True])}, without {_ms(times[False])} (medians): {profile.jit_verdict()}"


def show_profile(profile) -> None:
    """`cnnrun profile`: the step's time and its wait for input, a row per layer, then the machine."""
    show_warnings(profile.warnings)
    steps = profile.steps
    fastest, slowest = steps.spread
    ceiling = profile.ceiling
    results_table(profile.title, [
        ("step", f"{_ms(steps.median)} median of {len(steps.total)} (fastest {_ms(fastest)}, slowest "
                 f"{_ms(slowest)}), after {profile.warmup} warm-up"),
        ("waiting for input", f"{steps.input_share:.1%} of the step's time"),
        ("FLOPs", f"{_flops(profile.flops_per_picture)} forward per picture; a training step ≈ {TRAIN_FACTOR}× "
                  f"forward: {_flops(TRAIN_FACTOR * profile.flops_per_picture * profile.batch_size)} a step"),
        ("achieved", f"{profile.step_gflops:.3g} GFLOP/s ({profile.step_gflops / ceiling.gflops:.1%} of the "
                     f"ceiling), step without its wait for input"),
        ("precision", f"{profile.policy}, jit_compile {str(profile.jit_compile).lower()}"),
        *([("XLA or not", _jit_row(profile))] if profile.other_jit is not None else []),
        *([("recorded", f"for jit_compile: auto on this CPU (this step), in {profile.recorded}")]
          if profile.recorded else []),
    ])
    table = Table(title=f"per layer: forward+backward on a batch of {profile.batch_size}, each layer timed alone",
                  title_justify="left")
    for column in ("layer", "type", "FLOPs/picture", "time", "share", "GFLOP/s"):
        table.add_column(column, justify="left" if column in ("layer", "type") else "right")
    for layer in profile.layers:
        table.add_row(escape(layer.name), layer.kind, _flops(layer.flops) if layer.counted else "[dim]not counted[/]",
                      _ms(layer.seconds) if layer.seconds is not None else "[yellow]not timed[/]",
                      f"{layer.share:.1%}" if layer.share is not None else "",
                      f"{layer.gflops:.3g}" if layer.gflops is not None else "")
    table.add_row("[bold]all layers[/]", "", _flops(profile.flops_per_picture), _ms(profile.layer_seconds), "100%",
                  "", end_section=True)
    console.print(table)
    console.print(f"The layers timed alone take {_ms(profile.layer_seconds)}; the whole step {_ms(steps.median)}. "
                  f"Not counted (0 FLOPs): {', '.join(profile.uncounted) or 'none'}.", markup=False,
                  highlight=False, soft_wrap=True)
    for layer in profile.layers:
        if layer.note:
            console.print(f"not timed: {layer.name}: {layer.note}", markup=False, highlight=False, soft_wrap=True)
    cpu, threads = profile.cpu, profile.threads
    pools = "" if threads.intra_op is None else \
        f", TensorFlow intra-op {threads.intra_op or 'auto'}, inter-op {threads.inter_op or 'auto'}"
    environment = ", ".join(f"{k}={v}" for k, v in threads.environment.items()) or "no thread variable set"
    results_table("machine", [
        ("ceiling", f"{ceiling.gflops:.3g} GFLOP/s: {ceiling.size}×{ceiling.size} matmul in {ceiling.dtype}, "
                    f"best of 3"),
        ("CPU", f"{escape(cpu.model)}, {cpu.cores} cores"),
        ("instruction sets", " ".join(cpu.flags) or "none of the fast ones"),
        ("threads", f"backend {threads.backend}{pools}; {escape(environment)}"),
    ])
    if profile.trace:
        console.print(profile.trace, markup=False, highlight=False, soft_wrap=True)
