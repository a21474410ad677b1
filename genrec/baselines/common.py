"""What the baselines share beyond the training loop (``genrec.training``): left-padded
batches, and recommending from the best epoch's model."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from genrec.training import Data, EpochResult, TrainResult, recommend


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
