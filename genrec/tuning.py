"""Choosing a strategy's generation settings on the validation users (method §6b).

Every point of the strategy's grid recommends for the validation users and is scored
against their held-out items; the best NDCG@K wins, ties going to the earlier point.
Only validation users and their targets are passed in, so test data cannot sway the choice.
RRA and RA generate once for all the points that differ only in ``num_sequences``: the lists
of n sequences come from the first n of the largest draw (``strategies.recommend_counts``).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from genrec import metrics
from genrec.distributed import SINGLE, Group
from genrec.progress import Progress
from genrec.sequences import UserSequences
from genrec.strategies import STRATEGIES, GenerationParams, auto_batch_size, recommend, recommend_counts

# A stage is timed before it starts when users x sequences x items to generate reaches this
# (RRA on ML-20M: 69,000 validation users x 10 draws + 69,000 test users, x 30 x 18,346 = 4e11;
# on ML-1M, 7e9, minutes on a CPU).
ESTIMATE_ABOVE = 2e10


def tune(strategy: str, model, sequences: UserSequences, users: np.ndarray, targets: pd.DataFrame,
         catalogue: metrics.Catalogue, config: GenerationParams, show_progress: bool = True, group: Group = SINGLE
         ) -> tuple[GenerationParams, pd.DataFrame, np.ndarray]:
    """The chosen setting, the grid with its validation metrics (one row per point, in grid
    order: ``setting`` its values as one label, then each key, ``chosen`` marking the winner)
    and the chosen setting's validation recommendations."""
    grid = config.grid(strategy)
    key = f"ndcg@{config.horizon}"
    rows, best, best_recs = [], None, None
    bar = Progress(len(grid), f"{strategy} tuning on {len(users)} validation users", "settings") \
        if show_progress and len(grid) > 1 else None
    shared = {}  # grid index -> lists made with an earlier point's draw
    for index, point in enumerate(grid):
        if index not in shared:
            shared.update(_lists(strategy, model, sequences, users, grid, index, group))
        recs, _ = shared.pop(index)
        summary, _ = metrics.evaluate(recs, users, targets, catalogue)
        rows.append({**point.chosen(strategy), **summary})
        if best is None or summary[key] > rows[best][key]:  # strictly better: ties keep the earlier point
            best, best_recs = index, recs
        if bar:
            bar.update(**point.chosen(strategy), **{key: summary[key], f"best {key}": rows[best][key]})
    if bar:
        bar.close()
    table = pd.DataFrame(rows)
    table.insert(len(grid[0].chosen(strategy)), "chosen", np.arange(len(grid)) == best)
    # One label per point (its values in key order), for plots whose x axis is the whole setting.
    table.insert(0, "setting", [" / ".join(f"{value:g}" for value in point.chosen(strategy).values()) or "-"
                                for point in grid])
    return grid[best], table, best_recs


def _lists(strategy: str, model, sequences: UserSequences, users: np.ndarray, grid: list[GenerationParams],
           index: int, group: Group) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The lists of grid point ``index``, with those of the later points that share its draw."""
    point = grid[index]
    if STRATEGIES[strategy].batch_of_counts is None:
        return {index: recommend(strategy, model, sequences, users, point, group=group)}
    rest = point.model_copy(update={"num_sequences": None})
    same = [i for i in range(index, len(grid)) if grid[i].model_copy(update={"num_sequences": None}) == rest]
    lists = recommend_counts(strategy, model, sequences, users, point, [grid[i].num_sequences for i in same],
                             group=group)
    return dict(zip(same, lists))


def draws(strategy: str, config: GenerationParams) -> int:
    """Generations tuning makes over the validation users: one per grid point, except that RRA's
    and RA's points that differ only in ``num_sequences`` share one."""
    grid = config.grid(strategy)
    if STRATEGIES[strategy].batch_of_counts is None:
        return len(grid)
    return len({point.model_copy(update={"num_sequences": None}).model_dump_json() for point in grid})


def estimated_seconds(strategy: str, model, sequences: UserSequences, val_users: np.ndarray,
                      test_users: np.ndarray, config: GenerationParams, world: int = 1) -> float | None:
    """Seconds for tuning on ``val_users`` and recommending for ``test_users``, from one batch of
    validation users generated at the widest grid point (its lists thrown away); None when the
    work is too small to be worth timing."""
    kind = STRATEGIES[strategy]
    widest = max(config.grid(strategy), key=kind.width)
    users = len(val_users) * draws(strategy, config) + len(test_users)
    items = model.config.vocab_size
    if users * kind.width(widest) * items < ESTIMATE_ABOVE:
        return None
    shape = model.config
    batch = auto_batch_size(strategy, widest, items - 1, shape.n_positions - widest.horizon, shape.n_embd,
                            shape.n_layer, next(model.parameters()).device)
    sample = np.asarray(val_users)[:batch]
    start = time.perf_counter()
    recommend(strategy, model, sequences, sample, widest)
    return (time.perf_counter() - start) / len(sample) * users / world
