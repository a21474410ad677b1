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


def comparison(method: str, difference: float, p_holm: float, significant: bool) -> dict:
    return {"method": method, "against": "topk", "metric": "ndcg@10", "difference": difference,
            "low": difference - 0.006, "high": difference + 0.006, "p_value": p_holm / 4, "p_holm": p_holm,
            "significant": significant}


def test_the_report_opens_with_its_answer():
    """Issue 24: the report's first lines say, from its own numbers, the best method, the best
    GPT-2 strategy and how each aggregation strategy stands against Top-K."""
    def method(ndcg):
        return {"users": 471, "chosen": {}, "validation_ndcg@10": None, "intervals": {
            f"{m}@10": {"mean": ndcg, "low": ndcg - 0.01, "high": ndcg + 0.01} for m in report.INTERVAL_METRICS},
            "ndcg@10": ndcg, "recall@10": 0.1, "map@10": 0.1, "hit_rate@10": 0.5, "coverage": 0.3,
            "entropy_bits": 7.2, "novelty_bits": 3.1,
            "by_rank": {f"{key}_{label}": [0.1 * p for p in range(1, 11)]
                        for key in report.BEYOND for label in ("at_p", "first_p")}}
    result = {"k": 10, "best": "sasrec", "alpha": 0.05, "methods": {
        "topk": method(0.1553), "beam": method(0.1420), "rra": method(0.1521), "ra": method(0.1456),
        "popularity": method(0.0818), "sasrec": method(0.1570)},
        "comparisons": [comparison("beam", -0.0133, 0.0416, True), comparison("rra", -0.0032, 1.0, False),
                        comparison("ra", -0.0098, 0.266, False), comparison("popularity", -0.0735, 0.0036, True),
                        comparison("sasrec", 0.0017, 1.0, False)]}
    assert report.summary(result) == [
        "Over the next items of 471 test users (NDCG@10, 95% intervals over users):", "",
        "- **Best method: sasrec**, NDCG@10 0.1570 [0.1470, 0.1670].",
        "- **Best GPT-2 strategy: topk**, 0.1553 [0.1453, 0.1653].",
        "- **RRA ties Top-K (no significant difference)**: -0.0032 [-0.0092, +0.0028], p 0.25 after Holm 1.00.",
        "- **RA is below Top-K before Holm's correction, not after**: -0.0098 [-0.0158, -0.0038], p 0.07 after Holm "
        "0.27.",
        "- Significantly below Top-K after Holm's correction: beam, popularity."]
    result["comparisons"][1] = comparison("rra", 0.0200, 0.001, True)
    assert "- **RRA beats Top-K**: +0.0200 [+0.0140, +0.0260], p 0.0003 after Holm 0.001." in report.summary(result)
    text = report.markdown(result)
    assert text.startswith("# Which strategy predicts a user's future best?\n\nOver the next items")
    assert "![How far into the future each list predicts](positions.png)" in text
    assert "## What the columns mean" in text and "- **coverage**: distinct recommended items" in text
    # The beyond-accuracy metrics in bits, overall and rank by rank (ranks 1, 5 and 10, alone and cumulative).
    assert "| coverage | entropy (bits) | novelty (bits) |" in text and "| **0.3000** | **7.20** | **3.10** |" in text  # every method ties: all bold
    assert "## Beyond accuracy, rank by rank" in text
    assert "| method | coverage ≤1 | coverage ≤5 | coverage ≤10 | entropy ≤1 |" in text
    assert "| topk | 0.1000 | 0.5000 | 1.0000 | 0.10 | 0.50 | 1.00 | 0.10 | 0.50 | 1.00 | 0.10 | 0.50 | 1.00 |" in text


def test_learning_curves_gather_every_trained_model(tmp_path):
    for folder, train in (("train", "loss"), ("bpr_train", "auc"), ("sasrec_train", "loss")):
        plots = tmp_path / folder / "plots" / "metrics"
        for file, field in ((f"train/{train}.tsv", train), ("val/ndcg@10.tsv", "ndcg@10"), ("val/hr@10.tsv", "hr@10"),
                            ("epoch_seconds.tsv", "epoch_seconds")):
            (plots / file).parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"step": [1, 2], field: [0.5, 0.25]}).to_csv(plots / file, sep="\t", index=False)
    table = report.learning_curves(tmp_path, ["topk", "bpr", "sasrec"])
    assert table["method"].tolist() == ["gpt-2"] * 2 + ["bpr"] * 2 + ["sasrec"] * 2
    assert list(table.columns) == ["method", "epoch", "train_loss", "train_auc", "val_ndcg@10", "val_hr@10",
                                   "epoch_seconds"]
    assert table["train_auc"].notna().tolist() == [False, False, True, True, False, False]
    with pytest.raises(ValueError, match=r"bert4rec_train/plots/metrics/val/ndcg@10.tsv not found: run `dvc repro "
                                         r"baseline@bert4rec` first"):
        report.learning_curves(tmp_path, ["bert4rec"])


def test_the_run_before_the_search_stands_beside_this_one():
    """Issue 45: the report says whether tuning moved the answer: RRA and SASRec against Top-K
    before and after the search, in the summary and in a table of every method."""
    def method(ndcg):
        return {"users": 471, "chosen": {}, "validation_ndcg@10": None, "intervals": {
            f"{m}@10": {"mean": ndcg, "low": ndcg - 0.01, "high": ndcg + 0.01} for m in report.INTERVAL_METRICS},
            "ndcg@10": ndcg, "recall@10": 0.1, "map@10": 0.1, "hit_rate@10": 0.5, "coverage": 0.3,
            "entropy_bits": 7.2, "novelty_bits": 3.1,
            "by_rank": {f"{key}_{label}": [0.1] * 10 for key in report.BEYOND for label in ("at_p", "first_p")}}
    untuned = {"commit": "491a781", "searched": ["GPT-2", "SASRec"],
               "methods": {"topk": method(0.1562), "rra": method(0.1549), "sasrec": method(0.1549)},
               "comparisons": [comparison("rra", -0.0013, 1.0, False), comparison("sasrec", -0.0012, 1.0, False)]}
    result = {"k": 10, "best": "sasrec", "alpha": 0.05, "untuned": untuned,
              "methods": {"topk": method(0.1600), "rra": method(0.1650), "sasrec": method(0.1700),
                          "bert4rec": method(0.1400)},
              "comparisons": [comparison("rra", 0.0050, 0.2, False), comparison("sasrec", 0.0100, 0.01, True),
                              comparison("bert4rec", -0.0200, 0.01, True)]}
    assert ("- **Against Top-K before and after the search** (GPT-2, SASRec searched): RRA -0.0013 [-0.0073, +0.0047] "
            "(Holm p 1.00) before, +0.0050 [-0.0010, +0.0110] (Holm p 0.20) now; sasrec -0.0012 [-0.0072, +0.0048] "
            "(Holm p 1.00) before, +0.0100 [+0.0040, +0.0160] (Holm p 0.01) now.") in report.summary(result)
    text = report.markdown(result)
    assert "## Before and after the search" in text and "commit 491a781" in text
    assert ("| sasrec | 0.1549 [0.1449, 0.1649] | 0.1700 [0.1600, 0.1800] | -0.0012 [-0.0072, +0.0048] | 1.0000 "
            "| +0.0100 [+0.0040, +0.0160] ✱ | 0.0100 |") in text
    assert "| bert4rec | — | 0.1400 [0.1300, 0.1500] | — | — | -0.0200 [-0.0260, -0.0140] ✱ | 0.0100 |" in text
    assert "| topk | 0.1562 [0.1462, 0.1662] | 0.1600 [0.1500, 0.1700] | — | — | — | — |" in text
    del result["untuned"]
    assert "Before and after" not in report.markdown(result) and not any("before and after" in line
                                                                          for line in report.summary(result))


def test_the_earlier_run_is_set_beside_only_on_the_same_test_data():
    test = pd.DataFrame({"user_id": [2, 1, 1], "item_id": [7, 5, 6], "position": [0, 1, 0]})
    assert report.test_digest(test) == report.test_digest(test.iloc[::-1])  # row order aside
    assert report.test_digest(test) != report.test_digest(test.assign(item_id=[7, 5, 8]))
