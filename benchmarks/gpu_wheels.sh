#!/usr/bin/env bash
# The wheels a lent GPU machine lacks for the whole pipeline (dvc and its needs, dvclive,
# implicit, our pins of transformers and pydantic), for its Python 3.12, into .whl/ (ignored by
# git; `carry` it). The machine's image has torch, numpy, pandas, scipy, pyarrow and the rest
# (/work/.library/device/KINDS.md lists them); this takes every pin of requirements.txt it
# does not list. About 42 MB.
#
#     bash benchmarks/gpu_wheels.sh [KINDS.md]
set -euo pipefail
cd "$(dirname "$0")/.."
KINDS=${1:-/work/.library/device/KINDS.md}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
missing=$(python3 - "$KINDS" <<'PY'
import sys
text = open(sys.argv[1]).read()
have = {name.strip().lower().replace("_", "-") for name in text.split("Packages: ")[1].split("\n")[0].rstrip(".").split(",")}
have -= {"transformers", "pydantic", "pydantic-core"}  # the image's versions are not our pins
for line in open("requirements.txt"):
    line = line.strip()
    if line and not line.startswith("#") and line.split("==")[0].lower().replace("_", "-") not in have:
        print(line)
PY
)
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
for pin in $missing; do
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
      -d .whl "$pin" 2>/dev/null || python3 -m pip wheel -q --no-deps -w .whl "$pin"  # sdist only: pure Python
done
ls .whl | wc -l
du -sh .whl
