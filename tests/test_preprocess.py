"""genrec.preprocess: filters, stable sort and id remapping (docs/method.md §2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrec import params
from genrec.errors import UserError
from genrec.preprocess import PreprocessParams, preprocess, statistics
from helpers import defaults, section_values

# Raw rows in file order: (user, item, timestamp, rating).
RAW_ROWS = [
    (20, 300, 5, 1.0),   # 0
    (10, 200, 3, 2.0),   # 1  tie with row 2 at t=3: 200 stays before 100
    (10, 100, 3, 3.0),   # 2
    (5, 100, 1, 4.0),    # 3
    (30, 100, 2, 5.0),   # 4  user 30 loses item 400 to the item filter, then has 2 items
    (20, 100, 1, 1.5),   # 5
    (10, 400, 1, 2.5),   # 6  item 400 has 2 distinct users (10, 30) < 3: removed
    (5, 200, 2, 3.5),    # 7
    (20, 200, 5, 4.5),   # 8  tie with row 0 at t=5: 300 stays before 200
    (30, 300, 1, 5.0),   # 9
    (5, 300, 9, 1.0),    # 10
    (10, 300, 0, 2.0),   # 11
    (30, 400, 4, 3.0),   # 12
    (40, 250, 7, 4.0),   # 13 item 250 passes the item filter (3 users) but all its users
    (50, 250, 7, 5.0),   # 14 have 1 item and are removed, so 250 gets no new id
    (60, 250, 7, 1.0),   # 15
    (20, 100, 6, 2.0),   # 16 a repeat: user 20 still has 3 *distinct* items
]
PARAMS = defaults("preprocess", min_item_users=3, min_user_items=3)

# Users 5, 10, 20 -> 0, 1, 2; items 100, 200, 300 -> 1, 2, 3.
EXPECTED = pd.DataFrame(
    [
        (0, 1, 1, 4.0),
        (0, 2, 2, 3.5),
        (0, 3, 9, 1.0),
        (1, 3, 0, 2.0),
        (1, 2, 3, 2.0),
        (1, 1, 3, 3.0),
        (2, 1, 1, 1.5),
        (2, 3, 5, 1.0),
        (2, 2, 5, 4.5),
        (2, 1, 6, 2.0),
    ],
    columns=["user_id", "item_id", "timestamp", "rating"],
)


def raw_table(rows=RAW_ROWS) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    return pd.DataFrame({
        "user_id": frame["user_id"].astype(np.int64),
        "item_id": frame["item_id"].astype(np.int64),
        "rating": frame["rating"].astype(np.float32),
        "timestamp": frame["timestamp"].astype(np.int64),
    })


def test_preprocess_hand_made():
    prepared = preprocess(raw_table(), PARAMS)
    got = prepared.interactions
    assert list(got.columns) == ["user_id", "item_id", "timestamp", "rating"]
    assert got["user_id"].tolist() == EXPECTED["user_id"].tolist()
    assert got["item_id"].tolist() == EXPECTED["item_id"].tolist()
    assert got["timestamp"].tolist() == EXPECTED["timestamp"].tolist()
    assert got["rating"].tolist() == EXPECTED["rating"].tolist()
    assert got.index.tolist() == list(range(len(EXPECTED)))
    assert prepared.users["user_id"].tolist() == [0, 1, 2]
    assert prepared.users["raw_user_id"].tolist() == [5, 10, 20]
    assert prepared.items["item_id"].tolist() == [1, 2, 3]
    assert prepared.items["raw_item_id"].tolist() == [100, 200, 300]


def test_mapping_round_trips_to_raw_rows():
    raw = raw_table()
    prepared = preprocess(raw, PARAMS)
    back = (prepared.interactions
            .merge(prepared.users, on="user_id")
            .merge(prepared.items, on="item_id"))
    got = sorted(zip(back["raw_user_id"], back["raw_item_id"], back["timestamp"]))
    kept = [r for r in RAW_ROWS if r[0] in (5, 10, 20) and r[1] in (100, 200, 300)]
    assert got == sorted((u, i, t) for u, i, t, _ in kept)


def test_remapping_does_not_depend_on_row_order():
    raw = raw_table()
    shuffled = raw.sample(frac=1.0, random_state=3).reset_index(drop=True)
    a, b = preprocess(raw, PARAMS), preprocess(shuffled, PARAMS)
    pd.testing.assert_frame_equal(a.users, b.users)
    pd.testing.assert_frame_equal(a.items, b.items)
    key = ["user_id", "timestamp", "item_id"]
    pd.testing.assert_frame_equal(a.interactions.sort_values(key).reset_index(drop=True),
                                  b.interactions.sort_values(key).reset_index(drop=True))


def test_string_ids_are_remapped_in_sorted_order():
    raw = pd.DataFrame({
        "user_id": ["b", "a", "b", "a"],
        "item_id": ["y", "x", "x", "y"],
        "rating": np.float32(np.nan),
        "timestamp": [2, 2, 1, 1],
    })
    prepared = preprocess(raw, defaults("preprocess", min_item_users=1, min_user_items=1))
    assert prepared.users["raw_user_id"].tolist() == ["a", "b"]
    assert prepared.items["raw_item_id"].tolist() == ["x", "y"]
    assert prepared.interactions["user_id"].tolist() == [0, 0, 1, 1]
    assert prepared.interactions["item_id"].tolist() == [2, 1, 1, 2]
    assert prepared.interactions["timestamp"].tolist() == [1, 2, 1, 2]


def test_stable_sort_on_random_table():
    rng = np.random.default_rng(0)
    n = 2000
    raw = pd.DataFrame({
        "user_id": rng.integers(0, 30, n),
        "item_id": rng.integers(0, 40, n),
        "rating": rng.random(n).astype(np.float32),  # unique: identifies the source row
        "timestamp": rng.integers(0, 5, n),  # many ties
    })
    prepared = preprocess(raw, defaults("preprocess", min_item_users=1, min_user_items=1))
    expected = raw.sort_values(["user_id", "timestamp"], kind="stable")
    assert prepared.interactions["rating"].tolist() == expected["rating"].tolist()
    assert prepared.interactions["timestamp"].tolist() == expected["timestamp"].tolist()


def test_filters_count_distinct_and_run_once_in_order():
    # Item filter first, then user filter, one pass each. Item 13 (1 user) goes first, which
    # leaves user 3 with one distinct item, so user 3 goes too; item 12 then has a single
    # user left but is kept (no second item pass). User 2's repeated item counts once.
    raw = raw_table([
        (1, 10, 1, 1.0), (1, 11, 2, 1.0), (1, 12, 3, 1.0),
        (2, 10, 1, 1.0), (2, 11, 2, 1.0), (2, 11, 3, 1.0),
        (3, 12, 1, 1.0), (3, 13, 2, 1.0),
        (4, 10, 1, 1.0), (4, 10, 2, 1.0),  # two rows, one distinct item: removed
    ])
    prepared = preprocess(raw, defaults("preprocess", min_item_users=2, min_user_items=2))
    assert prepared.users["raw_user_id"].tolist() == [1, 2]
    assert prepared.items["raw_item_id"].tolist() == [10, 11, 12]
    assert prepared.interactions["user_id"].tolist() == [0, 0, 0, 1, 1, 1]
    assert prepared.interactions["item_id"].tolist() == [1, 2, 3, 1, 2, 2]


def test_statistics():
    stats = statistics(preprocess(raw_table(), PARAMS).interactions)
    assert stats == {
        "interactions": 10,
        "users": 3,
        "items": 3,
        "user_length_min": 3,
        "user_length_median": 3.0,
        "user_length_mean": 3.33,
        "user_length_max": 4,
    }


@pytest.mark.parametrize(("min_item_users", "min_user_items"), [(1, 5), (5, 1), (4, 3)])
def test_filters_leave_no_users(min_item_users, min_user_items):
    with pytest.raises(UserError, match="no users"):
        preprocess(raw_table(), defaults("preprocess", min_item_users=min_item_users, min_user_items=min_user_items))


def test_params_from_yaml_dict():
    got = params.section({"preprocess": {"min_item_users": 2, "min_user_items": 7, "duplicates": "drop"}},
                         "preprocess", PreprocessParams)
    assert got == PreprocessParams(min_item_users=2, min_user_items=7, duplicates="drop")
    with pytest.raises(UserError, match=r"^params\.yaml: preprocess\.min_item_users is missing$"):
        params.section({"preprocess": {}}, "preprocess", PreprocessParams)


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"min_user_items": 0}, "preprocess.min_user_items"),
        ({"min_item_users": 0}, "preprocess.min_item_users"),
        ({"min_item_users": -3}, "preprocess.min_item_users"),
        ({"min_user_items": 5, "min_users_items": 5}, "preprocess.min_users_items"),
        ({"min_user_items": "20"}, "preprocess.min_user_items"),
        ({"min_user_items": 2.5}, "preprocess.min_user_items"),
        ({"min_item_users": True}, "preprocess.min_item_users"),
        ({"min_item_users": None}, "preprocess.min_item_users"),
    ],
)
def test_bad_params(section, match):
    with pytest.raises(UserError, match=match):
        params.section({"preprocess": section_values("preprocess", **section)}, "preprocess", PreprocessParams)


def test_missing_section():
    with pytest.raises(UserError, match="preprocess"):
        params.section({"data": {}}, "preprocess", PreprocessParams)


@pytest.mark.parametrize("choice, expected", [("keep", [1, 1, 2, 1, 1, 1]), ("drop", [1, 2, 1, 1, 1])])
def test_duplicate_rows_are_counted_and_kept_or_dropped(choice, expected):
    # Rows 0 and 2 are the same event (rating aside); row 3 repeats item 10 at another time and
    # user 2 has item 10 twice at two times: those are re-consumptions, kept either way.
    raw = raw_table([(1, 10, 5, 1.0), (1, 11, 6, 1.0), (1, 10, 5, 2.0), (1, 10, 7, 1.0),
                     (2, 10, 1, 1.0), (2, 10, 2, 1.0)])
    prepared = preprocess(raw, defaults("preprocess", min_item_users=1, min_user_items=1, duplicates=choice))
    assert prepared.duplicates == 1
    assert prepared.interactions["item_id"].tolist() == expected
    assert prepared.interactions["rating"].tolist()[0] == 1.0  # the first of equal rows comes first


def test_duplicates_param_is_checked():
    with pytest.raises(UserError, match="preprocess.duplicates"):
        params.section({"preprocess": section_values("preprocess", duplicates="remove")}, "preprocess",
                       PreprocessParams)


def test_fractional_timestamps_keep_the_true_order(tmp_path):
    """Issue 23: a file in reverse time order whose interactions differ by hundredths of a second.
    Cut to whole seconds they all tied and kept the file's (reversed) order, so the held-out
    items were the first ones, not the last."""
    from genrec.datasets import read_user_file
    from genrec.split import SplitParams, split
    rows = []
    for user in range(6):
        for t in reversed(range(30)):  # written newest first
            rows.append((f"u{user}", 100 + (user * 7 + t) % 40, f"{1_700_000_000 + t / 100:.2f}"))
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(tmp_path / "mine.csv", index=False)
    raw = read_user_file(tmp_path / "mine.csv")
    assert raw["timestamp"].dtype == np.float64 and raw["timestamp"].iloc[0] == pytest.approx(1_700_000_000.29)
    prepared = preprocess(raw, PreprocessParams(min_item_users=1, min_user_items=1, duplicates="keep"))
    held = split(prepared.interactions, SplitParams(method="leave_last_n", n=10, quantile=0.9,
                                                    validation_fraction=0.5, seed=0))
    targets = pd.concat([held.validation, held.test])
    users = prepared.users.set_index("user_id")["raw_user_id"]
    items = prepared.items.set_index("item_id")["raw_item_id"]
    for user_id, group in targets.groupby("user_id"):
        user = int(users[user_id][1:])
        expected = [100 + (user * 7 + t) % 40 for t in range(20, 30)]  # the 10 newest, oldest first
        assert items[group.sort_values("position")["item_id"]].tolist() == expected
    assert (held.train.groupby("user_id")["timestamp"].max() < 1_700_000_000.2).all()


def test_whole_second_timestamps_stay_integers(tmp_path):
    from genrec.datasets import read_user_file
    pd.DataFrame({"user_id": [1, 1], "item_id": [5, 6], "timestamp": [1_700_000_000.0, 1_700_000_001.0]}).to_csv(
        tmp_path / "mine.csv", index=False)
    assert read_user_file(tmp_path / "mine.csv")["timestamp"].dtype == np.int64
