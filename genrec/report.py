"""The comparison report (method §6b): every method's test metrics with bootstrap intervals,
paired comparisons against Top-K and against the best method, and the per-position figure.

The per-user values are recomputed from each method's recommendations and the test split,
with the same ``metrics.per_user`` the stages use, so the means equal ``metrics/<name>.json``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on the machines that run the pipeline
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from genrec import metrics, stats  # noqa: E402
from genrec.baselines import NAMES as BASELINES  # noqa: E402
from genrec.errors import UserError  # noqa: E402
from genrec.io import read_json, read_table  # noqa: E402

SEED = 0  # every bootstrap and randomization test of the report
INTERVAL_METRICS = ("ndcg", "recall", "map")  # reported with 95% intervals
COMPARED = "ndcg"  # the metric of the paired comparisons
ALPHA = 0.05
REFERENCE = "topk"  # the paper's baseline strategy: every method is compared with it
# The dvc.yaml stage that writes each baseline's outputs (the trained ones are one foreach).
BASELINE_STAGES = {"popularity": "popularity", "bpr": "baseline@bpr", "sasrec": "baseline@sasrec",
                   "bert4rec": "baseline@bert4rec"}


def stage_of(name: str) -> str:
    """The stage that writes a method's outputs, for messages that say what to rerun: a
    strategy's is the strategy."""
    return BASELINE_STAGES.get(name, name)


def read_recommendations(recs_dir: Path, name: str) -> pd.DataFrame:
    """``<recs_dir>/<name>.parquet`` (user_id, item_id, rank), as the method's stage wrote it."""
    return read_table(recs_dir / f"{name}.parquet", stage_of(name), ["user_id", "item_id", "rank"])


def recommendations(recs_dir: Path, name: str, users: np.ndarray) -> np.ndarray:
    """(len(users), K) item matrix of ``<recs_dir>/<name>.parquet``, rows in ``users`` order."""
    frame = read_recommendations(recs_dir, name).sort_values(["user_id", "rank"])
    matrix = frame.pivot(index="user_id", columns="rank", values="item_id")
    if not np.array_equal(matrix.index.to_numpy(), users):
        raise UserError(f"{recs_dir / name}.parquet does not hold exactly the test users of the split: "
                        f"rerun its stage (dvc repro {stage_of(name)})")
    return matrix.to_numpy()


def per_user(recs_dir: Path, test: pd.DataFrame, names: list[str]
             ) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray], np.ndarray]:
    """Each method's per-user test metrics (``metrics.per_user``) and recommendations, and the
    (users, n) relevant items, users in id order."""
    users = np.sort(test["user_id"].unique())
    relevant = metrics.relevant_matrix(test, users, int(test["position"].max()) + 1)
    recs = {name: recommendations(recs_dir, name, users) for name in names}
    return {name: metrics.per_user(r, relevant) for name, r in recs.items()}, recs, relevant


def build(metrics_dir: Path, recs_dir: Path, test: pd.DataFrame, names: list[str], untuned: dict | None = None
          ) -> dict:
    """The report as one JSON-ready dict: ``methods`` (test summary, intervals, validation
    NDCG, chosen settings) and ``comparisons`` (paired, Holm-corrected together); with
    ``untuned`` (the same of the run before the models were searched), that run beside this one."""
    values, recs, _ = per_user(recs_dir, test, names)
    k = next(iter(recs.values())).shape[1]
    # Every interval in one call: they share the users, so one set of resamples serves all.
    intervals = iter(stats.intervals(np.array([values[name][m] for name in names for m in INTERVAL_METRICS]), SEED))
    methods = {}
    for name in names:
        summary = read_json(metrics_dir / f"{name}.json", stage_of(name), ["users", f"{COMPARED}@{k}"])
        validation = metrics_dir / "validation" / f"{name}.json"
        methods[name] = {
            "users": summary["users"],
            "chosen": summary.get("chosen", {}),
            f"validation_ndcg@{k}": (read_json(validation, stage_of(name), [f"ndcg@{k}"])[f"ndcg@{k}"]
                                     if validation.exists() else None),
            "intervals": {f"{m}@{k}": vars(next(intervals)) for m in INTERVAL_METRICS},
            **{key: value for key, value in summary.items() if key not in ("users", "chosen")},
            "by_rank": by_rank(metrics_dir, name),
        }
    best = max(names, key=lambda name: methods[name][f"{COMPARED}@{k}"])
    pairs = [(name, reference) for reference in dict.fromkeys([REFERENCE, best]) if reference in names
             for name in names if name != reference]
    results = stats.comparisons(np.array([values[a][COMPARED] for a, _ in pairs]),
                                np.array([values[b][COMPARED] for _, b in pairs]), SEED) if pairs else []
    adjusted = stats.holm([r.p_value for r in results])
    comparisons = [{
        "method": a, "against": b, "metric": f"{COMPARED}@{k}",
        "difference": r.difference.mean, "low": r.difference.low, "high": r.difference.high,
        "p_value": r.p_value, "p_holm": p, "significant": bool(p <= ALPHA),
    } for (a, b), r, p in zip(pairs, results, adjusted)]
    result = {"k": k, "best": best, "alpha": ALPHA, "methods": methods, "comparisons": comparisons}
    if untuned is not None and untuned.get("test_digest") == test_digest(test) and untuned.get("k") == k:
        result["untuned"] = untuned  # the same test users and items: the two runs compare
    return result


def test_digest(test: pd.DataFrame) -> str:
    """A digest of the test split's (user, item, position) rows: an earlier run's record is set
    beside this one only when it was scored on the same test data."""
    rows = test[["user_id", "item_id", "position"]].sort_values(["user_id", "position"]).to_numpy(dtype=np.int64)
    return hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()[:16]


BEYOND = ("coverage", "entropy_bits", "novelty_bits")  # the lists' own metrics, reported rank by rank


def by_rank(metrics_dir: Path, name: str) -> dict[str, list]:
    """A method's coverage, entropy and novelty at each list rank p alone (``*_at_p``) and over
    its first p ranks (``*_first_p``), p = 1..n, from its per-position curves."""
    curve = position_curves(metrics_dir, name)
    return {f"{key}_{label}": [None if pd.isna(v) else float(v) for v in curve[f"{key}_{label}"]]
            for key in BEYOND for label in ("at_p", "first_p")}


def _settings(chosen: dict) -> str:
    return ", ".join(f"{key} {value:g}" for key, value in chosen.items()) or "—"


def _ci(entry: dict) -> str:
    return f"{entry['mean']:.4f} [{entry['low']:.4f}, {entry['high']:.4f}]"


AGGREGATIONS = ("rra", "ra")  # the paper's multi-sequence strategies, set against Top-K in the summary


def _p(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1g}"


def _difference(c: dict, short: bool = False) -> str:
    if short:
        return f"{c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}] (Holm p {_p(c['p_holm'])})"
    return f"{c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}], p {_p(c['p_value'])} after Holm {_p(c['p_holm'])}"


SEARCHED = ("rra", "sasrec")  # the comparisons the summary sets before and after the search (issue 45)


def _verdict(c: dict, reference: str) -> str:
    """How ``c['method']`` stands against ``reference``, in words the interval and Holm's p allow."""
    if c["significant"]:
        return f"beats {reference}" if c["difference"] > 0 else f"is below {reference}"
    if c["low"] > 0 or c["high"] < 0:  # apart on its own, not among all the comparisons made
        side = "above" if c["difference"] > 0 else "below"
        return f"is {side} {reference} before Holm's correction, not after"
    return f"ties {reference} (no significant difference)"


def summary(report: dict) -> list[str]:
    """The report's answer in a few sentences, from its own numbers: the best method over the
    horizon, the best GPT-2 strategy, and each aggregation strategy against Top-K."""
    k, methods = report["k"], report["methods"]
    key = f"{COMPARED}@{k}"
    best = report["best"]
    users = next(iter(methods.values()))["users"]
    lines = [f"Over the next items of {users} test users (NDCG@{k}, 95% intervals over users):", ""]
    lines.append(f"- **Best method: {best}**, NDCG@{k} {_ci(methods[best]['intervals'][key])}.")
    strategies = [name for name in methods if name not in BASELINES]
    if strategies:
        top = max(strategies, key=lambda name: methods[name][key])
        lines.append(f"- **Best GPT-2 strategy: {top}**, {_ci(methods[top]['intervals'][key])}.")
    against = {c["method"]: c for c in report["comparisons"] if c["against"] == REFERENCE}
    for name in AGGREGATIONS:
        if name in against:
            c = against[name]
            lines.append(f"- **{name.upper()} {_verdict(c, 'Top-K')}**: {_difference(c)}.")
    before = {c["method"]: c for c in report.get("untuned", {}).get("comparisons", []) if c["against"] == REFERENCE}
    moved = [f"{name.upper() if name in AGGREGATIONS else name} {_difference(before[name], short=True)} before, "
             f"{_difference(against[name], short=True)} now" for name in SEARCHED if name in before and name in against]
    if moved:
        lines.append(f"- **Against Top-K before and after the search** ({', '.join(report['untuned']['searched'])} "
                     f"searched): {'; '.join(moved)}.")
    below = [c["method"] for c in against.values() if c["significant"] and c["difference"] < 0]
    above = [c["method"] for c in against.values() if c["significant"] and c["difference"] > 0]
    if above:
        lines.append(f"- Significantly above Top-K after Holm's correction: {', '.join(above)}.")
    if below:
        lines.append(f"- Significantly below Top-K after Holm's correction: {', '.join(below)}.")
    return lines


GLOSSARY = [
    "## What the columns mean",
    "",
    "- **NDCG@K**: hits of the K-item list among the user's held-out future items, each discounted by its "
    "rank (1 / log2(rank + 1)) and divided by the best possible score, so a perfect list scores 1.",
    "- **Recall@K**: the share of the held-out items that the list holds. **MAP@K**: the mean of the "
    "precision at each hit's rank. **HR@K**: the share of users with at least one hit.",
    "- **coverage**: distinct recommended items over the items in the training data. **entropy (bits)**: "
    "the Shannon entropy, log2, of how often each item is recommended; higher means more varied lists "
    "(log2 of the number of distinct items when all come equally often). **novelty (bits)**: the mean over "
    "the recommended items of −log2 of the share of training users who have the item; higher means "
    "less popular items.",
    "- **validation NDCG@K**: the same NDCG on the validation users, with the settings tuning chose there.",
    "- **[low, high]**: the 95% BCa bootstrap interval over the test users. **p**: the two-sided paired "
    "randomization test (each user's difference flipped in sign at random); **p (Holm)**: corrected for "
    "all the comparisons of the report together.",
    "- The method is docs/method.md; the figure is [positions.png](positions.png): how far into the future "
    "each list predicts, position by position.",
    "",
]


def markdown(report: dict) -> str:
    k, methods = report["k"], report["methods"]
    users = next(iter(methods.values()))["users"]
    lines = [
        "# Which strategy predicts a user's future best?",
        "",
        *summary(report),
        "",
        "![How far into the future each list predicts](positions.png)",
        "",
        f"## Test results ({users} test users; 95% BCa bootstrap intervals over users)",
        "",
        "Generation settings were chosen per strategy on the validation users (best validation "
        f"NDCG@{k}); the test users were scored once, with them.",
        "",
        f"| method | chosen settings | validation NDCG@{k} | NDCG@{k} | Recall@{k} | MAP@{k} | HR@{k} "
        "| coverage | entropy (bits) | novelty (bits) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    best = {key: max(m[key] for m in methods.values())
            for key in (f"ndcg@{k}", f"recall@{k}", f"map@{k}", f"hit_rate@{k}", *BEYOND)}

    def cell(method: dict, key: str, text: str) -> str:
        return f"**{text}**" if method[key] == best[key] else text

    for name, m in methods.items():
        val = m[f"validation_ndcg@{k}"]
        cells = [_settings(m["chosen"]), "—" if val is None else f"{val:.4f}"]
        cells += [cell(m, f"{key}@{k}", _ci(m["intervals"][f"{key}@{k}"])) for key in INTERVAL_METRICS]
        cells += [cell(m, key, f"{m[key]:.4f}") for key in (f"hit_rate@{k}", "coverage")]
        cells += [cell(m, key, f"{m[key]:.2f}") for key in ("entropy_bits", "novelty_bits")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += rank_table(methods)
    lines += untuned_table(report)
    lines += ["", f"## Paired comparisons of NDCG@{k} (same users)", "",
              "Difference = mean over users of (method − reference), with its 95% paired bootstrap "
              "interval; p = two-sided paired randomization test (sign flips, "
              f"{stats.PERMUTATIONS:,} resamples), Holm-corrected over all {len(report['comparisons'])} "
              f"comparisons below. ✱ = significant at {report['alpha']} after correction.", ""]
    for reference in dict.fromkeys(c["against"] for c in report["comparisons"]):
        title = "the best method" if reference == report["best"] else "Top-K"
        if reference == report["best"] == REFERENCE:
            title = "Top-K, the best method"
        lines += [f"Against {title} (`{reference}`):", "",
                  "| method | difference | 95% interval | p | p (Holm) | |", "|---|---:|---:|---:|---:|---|"]
        for c in report["comparisons"]:
            if c["against"] == reference:
                lines.append(f"| {c['method']} | {c['difference']:+.4f} | [{c['low']:+.4f}, {c['high']:+.4f}] "
                             f"| {c['p_value']:.4f} | {c['p_holm']:.4f} | {'✱' if c['significant'] else ''} |")
        lines.append("")
    return "\n".join(lines + GLOSSARY)


def untuned_table(report: dict) -> list[str]:
    """Every method's test NDCG@K and its difference from Top-K, in the run before the models
    were searched and in this one, side by side (empty without ``untuned``)."""
    untuned = report.get("untuned")
    if not untuned:
        return []
    k, key = report["k"], f"ndcg@{report['k']}"
    before = {c["method"]: c for c in untuned["comparisons"] if c["against"] == REFERENCE}
    after = {c["method"]: c for c in report["comparisons"] if c["against"] == REFERENCE}
    lines = ["", "## Before and after the search", "",
             f"The run before `genrec search` (commit {untuned['commit']}: every model at params.yaml's earlier "
             f"defaults) beside this one, whose {', '.join(untuned['searched'])} are the searches' winners "
             f"(docs/method.md §6c). Test NDCG@{k} with its 95% interval, and the paired difference from Top-K "
             f"with its interval and Holm-corrected p (each run's own correction).", "",
             f"| method | NDCG@{k} before | NDCG@{k} after | − Top-K before | p (Holm) "
             "| − Top-K after | p (Holm) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in report["methods"].items():
        old = untuned["methods"].get(name)
        cells = [_ci(old["intervals"][key]) if old else "—", _ci(m["intervals"][key])]
        for side in (before, after):
            c = side.get(name)
            cells += [f"{c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]{' ✱' if c['significant'] else ''}",
                      f"{c['p_holm']:.4f}"] if c else ["—", "—"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def rank_table(methods: dict) -> list[str]:
    """Coverage, entropy and novelty of the lists at ranks 1, the middle and the last, alone and
    cumulative (the paper's per-position beyond-accuracy figures)."""
    n = len(next(iter(methods.values()))["by_rank"]["coverage_at_p"])
    ranks = sorted({1, (n + 1) // 2, n})
    columns = [(key, label, p) for key, label in (("coverage", "first_p"), ("entropy_bits", "first_p"),
                                                  ("entropy_bits", "at_p"), ("novelty_bits", "at_p"))
               for p in ranks]
    names = {"coverage": "coverage", "entropy_bits": "entropy", "novelty_bits": "novelty"}
    head = " | ".join(f"{names[key]} {'≤' if label == 'first_p' else '@'}{p}" for key, label, p in columns)
    lines = ["", "## Beyond accuracy, rank by rank", "",
             "Coverage and entropy (bits) of the items at the first p ranks of every list (≤p), entropy and "
             "novelty (bits) of the items at rank p alone (@p).", "",
             f"| method | {head} |", "|---|" + "---:|" * len(columns)]
    for name, m in methods.items():
        values = [m["by_rank"][f"{key}_{label}"][p - 1] for key, label, p in columns]
        lines.append(f"| {name} | " + " | ".join("—" if v is None else f"{v:.4f}" if key == "coverage" else f"{v:.2f}"
                                                 for v, (key, _, _) in zip(values, columns)) + " |")
    return lines


def positions(metrics_dir: Path, names: list[str]) -> pd.DataFrame:
    """Every method's per-position curves in one long table (``method`` first): what the
    DVC plots draw, one colour per method."""
    return pd.concat([position_curves(metrics_dir, name).assign(method=name)
                      for name in names])[["method", *POSITION_COLUMNS]]


# The trained models' learning-curve folders (dvclive's, under metrics/) and the stage of each.
CURVES = {"gpt-2": ("train", "train"), "bpr": ("bpr_train", "baseline@bpr"),
          "sasrec": ("sasrec_train", "baseline@sasrec"), "bert4rec": ("bert4rec_train", "baseline@bert4rec")}


def learning_curves(metrics_dir: Path, names: list[str]) -> pd.DataFrame:
    """GPT-2's and the trained baselines' (those among ``names``) learning curves in one long
    table, ``method`` first: what the DVC plots draw, one colour per model and no chart per file.
    Columns: epoch, train_loss (BPR has its AUC instead), val_ndcg@10, val_hr@10, epoch_seconds."""
    frames = []
    for model, (folder, stage) in CURVES.items():
        if model != "gpt-2" and model not in names:
            continue
        plots = metrics_dir / folder / "plots" / "metrics"
        columns = {"train_loss": ("train/loss.tsv", "loss"), "train_auc": ("train/auc.tsv", "auc"),
                   "val_ndcg@10": ("val/ndcg@10.tsv", "ndcg@10"), "val_hr@10": ("val/hr@10.tsv", "hr@10"),
                   "epoch_seconds": ("epoch_seconds.tsv", "epoch_seconds")}
        curve = None
        for column, (file, field) in columns.items():
            if not (plots / file).exists() and column.startswith("train_"):
                continue  # a model logs its loss or its AUC
            table = read_table(plots / file, stage, ["step", field])[["step", field]]
            table = table.rename(columns={"step": "epoch", field: column})
            curve = table if curve is None else curve.merge(table, on="epoch", how="outer")
        frames.append(curve.assign(method=model))
    columns = ["method", "epoch", "train_loss", "train_auc", "val_ndcg@10", "val_hr@10", "epoch_seconds"]
    return pd.concat(frames).reindex(columns=columns)


def position_curves(metrics_dir: Path, name: str) -> pd.DataFrame:
    """A method's per-position curves, ``<metrics_dir>/positions/<name>.csv``."""
    return read_table(metrics_dir / "positions" / f"{name}.csv", stage_of(name), list(POSITION_COLUMNS))


POSITION_COLUMNS = ("position", "users", "hit_rate_at_p", "ndcg_at_p", "ndcg_first_p", "recall_first_p",
                    *(f"{key}_{label}" for key in BEYOND for label in ("at_p", "first_p")))


def colours(n: int) -> list:
    """``n`` colours a reader can tell apart: tab10 (ten distinct hues), then tab20's lighter
    shades, then a colour map."""
    tab20 = plt.get_cmap("tab20").colors
    return (list(plt.get_cmap("tab10").colors) + list(tab20[1::2]))[:n] if n <= 20 else \
        [plt.get_cmap("turbo")(x) for x in np.linspace(0, 1, n)]


def figure(metrics_dir: Path, recs_dir: Path, test: pd.DataFrame, names: list[str], path: Path,
           best: str | None = None) -> None:
    """Three per-position panels, one line per method; the cumulative NDCG panel carries the 95%
    bands of Top-K and of the ``best`` method only: ten overlapping bands blur into one."""
    _, recs, relevant = per_user(recs_dir, test, names)
    curves = {name: position_curves(metrics_dir, name) for name in names}
    banded = [name for name in dict.fromkeys([REFERENCE, best]) if name in curves]
    k = recs[names[0]].shape[1]
    panels = [("hit_rate_at_p", f"HR@{k} against the p-th future item"),
              ("ndcg_at_p", f"NDCG@{k} against the p-th future item"),
              ("ndcg_first_p", f"NDCG@{k} against the first p items\n(95% bands: {' and '.join(banded)})")]
    markers = "osD^v<>ph*"
    # Every band in one call: they share the users, so one set of resamples serves all.
    every_band = iter(stats.intervals(np.array([metrics.per_user(recs[name], relevant[:, :p])["ndcg"]
                                                for name in banded for p in curves[name]["position"]]), SEED))
    fig, axes = plt.subplots(1, len(panels), figsize=(17, 4.8))
    for (name, curve), colour, marker in zip(curves.items(), colours(len(curves)), markers * 3):
        style = dict(color=colour, marker=marker, markersize=4, label=name, linewidth=1.6,
                     linestyle="--" if name in BASELINES else "-")
        for ax, (column, _) in zip(axes, panels):
            ax.plot(curve["position"], curve[column], **style)
        if name in banded:
            bands = [next(every_band) for _ in curve["position"]]
            axes[2].fill_between(curve["position"], [b.low for b in bands], [b.high for b in bands],
                                 color=colour, alpha=0.18, linewidth=0)
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("position p in the held-out future")
        ax.set_xticks(range(1, relevant.shape[1] + 1))
        ax.grid(alpha=0.3)
    # One legend for the three panels, outside them: GPT-2 strategies solid, baselines dashed.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=9, frameon=False, title="solid: GPT-2\ndashed: baselines",
               title_fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
