"""Top-K with ties to the lower item id: the full stable sort against ``ranking.top_k_stable``.

    python benchmarks/bench_ranking.py [--users 256] [--items 1350 3417 18346] [--repeats 20]

A batch of ``--users`` rows of scores over each catalogue size (items + padding), three kinds
of scores: model logits (random normal: no ties), popularity counts (integers: ties
everywhere) and RRA scores (a few hundred non-zero items, the rest tied at 0, so every row
ties at its k-th score). For each: milliseconds per batch (the median of ``--repeats``) of
the stable descending sort the stages used before, of ``top_k_stable`` and of plain
``torch.topk`` (not stable: the floor), whether the first two give the same lists, and of
``rank_unseen``, what every stage calls per batch: the scores checked for NaN and +inf, the
seen items (1% of each row here) masked, then ``top_k_stable``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec.ranking import rank_unseen, top_k_stable  # noqa: E402

K = 10


def full_sort(scores: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]


def scores_of(kind: str, users: int, items: int, generator: torch.Generator) -> torch.Tensor:
    if kind == "logits":
        return torch.randn(users, items, generator=generator)
    if kind == "popularity":
        return torch.randint(0, 50, (users, items), generator=generator).float()
    scores = torch.zeros(users, items)  # rra: 30 sequences of 10 items, 1/position each
    picked = torch.randint(1, items, (users, 300), generator=generator)
    weights = (1.0 / torch.arange(1, 11).float()).repeat(30).expand(users, -1)
    return scores.scatter_add_(1, picked, weights.contiguous())


def milliseconds(function, scores: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(scores, K)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--items", type=int, nargs="+", default=[1350, 3417, 18346])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    print(f"{args.users} users per batch, k = {K}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'items':>6}  {'scores':<11}{'full sort ms':>13}{'top_k_stable ms':>16}{'topk ms':>9}{'speed-up':>10}"
          f"  same lists{'rank_unseen ms':>16}")
    for items in args.items:
        for kind in ("logits", "popularity", "rra"):
            scores = scores_of(kind, args.users, items, generator)
            same = torch.equal(full_sort(scores, K), top_k_stable(scores, K))
            old, new = milliseconds(full_sort, scores, args.repeats), milliseconds(top_k_stable, scores, args.repeats)
            floor = milliseconds(lambda s, k: torch.topk(s, k), scores, args.repeats)
            seen = torch.rand(scores.shape, generator=generator) < 0.01
            masked = milliseconds(lambda s, k: rank_unseen(s, seen, k), scores, args.repeats)
            print(f"{items:>6}  {kind:<11}{old:>13.2f}{new:>16.2f}{floor:>9.2f}{old / new:>9.1f}x  {same!s:<10}"
                  f"{masked:>16.2f}", flush=True)


if __name__ == "__main__":
    main()
