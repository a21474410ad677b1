"""Stage `bundle`: the self-contained recommender folder (GPT-2, item ids and titles, users'
training histories, each strategy's generation settings) that `genrec recommend` loads."""

import argparse
import json
from pathlib import Path

import pandas as pd

from genrec import bundle, examples, params
from genrec.errors import UserError, stage_main
from genrec.io import atomic_path
from genrec.strategies import STRATEGIES


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="data/model", type=Path)
    parser.add_argument("--prepared", default="data/prepared", type=Path)
    parser.add_argument("--split", default="data/split", type=Path)
    parser.add_argument("--titles", default="data/raw/items.parquet", type=Path)
    parser.add_argument("--metrics", default="metrics", type=Path, help="the strategies' <strategy>.json")
    parser.add_argument("--out", default="data/recommender", type=Path)
    args = parser.parse_args()

    generation = params.load().get("generation")
    if not isinstance(generation, dict):
        raise UserError("params.yaml: section 'generation' is missing or not a mapping")
    chosen = {}
    for strategy in STRATEGIES:
        path = args.metrics / f"{strategy}.json"
        if not path.exists():
            raise UserError(f"{path} is missing: run `dvc repro {strategy}` first")
        chosen[strategy] = json.loads(path.read_text()).get("chosen", {})
    settings = bundle.strategy_settings(generation, chosen)

    items = examples.item_table(pd.read_parquet(args.prepared / "items.parquet"), pd.read_parquet(args.titles))
    with atomic_path(args.out) as out:
        bundle.write(out, args.model, items, pd.read_parquet(args.prepared / "users.parquet"),
                     pd.read_parquet(args.split / "train.parquet"), settings)
    print(f"{len(items):,} items ({items['title'].notna().sum():,} with titles), settings "
          + "; ".join(f"{s} {v}" for s, v in settings.items()) + f" -> {args.out}")


if __name__ == "__main__":
    main()
