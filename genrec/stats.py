"""Method §6b: how sure we are of a mean over users, and of a difference between two methods.

Every figure is a mean over the same test users of a per-user metric (``metrics.per_user``).
- ``interval``: the mean with its 95% BCa bootstrap confidence interval over users.
- ``paired``: two methods on the same users; the mean per-user difference a − b, its 95%
  bootstrap interval (resampling users, so each keeps both of its values: a paired bootstrap),
  and the two-sided p-value of a paired randomization test: under "no difference" each
  user's two values are exchangeable, so the test flips the sign of random users' differences.
- ``holm``: Holm's step-down correction of p-values reported together.
All resampling is seeded, so a report is identical from run to run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2_000
PERMUTATIONS = 9_999  # p-values resolve down to 1 / 10,000


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    difference: Interval  # mean of a − b over users, with its paired bootstrap interval
    p_value: float  # paired randomization test, before any correction


def interval(values: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> Interval:
    """The mean of ``values`` (one per user) and its BCa bootstrap confidence interval."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if np.ptp(values) == 0:  # every resample has the same mean: the interval is that point
        return Interval(mean, mean, mean)
    result = stats.bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=LEVEL,
                             method="BCa", vectorized=True, rng=np.random.default_rng(seed))
    return Interval(mean, float(result.confidence_interval.low), float(result.confidence_interval.high))


def paired(a: np.ndarray, b: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES,
           permutations: int = PERMUTATIONS) -> Comparison:
    """Compare two methods' per-user values on the same users (same order)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same users, got {a.shape} and {b.shape}")
    difference = interval(a - b, seed, resamples)
    if not (a - b).any():
        return Comparison(difference, 1.0)
    # permutation_type="samples" swaps a user's two values at random: a sign flip of their difference.
    test = stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), vectorized=True,
                                  permutation_type="samples", n_resamples=permutations,
                                  alternative="two-sided", rng=np.random.default_rng(seed))
    return Comparison(difference, float(test.pvalue))


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values: the i-th smallest of m is multiplied by (m − i + 1), made
    non-decreasing in that order and capped at 1. Reject where the adjusted value is ≤ α."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted.tolist()
