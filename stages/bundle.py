"""Stage `bundle`: the self-contained recommender folder (GPT-2, item ids and titles, users'
training histories, each strategy's generation settings) that `genrec recommend` loads."""

import torch

from genrec import bundle, examples, metrics, params
from genrec.errors import UserError, stage_main
from genrec.io import atomic_path, check_output, read_json, read_table, require_input, stage_arguments
from genrec.model import load as load_model
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
    chosen = {strategy: read_json(args.metrics / f"{strategy}.json", strategy).get("chosen", {})
              for strategy in STRATEGIES}
    settings = bundle.strategy_settings(generation, chosen)

    items = examples.item_table(read_table(args.prepared / "items.parquet", "preprocess", ["item_id", "raw_item_id"]),
                                read_table(args.titles, "download", ["raw_item_id", "title"]))
    users = read_table(args.prepared / "users.parquet", "preprocess", ["user_id", "raw_user_id"])
    history = read_table(args.split / "train.parquet", "split", ["user_id", "item_id"])
    load_model(args.model, torch.device("cpu"))  # a damaged model stops here, not in every later `genrec recommend`
    with atomic_path(args.out) as out:
        bundle.write(out, args.model, items, users, history, settings)
    print(f"{len(items):,} items ({items['title'].notna().sum():,} with titles), settings "
          + "; ".join(f"{s} {v}" for s, v in settings.items()) + f" -> {args.out}")


if __name__ == "__main__":
    main()
