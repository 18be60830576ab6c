"""`cnnrun profile`: FLOP formulas against hand counts and TensorFlow's own profiler, the step and layer timings
on a tiny experiment, the machine's description, and bad input."""

import json
import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnnrun.config import validate_experiment
from cnnrun.devices.machine import cpu_features, matmul_ceiling
from cnnrun.model.flops import layer_flops, model_flops
from cnnrun.tasks.profile import profile_experiment
from tests.conftest import run_here, tiny_config


def small_network():
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same", name="conv"),
                             keras.layers.MaxPooling2D(2, name="pool"), keras.layers.Flatten(name="flat"),
                             keras.layers.Dense(3, name="dense")])


def test_the_flops_of_a_small_network_are_the_hand_count():
    # conv 3×3, 'same', 8×8×3 → 8×8×4: each of the 8·8·4 = 256 outputs takes 3·3·3 = 27 multiply-adds (54 FLOPs)
    #   and a bias addition: 256·54 + 256 = 13,824 + 256 = 14,080
    # max pool 2×2: 4·4·4 = 64 outputs, each 2·2 = 4 comparisons: 256
    # flatten: not counted, 0
    # dense 64 → 3: 2·64·3 = 384 multiply-add FLOPs + 3 biases = 387
    rows = model_flops(small_network())
    assert [(r.name, r.kind, r.flops, r.counted) for r in rows] == [
        ("conv", "Conv2D", 14_080, True), ("pool", "MaxPooling2D", 256, True), ("flat", "Flatten", 0, False),
        ("dense", "Dense", 387, True)]
    assert sum(r.flops for r in rows) == 14_723


def test_depthwise_and_separable_convolutions_are_counted_by_hand():
    inputs = keras.Input((6, 6, 3))
    depthwise = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)
    separable = keras.layers.SeparableConv2D(5, 3)
    batch_norm = keras.layers.BatchNormalization()
    keras.Model(inputs, [depthwise(inputs), batch_norm(separable(inputs))])
    # depthwise 3×3 valid, 6×6×3 → 4×4×6: 96 outputs of 9 multiply-adds (18 FLOPs) + a bias each: 1,728 + 96
    assert layer_flops(depthwise) == 1_824
    # separable: depthwise 4·4·3 = 48 outputs × 18 = 864 (no bias); pointwise 4·4·5 = 80 outputs of 3
    # multiply-adds: 480; bias 80 → 1,424
    assert layer_flops(separable) == 1_424
    # batch normalization, folded to y = a·x + b: 2 per element of 4·4·5
    assert layer_flops(batch_norm) == 160


def test_grouped_transposed_and_multiplied_convolutions_are_counted_by_hand():
    grouped = keras.layers.Conv2D(4, 3, groups=2)
    keras.Sequential([keras.Input((6, 6, 4)), grouped])
    # 3×3 valid, 6×6×4 → 4×4×4 in 2 groups: each of the 64 outputs sees 3·3·(4/2) = 18 inputs (36 FLOPs): 2,304 + 64
    assert layer_flops(grouped) == 2_368
    separable = keras.layers.SeparableConv2D(5, 3, depth_multiplier=2)
    keras.Sequential([keras.Input((6, 6, 3)), separable])
    # depthwise 4·4·(3·2) = 96 outputs × 18 = 1,728; pointwise 4·4·5 = 80 outputs of 3·2 = 6 multiply-adds: 960;
    # bias 80 → 2,768
    assert layer_flops(separable) == 2_768
    transposed = keras.layers.Conv2DTranspose(2, 3, strides=2)
    keras.Sequential([keras.Input((4, 4, 3)), transposed])
    # each of the 4·4 input positions spreads 3·3·3·2 = 54 multiply-adds: 2·54·16 = 1,728; output (4−1)·2 + 3 = 9:
    # bias 9·9·2 = 162 → 1,890
    assert layer_flops(transposed) == 1_890


def test_a_dense_layer_on_a_sequence_counts_every_position_and_its_bias():
    dense = keras.layers.Dense(3)
    keras.Sequential([keras.Input((4, 5)), dense])
    # 4 positions of 5 → 3: 2·5·3·4 = 120 multiply-add FLOPs, + 3 biases at each of the 4 positions: 12
    assert layer_flops(dense) == 132


def test_patch_whitening_counts_as_its_convolution():
    from cnnrun.model.whitening import PatchWhitening

    whitening = PatchWhitening(patch_size=3)
    keras.Sequential([keras.Input((6, 6, 3)), whitening])
    # 3×3 valid, 6×6×3 → 4×4×(2·9·3 = 54): 864 outputs of 9·3 = 27 multiply-adds (54 FLOPs): 46,656, + 864 biases
    assert layer_flops(whitening) == 47_520


def tensorflow_profiler_flops(model, shape) -> dict[str, int]:
    """The FLOPs TensorFlow's own profiler counts for each convolution op of the model's inference graph, by the
    Keras layer that made it (the op's scope `…/<layer>_1/convolution` or `…/depthwise`)."""
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, *shape), tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    found: dict[str, int] = {}

    def walk(node):
        parts = node.name.split("/")
        if node.float_ops and parts[-1] in ("convolution", "depthwise"):
            found[parts[-2].removesuffix("_1")] = node.float_ops
        for child in node.children:
            walk(child)

    walk(tf.compat.v1.profiler.profile(graph, cmd="scope", options=options))
    return found


def convolution_flops(model) -> dict[str, int]:
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(convolution_flops(layer))
        elif isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            found[layer.name] = layer_flops(layer)
    return found


def test_a_nested_mobilenet_is_counted_as_tensorflows_profiler_counts_it():
    backbone = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, include_top=False)
    model = keras.Sequential([keras.Input((32, 32, 3)), backbone, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10)])
    ours = convolution_flops(model)
    assert len(ours) == 52  # 35 convolutions and 17 depthwise ones, none with a bias (BatchNorm follows)
    assert ours == tensorflow_profiler_flops(model, (32, 32, 3))  # layer by layer, exactly
    # the backbone is one row: the sum of its layers, its convolutions and the rest
    rows = model_flops(model)
    assert rows[0].name == backbone.name and rows[0].flops == sum(layer_flops(x) for x in backbone.layers)
    assert rows[0].flops > sum(ours.values())
    expanded = model_flops(model, expand=True)
    assert sum(r.flops for r in expanded) == sum(r.flops for r in rows)
    assert f"{backbone.name}/block_1_depthwise" in [r.name for r in expanded]


def test_the_cpu_is_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse4_2 avx avx2 fma amx_tile "
                       "avx512f\n\nprocessor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    cpu = cpu_features(cpuinfo)
    assert cpu.model == "Test CPU 9000"
    assert cpu.flags == ("sse4_2", "avx", "fma", "avx2", "avx512f", "amx_tile")  # in SPEED_FLAGS' order
    assert not cpu.native_bf16
    assert cpu_features(tmp_path / "absent").model == "unknown"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # bfloat16: the ceiling under mixed_bfloat16
def test_the_matmul_probe_measures_a_positive_ceiling(dtype):
    probe = matmul_ceiling(dtype, size=128, repeats=2)
    assert probe.dtype == dtype and probe.size == 128
    assert probe.gflops == pytest.approx(2 * 128**3 / probe.seconds / 1e9)
    assert probe.gflops > 0


def test_a_profile_of_a_tiny_experiment():
    experiment = validate_experiment(tiny_config(), "tiny.yaml")
    profile = profile_experiment(experiment, steps=2, warmup=1, layer_repeats=2)
    assert len(profile.steps.total) == 2 and all(t > 0 for t in profile.steps.total)
    assert all(0 <= w <= t for w, t in zip(profile.steps.waiting, profile.steps.total, strict=True))
    assert 0 <= profile.steps.input_share < 1
    assert [r.kind for r in profile.layers] == ["Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    assert all(r.seconds is not None and r.seconds > 0 for r in profile.layers)
    assert sum(r.share for r in profile.layers) == pytest.approx(1.0)
    # shapes of 16×16×1, 3 classes: conv 2·9·4·256 + 1,024 = 19,456; pool 4·(8·8·4) = 1,024; dense
    # 2·256·3 + 3 = 1,539
    assert [r.flops for r in profile.layers] == [19_456, 1_024, 0, 1_539]
    assert profile.flops_per_picture == 22_019
    assert profile.step_gflops > 0 and profile.ceiling.gflops > 0
    assert profile.uncounted == ("flatten",)
    dense = profile.layers[3]
    assert dense.gflops == pytest.approx(3 * 1_539 * 16 / dense.seconds / 1e9)


def test_cnnrun_profile_prints_the_rows(write_config, tmp_path):
    result = run_here("profile", write_config(tiny_config()), "--steps", "2", "--warmup", "1",
                      "--trace", tmp_path / "trace")
    assert result.returncode == 0, result.stderr
    for row in ("conv2d", "max_pooling2d", "flatten", "dense", "all layers", "waiting for input", "ceiling",
                "instruction sets", "not counted"):
        assert row in result.stdout
    assert "19.5 kFLOP" in result.stdout  # the convolution's 19,456
    assert "no trace written: tensorboard-plugin-profile is not installed" in result.stdout  # not in the venv


@pytest.fixture
def no_op_determinism():
    """TensorFlow's op determinism off for the test (Keras keeps XLA off under it; a deterministic run earlier in
    this process turned it on for good), then as it was."""
    from tensorflow.python.framework import config

    was = config.is_op_determinism_enabled()
    config.disable_op_determinism()
    yield
    if was:
        config.enable_op_determinism()


def test_compare_jit_times_the_other_way_says_which_is_faster_and_auto_follows_it(write_config, no_op_determinism,
                                                                                 tmp_path, monkeypatch):
    import dataclasses

    from cnnrun.tasks.profile import StepTimes

    monkeypatch.setenv("CNNRUN_CACHE_DIR", str(tmp_path / "cache"))
    assert profile_experiment(validate_experiment(tiny_config(), "tiny.yaml"), steps=1, warmup=0,
                              layer_repeats=1).jit_compile is False  # nothing measured: Keras' auto, no XLA on a CPU
    result = run_here("profile", write_config(tiny_config()), "--steps", "2", "--warmup", "1", "--compare-jit")
    assert result.returncode == 0, result.stderr
    row = re.search(r"with XLA ([\d.]+) (m?s), without ([\d.]+) (m?s) \(medians\): with(out)? XLA, ([\d.]+)× "
                    r"faster: set compile.jit_compile: (true|false).*\n.*recorded +│ for jit_compile: auto on this CPU "
                    r"\(this step\), in (\S+) ", result.stdout)
    assert row, result.stdout
    assert (row[5] is None) == (row[7] == "true")  # the setting named is the way that was faster
    assert row[8] == str(tmp_path / "cache" / "jit.json")
    (machine, steps), = json.loads((tmp_path / "cache" / "jit.json").read_text()).items()
    cpu = cpu_features()
    assert machine == f"{cpu.model}; {cpu.cores} cores; {' '.join(cpu.flags)}"
    (entry,) = steps.values()
    assert entry["jit_compile"] == (row[7] == "true") and entry["config"] == "tiny"
    for printed, unit, seconds in ((row[1], row[2], entry["with_xla"]), (row[3], row[4], entry["without"])):
        assert float(printed) == float(f"{seconds * (1e3 if unit == 'ms' else 1):.3g}")
    # measured once, `jit_compile: auto` follows the record on this CPU: the profile's model steps that way first
    profile = profile_experiment(validate_experiment(tiny_config(), "tiny.yaml"), steps=2, warmup=1, layer_repeats=1,
                                 compare_jit=True)
    assert profile.jit_compile is entry["jit_compile"] and len(profile.other_jit.total) == 2
    # and `train` follows it too, the way the record says (set here by hand, both ways), with a header row; not
    # where the config says true or false, nor for another step (a layer with 5 filters instead of 4)
    from cnnrun.training.header import header_rows
    from cnnrun.training.trainer import Trainer

    records = tmp_path / "cache" / "jit.json"
    for forced in (True, False):
        (machine, steps), = json.loads(records.read_text()).items()
        (key,) = steps
        steps[key] |= {"jit_compile": forced, "with_xla": 0.25 if forced else 1.0, "without": 0.5}
        records.write_text(json.dumps({machine: steps}))
        for config, jit, row in ((tiny_config(), forced, f"{'on' if forced else 'off'}: 2.00× faster with"
                                  f"{'' if forced else 'out'} XLA here (cnnrun profile --compare-jit, "),
                                 (tiny_config(compile={"optimizer": "adam", "jit_compile": False}), False, None),
                                 (tiny_config(model={"layers": [{"Conv2D": {"filters": 5, "kernel_size": 3}},
                                                                {"Flatten": {}}, {"Dense": {"units": 3}}]}), False,
                                  None)):
            config["output"]["dir"] = str(tmp_path / "runs")
            with Trainer.new(validate_experiment(config, "tiny.yaml")) as trainer:
                assert trainer.model.jit_compile is jit
                rows = dict(header_rows(trainer).rows)
            assert (rows["XLA"].startswith(row) if row else "XLA" not in rows), rows.get("XLA")
    from cnnrun.tasks.profile import other_jit_steps

    model, seen = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), []
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)

    def batches():  # notes the model's setting as each step asks for its batch
        while True:
            seen.append((model.jit_compile, model.train_function is None))
            yield np.ones((4, 3), "float32"), np.ones((4, 2), "float32")

    other_jit_steps(model, batches(), warmup=1, steps=2)
    assert seen == [(True, True), (True, False), (True, False)]  # compiled again, with XLA, for all three steps
    assert model.jit_compile is False and model.train_function is None  # left as it came, compiled again next time
    # the verdict from the two medians, by hand, whichever way this CPU's record made the profile step first
    for first in (False, True):
        other = "with XLA" if not first else "without XLA"
        timed = dataclasses.replace(profile, jit_compile=first, steps=StepTimes((2.0,), (0.0,)),
                                    other_jit=StepTimes((0.5,), (0.0,)))  # 2 s the first way, 0.5 s the other
        assert timed.jit_verdict() == f"{other}, 4.00× faster: set compile.jit_compile: {str(not first).lower()}"
        timed = dataclasses.replace(timed, steps=StepTimes((1.0,), (0.0,)), other_jit=StepTimes((3.0,), (0.0,)))
        first_way = "without XLA" if not first else "with XLA"
        assert timed.jit_verdict() == f"{first_way}, 3.00× faster: set compile.jit_compile: {str(first).lower()}"


def test_compare_jit_where_keras_will_not_use_xla_is_one_line(write_config):
    deterministic = tiny_config(train={"epochs": 1, "batch_size": 16, "deterministic": True})
    result = run_here("profile", write_config(deterministic), "--steps", "1", "--warmup", "0", "--compare-jit")
    assert result.returncode == 2
    assert "--compare-jit: Keras will not compile this model with XLA" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, line", [
    (["--steps", "0"], "error: --steps: must be at least 1, got 0; time 1 step or more"),
    (["--warmup", "-1"], "error: --warmup: must be 0 or more, got -1"),
    (["--set", "train.epoch=3"], "train.epoch"),
])
def test_bad_input_is_one_line(write_config, args, line):
    result = run_here("profile", write_config(tiny_config()), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and line in lines[0] and lines[0].startswith("error:")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_the_timed_steps_leave_out_an_epochs_partial_batch():
    from cnnrun.tasks.profile import _batches

    stream = tf.data.Dataset.range(10).batch(4).map(lambda x: (x, x))  # batches of 4, 4, then 2
    batches = _batches(stream, 4)
    got = [next(batches)[0].numpy().tolist() for _ in range(3)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]  # [8, 9] skipped, then the next pass


@pytest.mark.parametrize("jit", [False, True])
def test_a_layer_timed_alone_runs_its_whole_forward_and_backward_pass(jit):
    """What a layer's time measures, against the hand-derived pass of a Dense layer y = x·W + b with the output
    gradient r: dx = r·Wᵀ, dW = xᵀ·r, db = Σ r; and GELU's input gradient is there (nothing pruned away)."""
    import numpy as np

    from cnnrun.model.layer_timing import _random_batch, _tensorflow_pass

    inputs = keras.Input((5,))
    dense, gelu = keras.layers.Dense(3), keras.layers.Activation("gelu")
    keras.Model(inputs, gelu(dense(inputs)))
    x, (r,) = _random_batch(dense, 4)
    (y,), (dx, dw, db) = _tensorflow_pass(dense, x, [r], True, jit)()
    w, b, x, r = dense.kernel.numpy(), dense.bias.numpy(), x.numpy(), r.numpy()
    np.testing.assert_allclose(y.numpy(), x @ w + b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx.numpy(), r @ w.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dw.numpy(), x.T @ r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db.numpy(), r.sum(axis=0), rtol=1e-5, atol=1e-6)
    z, (s,) = _random_batch(gelu, 4)
    (_,), (dz,) = _tensorflow_pass(gelu, z, [s], True, jit)()
    # exact GELU, z·Φ(z): its derivative Φ(z) + z·φ(z)
    z = z.numpy().astype(np.float64)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    pdf = np.exp(-z**2 / 2) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(dz.numpy(), s.numpy() * (cdf + z * pdf), rtol=1e-4, atol=1e-5)


def test_the_thread_settings_name_the_backend_and_the_variables_set(monkeypatch):
    from cnnrun.devices.machine import thread_settings

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("KMP_BLOCKTIME", raising=False)
    threads = thread_settings()
    assert threads.backend == "tensorflow"
    assert threads.intra_op == tf.config.threading.get_intra_op_parallelism_threads()
    assert threads.inter_op == tf.config.threading.get_inter_op_parallelism_threads()
    assert threads.environment["OMP_NUM_THREADS"] == "2" and "KMP_BLOCKTIME" not in threads.environment


def test_twin_layers_are_timed_once_and_share_the_time(monkeypatch):
    """Two convolutions of the same settings on the same input shape run the same work: one is timed, the other
    gets its time; a convolution with another filter count, or the same one on the data itself (no gradient to
    its input), is timed on its own."""
    from cnnrun.model import layer_timing

    inputs = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)  # from the data: no gradient to its input
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
    c = keras.layers.Conv2D(4, 3, padding="same", name="c")(b)  # b's twin
    d = keras.layers.Conv2D(5, 3, padding="same", name="d")(c)
    model = keras.Model(inputs, d)
    timed, time_layer = [], layer_timing.time_layer
    monkeypatch.setattr(layer_timing, "time_layer", lambda layer, *args: (timed.append(layer.name),
                                                                          time_layer(layer, *args))[1])
    rows = layer_timing.time_layers(model, batch=2, repeats=1)
    assert timed == ["a", "b", "d"]
    assert [r.name for r in rows] == ["a", "b", "c", "d"]
    assert rows[2].seconds == rows[1].seconds > 0


def test_the_compute_median_leaves_out_each_steps_wait_for_input():
    from cnnrun.tasks.profile import StepTimes

    steps = StepTimes((1.0, 2.0, 4.0), (0.5, 0.5, 3.5))
    assert steps.median == 2.0 and steps.spread == (1.0, 4.0)
    assert steps.compute_median == 0.5  # the median of 1 − 0.5, 2 − 0.5, 4 − 3.5 = 0.5, 1.5, 0.5
    assert steps.input_share == 4.5 / 7.0  # (0.5 + 0.5 + 3.5) / (1 + 2 + 4)


def test_the_jit_records_live_in_the_cache_folder_under_cnnrun(tmp_path, monkeypatch):
    from cnnrun.devices.jit_record import record_file

    monkeypatch.delenv("CNNRUN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert record_file() == tmp_path / "xdg" / "cnnrun" / "jit.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert record_file() == tmp_path / "home" / ".cache" / "cnnrun" / "jit.json"
    monkeypatch.setenv("CNNRUN_CACHE_DIR", str(tmp_path / "cache"))
    assert record_file() == tmp_path / "cache" / "jit.json"


def test_a_jit_record_says_how_many_times_faster_the_faster_way_was():
    from cnnrun.devices.jit_record import JitRecord

    assert JitRecord(True, 0.25, 0.5, "2026-12-03", "tiny").describe() == \
        "on: 2.00× faster with XLA here (cnnrun profile --compare-jit, 2026-12-03)"  # 0.5 / 0.25
    assert JitRecord(False, 0.6, 0.4, "2026-12-03", "tiny").ratio == 0.6 / 0.4  # without XLA: 1.5× faster


def test_flops_and_times_are_printed_in_the_unit_that_suits_them_from_its_first_whole_unit():
    from cnnrun.cli.render_profile import _flops, _ms

    assert [_flops(n) for n in (999, 1_000, 19_456, 3_520_000, 1e9)] == [
        "999 FLOP", "1 kFLOP", "19.5 kFLOP", "3.52 MFLOP", "1 GFLOP"]
    # 0.0123 s × 1e3 = 12.3 ms; one whole second is printed in seconds
    assert [_ms(s) for s in (0.0123, 0.999, 1.0, 4.81)] == ["12.3 ms", "999 ms", "1 s", "4.81 s"]
    # just under a unit, rounding to 3 figures reaches it: the next unit, not "1e+03" of this one
    assert [_flops(n) for n in (999.7, 999_700, 999_700_000)] == ["1 kFLOP", "1 MFLOP", "1 GFLOP"]
    assert _ms(0.9996) == "1 s"
