"""Stage `split`: training sequences, validation and test targets (docs/method.md §3)."""

import json

import pandas as pd

from genrec import params
from genrec.errors import stage_main
from genrec.io import atomic_path, check_output, require_input, stage_arguments
from genrec.split import SplitParams, split


SPLIT = ("train.parquet", "validation.parquet", "test.parquet", "meta.json")  # what --out holds


@stage_main
def main() -> None:
    parser = stage_arguments(__doc__, prepared="data/prepared", out="data/split")
    args = parser.parse_args()
    check_output(args.out, "--out", SPLIT)

    config = params.section(params.load(), "split", SplitParams)
    items = pd.read_parquet(f"{require_input(args.prepared, 'preprocess')}/items.parquet")
    result = split(pd.read_parquet(f"{args.prepared}/interactions.parquet"), config)
    meta = {
        "method": config.method,
        "num_items": int(len(items)),
        "num_users": int(pd.read_parquet(f"{args.prepared}/users.parquet").shape[0]),
        "train_interactions": int(len(result.train)),
        "validation_users": int(result.validation["user_id"].nunique()),
        "test_users": int(result.test["user_id"].nunique()),
        "excluded_users": result.excluded_users,
    }
    with atomic_path(args.out) as out:
        out.mkdir()
        result.train.to_parquet(out / "train.parquet", index=False)
        result.validation.to_parquet(out / "validation.parquet", index=False)
        result.test.to_parquet(out / "test.parquet", index=False)
        (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if result.excluded_users:
        print(f"{result.excluded_users} user(s) have no training or no held-out interaction "
              "and are not evaluated")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
