"""SPEC §2: frequency filters, a stable sort by user and time, and id remapping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrec.errors import UserError
from genrec.params import require


@dataclass(frozen=True)
class PreprocessParams:
    min_item_users: int = 5  # keep items seen by at least this many distinct users
    min_user_items: int = 20  # then users with at least this many distinct items

    def validate(self) -> None:
        require(self.min_item_users >= 1, "preprocess.min_item_users", f"must be at least 1, got {self.min_item_users}")
        require(self.min_user_items >= 1, "preprocess.min_user_items", f"must be at least 1, got {self.min_user_items}")


@dataclass(frozen=True)
class Prepared:
    interactions: pd.DataFrame  # user_id (0..U-1), item_id (1..N), timestamp, rating; sorted
    users: pd.DataFrame  # user_id, raw_user_id
    items: pd.DataFrame  # item_id, raw_item_id


def distinct_counts(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """For each row code, the number of distinct column codes it occurs with."""
    pairs = np.unique(rows.astype(np.int64) * n_cols + cols)
    return np.bincount(pairs // n_cols, minlength=n_rows)


def preprocess(raw: pd.DataFrame, params: PreprocessParams) -> Prepared:
    # Codes in sorted raw-id order, so the remapping does not depend on row order.
    user_code, user_raw = pd.factorize(raw["user_id"], sort=True)
    item_code, item_raw = pd.factorize(raw["item_id"], sort=True)
    n_users, n_items = len(user_raw), len(item_raw)

    item_users = distinct_counts(item_code, user_code, n_items, n_users)
    keep = item_users[item_code] >= params.min_item_users
    user_items = distinct_counts(user_code[keep], item_code[keep], n_users, n_items)
    keep &= user_items[user_code] >= params.min_user_items
    if not keep.any():
        raise UserError(
            f"the filters leave no users: no user has {params.min_user_items} distinct items among the "
            f"items seen by {params.min_item_users}+ users. Lower preprocess.min_user_items or "
            "preprocess.min_item_users, or use a larger dataset"
        )

    kept_users = np.flatnonzero(np.bincount(user_code[keep], minlength=n_users))
    kept_items = np.flatnonzero(np.bincount(item_code[keep], minlength=n_items))
    new_user = np.full(n_users, -1, dtype=np.int64)
    new_user[kept_users] = np.arange(len(kept_users))
    new_item = np.zeros(n_items, dtype=np.int64)
    new_item[kept_items] = np.arange(1, len(kept_items) + 1)  # 0 is padding

    users = new_user[user_code[keep]]
    timestamps = raw["timestamp"].to_numpy()[keep]
    order = np.lexsort((timestamps, users))  # stable: ties keep the file's order
    interactions = pd.DataFrame({
        "user_id": users[order],
        "item_id": new_item[item_code[keep]][order],
        "timestamp": timestamps[order].astype(np.int64),
        "rating": raw["rating"].to_numpy()[keep][order],
    })
    return Prepared(
        interactions=interactions,
        users=pd.DataFrame({"user_id": np.arange(len(kept_users)), "raw_user_id": user_raw[kept_users]}),
        items=pd.DataFrame({"item_id": np.arange(1, len(kept_items) + 1), "raw_item_id": item_raw[kept_items]}),
    )


def statistics(interactions: pd.DataFrame) -> dict[str, float]:
    lengths = np.bincount(interactions["user_id"].to_numpy())
    lengths = lengths[lengths > 0]
    return {
        "interactions": int(len(interactions)),
        "users": int(len(lengths)),
        "items": int(interactions["item_id"].nunique()),
        "user_length_min": int(lengths.min()),
        "user_length_median": float(np.median(lengths)),
        "user_length_mean": round(float(lengths.mean()), 2),
        "user_length_max": int(lengths.max()),
    }
