"""How far two runs' recommendations agree: the same stages on another device or machine.

    python benchmarks/compare_recs.py --recs-a data/recs --metrics-a metrics \
                                      --recs-b OTHER/recs --metrics-b OTHER/metrics [--strategies ...]

Each side is a folder of ``<strategy>.parquet`` lists (the pipeline writes ``data/recs``) and
one of ``<strategy>.json`` summaries (``metrics``), from ``dvc repro`` or from
``python -m stages.recommend <strategy> --recs ... --metrics ...``. For each strategy it
prints the share of users whose ten items are identical in order, the mean overlap of the
two lists (as sets), the test NDCG@10 of both, and the settings each run chose.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

STRATEGIES = ["topk", "greedy", "beam", "sampling", "rra", "ra"]


def lists(path: Path) -> dict[int, list[int]]:
    frame = pd.read_parquet(path).sort_values(["user_id", "rank"])
    return {int(user): group["item_id"].tolist() for user, group in frame.groupby("user_id")}


def compare(recs_a: Path, recs_b: Path) -> tuple[float, float, int]:
    """(share of users with identical lists, mean set overlap / list length, users)."""
    a, b = lists(recs_a), lists(recs_b)
    if a.keys() != b.keys():
        raise SystemExit(f"{recs_a} and {recs_b} recommend for different users")
    same = np.mean([a[u] == b[u] for u in a])
    overlap = np.mean([len(set(a[u]) & set(b[u])) / max(1, len(a[u])) for u in a])
    return float(same), float(overlap), len(a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recs-a", type=Path, required=True)
    parser.add_argument("--metrics-a", type=Path, required=True)
    parser.add_argument("--recs-b", type=Path, required=True)
    parser.add_argument("--metrics-b", type=Path, required=True)
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    args = parser.parse_args()
    print(f"{'strategy':<10}{'users':>6}{'identical':>10}{'overlap':>9}{'NDCG@10 a':>11}{'NDCG@10 b':>11}  chosen a | b")
    for strategy in args.strategies:
        recs_a, recs_b = args.recs_a / f"{strategy}.parquet", args.recs_b / f"{strategy}.parquet"
        if not (recs_a.exists() and recs_b.exists()):
            print(f"{strategy:<10}  missing: {recs_a if not recs_a.exists() else recs_b}")
            continue
        same, overlap, users = compare(recs_a, recs_b)
        ma = json.loads((args.metrics_a / f"{strategy}.json").read_text())
        mb = json.loads((args.metrics_b / f"{strategy}.json").read_text())
        print(f"{strategy:<10}{users:>6}{same:>10.1%}{overlap:>9.1%}{ma['ndcg@10']:>11.4f}{mb['ndcg@10']:>11.4f}"
              f"  {ma.get('chosen', '-')} | {mb.get('chosen', '-')}")


if __name__ == "__main__":
    main()
