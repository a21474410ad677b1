"""Stage `split`: training sequences, validation and test targets (docs/method.md §3)."""

import json

from genrec import params
from genrec.errors import stage_main
from genrec.io import atomic_path, check_output, read_table, stage_arguments
from genrec.split import SplitParams, split


SPLIT = ("train.parquet", "validation.parquet", "test.parquet", "meta.json")  # what --out holds


@stage_main
def main() -> None:
    parser = stage_arguments(__doc__, prepared="data/prepared", out="data/split")
    args = parser.parse_args()
    check_output(args.out, "--out", SPLIT)

    config = params.section(params.load(), "split", SplitParams)
    items = read_table(args.prepared / "items.parquet", "preprocess", ["item_id", "raw_item_id"])
    result = split(read_table(args.prepared / "interactions.parquet", "preprocess", ["user_id", "item_id", "timestamp"]),
                   config)
    meta = {
        "method": config.method,
        "num_items": int(len(items)),
        "num_users": int(read_table(args.prepared / "users.parquet", "preprocess", ["user_id"]).shape[0]),
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
