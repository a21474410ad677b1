"""The self-contained recommender folder: everything `genrec recommend` needs, nothing else.

``data/recommender/`` holds the trained GPT-2 (``model/``), the item table (``items.parquet``:
``item_id, raw_item_id, title``), the dataset users and their training sequences
(``users.parquet``: ``user_id, raw_user_id``; ``history.parquet``: ``user_id, item_id`` in
time order) and each strategy's generation settings (``settings.json``). It is read by
``genrec.recommender.Recommender.load`` without ``data/prepared`` or ``params.yaml``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from genrec import params
from genrec.errors import UserError
from genrec.strategies import STRATEGIES, GenerationParams


FILES = ("model", "items.parquet", "users.parquet", "history.parquet", "settings.json")  # what the folder holds


def strategy_settings(generation: dict, chosen: dict[str, dict]) -> dict[str, dict]:
    """Each strategy's settings: its tuned value from ``chosen[strategy]`` (the ``chosen``
    mapping of ``metrics/<strategy>.json``) where there is one, else the ``generation``
    section's value. A grid (a list) in ``generation`` needs a chosen value."""
    out = {}
    for strategy in STRATEGIES:
        values = {}
        for key in STRATEGIES[strategy].settings:
            if key in chosen.get(strategy, {}):
                values[key] = chosen[strategy][key]
            elif isinstance(generation.get(key), list):
                raise UserError(
                    f"params.yaml: generation.{key} is a grid {generation[key]} but metrics/{strategy}.json "
                    f"has no chosen {key}; run `dvc repro {strategy}` to tune it, or give one value")
            elif key in generation:
                values[key] = generation[key]
        # The same checks as the strategy stages: every key in params.yaml, of the right type and range.
        checked = params.section({"generation": values}, "generation", GenerationParams, keys=STRATEGIES[strategy].settings)
        out[strategy] = {key: getattr(checked, key) for key in STRATEGIES[strategy].settings}
    return out


def write(out: Path, model: Path, items: pd.DataFrame, users: pd.DataFrame, history: pd.DataFrame,
          settings: dict[str, dict]) -> None:
    """Fill the (new, empty) folder ``out``."""
    out.mkdir()
    shutil.copytree(model, out / "model")
    items.to_parquet(out / "items.parquet", index=False)
    users[["user_id", "raw_user_id"]].to_parquet(out / "users.parquet", index=False)
    history[["user_id", "item_id"]].to_parquet(out / "history.parquet", index=False)
    (out / "settings.json").write_text(json.dumps({"strategies": settings}, indent=2) + "\n")
