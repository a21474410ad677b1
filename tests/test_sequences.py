"""genrec.sequences.UserSequences: CSR sequences, padded batches and seen-item masks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from genrec.sequences import UserSequences

# User 0: 5 3 7; user 1: nothing; user 2: 2; user 3: 1 2 3 4 6; user 4: nothing (the last user).
FRAME = pd.DataFrame({
    "user_id": [0, 0, 0, 2, 3, 3, 3, 3, 3],
    "item_id": [5, 3, 7, 2, 1, 2, 3, 4, 6],
})
SEQ = UserSequences.from_frame(FRAME, num_users=5)
ALL = np.arange(5)


def test_from_frame():
    np.testing.assert_array_equal(SEQ.indptr, [0, 3, 3, 4, 9, 9])
    np.testing.assert_array_equal(SEQ.items, [5, 3, 7, 2, 1, 2, 3, 4, 6])
    assert SEQ.indptr.dtype == np.int64 and SEQ.items.dtype == np.int64
    assert SEQ.num_users == 5
    np.testing.assert_array_equal(SEQ.lengths(ALL), [3, 0, 1, 5, 0])
    np.testing.assert_array_equal(SEQ.lengths(np.array([3, 0])), [5, 3])


def test_last_items_right():
    np.testing.assert_array_equal(SEQ.last_items(ALL, 4, side="right"), [
        [5, 3, 7, 0],
        [0, 0, 0, 0],
        [2, 0, 0, 0],
        [2, 3, 4, 6],  # the last 4 of 1 2 3 4 6
        [0, 0, 0, 0],
    ])
    np.testing.assert_array_equal(SEQ.last_items(ALL, 6), [  # right is the default
        [5, 3, 7, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [2, 0, 0, 0, 0, 0],
        [1, 2, 3, 4, 6, 0],
        [0, 0, 0, 0, 0, 0],
    ])


def test_last_items_left():
    np.testing.assert_array_equal(SEQ.last_items(ALL, 4, side="left"), [
        [0, 5, 3, 7],
        [0, 0, 0, 0],
        [0, 0, 0, 2],
        [2, 3, 4, 6],
        [0, 0, 0, 0],
    ])
    np.testing.assert_array_equal(SEQ.last_items(ALL, 6, side="left"), [
        [0, 0, 0, 5, 3, 7],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 2],
        [0, 1, 2, 3, 4, 6],
        [0, 0, 0, 0, 0, 0],
    ])


def test_last_items_truncation_and_user_order():
    users = np.array([3, 0, 4, 2])
    np.testing.assert_array_equal(SEQ.last_items(users, 2, side="right"), [[4, 6], [3, 7], [0, 0], [2, 0]])
    np.testing.assert_array_equal(SEQ.last_items(users, 2, side="left"), [[4, 6], [3, 7], [0, 0], [0, 2]])
    np.testing.assert_array_equal(SEQ.last_items(users, 1, side="left"), [[6], [7], [0], [2]])
    assert SEQ.last_items(users[:0], 3).shape == (0, 3)


def test_seen_mask():
    mask = SEQ.seen_mask(ALL, num_items=7)
    assert mask.dtype == torch.bool and mask.shape == (5, 8)
    expected = torch.tensor([
        # 0  1  2  3  4  5  6  7
        [1, 0, 0, 1, 0, 1, 0, 1],
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 0, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 1, 0],
        [1, 0, 0, 0, 0, 0, 0, 0],
    ], dtype=torch.bool)
    assert torch.equal(mask, expected)
    # Any subset and order of users; the whole history counts, not just a window.
    assert torch.equal(SEQ.seen_mask(np.array([3, 1]), 7), expected[[3, 1]])


def test_no_items_at_all():
    empty = UserSequences.from_frame(pd.DataFrame({"user_id": np.array([], dtype=np.int64),
                                                   "item_id": np.array([], dtype=np.int64)}), num_users=2)
    np.testing.assert_array_equal(empty.indptr, [0, 0, 0])
    np.testing.assert_array_equal(empty.last_items(np.arange(2), 3, side="left"), np.zeros((2, 3)))
    np.testing.assert_array_equal(empty.last_items(np.arange(2), 3, side="right"), np.zeros((2, 3)))
    mask = empty.seen_mask(np.arange(2), 4)
    assert mask[:, 0].all() and not mask[:, 1:].any()


def test_check_unseen_names_the_users_and_the_fix():
    from genrec.errors import UserError
    from genrec.sequences import check_unseen

    # Catalogue of 7 items: user 0 saw 3 (4 unseen), user 3 saw 5 (2 unseen), user 2 saw 1 (6 unseen).
    check_unseen(SEQ, np.array([0, 2, 3]), 7, 2, "generation.horizon")
    try:
        check_unseen(SEQ, np.array([0, 2, 3]), 7, 5, "generation.horizon")
    except UserError as error:
        message = str(error)
    else:
        raise AssertionError("no error")
    assert "2 user(s) have fewer than generation.horizon = 5 unseen items" in message
    assert "user 0 (4), user 3 (2)" in message and "at most 2" in message
    # A repeated item is seen once: 2 distinct of 7 leave 5 unseen (counting rows would leave 4).
    repeated = UserSequences.from_frame(pd.DataFrame({"user_id": [0, 0, 0], "item_id": [1, 1, 2]}), 1)
    check_unseen(repeated, np.array([0]), 7, 5, "popularity.k")
