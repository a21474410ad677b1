#!/usr/bin/env bash
# The training measurements of a lent GPU machine in one time-boxed run (docs/performance.md,
# "Training on a GPU"):
#   1. GPT-2 on the ML-20M-shaped set at SCALE: today's step (on CUDA: step graphs) against the
#      exact step, torch.compile of it, and a fused linear + cross-entropy (ours in chunks, and
#      Liger Kernel's when installed);
#   2. SASRec and BERT4Rec on the same set: today's (graphs, torch's masks) against the exact
#      step and the fast dropout masks;
#   3. today's and the exact step trained with early stopping on data/split (ml-100k);
#   4. the graphs step trained twice in one process on this GPU: the same losses and weights, bit
#      for bit (tests/test_training.py, its CUDA case; pytest skips it where there is no GPU).
# Needs data/split (from `dvc repro split`) and the repository's Python packages.
#
#     OUT=/tmp/gpu bash benchmarks/gpu_train.sh [SCALE] [BATCHES] [VAL_USERS]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-train}
SCALE=${1:-1}
BATCHES=${2:-200}
VAL_USERS=${3:-68000}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
CACHE=$(mktemp -d)/large.npz  # the synthetic set, built once for both large runs

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PYTHON -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
'cuda', torch.cuda.is_available())"

echo "== 1. GPT-2, ML-20M-shaped set at scale $SCALE"
timeout 220 $PYTHON benchmarks/bench_train.py --no-small --models gpt2 --large-scale "$SCALE" \
    --large-batches "$BATCHES" --large-val-users "$VAL_USERS" --large-cache "$CACHE" \
    --variants today exact compiled chunked-ce liger --json "$OUT/large_gpt2.json" 2>&1 | tee "$OUT/large_gpt2.txt"

echo "== 2. SASRec and BERT4Rec, the same set"
timeout 150 $PYTHON benchmarks/bench_train.py --no-small --models sasrec bert4rec --large-scale "$SCALE" \
    --large-batches "$BATCHES" --large-val-users "$VAL_USERS" --large-cache "$CACHE" \
    --variants today exact fast-masks --json "$OUT/large_baselines.json" 2>&1 | tee "$OUT/large_baselines.txt"

echo "== 3. early stopping on data/split"
timeout 200 $PYTHON benchmarks/bench_train.py --variants today exact \
    --json "$OUT/small.json" 2>&1 | tee "$OUT/small.txt"

echo "== 4. the graphs step repeats on this GPU"
timeout 120 $PYTHON -m pytest -q -p no:cacheprovider -rs tests/test_training.py -k "graphs_step_trains_and_repeats" \
    2>&1 | tee "$OUT/repeat.txt"
