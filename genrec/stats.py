"""Method §6b: how sure we are of a mean over users, and of a difference between two methods.

Every figure is a mean over the same test users of a per-user metric (``metrics.per_user``).
- ``intervals``: means with their 95% BCa bootstrap confidence intervals over users.
- ``comparisons``: two methods on the same users; the mean per-user difference a − b, its 95%
  bootstrap interval (resampling users, so each keeps both of its values: a paired bootstrap),
  and the two-sided p-value of a paired randomization test: under "no difference" each
  user's two values are exchangeable, so the test flips the sign of random users' differences.
- ``holm``: Holm's step-down correction of p-values reported together.

The numbers are those of ``scipy.stats.bootstrap(method="BCa")`` and ``scipy.stats.
permutation_test(permutation_type="samples")`` with the same seed: the same random draws,
in the same order, and the same formulas (tests/test_stats.py compares them). What differs
is the cost, so that a report over ML-20M's 69,000 test users fits in memory and minutes:
- scipy's BCa acceleration comes from an (n, n − 1) jackknife; for a mean it has a closed
  form in the centred values (see ``_interval``).
- Resamples are drawn in chunks of about ``CHUNK`` values, never all (resamples × users) at
  once, and each chunk serves every vector that shares the users and the seed (all the
  intervals of a report draw the same resamples, as the same seed did in scipy).
- The sign flips of every comparison are drawn once, in chunks.
The bootstrap means and the null distribution's counts are scipy's; the closed-form
acceleration can move a bound in its last bits, never more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2_000
PERMUTATIONS = 9_999  # p-values resolve down to 1 / 10,000
CHUNK = 4_000_000  # resampled values held at once (about 32 MB per int64 or float64 array)


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    difference: Interval  # mean of a − b over users, with its paired bootstrap interval
    p_value: float  # paired randomization test, before any correction


def intervals(values: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> list[Interval]:
    """The mean of each row of ``values`` (m, n users) and its BCa bootstrap confidence
    interval; every row is resampled with the same draws of users."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    means = values.mean(axis=1)
    varying = np.ptp(values, axis=1) > 0  # a constant row's interval is its mean
    boot = _bootstrap_means(values[varying], seed, resamples)
    out, rows = [], iter(boot)
    for row, mean, varies in zip(values, means, varying):
        out.append(_interval(row, mean, next(rows)) if varies else Interval(float(mean), float(mean), float(mean)))
    return out


def interval(values: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> Interval:
    """``intervals`` of one vector."""
    return intervals(np.asarray(values)[None], seed, resamples)[0]


def _bootstrap_means(values: np.ndarray, seed: int, resamples: int) -> np.ndarray:
    """(m, resamples) means of bootstrap resamples of the users (the columns of ``values``).
    The users are drawn as scipy draws them, ``rng.integers(0, n, (resamples, n))``, but in
    chunks of rows (a Generator's stream does not depend on how its draws are split), and each
    resample's mean is ``np.mean`` of its values, as in scipy: the same numbers to the bit."""
    m, n = values.shape
    rng = np.random.default_rng(seed)
    out = np.empty((m, resamples))
    rows = max(1, CHUNK // n)
    resampled = np.empty((min(rows, resamples), n))  # reused: no fresh pages for every chunk
    for start in range(0, resamples, rows):
        count = min(rows, resamples - start)
        drawn = rng.integers(0, n, (count, n))
        for row in range(m):
            np.take(values[row], drawn, out=resampled[:count])
            out[row, start:start + count] = resampled[:count].mean(axis=-1)
    return out


def _interval(values: np.ndarray, mean: float, boot: np.ndarray) -> Interval:
    """The BCa interval of the mean of ``values`` from its bootstrap means ``boot`` (Efron and
    Tibshirani 14.3, as scipy). The acceleration comes from the jackknife means (S − x_i) /
    (n − 1), whose deviations from their mean are (x̄ − x_i) / (n − 1): a = Σd³ / (6 (Σd²)^1.5)
    with d = x − x̄, no (n, n − 1) array needed."""
    centred = values - mean
    acceleration = (centred**3).sum() / (6 * (centred**2).sum() ** 1.5)
    z0 = special.ndtri((np.count_nonzero(boot < mean) + np.count_nonzero(boot <= mean)) / (2 * len(boot)))
    z = special.ndtri((1 - LEVEL) / 2)
    levels = [special.ndtr(z0 + (z0 + zz) / (1 - acceleration * (z0 + zz))) for zz in (z, -z)]
    low, high = stats.quantile(boot, np.array(levels))
    return Interval(float(mean), float(low), float(high))


def comparisons(a: np.ndarray, b: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES,
                permutations: int = PERMUTATIONS) -> list[Comparison]:
    """Compare each row of ``a`` with the same row of ``b`` (m, n users, same users in the same
    order): the paired difference's interval and the randomization test's p-value. Every row
    is tested with the same sign flips, as the same seed did in scipy."""
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same users, got {a.shape} and {b.shape}")
    differences = a - b
    p_values = np.ones(len(differences))  # no difference at all: p = 1
    tested = differences.any(axis=1)
    if tested.any():
        p_values[tested] = _sign_flip_p_values(differences[tested], seed, permutations)
    return [Comparison(difference, float(p))
            for difference, p in zip(intervals(differences, seed, resamples), p_values)]


def paired(a: np.ndarray, b: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES,
           permutations: int = PERMUTATIONS) -> Comparison:
    """``comparisons`` of one pair."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same users, got {a.shape} and {b.shape}")
    return comparisons(a[None], b[None], seed, resamples, permutations)[0]


def _sign_flip_p_values(differences: np.ndarray, seed: int, permutations: int) -> np.ndarray:
    """Two-sided p-values of the paired randomization test of each row of ``differences``
    (m, n): scipy's ``permutation_test((a, b), mean(x − y), permutation_type="samples")``."""
    m, n = differences.shape
    if 2**n <= permutations:  # scipy's exact test over all 2^n flips: small, so scipy's own
        return np.array([stats.permutation_test((row, np.zeros(n)), lambda x, y, axis: np.mean(x - y, axis=axis),
                                                vectorized=True, permutation_type="samples",
                                                alternative="two-sided").pvalue for row in differences])
    observed = differences.mean(axis=1)
    rng = np.random.default_rng(seed)
    below = np.zeros(m, dtype=np.int64)
    above = np.zeros(m, dtype=np.int64)
    gamma = np.abs(np.finfo(np.float64).eps * 100 * observed)  # scipy's tolerance for equal values
    rows = max(1, CHUNK // (2 * n))
    pair = np.tile(np.arange(2, dtype=np.int8), (rows, n, 1))
    for start in range(0, permutations, rows):
        count = min(rows, permutations - start)
        # scipy shuffles each user's (a, b) pair with rng.permuted; a user whose pair comes out
        # as (b, a) contributes −d to that resample's mean.
        signs = 1.0 - 2.0 * rng.permuted(pair[:count], axis=-1)[:, :, 0]  # (count, n)
        # Each resample's mean as scipy computes it, from a (resamples, users) array in Fortran
        # order (so summed in user order): a null mean that equals the observed one in exact
        # arithmetic must compare as scipy's does, or p moves by a resample.
        null = np.stack([np.mean(np.multiply(signs, row, order="F"), axis=-1) for row in differences])
        below += np.count_nonzero(null <= (observed + gamma)[:, None], axis=1)
        above += np.count_nonzero(null >= (observed - gamma)[:, None], axis=1)
    p = np.minimum(below + 1, above + 1) / (permutations + 1) * 2
    return np.clip(p, 0.0, 1.0)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values: the i-th smallest of m is multiplied by (m − i + 1), made
    non-decreasing in that order and capped at 1. Reject where the adjusted value is ≤ α."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted.tolist()
