"""genrec.ranking: seen items masked, and a Top-K whose ties go to the lower id."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec import ranking


def test_top_k_stable():
    scores = torch.tensor([[0.5, 1.0, 1.0, -1.0, 1.0, 0.5],
                           [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(ranking.top_k_stable(scores, 4).numpy(), [[1, 2, 4, 0], [0, 1, 2, 3]])
    scores = torch.tensor([[-torch.inf, 3.0, -torch.inf, 3.0]])
    np.testing.assert_array_equal(ranking.top_k_stable(scores, 3).numpy(), [[1, 3, 0]])


def test_rank_unseen_never_returns_a_seen_item():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0], [0.0, 1.0, 1.0, 1.0, 9.0]])
    seen = torch.tensor([[True, True, False, False, False], [True, False, False, False, True]])
    np.testing.assert_array_equal(ranking.rank_unseen(scores, seen, 2).numpy(), [[2, 3], [1, 2]])
    assert not torch.equal(scores, ranking.mask_seen(scores, seen))  # a copy is masked ...
    assert scores[0, 1] == 5.0  # ... not the scores given


@pytest.mark.parametrize("bad", [torch.nan, torch.inf])
def test_nan_or_inf_scores_are_refused(bad):
    scores = torch.tensor([[0.0, 1.0, bad]])
    with pytest.raises(FloatingPointError, match="overflowed"):
        ranking.rank_unseen(scores, torch.zeros(1, 3, dtype=torch.bool), 1)


def test_only_nan_and_plus_inf_are_refused():
    """-inf marks banned items, so a row of them (a user who has seen everything) ranks; a NaN
    or +inf anywhere among them does not, whichever comes first."""
    banned = torch.full((2, 4), -torch.inf)
    assert ranking.check_scores(banned) is banned
    assert ranking.check_scores(torch.empty(0, 4)).shape == (0, 4)
    for bad in (torch.nan, torch.inf):
        for column in (0, 3):
            scores = banned.clone()
            scores[1, column] = bad
            with pytest.raises(FloatingPointError):
                ranking.check_scores(scores)
    scores = torch.tensor([[torch.inf, -torch.inf, torch.nan]])
    with pytest.raises(FloatingPointError):
        ranking.check_scores(scores)


def stable_sort_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ranking the stages used before top_k_stable: a full stable descending sort."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]


@pytest.mark.parametrize("kind", ["distinct", "few values", "mostly zero", "signed zeros and -inf", "all equal"])
@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_top_k_stable_equals_the_full_stable_sort(kind, k):
    generator = torch.Generator().manual_seed(k)
    scores = torch.randn(50, 37, generator=generator)
    if kind == "few values":  # ties at the k-th score in most rows
        scores = torch.randint(0, 4, (50, 37), generator=generator).float()
    elif kind == "mostly zero":  # RRA: a few items scored, every other tied at 0
        scores = torch.zeros(50, 37)
        scores[:, torch.randint(0, 37, (5,), generator=generator)] = torch.rand(5, generator=generator)
    elif kind == "signed zeros and -inf":  # -0.0 ties with 0.0; masked items tie at -inf
        scores[:, ::3], scores[:, 1::4], scores[:, 2::5] = -torch.inf, 0.0, -0.0
    elif kind == "all equal":
        scores = torch.full((50, 37), 2.5)
    np.testing.assert_array_equal(ranking.top_k_stable(scores, k).numpy(), stable_sort_top_k(scores, k).numpy())


def test_top_k_stable_keeps_nothing_the_size_of_the_scores():
    """The lists of a batch hold their own (rows, k) storage: a slice of a full sort would keep
    the (rows, items) int64 buffer alive for every user of a stage (146.8 KB per user at ML-20M)."""
    ranked = ranking.top_k_stable(torch.randn(8, 1000), 10)
    assert ranked.untyped_storage().nbytes() == 8 * 10 * ranked.element_size()
    assert stable_sort_top_k(torch.randn(8, 1000), 10).untyped_storage().nbytes() == 8 * 1000 * 8  # the old way
