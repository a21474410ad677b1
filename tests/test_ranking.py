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
