"""Tuning speed of the strategy stages: one draw per grid point against draws shared over the
num_sequences grid, each with glibc's default allocator and with ``genrec.device.keep_freed_memory``.

Runs each strategy's validation grid from params.yaml on the CPU, with the pipeline's own model
and split (data/model, data/split: run `dvc repro train` first), in four ways, each in a fresh process
(the allocator setting holds for the whole process), and prints seconds, the ratio to the
first way, and whether the grid's validation metrics and the chosen lists are identical to
the first way's, to the bit.

    python benchmarks/bench_tuning.py [--strategies rra ra] [--model data/model] [--split data/split]

- per point: what the stages did before, ``recommend`` once for every grid point;
- shared: ``tuning.tune``, which draws once for the points that differ only in num_sequences.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = [("per point", False), ("per point", True), ("shared", False), ("shared", True)]


def worker(strategy: str, way: str, keep: bool, model_dir: str, split_dir: str) -> dict:
    import numpy as np
    import torch

    from genrec import metrics
    from genrec import params as genrec_params
    from genrec.device import keep_freed_memory
    from genrec.model import load
    from genrec.sequences import Split
    from genrec.strategies import STRATEGIES, read_params, recommend
    from genrec.tuning import tune

    if keep:
        keep_freed_memory()
    config = read_params(genrec_params.load(ROOT / "params.yaml"), strategy)
    split = Split.load(split_dir)
    model = load(model_dir, torch.device("cpu"))
    users, targets = split.validation_users, split.validation
    num_train_items = split.train["item_id"].nunique()
    start = time.perf_counter()
    if way == "shared":
        _, table, recs = tune(strategy, model, split.sequences, users, targets, num_train_items, config,
                              show_progress=False)
        rows = table.drop(columns="chosen").to_dict("records")
    else:
        rows, lists = [], []
        for point in config.grid(strategy):
            point_recs, _ = recommend(strategy, model, split.sequences, users, point)
            rows.append({**point.chosen(strategy), **metrics.evaluate(point_recs, users, targets, num_train_items)[0]})
            lists.append(point_recs)
        key = f"ndcg@{config.horizon}"
        recs = lists[max(range(len(rows)), key=lambda i: (rows[i][key], -i))]  # ties: the earlier point
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode() + np.ascontiguousarray(recs).tobytes())
    return {"seconds": seconds, "points": len(rows), "digest": digest.hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=["rra", "ra"])
    parser.add_argument("--model", default=str(ROOT / "data/model"))
    parser.add_argument("--split", default=str(ROOT / "data/split"))
    parser.add_argument("--worker", nargs=3, metavar=("STRATEGY", "WAY", "KEEP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        strategy, way, keep = args.worker
        print(json.dumps(worker(strategy, way, keep == "1", args.model, args.split)))
        return

    import torch
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; validation grid of params.yaml on {args.split}")
    print(f"{'strategy':9} {'way':10} {'allocator':16} {'points':>6} {'seconds':>8} {'speed-up':>8}  same as first")
    for strategy in args.strategies:
        first = None
        for way, keep in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--model", args.model, "--split", args.split,
                                  "--worker", strategy, way, str(int(keep))],
                                 check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            first = first or result
            print(f"{strategy:9} {way:10} {'keep freed' if keep else 'glibc default':16} {result['points']:>6} "
                  f"{result['seconds']:8.1f} {first['seconds'] / result['seconds']:7.2f}x  "
                  f"{'yes' if result['digest'] == first['digest'] else 'NO'}")


if __name__ == "__main__":
    main()
