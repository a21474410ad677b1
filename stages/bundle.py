"""Stage `bundle`: the self-contained recommender folder (GPT-2, item ids and titles, users'
training histories, each strategy's generation settings) that `genrec recommend` loads."""

import json

import pandas as pd

from genrec import bundle, examples, metrics, params
from genrec.errors import UserError, stage_main
from genrec.io import atomic_path, check_output, require_input, stage_arguments
from genrec.strategies import STRATEGIES


@stage_main
def main() -> None:
    parser = stage_arguments(__doc__, model="data/model", prepared="data/prepared", split="data/split",
                             titles="data/raw/items.parquet", metrics="metrics", out="data/recommender")
    args = parser.parse_args()
    check_output(args.out, "--out", bundle.FILES)

    # Every input checked first: one line naming the stage to run, not a traceback.
    inputs = {args.model / "config.json": "train", args.split / "train.parquet": "split",
              args.prepared / "items.parquet": "preprocess", args.prepared / "users.parquet": "preprocess",
              args.titles: "download", **{args.metrics / f"{strategy}.json": strategy for strategy in STRATEGIES}}
    for path, stage in inputs.items():
        require_input(path, stage)
    values = params.load()
    generation = values.get("generation")
    if not isinstance(generation, dict):
        raise UserError("params.yaml: section 'generation' is missing or not a mapping")
    # Every strategy generates the list's k items, as in its stage.
    generation = {**generation, "horizon": params.section(values, "evaluation", metrics.EvaluationParams).k}
    chosen = {strategy: json.loads((args.metrics / f"{strategy}.json").read_text()).get("chosen", {})
              for strategy in STRATEGIES}
    settings = bundle.strategy_settings(generation, chosen)

    items = examples.item_table(pd.read_parquet(args.prepared / "items.parquet"), pd.read_parquet(args.titles))
    with atomic_path(args.out) as out:
        bundle.write(out, args.model, items, pd.read_parquet(args.prepared / "users.parquet"),
                     pd.read_parquet(args.split / "train.parquet"), settings)
    print(f"{len(items):,} items ({items['title'].notna().sum():,} with titles), settings "
          + "; ".join(f"{s} {v}" for s, v in settings.items()) + f" -> {args.out}")


if __name__ == "__main__":
    main()
