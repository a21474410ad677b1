#!/usr/bin/env bash
# The whole pipeline at ML-20M's size on a lent GPU machine, time-boxed: bench_pipeline.py
# (the real `dvc repro` in a temporary repository, every stage's seconds, peak memory and
# peak GPU memory) with every trained model capped at EPOCHS epochs, so that it fits one
# call; the full run's training is then the measured epoch times the epochs it needs
# (docs/performance.md, "ML-20M's size on one GPU"). Rows print as stages finish, so a run
# stopped at LIMIT seconds still reports the stages it finished.
#
#     bash benchmarks/gpu_wheels.sh                 # here, once: .whl/ (carry it)
#     OUT=$OUT bash benchmarks/gpu_pipeline.sh [SCALE] [EPOCHS] [-- bench_pipeline options]
set -uo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-1}
EPOCHS=${2:-1}
shift 2 2>/dev/null || shift $#
[ "${1:-}" = "--" ] && shift
OUT=${OUT:-/tmp/gpu-pipeline}
LIMIT=${LIMIT:-540}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
git --version && dvc --version || exit 1
$PYTHON -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
'cuda', torch.cuda.is_available())"
timeout "$LIMIT" $PYTHON benchmarks/bench_pipeline.py --scale "$SCALE" --epochs "$EPOCHS" --keep "$OUT/work" "$@" \
    2>&1 | tee "$OUT/pipeline.txt"
cp "$OUT/work/stages.jsonl" "$OUT/" 2>/dev/null
tail -40 "$OUT/work/repro.log" > "$OUT/repro_tail.log" 2>/dev/null
rm -rf "$OUT/work"  # the synthetic data and the repository: too large to bring back
