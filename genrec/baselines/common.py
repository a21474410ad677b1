"""What the baselines share: Top-K ranking with seen items removed, validation NDCG@10 on
the first held-out item, and early stopping on it (as ``genrec.training`` does for GPT-2)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from genrec import metrics
from genrec.model import check_scores, stop_if_diverged, top_k_stable
from genrec.sequences import UserSequences

VALIDATION_K = 10  # validation NDCG@10 / HR@10, whatever the list length k
BATCH_USERS = 256  # users scored at once when ranking


@dataclass(frozen=True)
class Data:
    """The training sequences of every user and the validation users' first held-out item."""

    sequences: UserSequences
    num_items: int  # item ids are 1..num_items; 0 is padding
    val_users: np.ndarray
    val_targets: np.ndarray


@dataclass
class EpochResult:
    epoch: int  # 1-based
    train: dict[str, float]  # training statistics of the epoch ({"loss": ...}); logged as train/<key>
    ndcg: float  # validation NDCG@10 on the first held-out item
    hit_rate: float
    seconds: float  # training since the previous validation, and this validation


@dataclass
class TrainResult:
    best: EpochResult
    history: list[EpochResult] = field(default_factory=list)
    best_state: Any = None  # whatever ``snapshot`` returned at the best epoch


Scorer = Callable[[np.ndarray], torch.Tensor]  # users (B,) -> scores (B, num_items + 1)


def top_k_unseen(scores: torch.Tensor, sequences: UserSequences, users: np.ndarray, k: int) -> torch.Tensor:
    """(B, k) CPU tensor: the k best-scored items of each user that the user has not seen
    (padding 0 never), ties to the lower id."""
    scores = check_scores(scores.float()).masked_fill(sequences.seen_mask(users, scores.shape[1] - 1, scores.device), -torch.inf)
    return top_k_stable(scores, k).cpu()


@torch.no_grad()
def recommend(score: Scorer, sequences: UserSequences, users: np.ndarray, k: int) -> np.ndarray:
    """(len(users), k) recommendations, scored ``BATCH_USERS`` users at a time."""
    users = np.asarray(users)
    out = [top_k_unseen(score(users[start:start + BATCH_USERS]), sequences, users[start:start + BATCH_USERS], k)
           for start in range(0, len(users), BATCH_USERS)]
    return torch.cat(out).numpy() if out else np.zeros((0, k), dtype=np.int64)


def validate(score: Scorer, data: Data) -> tuple[float, float]:
    """Validation NDCG@10 and HR@10 against each validation user's first held-out item."""
    try:
        recs = recommend(score, data.sequences, data.val_users, VALIDATION_K)
    except FloatingPointError:  # overflowed weights: early_stopping stops the training
        return math.nan, math.nan
    per_user = metrics.per_user(recs, np.asarray(data.val_targets)[:, None])
    return float(per_user["ndcg"].mean()), float(per_user["hit_rate"].mean())


def early_stopping(train_epoch: Callable[[], dict[str, float]], score: Scorer, snapshot: Callable[[], Any],
                   data: Data, max_epochs: int, patience: int,
                   on_epoch: Callable[[EpochResult], None] = lambda result: None, step: int = 1,
                   lr_label: str = "the learning rate") -> TrainResult:
    """Train epoch by epoch, validating after each; stop ``patience`` epochs after the best one.

    ``snapshot`` copies the model's state; the best epoch's copy is returned, never the last.
    A tie is no improvement: the earlier epoch stays the best. With ``step`` > 1 each call of
    ``train_epoch`` trains ``step`` epochs and validation follows every ``step``-th epoch.
    A NaN or infinite training statistic or validation stops with a ``UserError`` naming ``lr_label``.
    """
    result: TrainResult | None = None
    for epoch in range(step, max_epochs + 1, step):
        start = time.perf_counter()
        stats = train_epoch()
        ndcg, hit_rate = validate(score, data)
        current = EpochResult(epoch, stats, ndcg, hit_rate, time.perf_counter() - start)
        stop_if_diverged(epoch, {**{f"training {k}": v for k, v in stats.items()}, "validation NDCG@10": ndcg},
                         lr_label)
        if result is None or current.ndcg > result.best.ndcg:
            result = TrainResult(best=current, history=result.history if result else [], best_state=snapshot())
        result.history.append(current)
        on_epoch(current)
        if current.epoch - result.best.epoch >= patience:
            break
    return result


def training_users(sequences: UserSequences) -> np.ndarray:
    """Users with at least two training items: a single item has no next item to learn."""
    return np.flatnonzero(sequences.lengths(np.arange(sequences.num_users)) >= 2)


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def trim_left(batch: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """Drop the leading columns that are padding in every row of a left-padded batch:
    most users are shorter than the window."""
    width = max(int((batch != padding).sum(dim=1).max()), 1)
    return batch[:, batch.shape[1] - width:]


def fit_neural(model: torch.nn.Module, matrix: torch.Tensor, train_epoch: Callable, scorer: Callable, data: Data,
               params: Any, device: torch.device, on_epoch: Callable[[EpochResult], None],
               lr_label: str = "the learning rate") -> TrainResult:
    """Adam on shuffled rows of ``matrix`` (seeded by ``params.seed``) with early stopping on
    validation NDCG@10; loads the best epoch's weights into ``model``. Shared by SASRec and BERT4Rec,
    whose ``train_epoch(model, matrix, params, optimizer, generator, device)`` differ."""
    generator = torch.Generator().manual_seed(params.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    result = early_stopping(lambda: train_epoch(model, matrix, params, optimizer, generator, device),
                            scorer(model, data, device), lambda: state_copy(model), data,
                            params.max_epochs, params.patience, on_epoch, lr_label=lr_label)
    model.load_state_dict(result.best_state)
    return result


def fit_then_recommend(fit: Callable, scorer: Callable) -> Callable:
    """A baseline's ``fit_recommend`` from its ``fit`` and ``scorer``: train, then recommend
    ``params.k`` unseen items to each user from the best epoch's model."""
    def fit_recommend(data: Data, users: np.ndarray, params: Any, device: torch.device = torch.device("cpu"),
                      on_epoch: Callable[[EpochResult], None] = lambda result: None
                      ) -> tuple[np.ndarray, TrainResult]:
        model, result = fit(data, params, device, on_epoch)
        return recommend(scorer(model, data, device), data.sequences, users, params.k), result

    return fit_recommend
