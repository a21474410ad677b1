"""Ranking items for a user (docs/method.md §5): the padding id, seen items masked out of a
score matrix, and a Top-K whose ties go to the lower item id on every device.

GPT-2's Top-K prediction, the generation engine and every baseline rank through these, so
"never a seen item, never padding, ties to the lower id" is decided in one place.
"""

from __future__ import annotations

import torch

PADDING = 0  # item id 0 pads sequences and is never recommended


def check_scores(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` if no score is NaN or +inf (-inf marks banned items): weights that blew up
    in training must not rank items silently."""
    if torch.isnan(scores).any() or torch.isposinf(scores).any():
        raise FloatingPointError("the model's scores hold NaN or inf: its weights have overflowed")
    return scores


def mask_seen(scores: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """A copy of ``scores`` (B, V) with -inf where ``seen`` (B, V) is True (seen items, padding)."""
    return check_scores(scores).masked_fill(seen, -torch.inf)


def top_k_stable(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores per row, ties broken towards the lower index."""
    # torch.topk is not stable on CPU or CUDA; a stable descending sort keeps equal scores in
    # index order on every device.
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]


def rank_unseen(scores: torch.Tensor, seen: torch.Tensor, k: int) -> torch.Tensor:
    """The k best-scored items of each row that ``seen`` does not mark (B, k), ties to the lower id."""
    return top_k_stable(mask_seen(scores, seen), k)
