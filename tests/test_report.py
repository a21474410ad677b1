"""genrec.report: the tables with intervals and paired tests, from recommendations written
the way the stages write them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrec import metrics, report, stats

USERS, K = 60, 5


def make_outputs(folder: Path) -> pd.DataFrame:
    """Three methods on 60 users: ``perfect`` recommends each user's 5 future items, ``topk``
    hits the first two of them, ``greedy`` the first one for even users only."""
    rng = np.random.default_rng(0)
    users = np.arange(100, 100 + USERS)
    future = np.stack([rng.choice(np.arange(1, 200), K, replace=False) for _ in users])
    filler = 500 + np.arange(K)  # never relevant
    recs = {
        "perfect": future,
        "topk": np.concatenate([future[:, :2], np.tile(filler[:3], (USERS, 1))], axis=1),
        "greedy": np.where((users % 2 == 0)[:, None], np.concatenate([future[:, :1], np.tile(filler[:4], (USERS, 1))],
                                                                     axis=1), np.tile(filler, (USERS, 1))),
    }
    test = pd.DataFrame({"user_id": np.repeat(users, K), "item_id": future.reshape(-1),
                         "position": np.tile(np.arange(K), USERS)})
    # 300 training items, none of them recommended: every list is unseen
    train = pd.DataFrame({"user_id": np.repeat(users, 5), "item_id": 1000 + np.arange(USERS * 5) % 300})
    for name, matrix in recs.items():
        chosen = {"temperature": 0.3} if name == "greedy" else None
        metrics.write_results(name, users, matrix, test, train, str(folder / "recs" / f"{name}.parquet"),
                              str(folder / "metrics"), {"chosen": chosen} if chosen else None,
                              validation=(users, matrix, test))
    return test


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    test = make_outputs(folder)
    return folder, test, report.build(folder / "metrics", folder / "recs", test, ["topk", "greedy", "perfect"])


def test_means_and_intervals(built):
    folder, _, result = built
    for name in ("topk", "greedy", "perfect"):
        summary = json.loads((folder / f"metrics/{name}.json").read_text())
        entry = result["methods"][name]
        for key in ("ndcg@5", "recall@5", "map@5"):
            interval = entry["intervals"][key]
            assert interval["mean"] == pytest.approx(summary[key])
            assert interval["low"] <= interval["mean"] <= interval["high"]
    assert result["methods"]["perfect"]["intervals"]["ndcg@5"] == {"mean": 1.0, "low": 1.0, "high": 1.0}
    assert result["methods"]["greedy"]["chosen"] == {"temperature": 0.3}
    # topk's per-user recall is 2/5 for everyone: a constant, so a point interval
    interval = result["methods"]["topk"]["intervals"]["recall@5"]
    assert interval["low"] == interval["mean"] == interval["high"] == pytest.approx(0.4)


def test_paired_comparisons_against_topk_and_the_best(built):
    _, _, result = built
    assert result["best"] == "perfect"
    pairs = [(c["method"], c["against"]) for c in result["comparisons"]]
    assert pairs == [("greedy", "topk"), ("perfect", "topk"), ("topk", "perfect"), ("greedy", "perfect")]
    raw = [c["p_value"] for c in result["comparisons"]]
    assert [c["p_holm"] for c in result["comparisons"]] == pytest.approx(stats.holm(raw))
    by_pair = {(c["method"], c["against"]): c for c in result["comparisons"]}
    greedy_vs_topk = by_pair[("greedy", "topk")]
    # Direct computation of the mean per-user difference: greedy's NDCG minus topk's.
    discount = 1 / np.log2(np.arange(2, K + 2))
    topk_ndcg = discount[:2].sum() / discount.sum()
    greedy_ndcg = np.where(np.arange(100, 160) % 2 == 0, discount[0] / discount.sum(), 0.0)
    assert greedy_vs_topk["difference"] == pytest.approx((greedy_ndcg - topk_ndcg).mean())
    assert all(c["significant"] for c in result["comparisons"])  # differences this large are never noise


def test_markdown_and_json_carry_the_same_numbers(built):
    _, _, result = built
    text = report.markdown(result)
    assert "| greedy | temperature 0.3 |" in text
    perfect = result["methods"]["perfect"]["intervals"]["ndcg@5"]
    assert f"**{perfect['mean']:.4f} [{perfect['low']:.4f}, {perfect['high']:.4f}]**" in text
    assert text.count("| ✱ |") == 4
    assert "Holm-corrected over all 4 comparisons" in text
    json.dumps(result)  # JSON-ready


def test_figure_is_written(built, tmp_path):
    folder, test, _ = built
    report.figure(folder / "metrics", folder / "recs", test, ["topk", "greedy", "perfect"], tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_colours_are_distinct_for_many_methods():
    for n in (3, 10, 14, 25):
        assert len({tuple(c) for c in report.colours(n)}) == n


def test_recommendations_for_other_users_are_refused(built, tmp_path):
    folder, test, _ = built
    with pytest.raises(Exception, match=r"does not hold exactly the test users.*\(dvc repro topk\)"):
        report.build(folder / "metrics", folder / "recs", test[test["user_id"] != 100], ["topk"])


def test_the_stage_of_a_method():
    assert [report.stage_of(name) for name in ("rra", "popularity", "bpr", "bert4rec")] == \
        ["rra", "popularity", "baseline@bpr", "baseline@bert4rec"]


def test_positions_table_holds_every_method(built):
    folder, _, _ = built
    table = report.positions(folder / "metrics", ["topk", "greedy", "perfect"])
    assert table["method"].unique().tolist() == ["topk", "greedy", "perfect"]
    assert len(table) == 3 * K and table.columns[0] == "method"
    assert table.query("method == 'perfect'")["ndcg_first_p"].tolist() == pytest.approx([1.0] * K)
