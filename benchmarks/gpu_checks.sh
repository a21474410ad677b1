#!/usr/bin/env bash
# The GPU measurements in one run, for a lent GPU machine (README, Performance):
#   1. train.precision: fp32 against bf16 on data/split, two seeds (bench_precision.py);
#   2. the ML-20M-sized scale table on one GPU: batch 64/256, fp32/bf16, every strategy (bench_scale.py);
#   3. the six strategy stages on CUDA against the committed CPU lists (compare_recs.py).
# Needs data/split and data/model (from `dvc repro train`) and the repository's Python
# packages. Each step has its own time limit, so a slow one leaves the others their figures.
#
#     OUT=/tmp/gpu bash benchmarks/gpu_checks.sh [SCALE] [EVAL_USERS]
#
# PRECISION_ARGS replaces bench_precision.py's arguments (a quick try on a CPU:
# PRECISION_ARGS="--seeds 42 --precisions fp32 --max-epochs 1").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-checks}
SCALE=${1:-1}
EVAL_USERS=${2:-20000}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PYTHON -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
'cuda', torch.cuda.is_available())"

echo "== 1. precision"
timeout 170 $PYTHON benchmarks/bench_precision.py ${PRECISION_ARGS:---seeds 42 43} --json "$OUT/precision.json" 2>&1 \
    | tee "$OUT/precision.txt"

echo "== 2. scale"
timeout 280 $PYTHON benchmarks/bench_scale.py --scale "$SCALE" --processes 1 --batch-sizes 64 256 \
    --precisions fp32 bf16 --eval-users "$EVAL_USERS" 2>&1 | tee "$OUT/scale.txt"

echo "== 3. the strategy stages on this device against the committed lists"
STAGES=$(mktemp -d)  # outside $OUT: only the summary table is wanted back
for strategy in topk greedy beam sampling rra ra; do
    timeout 45 $PYTHON -m stages.recommend "$strategy" --recs "$STAGES/recs/$strategy.parquet" \
        --metrics "$STAGES/metrics" 2>&1 | grep -v "it/s\]$" | tail -1
done
$PYTHON benchmarks/compare_recs.py --recs-a data/recs --metrics-a metrics \
    --recs-b "$STAGES/recs" --metrics-b "$STAGES/metrics" 2>&1 | tee "$OUT/stages.txt"
