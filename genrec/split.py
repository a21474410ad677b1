"""docs/method.md §3: hold out each user's future, and split the evaluated users into validation and test.

Every output is a long table; held-out tables have ``user_id, item_id, position`` with
position 0..n-1 in time order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from genrec.errors import UserError
from genrec.params import AtLeast1, Fraction, Section

METHODS = ("leave_last_n", "global_time")


class SplitParams(Section):
    method: Literal[METHODS]
    n: AtLeast1  # held-out items per user (the horizon of the ground truth)
    quantile: Fraction  # global_time: the cutoff is this quantile of all timestamps
    validation_fraction: Fraction  # share of evaluated users used for validation
    seed: int


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame  # user_id, item_id, timestamp: every user's training interactions
    validation: pd.DataFrame  # user_id, item_id, position
    test: pd.DataFrame  # user_id, item_id, position
    excluded_users: int  # users with no training or no held-out interaction


def positions_within_user(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by user: each row's 0-based position in its user, and its user's length."""
    counts = np.bincount(users)
    starts = np.cumsum(counts) - counts
    return np.arange(len(users)) - starts[users], counts[users]


def split(interactions: pd.DataFrame, params: SplitParams) -> Split:
    users = interactions["user_id"].to_numpy()
    position, length = positions_within_user(users)
    if params.method == "leave_last_n":
        held = position >= length - params.n
    else:
        timestamps = interactions["timestamp"].to_numpy()
        cutoff = np.quantile(timestamps, params.quantile, method="lower")
        held = timestamps > cutoff

    # A user is evaluated if it has both a training and a held-out interaction.
    n_users = int(users.max()) + 1
    has_train = np.bincount(users[~held], minlength=n_users) > 0
    has_held = np.bincount(users[held], minlength=n_users) > 0
    evaluated = np.flatnonzero(has_train & has_held)
    excluded = int(np.count_nonzero(np.bincount(users, minlength=n_users)) - len(evaluated))
    if len(evaluated) < 2:
        raise UserError(
            f"split leaves {len(evaluated)} user(s) with both training and held-out interactions; at least 2 "
            "are needed (one validation, one test). Lower split.n or change split.quantile"
        )

    held_rows = interactions[held & np.isin(users, evaluated)]
    held_position, _ = positions_within_user(_dense(held_rows["user_id"].to_numpy()))
    targets = pd.DataFrame({
        "user_id": held_rows["user_id"].to_numpy(),
        "item_id": held_rows["item_id"].to_numpy(),
        "position": held_position,
    })
    targets = targets[targets["position"] < params.n].reset_index(drop=True)

    rng = np.random.default_rng(params.seed)
    shuffled = rng.permutation(evaluated)
    n_validation = int(round(len(evaluated) * params.validation_fraction))
    n_validation = min(max(n_validation, 1), len(evaluated) - 1)
    is_validation = np.isin(targets["user_id"].to_numpy(), shuffled[:n_validation])
    return Split(
        train=interactions.loc[~held, ["user_id", "item_id", "timestamp"]].reset_index(drop=True),
        validation=targets[is_validation].reset_index(drop=True),
        test=targets[~is_validation].reset_index(drop=True),
        excluded_users=excluded,
    )


def _dense(sorted_ids: np.ndarray) -> np.ndarray:
    """Map sorted, possibly sparse ids to 0..k-1 (keeps bincount small)."""
    return np.unique(sorted_ids, return_inverse=True)[1]
