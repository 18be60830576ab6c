#!/usr/bin/env bash
# The GPU benchmark, as one prepared script for a machine with an NVIDIA GPU (run from the project root):
#
#     bash bench/gpu.sh [STEPS]            # figures go to the terminal and to bench-gpu-<date>.txt (or $OUT/)
#
# It records the GPU model, then measures training images/s of configs/cifar10_bn.yaml on the CIFAR-10 JPEG tree
# (../shared/data/cifar10-jpeg, streamed) and on the same pictures as arrays, with and without XLA and mixed
# precision (bench/throughput.py), then trains the full 50 epochs with the fastest settings if it fits in 10
# minutes (it is stopped at 600 s and says so), ResNet-20 likewise, and airbench94 (configs/cifar10_fast.yaml) with 3
# seeds through bench/time_to_accuracy.py, then configs/cifar10_airbench.yaml (every airbench piece cnnrun has)
# likewise. Installs cnnrun's GPU extra into .venv when TensorFlow sees no GPU.
# It only chains the other bench scripts: tests/test_bench.py checks that every script it names exists and takes
# the flags and config overrides written here, and each script's tiny mode is tested on the CPU.
set -uo pipefail
STEPS=${1:-200}
REPORT=${OUT:-.}/bench-gpu-$(date +%Y%m%d-%H%M%S).txt
PY=.venv/bin/python
test -x $PY || make install
if ! $PY -c "import tensorflow as tf, sys; sys.exit(not tf.config.list_physical_devices('GPU'))" 2>/dev/null; then
  $PY -m pip install --quiet -e ".[gpu]"
fi
{
  echo "# cnnrun GPU benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi: no GPU"
  $PY bench/machine.py
  $PY -c "import tensorflow as tf, keras; print(tf.__version__, keras.__version__, tf.config.list_physical_devices())" 2>/dev/null
  $PY bench/throughput.py --steps "$STEPS" --configs cifar10_bn cifar10_bn_arrays \
      --settings default xla bf16 xla_bf16 course
  echo "# full run: cifar10_bn.yaml, 50 epochs, arrays, XLA + mixed precision (stopped at 600 s)"
  timeout 600 $PY bench/accuracy.py configs/cifar10_bn.yaml --set dataset.name=npz \
      --set "dataset.path=${TMPDIR:-/tmp}/cnnrun-bench-cifar10.npz" --set compile.jit_compile=true \
      --set train.mixed_precision=true --set train.verbose=2 | grep RESULT || echo "full run: not finished in 600 s"
  echo "# ResNet-20 (He et al.), its recipe to the end: 182 epochs, JPEG tree, XLA + mixed precision (stopped at 600 s)"
  $PY bench/throughput.py --steps "$STEPS" --configs cifar10_resnet20 --settings default xla_bf16
  timeout 600 $PY bench/accuracy.py configs/cifar10_resnet20.yaml \
      --set dataset.data_dir=../shared/data/cifar10-jpeg --set compile.jit_compile=true \
      --set train.mixed_precision=true --set train.verbose=2 | grep RESULT || echo "resnet20: not finished in 600 s"
  echo "# airbench94 (configs/cifar10_fast.yaml): time to accuracy, 3 seeds, XLA + mixed precision (stopped at 600 s)"
  timeout 600 $PY bench/time_to_accuracy.py configs/cifar10_fast.yaml --seeds 3 \
      --set dataset.data_dir=../shared/data/cifar10-jpeg --set train.mixed_precision=true --set train.verbose=0 \
      --out "${OUT:-.}/time_to_accuracy_gpu.png" | grep -E "RESULT|seed|%" || echo "cifar10_fast: not finished in 600 s"
  echo "# airbench94 with every piece (configs/cifar10_airbench.yaml): 3 seeds, XLA + mixed precision (stopped at 600 s)"
  timeout 600 $PY bench/time_to_accuracy.py configs/cifar10_airbench.yaml --seeds 3 \
      --set dataset.data_dir=../shared/data/cifar10-jpeg --set train.mixed_precision=true --set train.verbose=0 \
      --out "${OUT:-.}/airbench_gpu.png" | grep -E "RESULT|seed|%" || echo "cifar10_airbench: not finished in 600 s"
} 2>&1 | tee "$REPORT"
echo "wrote $REPORT"
