"""Recommendations for one history, a dataset user, or many histories, from the recommender
folder (``genrec.bundle``), through the pipeline's batched engine (``genrec.strategies``).

    from genrec.recommender import Recommender
    rec = Recommender.load("data/recommender")
    rec.recommend([50, 172, 133], strategy="rra", k=10)  # rank, raw_item_id, title, score

A dataset user gets exactly the pipeline's list (same strategy, settings and seed): their
training sequence is the prompt and their random numbers come from (seed, user id), as in
the strategy stages. Histories given by the caller all draw from (seed, 0), so a history
gets the same list alone or among others.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genrec.errors import UserError
from genrec.io import read_json, read_table
from genrec.device import resolve_device
from genrec.model import load as load_model
from genrec.params import section
from genrec.sequences import UserSequences
from genrec.strategies import STRATEGIES, GenerationParams, recommend


class UnknownItemsWarning(UserWarning):
    """Some raw item ids of a history are not in the model's catalogue; they were skipped."""


def checked_history(history) -> list:
    """``history`` as a list of raw item ids (numbers or strings), oldest first, or the one-line
    error that `genrec recommend --history` prints for the same mistake."""
    example = "give a list of raw item ids, oldest first, such as [50, 172, 133]"
    if isinstance(history, (str, bytes)):
        raise UserError(f"the history is the string {history!r}, not a list: {example}")
    if not hasattr(history, "__iter__") or isinstance(history, (pd.DataFrame, dict)) or \
            (isinstance(history, np.ndarray) and history.ndim != 1):
        kind = type(history).__name__
        shown = f" ({history!r})" if not hasattr(history, "__iter__") else ""
        raise UserError(f"the history is {'an' if kind[0] in 'aeiou' else 'a'} {kind}{shown}, not a list: {example}")
    items = []
    for position, item in enumerate(history, start=1):
        if item is None or item is pd.NA or (isinstance(item, float) and np.isnan(item)):
            raise UserError(f"the history's item id at position {position} is missing ({item}): {example}")
        if isinstance(item, str) and not item.strip():
            raise UserError(f"the history's item id at position {position} is empty: {example}")
        if isinstance(item, (float, np.floating)) and float(item).is_integer():
            item = int(item)  # 50.0, as a column with a gap holds 50: the id 50
        if not isinstance(item, (str, int, np.integer)) or isinstance(item, bool):
            raise UserError(f"the history's item id at position {position} is a {type(item).__name__} ({item!r}); "
                            f"raw item ids are whole numbers or strings: {example}")
        items.append(item)
    if not items:
        raise UserError(f"the history is empty: {example}")
    return items


def _check_settings(path: Path, settings) -> None:
    """settings.json holds every strategy's settings, with exactly the keys the strategy reads."""
    fix = "run `dvc repro -f bundle` to write it again"
    if not isinstance(settings, dict):
        raise UserError(f"{path}: 'strategies' is a {type(settings).__name__}, not an object: {fix}")
    missing = [name for name in STRATEGIES if name not in settings]
    unknown = [name for name in settings if name not in STRATEGIES]
    if missing or unknown:
        raise UserError(f"{path} has no settings for {', '.join(missing) or '-'} and unknown strategies "
                        f"{', '.join(map(str, unknown)) or '-'}: {fix}")
    for name, values in settings.items():
        expected = set(STRATEGIES[name].settings)
        if not isinstance(values, dict) or set(values) != expected:
            got = sorted(values) if isinstance(values, dict) else type(values).__name__
            raise UserError(f"{path}: the settings of {name} are {got}, not {sorted(expected)}: {fix}")


@contextlib.contextmanager
def _threads_for(histories: int):
    """One history is a few small matrix products: on the CPU extra threads only add overhead,
    and on a busy machine they spin-wait for cores (20 ms against 2 s measured on a loaded
    2-core machine; benchmarks/bench_recommend.py). The caller's setting is restored after."""
    before = torch.get_num_threads()
    if histories == 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Recommender:
    def __init__(self, model, items: pd.DataFrame, users: pd.DataFrame, history: pd.DataFrame,
                 settings: dict[str, dict]):
        self.model = model
        self.items = items.sort_values("item_id").reset_index(drop=True)  # row i holds item_id i + 1
        self.settings = settings
        # Raw ids are matched as text, so "50" and 50 name the same item (CSV, flags, Python).
        self._item_of = dict(zip(self.items["raw_item_id"].astype(str), self.items["item_id"].tolist()))
        self._raw_ids = self.items["raw_item_id"].to_numpy()
        self._user_of = dict(zip(users["raw_user_id"].astype(str), users["user_id"]))
        self._history = UserSequences.from_frame(history, len(users))

    @classmethod
    def load(cls, path: str | Path = "data/recommender", device: str = "auto") -> "Recommender":
        """The folder written by the `bundle` stage; ``device``: auto, cpu or cuda."""
        path = Path(path)
        if not (path / "settings.json").exists():
            raise UserError(f"{path} is not a recommender folder (no settings.json): run `dvc repro bundle` first")
        settings = read_json(path / "settings.json", "bundle", ["strategies"])["strategies"]
        _check_settings(path / "settings.json", settings)
        model = load_model(path / "model", resolve_device(device, "device"), stage="bundle")
        return cls(model, read_table(path / "items.parquet", "bundle", ["item_id", "raw_item_id", "title"]),
                   read_table(path / "users.parquet", "bundle", ["user_id", "raw_user_id"]),
                   read_table(path / "history.parquet", "bundle", ["user_id", "item_id"]), settings)

    # --- the three ways to ask ---------------------------------------------------------------

    def recommend(self, history, strategy: str = "rra", k: int | None = None, **settings) -> pd.DataFrame:
        """The first ``k`` items of the strategy's list for one history of raw item ids, oldest
        first: ``rank, raw_item_id, title, score``. ``settings`` override the strategy's chosen
        ones (``temperature=0.3``, ``horizon=20``: the items it generates, the pipeline's k by
        default); ``k`` only cuts the list, so the top 5 are the first 5 of the top 10."""
        with _threads_for(1):
            return self._run([0], [checked_history(history)], strategy, k, settings).drop(columns="user")

    def recommend_user(self, raw_user_id, strategy: str = "rra", k: int | None = None, **settings) -> pd.DataFrame:
        """``recommend`` for a user of the dataset, from their training history."""
        user = self._user_of.get(str(raw_user_id))
        if user is None:
            raise UserError(f"unknown user {raw_user_id!r}: the model knows {len(self._user_of):,} users "
                            f"(raw ids such as {', '.join(list(self._user_of)[:3])})")
        params = self.params(strategy, **settings)
        k = self._length(k, params)
        seen = self._history.items[self._history.indptr[user]:self._history.indptr[user + 1]]
        self._check_unseen([f"user {raw_user_id}"], [seen], params.horizon)
        with _threads_for(1):
            items, scores = recommend(strategy, self.model, self._history, np.array([user]), params)
        return self._frame(items[:, :k], scores[:, :k]).drop(columns="user")

    def recommend_many(self, frame: pd.DataFrame, strategy: str = "rra", k: int | None = None,
                       **settings) -> pd.DataFrame:
        """Many histories at once, in one batched run: ``frame`` has ``user, item`` rows (raw
        item ids), each user's in time order. Returns ``user, rank, raw_item_id, title, score``."""
        if not isinstance(frame, pd.DataFrame):
            raise UserError(f"the histories are a {type(frame).__name__}: give a pandas DataFrame with columns user "
                            "and item, one row per interaction, each user's rows in time order")
        missing = [c for c in ("user", "item") if c not in frame.columns]
        if missing:
            raise UserError(f"the histories lack column(s) {', '.join(missing)}; they need user, item rows")
        histories = frame.groupby("user", sort=False, dropna=False)["item"].agg(list)  # users in order of first row
        checked = []
        for user, history in histories.items():
            try:
                checked.append(checked_history(history))
            except UserError as error:
                raise UserError(str(error).replace("the history", f"user {user}'s history", 1)) from None
        return self._run(list(histories.index), checked, strategy, k, settings)

    def _run(self, names: list, histories: list[list], strategy: str, k: int | None, settings: dict) -> pd.DataFrame:
        params = self.params(strategy, **settings)
        k = self._length(k, params)
        if not histories:
            raise UserError("no history given: give at least one raw item id")
        encoded, unknown = [], []
        for name, history in zip(names, histories):
            ids = [self._item_of.get(str(item)) for item in history]
            unknown += [item for item, i in zip(history, ids) if i is None]
            encoded.append([i for i in ids if i is not None])
            if not encoded[-1]:
                whose = f"user {name}'s history" if len(names) > 1 else "the history"
                raise UserError(f"{whose} has no item id the model knows; give raw item ids of the dataset")
        if unknown:
            shown = ", ".join(map(str, pd.unique(pd.Series(unknown, dtype=object))[:5]))
            warnings.warn(f"{len(unknown)} unknown item id(s) skipped ({shown}{', ...' if len(set(unknown)) > 5 else ''}): "
                          "not in the model's catalogue", UnknownItemsWarning, stacklevel=3)
        self._check_unseen([f"user {name}'s history" if len(names) > 1 else "the history" for name in names],
                           encoded, params.horizon)
        lengths = np.array([len(e) for e in encoded])
        sequences = UserSequences(indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                                  items=np.fromiter((i for e in encoded for i in e), np.int64, lengths.sum()))
        # Every given history draws from stream 0: the same history gets the same list wherever it is.
        items, scores = recommend(strategy, self.model, sequences, np.arange(len(encoded)), params,
                                  streams=np.zeros(len(encoded), dtype=np.int64))
        out = self._frame(items[:, :k], scores[:, :k])
        out["user"] = pd.Series(names, dtype=object).to_numpy()[out["user"].to_numpy()]
        return out

    # --- helpers -----------------------------------------------------------------------------

    def history_of(self, raw_user_id) -> pd.DataFrame:
        """A dataset user's training history (``raw_item_id, title``), oldest first."""
        user = self._user_of[str(raw_user_id)]
        items = self._history.items[self._history.indptr[user]:self._history.indptr[user + 1]]
        return self.items.iloc[items - 1][["raw_item_id", "title"]].reset_index(drop=True)

    def params(self, strategy: str, **settings) -> GenerationParams:
        """The strategy's chosen settings (the horizon among them), with ``settings`` changed."""
        if strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        extra = sorted(set(settings) - set(STRATEGIES[strategy].settings))
        if extra:
            raise UserError(f"{strategy} has no setting {', '.join(extra)}; it reads "
                            f"{', '.join(STRATEGIES[strategy].settings)}")
        # The bundle's settings (params.yaml's or the tuned values), checked as the strategy
        # stages check them. The batch size is chosen from the free memory (0) and the device
        # is the model's: neither is a bundle setting.
        values = {**self.settings[strategy], **settings, "batch_size": 0}
        try:
            params = section({"generation": values}, "generation", GenerationParams, keys=list(values))
            params.check_window(self.model.config.n_positions)
        except UserError as error:  # the checks name params.yaml; here the values come from the caller
            raise UserError(str(error).replace("params.yaml: evaluation.k", "setting horizon")
                            .replace("params.yaml: generation.", "setting ")) from None
        return params

    @staticmethod
    def _length(k: int | None, params: GenerationParams) -> int:
        """The list length: ``k`` items of the strategy's ``horizon``, all of them by default."""
        if k is None:
            return params.horizon
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise UserError(f"k must be a whole number of items, at least 1, got {k!r}")
        if k > params.horizon:
            raise UserError(f"k ({k}) is more than the {params.horizon} items the strategy generates (its horizon): "
                            f"ask for at most {params.horizon}, or generate more (horizon={k}, --horizon {k})")
        return int(k)

    def _check_unseen(self, whose: list[str], histories: list, horizon: int) -> None:
        """Every list holds ``horizon`` unseen, distinct, real items: refuse a history that leaves fewer."""
        num_items = len(self.items)
        for label, history in zip(whose, histories):
            unseen = num_items - len(set(history))
            if unseen < horizon:
                raise UserError(f"{label} has seen {num_items - unseen:,} of the {num_items:,} items, leaving "
                                f"{unseen} unseen: fewer than the {horizon} the strategy generates (its horizon); "
                                f"generate at most {unseen} (horizon={unseen}, --horizon {unseen})")

    def _frame(self, items: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        """(users, K) internal ids and scores to long rows ``user, rank, raw_item_id, title, score``."""
        n, k = items.shape
        rows = items.reshape(-1) - 1  # item_id i is row i - 1
        return pd.DataFrame({"user": np.repeat(np.arange(n), k), "rank": np.tile(np.arange(1, k + 1), n),
                             "raw_item_id": self._raw_ids[rows], "title": self.items["title"].array.take(rows),
                             "score": scores.reshape(-1)})
