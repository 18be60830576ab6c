#!/usr/bin/env bash
# The GPU benchmark: one prepared script that fits one 10-minute call of a lent GPU machine (run from the project root):
#
#     bash bench/gpu.sh [STEPS]         # the report goes to the terminal and to bench-gpu-<date>.txt in $OUT (or here)
#
# Python: $PY, else .venv/bin/python, else python3. The backend: TensorFlow where it sees the GPU (`make install`,
# then `pip install -e ".[gpu]"`); else Keras' JAX backend where JAX sees it (KERAS_BACKEND=jax: tf.data still feeds
# the GPU from the CPU, so tensorflow-cpu is enough: docs/performance.md, "On a GPU", says how a machine with JAX and
# no TensorFlow was set up). The data: CIFAR-10 as one npz ($CIFAR10_NPZ, default $TMPDIR/cnnrun-bench-cifar10.npz),
# which bench/throughput.py --write-arrays writes from $CIFAR10_JPEG (default ../shared/data/cifar10-jpeg) when it
# is missing.
#
# In order, each part stopped where the script's budget ($BUDGET seconds, default 540) runs out, and saying so:
#   1. the GPU, the CPU, the versions;
#   2. airbench94 (configs/cifar10_fast.yaml): time to accuracy, 3 seeds, mixed precision (bench/time_to_accuracy.py);
#   3. the same with every airbench piece cnnrun has (configs/cifar10_airbench.yaml);
#   4. training images/s of configs/cifar10_bn.yaml on the arrays, float32 and mixed precision (bench/throughput.py);
#   5. the course's configs/cifar10_bn.yaml to its 50 epochs, mixed precision (bench/accuracy.py);
#   6. ResNet-20's recipe (configs/cifar10_resnet20.yaml, 182 epochs) likewise, where time is left.
# It only chains the other bench scripts: tests/test_bench.py checks that every script it names exists and takes the
# flags and config overrides written here, and each script's tiny mode is tested on the CPU.
set -uo pipefail
STEPS=${1:-200}
BUDGET=${BUDGET:-540}
OUTDIR=${OUT:-.}
REPORT=$OUTDIR/bench-gpu-$(date +%Y%m%d-%H%M%S).txt
NPZ=${CIFAR10_NPZ:-${TMPDIR:-/tmp}/cnnrun-bench-cifar10.npz}
JPEG=${CIFAR10_JPEG:-../shared/data/cifar10-jpeg}
if [ -z "${PY:-}" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi; fi
left() {  # seconds for the next part: at most $1, at least 1, within the budget
  local rest=$((BUDGET - SECONDS))
  if [ "$rest" -lt "$1" ]; then echo $((rest > 1 ? rest : 1)); else echo "$1"; fi
}
if $PY -c "import tensorflow as tf, sys; sys.exit(not tf.config.list_physical_devices('GPU'))" 2>/dev/null; then
  export KERAS_BACKEND=tensorflow
elif $PY -c "import jax, sys; sys.exit(all(d.platform != 'gpu' for d in jax.devices()))" 2>/dev/null; then
  export KERAS_BACKEND=jax
else
  echo "no GPU: neither TensorFlow nor JAX sees one (for TensorFlow: pip install -e \".[gpu]\")" >&2
  exit 1
fi
{
  echo "# cnnrun GPU benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null)," \
       "Keras backend $KERAS_BACKEND, budget ${BUDGET}s"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY bench/machine.py
  $PY -c "import tensorflow as tf, keras, numpy; print('tensorflow', tf.__version__, 'keras', keras.__version__,
'numpy', numpy.__version__)" 2>/dev/null
  $PY bench/throughput.py --write-arrays --cifar10 "$JPEG" --arrays "$NPZ"
  echo "# 1. airbench94 (cifar10_fast.yaml): time to accuracy, 3 seeds, mixed precision"
  timeout "$(left 200)" $PY bench/time_to_accuracy.py configs/cifar10_fast.yaml --seeds 3 \
      --set dataset.name=npz --set "dataset.path=$NPZ" --set train.mixed_precision=true --set train.verbose=0 \
      --out "$OUTDIR/time_to_accuracy_gpu.png" || echo "cifar10_fast: stopped or failed"
  echo "# 2. airbench94 with every piece (cifar10_airbench.yaml): 3 seeds, mixed precision"
  timeout "$(left 200)" $PY bench/time_to_accuracy.py configs/cifar10_airbench.yaml --seeds 3 \
      --set dataset.name=npz --set "dataset.path=$NPZ" --set train.mixed_precision=true --set train.verbose=0 \
      --out "$OUTDIR/airbench_gpu.png" || echo "cifar10_airbench: stopped or failed"
  echo "# 3. training images/s, cifar10_bn.yaml on the arrays ($STEPS steps; a first epoch compiles and warms up)"
  timeout "$(left 120)" $PY bench/throughput.py --steps "$STEPS" --configs cifar10_bn_arrays \
      --settings default bf16 --cifar10 "$JPEG" --arrays "$NPZ" || echo "throughput: stopped or failed"
  echo "# 4. the course's cifar10_bn.yaml to its 50 epochs on the arrays, mixed precision"
  timeout "$(left 300)" $PY bench/accuracy.py configs/cifar10_bn.yaml --set dataset.name=npz \
      --set "dataset.path=$NPZ" --set train.mixed_precision=true --set train.verbose=2 \
      || echo "cifar10_bn: stopped or failed"
  echo "# 5. ResNet-20 (He et al.), its recipe to the end: 182 epochs on the arrays, mixed precision"
  timeout "$(left 300)" $PY bench/accuracy.py configs/cifar10_resnet20.yaml --set dataset.name=npz \
      --set "dataset.path=$NPZ" --set train.mixed_precision=true --set train.verbose=2 \
      || echo "resnet20: stopped or failed"
  echo "# ended after ${SECONDS}s"
} 2>&1 | tee "$REPORT"
echo "wrote $REPORT"
