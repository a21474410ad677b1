"""docs/method.md §6: ranking metrics over full rankings, per user first, then averaged.

Inputs are dense arrays: ``recs`` (U, K) recommended item ids in rank order, and
``relevant`` (U, R) held-out item ids in time order, padded with 0 (item 0 is never an item).
The formulas are those of Microsoft ``recommenders``' ``python_evaluation``:

- Recall@K = |rec ∩ rel| / |rel|; Precision@K = |rec ∩ rel| / K
- NDCG@K = DCG / IDCG with DCG = Σ_{hit ranks i} 1 / log2(i + 1) and
  IDCG = Σ_{i=1}^{min(K, |rel|)} 1 / log2(i + 1)
- MAP@K = (1 / min(K, |rel|)) Σ_{hit ranks i} (hits among the first i) / i
- HR@K = 1 if any hit else 0

and the beyond-accuracy metrics of the lists themselves, against the training data
(``Catalogue``): coverage (distinct recommended items / training items), entropy in bits of
how often each item is recommended (``distributional_coverage``), and novelty in bits, the mean
self-information −log2(share of training users who have the item) of the recommended items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genrec.io import atomic_paths, check_folder, check_output, json_text
from genrec.params import AtLeast1, Section
from genrec.ranking import PADDING


class EvaluationParams(Section):
    """The ``evaluation`` section: what every method's stage reads, so that all lists and all
    metrics have one length."""

    k: AtLeast1  # K: the length of every list (a strategy's generation horizon) and the metrics' cut-off


def hits(recs: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """(U, K) bool: is the item at each rank among the user's relevant items."""
    recs, relevant = np.asarray(recs), np.asarray(relevant)
    return ((recs[:, :, None] == relevant[:, None, :]) & (relevant[:, None, :] != PADDING)).any(axis=2)


def per_user(recs: np.ndarray, relevant: np.ndarray) -> pd.DataFrame:
    """One row per user with ndcg, recall, precision, map and hit_rate at K = recs.shape[1]."""
    recs, relevant = np.asarray(recs), np.asarray(relevant)
    k = recs.shape[1]
    hit = hits(recs, relevant).astype(np.float64)  # (U, K)
    # |rel| counts distinct items: a repeated held-out item is one relevant item, hit at most once.
    ordered = np.sort(relevant, axis=1)
    first = np.ones(ordered.shape, dtype=bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    n_relevant = ((ordered != PADDING) & first).sum(axis=1)
    n_ideal = np.minimum(n_relevant, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))  # 1 / log2(i + 1), i = 1..K
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[n_ideal]
    n_hits = hit.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision_at_i = np.cumsum(hit, axis=1) / np.arange(1, k + 1)
        return pd.DataFrame({
            "ndcg": np.where(n_ideal > 0, (hit * discount).sum(axis=1) / ideal, 0.0),
            "recall": np.where(n_relevant > 0, n_hits / n_relevant, 0.0),
            "precision": n_hits / k,
            "map": np.where(n_ideal > 0, (precision_at_i * hit).sum(axis=1) / n_ideal, 0.0),
            "hit_rate": (n_hits > 0).astype(np.float64),
        })


@dataclass(frozen=True)
class Catalogue:
    """The training data as the beyond-accuracy metrics see it: O(items), never users x items."""

    items: int  # distinct items in the training data: coverage's denominator
    num_users: int  # training users
    item_users: np.ndarray  # by item id: training users who have the item (0 for padding and absent ids)

    @classmethod
    def from_train(cls, train: pd.DataFrame) -> Catalogue:
        pairs = train[["user_id", "item_id"]].drop_duplicates()
        ids = pairs["item_id"].to_numpy()
        item_users = np.bincount(ids, minlength=int(ids.max()) + 1 if len(ids) else 1)
        return cls(int(np.count_nonzero(item_users)), int(pairs["user_id"].nunique()), item_users)


def summary(recs: np.ndarray, relevant: np.ndarray, catalogue: Catalogue) -> dict[str, float]:
    """Mean metrics at K plus coverage, entropy and novelty, with flat keys (``ndcg@10``)."""
    k = np.asarray(recs).shape[1]
    means = per_user(recs, relevant).mean()
    result = {f"{name}@{k}": float(value) for name, value in means.items()}
    result["coverage"] = coverage(recs, catalogue.items)
    result["entropy_bits"] = entropy_bits(recs)
    result["novelty_bits"] = novelty_bits(recs, catalogue)
    return result


def coverage(recs: np.ndarray, num_train_items: int) -> float:
    """Distinct recommended items / items in the training data; padding 0 is not an item."""
    items = np.unique(np.asarray(recs))
    return float(np.count_nonzero(items != PADDING) / num_train_items)


def entropy_bits(recs: np.ndarray) -> float:
    """Shannon entropy in bits (log2) of how often each item is recommended: ``recommenders``'
    ``distributional_coverage``; log2 of the number of distinct items when all are equally often."""
    _, counts = np.unique(np.asarray(recs), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def novelty_bits(recs: np.ndarray, catalogue: Catalogue) -> float:
    """Mean over the recommended items of −log2(share of training users who have the item).

    An item no training user has (possible only for an item first seen in held-out data)
    counts as had by one user, the most novel an item can be. ``recommenders``' ``novelty``
    divides by the training records instead of the users: its figure is this one plus the
    constant log2(records / users), the same ordering of methods."""
    recs = np.asarray(recs)
    known = np.zeros(max(int(recs.max(initial=0)) + 1, len(catalogue.item_users)), dtype=np.int64)
    known[:len(catalogue.item_users)] = catalogue.item_users
    users = np.maximum(known[recs], 1)
    return float(np.mean(-np.log2(users / catalogue.num_users))) if recs.size else 0.0


def per_position(recs: np.ndarray, relevant: np.ndarray, catalogue: Catalogue) -> pd.DataFrame:
    """Metrics against the p-th held-out item alone (``*_at_p``) and the first p items
    (``*_first_p``), p = 1..n: how far into the future the list predicts; and the lists' own
    coverage, entropy and novelty at rank p alone and over the first p ranks (None beyond K)."""
    recs, relevant = np.asarray(recs), np.asarray(relevant)
    rows = []
    for p in range(1, relevant.shape[1] + 1):  # n is the horizon (10): a loop over positions, not users
        single = per_user(recs, relevant[:, p - 1:p])
        first = per_user(recs, relevant[:, :p])
        has_p = relevant[:, p - 1] != PADDING  # global_time users may have fewer than n targets
        row = {
            "position": p,
            "users": int(has_p.sum()),
            "hit_rate_at_p": float(single["hit_rate"][has_p].mean()),
            "ndcg_at_p": float(single["ndcg"][has_p].mean()),
            "ndcg_first_p": float(first["ndcg"].mean()),
            "recall_first_p": float(first["recall"].mean()),
        }
        for label, ranks in (("at_p", recs[:, p - 1:p]), ("first_p", recs[:, :p])):
            inside = p <= recs.shape[1]
            row[f"coverage_{label}"] = coverage(ranks, catalogue.items) if inside else None
            row[f"entropy_bits_{label}"] = entropy_bits(ranks) if inside else None
            row[f"novelty_bits_{label}"] = novelty_bits(ranks, catalogue) if inside else None
        rows.append(row)
    return pd.DataFrame(rows)


def relevant_matrix(targets: pd.DataFrame, users: np.ndarray, n: int) -> np.ndarray:
    """(len(users), n) held-out items in position order, 0-padded, from a long
    ``user_id, item_id, position`` table."""
    row_of = pd.Series(np.arange(len(users)), index=users)
    targets = targets[targets["user_id"].isin(users) & (targets["position"] < n)]
    matrix = np.zeros((len(users), n), dtype=np.int64)
    matrix[row_of[targets["user_id"]].to_numpy(), targets["position"].to_numpy()] = targets["item_id"].to_numpy()
    return matrix


def evaluate(recs: np.ndarray, users: np.ndarray, test: pd.DataFrame, catalogue: Catalogue
             ) -> tuple[dict[str, float], pd.DataFrame]:
    """Summary metrics and per-position curves of ``recs`` (rows in ``users`` order)
    against the long ``test`` table (``user_id, item_id, position``)."""
    n = int(test["position"].max()) + 1
    relevant = relevant_matrix(test, users, n)
    result = {"users": int(len(users)), **summary(recs, relevant, catalogue)}
    return result, per_position(recs, relevant, catalogue)


def recommendations_frame(users: np.ndarray, recs: np.ndarray) -> pd.DataFrame:
    """Long ``user_id, item_id, rank`` (rank 1..K) table of a (users, K) matrix."""
    k = recs.shape[1]
    return pd.DataFrame({
        "user_id": np.repeat(users, k),
        "item_id": recs.reshape(-1),
        "rank": np.tile(np.arange(1, k + 1), len(users)),
    })


def check_recommendations(name: str, users: np.ndarray, recs: np.ndarray, train: pd.DataFrame) -> None:
    """The last guard before a list is written: one row per user, and every item real (not
    padding 0), distinct within its list and unseen in the user's training interactions.

    The stages refuse up front users with too few unseen items
    (``sequences.check_unseen``), so a failure here is a bug, not bad input.
    """
    recs = np.asarray(recs)
    problems = []
    if recs.ndim != 2 or len(recs) != len(users):
        problems.append(f"shape {recs.shape} for {len(users)} users")
    else:
        if (recs == PADDING).any():
            problems.append(f"padding item 0 for {int((recs == PADDING).any(axis=1).sum())} user(s)")
        ordered = np.sort(recs, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if repeated.any():
            problems.append(f"a repeated item for {int(repeated.sum())} user(s)")
        seen = recommendations_frame(users, recs).merge(train[["user_id", "item_id"]].drop_duplicates())
        if len(seen):
            problems.append(f"already-seen items for {seen['user_id'].nunique()} user(s)")
    if problems:
        raise RuntimeError(f"{name} produced invalid recommendation lists ({'; '.join(problems)}); "
                           "nothing was written")


def result_paths(name: str, recs_path: str | Path, metrics_dir: str | Path) -> list[Path]:
    """The files every recommending stage writes (``write_results``): the list, the test metrics,
    the per-position curves and the validation metrics."""
    metrics_dir = Path(metrics_dir)
    return [Path(recs_path), metrics_dir / f"{name}.json", metrics_dir / "positions" / f"{name}.csv",
            metrics_dir / "validation" / f"{name}.json"]


def check_result_paths(name: str, recs_path: str | Path, metrics_dir: str | Path) -> None:
    """Before any work: no file of ``result_paths`` may land on a folder (``io.check_output``)."""
    check_folder(metrics_dir, "--metrics")
    recs, *files = result_paths(name, recs_path, metrics_dir)
    check_output(recs, "--recs")
    for path in files:
        check_output(path, "--metrics")


def write_results(name: str, users: np.ndarray, recs: np.ndarray, test: pd.DataFrame, train: pd.DataFrame,
                  recs_path: str, metrics_dir: str, extra: dict | None = None,
                  validation: tuple[np.ndarray, np.ndarray, pd.DataFrame] | None = None) -> dict[str, float]:
    """Check and evaluate ``recs``, then write the outputs every recommending stage has, as one
    set: ``recs_path`` (user_id, item_id, rank), ``<metrics_dir>/<name>.json`` (plus ``extra``,
    e.g. the chosen settings), ``<metrics_dir>/positions/<name>.csv`` and, given ``validation``
    = (users, recs, targets), ``<metrics_dir>/validation/<name>.json`` with the same keys.
    Returns the test summary metrics."""
    catalogue = Catalogue.from_train(train)
    check_recommendations(name, users, recs, train)
    summary, positions = evaluate(recs, users, test, catalogue)
    paths = result_paths(name, recs_path, metrics_dir)[:3]
    if validation is not None:
        val_users, val_recs, val_targets = validation
        check_recommendations(name, val_users, val_recs, train)
        val_summary, _ = evaluate(val_recs, val_users, val_targets, catalogue)
        paths.append(result_paths(name, recs_path, metrics_dir)[3])
    with atomic_paths(*paths) as tmps:
        recommendations_frame(users, recs).to_parquet(tmps[0], index=False)
        tmps[1].write_text(json_text({**summary, **(extra or {})}))
        positions.to_csv(tmps[2], index=False, float_format="%.6f")
        if validation is not None:
            tmps[3].write_text(json_text({**val_summary, **(extra or {})}))
    return summary
