#!/usr/bin/env bash
# `make setup` with and without uv's --compile-bytecode, side by side: fresh clones of this
# repository's HEAD, the two variants alternating ROUNDS times. For each: the seconds of `make
# setup`, then of a process importing one stage's module, as each stage's process does before it
# works: stages.recommend (loads GPT-2: torch and transformers; twice, to see whether the first
# left bytecode behind), stages.baseline (torch) and stages.download (pandas). Where
# PYTHONDONTWRITEBYTECODE is set, Python writes no bytecode of its own and every start
# compiles again what set-up did not.
#
#     bash benchmarks/bench_setup.sh [ROUNDS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-2}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

seconds() { local start=$1; echo "$(date +%s.%N) - $start" | bc | xargs printf "%.1f"; }

grep -q -- "--compile-bytecode" "$ROOT/Makefile" || { echo "bench_setup.sh: the Makefile has no --compile-bytecode any more: nothing to compare" >&2; exit 1; }
echo "PYTHONDONTWRITEBYTECODE=${PYTHONDONTWRITEBYTECODE:-(unset)}"
printf "%-12s %8s %12s %12s %10s %10s\n" variant "setup s" "recommend s" "again s" "baseline s" "download s"
for _ in $(seq "$ROUNDS"); do
  for variant in compiled not-compiled; do
    rm -rf "$WORK/clone" && git clone -q "$ROOT" "$WORK/clone" && cd "$WORK/clone"
    [ "$variant" = not-compiled ] && sed -i 's/ --compile-bytecode//' Makefile
    start=$(date +%s.%N); make setup > setup.log 2>&1; setup=$(seconds "$start")
    times=()
    for module in recommend recommend baseline download; do
      start=$(date +%s.%N); .venv/bin/python -c "import stages.$module"; times+=("$(seconds "$start")")
    done
    printf "%-12s %8s %12s %12s %10s %10s\n" "$variant" "$setup" "${times[@]}"
    cd "$ROOT"
  done
done
