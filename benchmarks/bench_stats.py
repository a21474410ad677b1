"""The report's statistics against scipy's, side by side, as the number of test users grows.

    python benchmarks/bench_stats.py [--users 500 5000 10000 69000] [--scipy-up-to 10000]

For each number of users n (per-user NDCG-like values: 0 for half the users, else one of a
few discrete gains), one BCa interval plus one paired comparison (interval and sign-flip
p-value), by ``genrec.stats`` and by ``scipy.stats.bootstrap`` + ``permutation_test`` (up to
``--scipy-up-to`` users: scipy holds (n, n) and (9,999, n, 2) arrays). Then the report's
whole load at the largest n: 148 intervals (30 in the table, 100 for the figure's bands, 18
paired differences) and 18 randomization tests. Each row runs in a fresh process; memory is
that process's peak resident size while it ran (benchmarks/measure.py), seconds its wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def values(n: int, rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gains = rng.choice([0.1, 0.2, 0.3, 0.5, 1.0], (rows, n))
    return np.where(rng.random((rows, n)) < 0.5, 0.0, gains)


def work(kind: str, n: int) -> dict:
    import torch

    from genrec import stats
    from measure import timed

    a, b = values(n, 1, 1)[0], values(n, 1, 2)[0]
    result = {}

    def scipy_pair() -> None:
        from scipy import stats as scipy_stats
        interval = scipy_stats.bootstrap((a,), np.mean, n_resamples=stats.BOOTSTRAP_RESAMPLES, method="BCa",
                                         vectorized=True, rng=np.random.default_rng(0)).confidence_interval
        test = scipy_stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis),
                                            vectorized=True, permutation_type="samples",
                                            n_resamples=stats.PERMUTATIONS, rng=np.random.default_rng(0))
        result.update(low=float(interval.low), high=float(interval.high), p=float(test.pvalue))

    def genrec_pair() -> None:
        interval, comparison = stats.interval(a, 0), stats.paired(a, b, 0)
        result.update(low=interval.low, high=interval.high, p=comparison.p_value)

    def report_load() -> None:
        stats.intervals(values(n, 30, 3), 0)
        stats.intervals(values(n, 100, 4), 0)
        stats.comparisons(values(n, 18, 5), values(n, 18, 6), 0)

    run = {"scipy": scipy_pair, "genrec": genrec_pair, "report": report_load}[kind]
    seconds, peak_mb = timed(run, torch.device("cpu"))
    return {**result, "seconds": seconds, "peak_gb": peak_mb / 1024}


def fresh(kind: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--work", kind, str(n)], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[500, 5000, 10000, 69000])
    parser.add_argument("--scipy-up-to", type=int, default=10000)
    parser.add_argument("--work", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        print(json.dumps(work(args.work[0], int(args.work[1]))))
        return
    print("one interval + one paired comparison (2,000 bootstrap resamples, 9,999 sign flips)")
    print(f"{'users':>8}  {'way':<7}{'seconds':>9}{'peak GB':>9}  {'low':>20}{'high':>20}{'p':>8}")
    for n in args.users:
        for kind in ("scipy", "genrec") if n <= args.scipy_up_to else ("genrec",):
            r = fresh(kind, n)
            print(f"{n:>8}  {kind:<7}{r['seconds']:>9.2f}{r['peak_gb']:>9.2f}  {r['low']:>20.17f}"
                  f"{r['high']:>20.17f}{r['p']:>8.4f}", flush=True)
    n = max(args.users)
    r = fresh("report", n)
    print(f"the report's load at {n:,} users (148 intervals, 18 tests): {r['seconds']:.1f} s, "
          f"peak {r['peak_gb']:.2f} GB")


if __name__ == "__main__":
    main()
