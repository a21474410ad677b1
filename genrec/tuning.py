"""Choosing a strategy's generation settings on the validation users (method §6b).

Every point of the strategy's grid recommends for the validation users and is scored
against their held-out items; the best NDCG@K wins, ties going to the earlier point.
Only validation users and their targets are passed in, so test data cannot sway the choice.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd

from genrec import metrics
from genrec.sequences import UserSequences
from genrec.strategies import GenerationParams, recommend


def tune(strategy: str, model, sequences: UserSequences, users: np.ndarray, targets: pd.DataFrame,
         num_train_items: int, config: GenerationParams, log: Callable[[str], None] = print
         ) -> tuple[GenerationParams, pd.DataFrame, np.ndarray]:
    """The chosen setting, the grid with its validation metrics (one row per point, in grid
    order, ``chosen`` marking the winner) and the chosen setting's validation recommendations."""
    grid = config.grid(strategy)
    key = f"ndcg@{config.horizon}"
    rows, best, best_recs = [], None, None
    for index, point in enumerate(grid, start=1):
        start = time.perf_counter()
        recs = recommend(strategy, model, sequences, users, point)
        summary, _ = metrics.evaluate(recs, users, targets, num_train_items)
        rows.append({**point.chosen(strategy), **summary})
        if best is None or summary[key] > rows[best][key]:  # strictly better: ties keep the earlier point
            best, best_recs = index - 1, recs
        if len(grid) > 1:
            seconds = time.perf_counter() - start
            log(f"{strategy} tuning {index}/{len(grid)}: "
                + ", ".join(f"{k} {v}" for k, v in point.chosen(strategy).items())
                + f" -> validation {key} {summary[key]:.4f} ({len(users) / seconds:.0f} users/s)")
    table = pd.DataFrame(rows)
    table.insert(len(grid[0].chosen(strategy)), "chosen", np.arange(len(grid)) == best)
    return grid[best], table, best_recs
