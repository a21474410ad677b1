"""genrec.stats: bootstrap intervals, the paired randomization test and Holm's correction,
checked against direct computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from genrec import stats


def test_holm_by_hand():
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04, raised to 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.02]) == pytest.approx([0.02])


def test_paired_p_value_equals_full_enumeration_of_sign_flips():
    """With 10 users there are 2**10 sign patterns: scipy's test is then exact, and must equal
    the share of patterns whose |mean difference| reaches the observed one."""
    rng = np.random.default_rng(1)
    a = rng.random(10)
    b = a - rng.normal(0.1, 0.15, 10)
    d = a - b
    flips = np.array(list(itertools.product([1, -1], repeat=len(d))))
    null = np.abs((flips * d).mean(axis=1))
    expected = np.mean(null >= abs(d.mean()) * (1 - 1e-12))
    got = stats.paired(a, b, seed=0)
    assert got.p_value == pytest.approx(expected)
    assert got.difference.mean == pytest.approx(d.mean())


def test_paired_with_no_difference():
    a = np.array([0.1, 0.5, 0.0])
    result = stats.paired(a, a.copy(), seed=0)
    assert result.p_value == 1.0
    assert (result.difference.mean, result.difference.low, result.difference.high) == (0.0, 0.0, 0.0)


def test_paired_needs_the_same_users():
    with pytest.raises(ValueError, match="same users"):
        stats.paired(np.zeros(3), np.zeros(4), seed=0)


def test_interval_matches_the_normal_approximation_on_a_large_sample():
    values = np.random.default_rng(2).binomial(1, 0.3, 4000).astype(float)
    got = stats.interval(values, seed=0)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert got.mean == pytest.approx(values.mean())
    assert got.low == pytest.approx(values.mean() - half, abs=0.003)
    assert got.high == pytest.approx(values.mean() + half, abs=0.003)


def test_interval_is_seeded_and_contains_the_mean():
    values = np.random.default_rng(3).random(50) ** 3
    first, second = stats.interval(values, seed=7), stats.interval(values, seed=7)
    assert first == second
    assert first.low < first.mean < first.high
    assert stats.interval(values, seed=8) != first  # another seed, other resamples


def test_interval_of_a_constant():
    assert stats.interval(np.full(20, 0.25), seed=0) == stats.Interval(0.25, 0.25, 0.25)


def test_paired_bootstrap_resamples_users_not_values():
    """The paired interval is the interval of the per-user differences: far narrower than the
    two methods' own intervals when users differ much more than the methods do."""
    rng = np.random.default_rng(4)
    level = rng.random(300)
    a, b = level + 0.02, level + rng.normal(0, 0.01, 300)
    result = stats.paired(a, b, seed=0)
    assert result.difference == stats.interval(a - b, seed=0)
    own = stats.interval(a, seed=0)
    assert result.difference.high - result.difference.low < (own.high - own.low) / 5
    assert result.p_value < 0.001


def ndcg_like(n: int, seed: int) -> np.ndarray:
    """Per-user values as a report sees them: 0 for about half the users, else a few discrete
    gains, so that many resample means tie with each other and with the observed mean."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.5, 0.0, rng.choice([0.1, 0.2, 0.3, 0.5, 1.0], n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_equals_scipy_bca(seed):
    from scipy import stats as scipy_stats
    values = ndcg_like(500, seed)
    expected = scipy_stats.bootstrap((values,), np.mean, n_resamples=stats.BOOTSTRAP_RESAMPLES, method="BCa",
                                     vectorized=True, rng=np.random.default_rng(seed)).confidence_interval
    got = stats.interval(values, seed)
    # The same resamples and means; only the acceleration's closed form rounds differently.
    assert got.low == pytest.approx(expected.low, rel=1e-12)
    assert got.high == pytest.approx(expected.high, rel=1e-12)


@pytest.mark.parametrize("same_mean", [False, True])
def test_paired_p_value_equals_scipy_permutation_test(same_mean):
    """The same sign flips and the same arithmetic as scipy: equal p-values, also when the two
    means are equal (``same_mean``: b shuffles a's values among a third of the users), where
    many null means equal the observed one up to rounding and only scipy's order of summation
    decides how they compare."""
    from scipy import stats as scipy_stats
    rng = np.random.default_rng(7)
    for _ in range(3):
        a = ndcg_like(500, int(rng.integers(1000)))
        b = a.copy()
        other = np.flatnonzero(rng.random(500) < 0.3)
        b[other] = a[rng.permutation(other)] if same_mean else ndcg_like(500, int(rng.integers(1000)))[other]
        expected = scipy_stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis),
                                                vectorized=True, permutation_type="samples",
                                                n_resamples=stats.PERMUTATIONS, rng=np.random.default_rng(0))
        assert stats.paired(a, b, seed=0).p_value == expected.pvalue


def test_chunks_do_not_change_a_number(monkeypatch):
    """Resamples drawn a few at a time (as for 69,000 users) give what one draw gives."""
    values = np.stack([ndcg_like(300, 1), ndcg_like(300, 2)])
    whole = stats.intervals(values, seed=3), stats.comparisons(values[:1], values[1:], seed=3)
    monkeypatch.setattr(stats, "CHUNK", 7 * 300 + 5)  # 7 resamples per chunk, a short last chunk
    assert (stats.intervals(values, seed=3), stats.comparisons(values[:1], values[1:], seed=3)) == whole


def test_many_rows_at_once_equal_one_at_a_time():
    values = np.stack([ndcg_like(200, 4), ndcg_like(200, 5), np.full(200, 0.5), ndcg_like(200, 6)])
    assert stats.intervals(values, seed=1) == [stats.interval(row, seed=1) for row in values]
    together = stats.comparisons(values[:2], values[2:], seed=1)
    assert together == [stats.paired(values[0], values[2], seed=1), stats.paired(values[1], values[3], seed=1)]
