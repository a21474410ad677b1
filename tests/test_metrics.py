"""genrec.metrics: ranking metrics over full rankings (docs/method.md §6), by hand and against torchmetrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torchmetrics.functional.retrieval import (
    retrieval_hit_rate,
    retrieval_normalized_dcg,
    retrieval_precision,
    retrieval_recall,
)

from genrec import metrics

L2, L3, L4, L5, L6 = (np.log2(v) for v in (2, 3, 4, 5, 6))  # log2(i + 1) for ranks i = 1..5

# K = 5 recommendations per user; relevant items padded with 0 to width 7.
RECS = np.array([
    [1, 2, 3, 4, 5],  # hits at ranks 2 and 5, |rel| = 3 < K
    [6, 7, 8, 9, 10],  # no hit
    [3, 1, 2, 4, 5],  # all hits, |rel| = K
    [11, 12, 13, 14, 15],  # hits at ranks 1 and 3, |rel| = 7 > K
    [16, 17, 18, 19, 20],  # one relevant item, hit at rank 4
])
RELEVANT = np.array([
    [2, 5, 9, 0, 0, 0, 0],
    [1, 2, 0, 0, 0, 0, 0],
    [1, 2, 3, 4, 5, 0, 0],
    [13, 11, 30, 31, 32, 33, 34],
    [19, 0, 0, 0, 0, 0, 0],
])
EXPECTED = pd.DataFrame({
    "ndcg": [
        (1 / L3 + 1 / L6) / (1 / L2 + 1 / L3 + 1 / L4),
        0.0,
        1.0,
        (1 / L2 + 1 / L4) / (1 / L2 + 1 / L3 + 1 / L4 + 1 / L5 + 1 / L6),
        (1 / L5) / (1 / L2),
    ],
    "recall": [2 / 3, 0.0, 1.0, 2 / 7, 1.0],
    "precision": [2 / 5, 0.0, 1.0, 2 / 5, 1 / 5],
    # MAP@K = (1 / min(K, |rel|)) * sum over hit ranks i of hits_among_first_i / i
    "map": [
        (1 / 2 + 2 / 5) / 3,
        0.0,
        (1 + 1 + 1 + 1 + 1) / 5,
        (1 / 1 + 2 / 3) / 5,
        (1 / 4) / 1,
    ],
    "hit_rate": [1.0, 0.0, 1.0, 1.0, 1.0],
})


def test_hits_ignore_padding():
    recs = np.array([[0, 1, 2]])  # a 0 in recs must never match the padding of relevant
    relevant = np.array([[2, 0, 0]])
    np.testing.assert_array_equal(metrics.hits(recs, relevant), [[False, False, True]])


def test_per_user_hand_computed():
    result = metrics.per_user(RECS, RELEVANT)
    assert list(result.columns) == ["ndcg", "recall", "precision", "map", "hit_rate"]
    pd.testing.assert_frame_equal(result, EXPECTED, check_exact=False, rtol=1e-12, atol=1e-12)


def test_per_user_values_written_out():
    # The first user, with the numbers spelled out: hits at ranks 2 and 5 of 5, |rel| = 3.
    row = metrics.per_user(RECS[:1], RELEVANT[:1]).iloc[0]
    assert row["ndcg"] == pytest.approx((0.6309297535714575 + 0.38685280723454163)
                                        / (1.0 + 0.6309297535714575 + 0.5))
    assert row["map"] == pytest.approx(0.3)  # (1/2 + 2/5) / 3
    assert row["recall"] == pytest.approx(2 / 3)
    assert row["precision"] == pytest.approx(0.4)


def test_padding_width_does_not_matter():
    wide = np.pad(RELEVANT, ((0, 0), (0, 5)))  # more padding columns
    pd.testing.assert_frame_equal(metrics.per_user(RECS, wide), metrics.per_user(RECS, RELEVANT))


def test_k_is_the_number_of_recommendations_at_ten():
    recs = np.arange(1, 11)[None, :]  # 10 recommendations
    relevant = np.array([[10, 1, 0]])  # hits at ranks 1 and 10, |rel| = 2
    row = metrics.per_user(recs, relevant).iloc[0]
    assert row["ndcg"] == pytest.approx((1 + 1 / np.log2(11)) / (1 + 1 / np.log2(3)))
    assert row["precision"] == pytest.approx(0.2)
    assert row["recall"] == pytest.approx(1.0)
    assert row["map"] == pytest.approx((1 / 1 + 2 / 10) / 2)


def catalogue(items: int, item_users: dict[int, int] | None = None, users: int = 8) -> metrics.Catalogue:
    """A training catalogue of ``items`` items (coverage's denominator) and ``users`` users, each
    item had by the users ``item_users`` says (1 by default)."""
    counts = np.ones(items + 1, dtype=np.int64)
    counts[0] = 0
    for item, n in (item_users or {}).items():
        counts[item] = n
    return metrics.Catalogue(items, users, counts)


def test_summary_means_coverage_entropy_novelty():
    result = metrics.summary(RECS, RELEVANT, catalogue(40))
    assert list(result) == ["ndcg@5", "recall@5", "precision@5", "map@5", "hit_rate@5", "coverage",
                            "entropy_bits", "novelty_bits"]
    for name in EXPECTED.columns:
        assert result[f"{name}@5"] == pytest.approx(EXPECTED[name].mean())
    # Users 0 and 2 share items 1..5: 20 distinct items of 40.
    assert result["coverage"] == pytest.approx(20 / 40)
    counts = np.array([2] * 5 + [1] * 15)
    p = counts / counts.sum()
    assert result["entropy_bits"] == pytest.approx(-(p * np.log2(p)).sum())
    assert result["novelty_bits"] == pytest.approx(np.log2(8))  # every item had by 1 of the 8 users
    assert all(isinstance(v, float) for v in result.values())


def test_coverage_and_entropy_by_hand():
    recs = np.array([[1, 2], [1, 3]])
    assert metrics.coverage(recs, 6) == pytest.approx(0.5)
    # Frequencies 1/2, 1/4, 1/4: H = 1/2 * 1 + 2 * 1/4 * 2 = 1.5 bits.
    assert metrics.entropy_bits(recs) == pytest.approx(1.5)
    assert metrics.entropy_bits(np.array([[7], [7]])) == pytest.approx(0.0)
    assert metrics.entropy_bits(np.array([[1, 2, 3, 4]])) == pytest.approx(2.0)


def test_novelty_is_the_mean_self_information_of_the_recommended_items():
    # 16 training users: item 1 had by 8 (1 bit), item 2 by 4 (2 bits), item 3 by 1 (4 bits).
    shares = catalogue(3, {1: 8, 2: 4, 3: 1}, users=16)
    assert metrics.novelty_bits(np.array([[1, 2], [1, 3]]), shares) == pytest.approx((1 + 2 + 1 + 4) / 4)
    # An item no training user has counts as had by one (and an id beyond the table too).
    shares = catalogue(3, {1: 8, 2: 0}, users=16)
    assert metrics.novelty_bits(np.array([[2, 9]]), shares) == pytest.approx(4.0)


def test_catalogue_counts_distinct_training_users_per_item():
    train = pd.DataFrame({"user_id": [1, 1, 1, 2, 3, 3], "item_id": [5, 5, 2, 5, 2, 7]})  # user 1 has item 5 twice
    found = metrics.Catalogue.from_train(train)
    assert found.items == 3 and found.num_users == 3
    assert found.item_users.tolist() == [0, 0, 2, 0, 0, 2, 0, 1]


def test_per_position_hand_computed():
    recs = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    relevant = np.array([
        [3, 1, 7],
        [5, 9, 0],  # only 2 targets (global_time): not counted at position 3
        [1, 2, 3],  # never hit
    ])
    result = metrics.per_position(recs, relevant, catalogue(9))
    assert list(result.columns) == ["position", "users", "hit_rate_at_p", "ndcg_at_p", "ndcg_first_p",
                                    "recall_first_p", "coverage_at_p", "entropy_bits_at_p", "novelty_bits_at_p",
                                    "coverage_first_p", "entropy_bits_first_p", "novelty_bits_first_p"]
    assert result["position"].tolist() == [1, 2, 3]
    assert result["users"].tolist() == [3, 3, 2]
    r = result.set_index("position")
    # p = 1: user 0's item 3 at rank 3, user 1's item 5 at rank 2.
    assert r.loc[1, "hit_rate_at_p"] == pytest.approx(2 / 3)
    assert r.loc[1, "ndcg_at_p"] == pytest.approx((1 / L4 + 1 / L3) / 3)
    assert r.loc[1, "ndcg_first_p"] == pytest.approx((1 / L4 + 1 / L3) / 3)
    assert r.loc[1, "recall_first_p"] == pytest.approx(2 / 3)
    # p = 2: only user 0's item 1 (rank 1) is hit.
    assert r.loc[2, "hit_rate_at_p"] == pytest.approx(1 / 3)
    assert r.loc[2, "ndcg_at_p"] == pytest.approx(1 / 3)
    idcg2 = 1 / L2 + 1 / L3
    assert r.loc[2, "ndcg_first_p"] == pytest.approx(((1 / L2 + 1 / L4) / idcg2 + (1 / L3) / idcg2) / 3)
    assert r.loc[2, "recall_first_p"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    # p = 3: user 1 has no third target and is left out of the *_at_p means.
    assert r.loc[3, "hit_rate_at_p"] == 0.0
    assert r.loc[3, "ndcg_at_p"] == 0.0
    idcg3 = 1 / L2 + 1 / L3 + 1 / L4
    assert r.loc[3, "ndcg_first_p"] == pytest.approx(((1 / L2 + 1 / L4) / idcg3 + (1 / L3) / idcg2) / 3)
    assert r.loc[3, "recall_first_p"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # The lists' own metrics by rank: three distinct items at every rank, 3p in the first p.
    assert r["coverage_at_p"].tolist() == pytest.approx([3 / 9] * 3)
    assert r["coverage_first_p"].tolist() == pytest.approx([3 / 9, 6 / 9, 9 / 9])
    assert r["entropy_bits_at_p"].tolist() == pytest.approx([np.log2(3)] * 3)
    assert r["entropy_bits_first_p"].tolist() == pytest.approx(np.log2([3, 6, 9]))
    assert r["novelty_bits_first_p"].tolist() == pytest.approx([3.0] * 3)  # 1 of 8 users each


def test_per_position_has_no_list_metrics_beyond_the_lists_length():
    recs = np.array([[1, 2], [3, 4]])
    relevant = np.array([[1, 5, 6], [4, 2, 9]])  # three held-out items, lists of two
    result = metrics.per_position(recs, relevant, catalogue(9))
    assert result["coverage_first_p"].tolist()[:2] == pytest.approx([2 / 9, 4 / 9])
    assert result["coverage_first_p"].isna().tolist() == [False, False, True]
    assert result["novelty_bits_at_p"].isna().tolist() == [False, False, True]


def test_per_position_last_equals_summary():
    result = metrics.per_position(RECS, RELEVANT, catalogue(40))
    assert result["entropy_bits_first_p"].iloc[4] == pytest.approx(metrics.entropy_bits(RECS))  # p = K: the whole lists
    assert result["ndcg_first_p"].iloc[-1] == pytest.approx(EXPECTED["ndcg"].mean())
    assert result["recall_first_p"].iloc[-1] == pytest.approx(EXPECTED["recall"].mean())


def test_relevant_matrix():
    targets = pd.DataFrame({
        "user_id": [2, 2, 2, 5, 7, 9, 9],
        "item_id": [11, 12, 13, 21, 99, 31, 32],
        "position": [0, 1, 2, 0, 0, 1, 0],  # not sorted: placed by position
    })
    users = np.array([5, 2, 9, 4])  # 7 is not asked for; 4 has no targets
    matrix = metrics.relevant_matrix(targets, users, n=2)  # position 2 is beyond n
    np.testing.assert_array_equal(matrix, [[21, 0], [11, 12], [32, 31], [0, 0]])
    assert matrix.dtype == np.int64


def test_recommendations_frame():
    frame = metrics.recommendations_frame(np.array([5, 2]), np.array([[1, 2, 3], [4, 5, 6]]))
    expected = pd.DataFrame({
        "user_id": [5, 5, 5, 2, 2, 2],
        "item_id": [1, 2, 3, 4, 5, 6],
        "rank": [1, 2, 3, 1, 2, 3],
    })
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)


def test_evaluate():
    users = np.array([3, 1])
    recs = np.array([[1, 2, 3], [4, 5, 6]])
    test = pd.DataFrame({
        "user_id": [1, 1, 3, 3, 3],
        "item_id": [6, 9, 2, 8, 1],
        "position": [0, 1, 0, 1, 2],
    })
    result, positions = metrics.evaluate(recs, users, test, catalogue(12))
    # User 3: relevant [2, 8, 1], hits at ranks 1 and 2. User 1: relevant [6, 9], hit at rank 3.
    ndcg3 = (1 / L2 + 1 / L3) / (1 / L2 + 1 / L3 + 1 / L4)
    ndcg1 = (1 / L4) / (1 / L2 + 1 / L3)
    assert result["users"] == 2
    assert result["ndcg@3"] == pytest.approx((ndcg3 + ndcg1) / 2)
    assert result["recall@3"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert result["precision@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert result["map@3"] == pytest.approx(((1 + 1) / 3 + (1 / 3) / 2) / 2)
    assert result["hit_rate@3"] == 1.0
    assert result["coverage"] == pytest.approx(6 / 12)
    assert result["entropy_bits"] == pytest.approx(np.log2(6))
    relevant = np.array([[2, 8, 1], [6, 9, 0]])
    pd.testing.assert_frame_equal(positions, metrics.per_position(recs, relevant, catalogue(12)))
    assert positions["users"].tolist() == [2, 2, 1]


def test_against_torchmetrics_random():
    """NDCG, recall, precision and hit rate at 10 agree with torchmetrics on random data.

    MAP is not compared: torchmetrics' retrieval_average_precision(top_k=...) divides by
    the number of relevant items retrieved in the top k, not by min(K, |rel|) as docs/method.md §6
    (Microsoft recommenders) does, so MAP is only checked on the hand-computed cases above.
    """
    rng = np.random.default_rng(0)
    n_users, n_items, k = 200, 300, 10
    recs = np.stack([rng.choice(np.arange(1, n_items + 1), k, replace=False) for _ in range(n_users)])
    sizes = rng.integers(1, 16, n_users)
    relevant = np.zeros((n_users, 15), dtype=np.int64)
    for u in range(n_users):
        # Bias towards the recommended items so that there are plenty of hits.
        pool = np.unique(np.concatenate([recs[u], rng.choice(np.arange(1, n_items + 1), 20, replace=False)]))
        relevant[u, :sizes[u]] = rng.choice(pool, sizes[u], replace=False)
    ours = metrics.per_user(recs, relevant)
    assert ours["hit_rate"].mean() > 0.5 and (ours["hit_rate"] == 0).any()
    expected = {"ndcg": [], "recall": [], "precision": [], "hit_rate": []}
    for u in range(n_users):
        rel = relevant[u, :sizes[u]]
        extra = np.setdiff1d(rel, recs[u])  # relevant items not recommended rank below the list
        candidates = np.concatenate([recs[u], extra])
        preds = torch.tensor(np.concatenate([np.arange(k, 0, -1), -np.arange(1, len(extra) + 1)]),
                             dtype=torch.float64)
        target = torch.from_numpy(np.isin(candidates, rel))
        expected["ndcg"].append(float(retrieval_normalized_dcg(preds, target, top_k=k)))
        expected["recall"].append(float(retrieval_recall(preds, target, top_k=k)))
        expected["precision"].append(float(retrieval_precision(preds, target, top_k=k)))
        expected["hit_rate"].append(float(retrieval_hit_rate(preds, target, top_k=k)))
    for name, values in expected.items():
        np.testing.assert_allclose(ours[name].to_numpy(), values, rtol=1e-6, atol=1e-9, err_msg=name)


def test_repeated_held_out_item_is_one_relevant_item():
    # A user's own interaction log may repeat an item among the held-out ones (preprocess keeps repeats).
    recs = np.array([[5, 7, 1, 2]])
    relevant = np.array([[5, 7, 5, 0]])  # the relevant set is {5, 7}
    row = metrics.per_user(recs, relevant).iloc[0]
    assert row["recall"] == pytest.approx(1.0)
    assert row["ndcg"] == pytest.approx(1.0)
    assert row["map"] == pytest.approx(1.0)


# --- issue 10: no invalid list is ever written ---------------------------------------------------

def test_coverage_never_counts_padding():
    assert metrics.coverage(np.array([[1, 2, 0], [2, 0, 0]]), 4) == 0.5  # items 1 and 2 of 4
    assert metrics.coverage(np.array([[1, 2, 3]]), 3) == 1.0


TRAIN = pd.DataFrame({"user_id": [7, 7, 9], "item_id": [1, 2, 3]})


@pytest.mark.parametrize("recs, problem", [
    ([[3, 4], [0, 1]], "padding item 0 for 1 user"),
    ([[3, 3], [1, 2]], "a repeated item for 1 user"),
    ([[2, 3], [3, 4]], "already-seen items for 2 user"),
    ([[3, 4]], "shape"),
])
def test_invalid_lists_are_refused_and_nothing_is_written(tmp_path, recs, problem):
    users = np.array([7, 9])
    test = pd.DataFrame({"user_id": [7, 9], "item_id": [5, 5], "position": [0, 0]})
    with pytest.raises(RuntimeError, match=problem):
        metrics.write_results("m", users, np.array(recs), test, TRAIN, str(tmp_path / "recs.parquet"),
                              str(tmp_path / "metrics"))
    assert list(tmp_path.iterdir()) == []


def test_valid_lists_are_written_as_one_set(tmp_path):
    users = np.array([7, 9])
    test = pd.DataFrame({"user_id": [7, 9], "item_id": [5, 5], "position": [0, 0]})
    summary = metrics.write_results("m", users, np.array([[5, 3], [4, 1]]), test, TRAIN,
                                    str(tmp_path / "recs.parquet"), str(tmp_path / "metrics"))
    assert summary["hit_rate@2"] == 0.5 and summary["coverage"] == 4 / 3  # 4 items, 3 in training
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["m.csv", "m.json", "metrics", "positions", "recs.parquet"]
