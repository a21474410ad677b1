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
    # One pass over the scores (this runs on every batch of every ranking): the maximum is NaN
    # when any score is NaN, and +inf when any is +inf.
    if scores.numel() and not bool(scores.max() < torch.inf):
        raise FloatingPointError("the model's scores hold NaN or inf: its weights have overflowed")
    return scores


def mask_seen(scores: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """A copy of ``scores`` (B, V) with -inf where ``seen`` (B, V) is True (seen items, padding)."""
    return check_scores(scores).masked_fill(seen, -torch.inf)


def top_k_stable(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores per row, largest first, ties broken towards the lower
    index: what a stable descending sort gives, without sorting the whole row.

    ``torch.topk`` is fast but not stable on CPU or CUDA: among items tied at the k-th score it
    may take any. So the k it finds are put in (score, index) order, and a row where more items
    share the k-th score than there are places left takes the lowest-indexed of them. The result
    has a (rows, k) storage of its own: nothing as large as the scores outlives the call. On the
    CPU at 18,346 items a full stable sort is about 38x slower for model scores, and 4-11x where
    most items tie, as in popularity or RRA (benchmarks/bench_ranking.py).
    """
    k = min(k, scores.shape[-1])
    # One more than k: the (k+1)-th score equals the k-th exactly when more items than k share
    # it, which spares a count over the whole row.
    values, index = torch.topk(scores, min(k + 1, scores.shape[-1]), dim=-1)
    following = values[..., k:]  # (rows, 1), or (rows, 0) when k is the whole row
    values, index = values[..., :k], index[..., :k]
    # (score descending, index ascending) among the k: a stable sort by index, then by score.
    order = index.argsort(dim=-1, stable=True)
    values, index = values.gather(-1, order), index.gather(-1, order)
    order = values.argsort(dim=-1, descending=True, stable=True)
    values, index = values.gather(-1, order), index.gather(-1, order)
    kth = values[..., -1:]
    tied = (following == kth).any(dim=-1)  # more items at the k-th score than places
    if tied.any():
        rows = tied.nonzero().squeeze(-1)
        above = (values[rows] > kth[rows]).sum(dim=-1, keepdim=True)  # the places before the ties
        # The lowest indices at the k-th score come first when ranked by (items - index).
        items = scores.shape[-1]
        rank = torch.arange(items, 0, -1, device=scores.device, dtype=torch.float32)
        lowest = torch.topk(torch.where(scores[rows] == kth[rows], rank, 0.0), k, dim=-1).indices
        place = torch.arange(k, device=scores.device)
        from_ties = lowest.gather(-1, (place - above).clamp(min=0))
        index[rows] = torch.where(place < above, index[rows], from_ties)
    return index


def rank_unseen(scores: torch.Tensor, seen: torch.Tensor, k: int) -> torch.Tensor:
    """The k best-scored items of each row that ``seen`` does not mark (B, k), ties to the lower id."""
    return top_k_stable(mask_seen(scores, seen), k)
