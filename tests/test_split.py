"""genrec.split: leave_last_n and global_time hold-outs, validation/test users (docs/method.md §3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrec import params
from genrec.errors import UserError
from genrec.split import SplitParams, split
from helpers import defaults, section_values


def table(rows) -> pd.DataFrame:
    """A prepared table (sorted by user, then time) from (user, item, timestamp) rows."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype(np.int64)
    frame["rating"] = np.float32(3.0)
    return frame


def rows(frame: pd.DataFrame) -> list[tuple]:
    return [tuple(int(v) for v in r) for r in frame.itertuples(index=False)]


LEAVE = table([
    (0, 1, 1), (0, 2, 2), (0, 3, 3), (0, 4, 4), (0, 5, 5),
    (1, 3, 2), (1, 1, 3), (1, 4, 3),
    (2, 2, 1), (2, 5, 2),  # only n interactions: nothing to train on, not evaluated
    (3, 5, 10), (3, 4, 11), (3, 3, 12), (3, 2, 13),
])


def test_leave_last_n_hand_made():
    result = split(LEAVE, defaults("split", method="leave_last_n", n=2, seed=42))
    assert list(result.train.columns) == ["user_id", "item_id", "timestamp"]
    assert rows(result.train) == [
        (0, 1, 1), (0, 2, 2), (0, 3, 3),
        (1, 3, 2),
        (3, 5, 10), (3, 4, 11),
    ]
    assert list(result.validation.columns) == ["user_id", "item_id", "position"]
    assert list(result.test.columns) == ["user_id", "item_id", "position"]
    # Evaluated users 0, 1, 3; seed 42 puts round(3 * 0.5) = 2 of them in validation.
    assert rows(result.validation) == [(1, 1, 0), (1, 4, 1), (3, 3, 0), (3, 2, 1)]
    assert rows(result.test) == [(0, 4, 0), (0, 5, 1)]
    assert result.excluded_users == 1


GLOBAL = table([
    (0, 1, 1), (0, 2, 2), (0, 3, 3), (0, 4, 8), (0, 5, 9),
    (1, 2, 6), (1, 3, 7),  # nothing before the cutoff: not evaluated, not trained on
    (2, 4, 1), (2, 5, 2),  # nothing after the cutoff: trained on, not evaluated
    (3, 1, 4), (3, 2, 5), (3, 3, 9), (3, 4, 10), (3, 5, 11),  # 3 after the cutoff, n = 2
])


def test_global_time_hand_made():
    # Timestamps 1 1 2 2 3 4 5 | 6 7 8 9 9 10 11: the median cutoff is 5.
    result = split(GLOBAL, defaults("split", method="global_time", n=2, quantile=0.5, seed=42))
    assert rows(result.train) == [
        (0, 1, 1), (0, 2, 2), (0, 3, 3),
        (2, 4, 1), (2, 5, 2),
        (3, 1, 4), (3, 2, 5),
    ]
    # Ground truth = the first n after the cutoff; user 3's third (item 5) is not a target.
    assert rows(result.validation) == [(3, 3, 0), (3, 4, 1)]
    assert rows(result.test) == [(0, 4, 0), (0, 5, 1)]
    assert result.excluded_users == 2


def test_global_time_cutoff_follows_quantile():
    # Quantile 0.65 of the 14 timestamps moves the cutoff to 7: user 1 now lies wholly
    # before it (trained on, not evaluated); the targets are the same as with the median.
    result = split(GLOBAL, defaults("split", method="global_time", n=2, quantile=0.65, seed=42))
    assert rows(result.train) == [
        (0, 1, 1), (0, 2, 2), (0, 3, 3),
        (1, 2, 6), (1, 3, 7),
        (2, 4, 1), (2, 5, 2),
        (3, 1, 4), (3, 2, 5),
    ]
    assert rows(result.validation) == [(3, 3, 0), (3, 4, 1)]
    assert rows(result.test) == [(0, 4, 0), (0, 5, 1)]
    assert result.excluded_users == 2


def test_global_time_too_few_users():
    # Cutoff 9: only user 3 has interactions on both sides.
    with pytest.raises(UserError, match="at least 2"):
        split(GLOBAL, defaults("split", method="global_time", n=2, quantile=0.8))


def test_leave_last_n_too_few_users():
    # n = 4: only user 0 has more than 4 interactions.
    with pytest.raises(UserError, match="at least 2"):
        split(LEAVE, defaults("split", method="leave_last_n", n=4))


def random_table(seed: int, users: int = 100, max_length: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = []
    for user in range(users):
        length = int(rng.integers(1, max_length))
        timestamps = np.sort(rng.integers(0, 1000, length))  # with ties
        items = rng.integers(1, 50, length)
        out += [(user, int(i), int(t)) for i, t in zip(items, timestamps)]
    return table(out)


def test_leave_last_n_properties():
    data = random_table(1)
    n = 5
    result = split(data, defaults("split", method="leave_last_n", n=n, seed=3))
    lengths = data.groupby("user_id").size()
    evaluated = set(lengths.index[lengths > n])
    targets = pd.concat([result.validation, result.test])
    assert set(targets["user_id"]) == evaluated
    assert result.excluded_users == len(lengths) - len(evaluated)
    for user, group in targets.groupby("user_id"):
        assert group["position"].tolist() == list(range(n))  # exactly n, in order
    for user in evaluated:
        sequence = data.loc[data["user_id"] == user, "item_id"].tolist()
        train = result.train.loc[result.train["user_id"] == user, "item_id"].tolist()
        held = targets.loc[targets["user_id"] == user].sort_values("position")["item_id"].tolist()
        # The held-out items are the user's last n, nothing of them precedes a training one,
        # and training + held-out is the whole sequence.
        assert train + held == sequence
        train_time = result.train.loc[result.train["user_id"] == user, "timestamp"].max()
        held_time = data.loc[data["user_id"] == user, "timestamp"].iloc[-n:]
        assert (held_time >= train_time).all()
    assert len(result.train) + len(targets) == int(lengths[lengths > n].sum())


def test_validation_test_user_split():
    data = random_table(2)
    config = defaults("split", method="leave_last_n", n=3, seed=11)
    a, b = split(data, config), split(data, config)
    for x, y in ((a.train, b.train), (a.validation, b.validation), (a.test, b.test)):
        pd.testing.assert_frame_equal(x, y)
    validation, test = set(a.validation["user_id"]), set(a.test["user_id"])
    assert not validation & test
    evaluated = len(validation | test)
    assert len(validation) == round(evaluated * 0.5)
    assert abs(len(validation) - len(test)) <= 1
    other = split(data, defaults("split", method="leave_last_n", n=3, seed=12))
    assert set(other.validation["user_id"]) != validation
    assert set(other.validation["user_id"]) | set(other.test["user_id"]) == validation | test
    pd.testing.assert_frame_equal(other.train, a.train)  # the seed only picks users


def test_validation_fraction():
    data = random_table(4)
    result = split(data, defaults("split", n=3, validation_fraction=0.2, seed=0))
    validation, test = set(result.validation["user_id"]), set(result.test["user_id"])
    assert len(validation) == round(len(validation | test) * 0.2)


def test_global_time_properties():
    data = random_table(5)
    n, quantile = 4, 0.7
    result = split(data, defaults("split", method="global_time", n=n, quantile=quantile, seed=0))
    targets = pd.concat([result.validation, result.test])
    held = data.merge(result.train, how="left", indicator=True)
    held = held[held["_merge"] == "left_only"]
    # One global cutoff: every training interaction precedes every held-out one.
    assert result.train["timestamp"].max() < held["timestamp"].min()
    assert len(result.train) / len(data) == pytest.approx(quantile, abs=0.02)
    before = set(result.train["user_id"])
    after = set(held["user_id"])
    assert set(targets["user_id"]) == before & after
    assert result.excluded_users == data["user_id"].nunique() - len(before & after)
    cutoff = result.train["timestamp"].max()
    for user, group in targets.groupby("user_id"):
        future = data[(data["user_id"] == user) & (data["timestamp"] > cutoff)]
        expected = future["item_id"].tolist()[:n]
        got = group.sort_values("position")
        assert got["position"].tolist() == list(range(len(expected)))
        assert got["item_id"].tolist() == expected
    # Training keeps every interaction up to the cutoff, of evaluated users or not.
    assert len(result.train) == int((data["timestamp"] <= cutoff).sum())


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"n": 0}, "split.n"),
        ({"n": -1}, "split.n"),
        ({"n": "10"}, "split.n"),
        ({"quantile": 1.5}, "split.quantile"),
        ({"quantile": 0}, "split.quantile"),
        ({"quantile": 1}, "split.quantile"),
        ({"method": "foo"}, "split.method"),
        ({"method": 3}, "split.method"),
        ({"validation_fraction": 0}, "split.validation_fraction"),
        ({"validation_fraction": 1.0}, "split.validation_fraction"),
        ({"seed": 1.5}, "split.seed"),
        ({"sed": 1}, "split.sed"),
    ],
)
def test_bad_params(section, match):
    with pytest.raises(UserError, match=match):
        params.section({"split": section_values("split", **section)}, "split", SplitParams)


def test_params_from_yaml_dict():
    got = params.section({"split": section_values("split", quantile=0.8)}, "split", SplitParams)
    assert got == SplitParams(method="leave_last_n", n=10, quantile=0.8, validation_fraction=0.5, seed=42)


def test_every_key_is_needed():
    with pytest.raises(UserError, match=r"^params\.yaml: split\.n is missing$"):
        params.section({"split": {"method": "leave_last_n", "quantile": 0.8}}, "split", SplitParams)
