"""``popularity``: every user gets the most popular items they have not seen.

Popularity = the number of training interactions of an item; ties go to the lower item id.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from genrec.params import Section
from genrec.training import Data, EpochResult, TrainResult, recommend

TRAINED = False


class Params(Section):
    """Nothing to set: popularity has no section in params.yaml."""


def fit_recommend(data: Data, users: np.ndarray, params: Params | None, k: int, device: torch.device | None = None,
                  on_epoch: Callable[[EpochResult], None] | None = None) -> tuple[np.ndarray, TrainResult | None]:
    """(len(users), k) recommendations; nothing is trained, so no ``TrainResult``."""
    counts = np.bincount(data.sequences.items, minlength=data.num_items + 1)
    # float32 holds counts up to 2**24 exactly; the stable Top-K sends equal counts to the lower id.
    popularity = torch.from_numpy(counts.astype(np.float32))
    recs = recommend(lambda batch: popularity.expand(len(batch), -1), data.sequences, users, k)
    return recs, None
