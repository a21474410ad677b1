"""What the baselines share beyond the training loop (``genrec.training``): their params
checks, left-padded batches, and recommending from the best epoch's model."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from genrec.params import require
from genrec.training import Data, EpochResult, TrainResult, recommend


def check_training(section: str, values: Any) -> None:
    """The checks shared by the trained baselines' params (``k``, ``lr``, epochs, patience)."""
    require(values.k >= 1, f"{section}.k", f"must be at least 1, got {values.k}")
    require(values.lr > 0, f"{section}.lr", f"must be positive, got {values.lr}")
    require(values.max_epochs >= 1, f"{section}.max_epochs", f"must be at least 1, got {values.max_epochs}")
    require(values.patience >= 1, f"{section}.patience", f"must be at least 1, got {values.patience}")


def check_transformer(section: str, values: Any) -> None:
    """The checks shared by SASRec's and BERT4Rec's params."""
    check_training(section, values)
    for name in ("hidden", "layers", "heads", "batch_size"):
        value = getattr(values, name)
        require(value >= 1, f"{section}.{name}", f"must be at least 1, got {value}")
    require(values.max_len >= 2, f"{section}.max_len", f"must be at least 2, got {values.max_len}")
    require(values.hidden % values.heads == 0, f"{section}.hidden",
            f"({values.hidden}) must be divisible by {section}.heads ({values.heads})")
    require(0.0 <= values.dropout < 1.0, f"{section}.dropout", f"must be in [0, 1), got {values.dropout}")


def trim_left(batch: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """Drop the leading columns that are padding in every row of a left-padded batch:
    most users are shorter than the window."""
    width = max(int((batch != padding).sum(dim=1).max()), 1)
    return batch[:, batch.shape[1] - width:]


def fit_then_recommend(fit: Callable, scorer: Callable) -> Callable:
    """A baseline's ``fit_recommend`` from its ``fit`` and ``scorer``: train, then recommend
    ``params.k`` unseen items to each user from the best epoch's model."""
    def fit_recommend(data: Data, users: np.ndarray, params: Any, device: torch.device = torch.device("cpu"),
                      on_epoch: Callable[[EpochResult], None] = lambda result: None
                      ) -> tuple[np.ndarray, TrainResult]:
        model, result = fit(data, params, device, on_epoch)
        return recommend(scorer(model, data, device), data.sequences, users, params.k), result

    return fit_recommend
