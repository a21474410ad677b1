"""docs/method.md §4: causal next-item training with validation-based early stopping."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genrec import metrics
from genrec.model import PADDING, rank_next_items, stop_if_diverged
from genrec.params import AtLeast1, PositiveFloat, Section
from genrec.sequences import UserSequences


class TrainParams(Section):
    lr: PositiveFloat
    batch_size: AtLeast1
    max_epochs: AtLeast1
    patience: AtLeast1  # stop after this many epochs without a better validation NDCG@10
    seed: int
    device: str  # auto (CUDA when present), cpu or cuda


@dataclass
class EpochResult:
    epoch: int  # 1-based
    loss: float
    ndcg: float  # validation NDCG@10 on the first held-out item
    hit_rate: float
    seconds: float  # training and validation
    validation_seconds: float


@dataclass
class TrainResult:
    best: EpochResult
    history: list[EpochResult] = field(default_factory=list)
    best_state: dict = field(default_factory=dict)


def training_matrix(sequences: UserSequences, n_positions: int) -> torch.Tensor:
    """(users with ≥ 2 items, n_positions + 1) right-padded last items: inputs are [:, :-1],
    labels [:, 1:]. Built once; epochs only permute rows."""
    users = np.flatnonzero(sequences.lengths(np.arange(sequences.num_users)) >= 2)
    return torch.from_numpy(sequences.last_items(users, n_positions + 1, side="right"))


def validate(model, sequences: UserSequences, users: np.ndarray, targets: np.ndarray, window: int,
             k: int = 10) -> tuple[float, float]:
    """Validation NDCG@k and HR@k against each user's first held-out item."""
    model.eval()
    try:
        recs = rank_next_items(model, sequences, users, window, k).numpy()
    except FloatingPointError:  # overflowed weights: stop_if_diverged stops the training
        return math.nan, math.nan
    scores = metrics.per_user(recs, targets[:, None])
    return float(scores["ndcg"].mean()), float(scores["hit_rate"].mean())


def train(model, sequences: UserSequences, val_users: np.ndarray, val_targets: np.ndarray,
          params: TrainParams, device: torch.device,
          on_epoch: Callable[[EpochResult], None] = lambda result: None) -> TrainResult:
    """Train ``model`` in place; return the history and the best epoch's weights."""
    torch.manual_seed(params.seed)
    generator = torch.Generator().manual_seed(params.seed)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    window = model.config.n_positions
    data = training_matrix(sequences, window)
    result: TrainResult | None = None
    for epoch in range(1, params.max_epochs + 1):
        start = time.perf_counter()
        model.train()
        total_loss, total_tokens = torch.zeros((), device=device), 0
        for batch in data[torch.randperm(len(data), generator=generator)].split(params.batch_size):
            # Drop columns that are padding in every row: most users are shorter than the window.
            width = int((batch != PADDING).sum(dim=1).max())
            tokens = int((batch[:, 1:width] != PADDING).sum())  # counted on the CPU: no device sync
            batch = batch[:, :width].to(device, non_blocking=True)
            inputs, labels = batch[:, :-1], batch[:, 1:]
            hidden = model.transformer(input_ids=inputs, attention_mask=(inputs != PADDING).long()).last_hidden_state
            # Project only real positions onto the catalogue: the (tokens, V) logits dominate the cost.
            real = labels != PADDING
            logits = model.lm_head(hidden[real])  # (tokens, V)
            loss = F.cross_entropy(logits, labels[real], reduction="sum")
            optimizer.zero_grad(set_to_none=True)
            (loss / tokens).backward()
            optimizer.step()
            total_loss += loss.detach()
            total_tokens += tokens
        total_loss = float(total_loss)
        validation_start = time.perf_counter()
        ndcg, hit_rate = validate(model, sequences, val_users, val_targets, window)
        end = time.perf_counter()
        current = EpochResult(epoch, total_loss / total_tokens, ndcg, hit_rate, end - start, end - validation_start)
        stop_if_diverged(epoch, {"training loss": current.loss, "validation NDCG@10": ndcg}, "train.lr")
        if result is None or current.ndcg > result.best.ndcg:
            best_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
            result = TrainResult(best=current, history=(result.history if result else []), best_state=best_state)
        result.history.append(current)
        on_epoch(current)
        if current.epoch - result.best.epoch >= params.patience:
            break
    return result
