"""Users' item sequences in CSR form, and the padded batches and seen-item masks built from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genrec.errors import UserError
from genrec.io import read_json, read_table
from genrec.preprocess import distinct_counts


@dataclass(frozen=True)
class UserSequences:
    """Item sequences of users 0..U-1 in time order: ``items[indptr[u]:indptr[u + 1]]``."""

    indptr: np.ndarray  # (U + 1,) int64
    items: np.ndarray  # (nnz,) int64

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, num_users: int) -> "UserSequences":
        """From a long table with ``user_id, item_id`` already sorted by user, then time."""
        counts = np.bincount(frame["user_id"].to_numpy(), minlength=num_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr=indptr, items=frame["item_id"].to_numpy().astype(np.int64))

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 1

    def lengths(self, users: np.ndarray) -> np.ndarray:
        return self.indptr[users + 1] - self.indptr[users]

    def last_items(self, users: np.ndarray, length: int, side: str = "right") -> np.ndarray:
        """(len(users), length) matrix of each user's last ``length`` items, 0-padded.

        ``side="right"`` puts a user's items at positions 0..n-1 (as in training);
        ``side="left"`` ends every row at the last column (as for batched generation).
        """
        ends = self.indptr[users + 1]
        n = np.minimum(ends - self.indptr[users], length)
        cols = np.arange(length)
        if side == "right":
            index = (ends - n)[:, None] + cols[None, :]
            valid = cols[None, :] < n[:, None]
        else:
            index = ends[:, None] - length + cols[None, :]
            valid = cols[None, :] >= (length - n)[:, None]
        index = np.clip(index, 0, max(len(self.items) - 1, 0))
        return np.where(valid, self.items[index] if len(self.items) else 0, 0)

    def pairs(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every seen (row, item) of ``users``: row i of ``users``, long form, in sequence order."""
        lengths = self.lengths(users)
        rows = np.repeat(np.arange(len(users)), lengths)
        # Position of every seen item in ``items``: each user's start plus 0..length-1.
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return rows, self.items[np.repeat(self.indptr[users], lengths) + offsets]

    def seen_mask(self, users: np.ndarray, num_items: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(len(users), num_items + 1) bool tensor: True for each user's seen items and for padding 0."""
        rows, cols = self.pairs(users)
        mask = torch.zeros(len(users), num_items + 1, dtype=torch.bool, device=device)
        mask[torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)] = True
        mask[:, 0] = True
        return mask


def check_unseen(sequences: UserSequences, users: np.ndarray, num_items: int, k: int, label: str) -> None:
    """Refuse, before any work, users who have seen so much of the catalogue that fewer than
    ``k`` unseen items are left: their list would need padding, seen items or repeats.

    One check for every strategy and baseline; the message names the users and the fix.
    """
    users = np.asarray(users)
    rows, items = sequences.pairs(users)
    unseen = num_items - distinct_counts(rows, items, len(users), num_items + 1)
    short = np.flatnonzero(unseen < k)
    if len(short):
        shown = ", ".join(f"user {users[i]} ({unseen[i]})" for i in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise UserError(
            f"{len(short)} user(s) have fewer than {label} = {k} unseen items among the {num_items} items of "
            f"the catalogue, so their list cannot be filled without padding, seen items or repeats: "
            f"{shown}{more} (user ids of data/split, unseen items in brackets). Set {label} to at most "
            f"{int(unseen.min())}, or use a dataset with a larger catalogue"
        )


@dataclass(frozen=True)
class Split:
    """The output of the ``split`` stage as every model stage reads it."""

    train: pd.DataFrame  # user_id, item_id, ... in time order
    validation: pd.DataFrame  # the validation users' held-out items, with their position 0..n-1
    test: pd.DataFrame  # the test users' held-out items
    num_users: int
    num_items: int  # item ids are 1..num_items; 0 is padding
    sequences: UserSequences  # every user's training items

    @classmethod
    def load(cls, path: str | Path = "data/split") -> "Split":
        meta = read_json(f"{path}/meta.json", "split", ["num_users", "num_items"])
        train = read_table(f"{path}/train.parquet", "split", ["user_id", "item_id"])
        held = [read_table(f"{path}/{name}.parquet", "split", ["user_id", "item_id", "position"])
                for name in ("validation", "test")]
        return cls(train, *held, meta["num_users"], meta["num_items"], UserSequences.from_frame(train, meta["num_users"]))

    @property
    def validation_users(self) -> np.ndarray:
        return self.validation["user_id"].drop_duplicates().sort_values().to_numpy()

    @property
    def test_users(self) -> np.ndarray:
        return self.test["user_id"].drop_duplicates().sort_values().to_numpy()

    def first_held_out(self) -> tuple[np.ndarray, np.ndarray]:
        """The validation users and each one's first held-out item: what early stopping scores."""
        first = self.validation.query("position == 0").sort_values("user_id")
        return first["user_id"].to_numpy(), first["item_id"].to_numpy()
