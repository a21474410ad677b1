"""The committed run's figures on the README and in docs/results.md are those of
metrics/report.json and metrics/report.md: a rerun that moves a result must bring the pages
with it."""

from __future__ import annotations

import json

import pytest

from helpers import REPO

REPORT = json.loads((REPO / "metrics" / "report.json").read_text())
REPORT_MD = (REPO / "metrics" / "report.md").read_text().splitlines()
README = (REPO / "README.md").read_text()
RESULTS = (REPO / "docs" / "results.md").read_text().splitlines()


def minus(value: float) -> str:
    return f"{value:.4f}".replace("-", "−")


@pytest.mark.parametrize("method", list(REPORT["methods"]))
def test_readme_table_is_the_committed_report(method):
    ndcg = REPORT["methods"][method]["intervals"]["ndcg@10"]
    cell = f"{ndcg['mean']:.4f} [{ndcg['low']:.4f}, {ndcg['high']:.4f}]"
    if method == REPORT["best"]:
        cell = f"**{cell}**"
    if method == "topk":  # the column is each method against Top-K
        assert f"| {method} | {cell} | — |" in README
    else:
        difference = next(c["difference"] for c in REPORT["comparisons"]
                          if c["method"] == method and c["against"] == "topk")
        assert f"| {method} | {cell} | {minus(difference).replace('0.', '+0.') if difference > 0 else minus(difference)} (" \
            in README


def test_results_tables_are_the_committed_reports():
    """Each row of the report's tables (test results, rank by rank, before and after the search,
    paired comparisons with Top-K and with the best method) is on the page as is."""
    rows = [line for line in REPORT_MD if line.startswith("| ") and line.split(" | ")[0][2:] in REPORT["methods"]]
    methods = len(REPORT["methods"])
    comparisons = len(REPORT["comparisons"])  # against Top-K, and against the best when it is another
    assert len(rows) == 3 * methods + comparisons
    missing = [row for row in rows if row not in RESULTS]
    assert not missing, "docs/results.md lags metrics/report.md: " + "\n".join(missing)
