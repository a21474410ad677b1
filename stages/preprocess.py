"""Stage `preprocess`: filter, sort and remap ids (docs/method.md §2); write the dataset statistics."""

import json
import sys

from genrec import params
from genrec.errors import stage_main
from genrec.io import atomic_paths, check_output, json_text, read_table, stage_arguments
from genrec.preprocess import PreprocessParams, preprocess, statistics


PREPARED = ("interactions.parquet", "users.parquet", "items.parquet")  # what --out holds


@stage_main
def main() -> None:
    parser = stage_arguments(__doc__, raw="data/raw/interactions.parquet", out="data/prepared",
                             stats="metrics/preprocess.json")
    args = parser.parse_args()
    check_output(args.out, "--out", PREPARED)
    check_output(args.stats, "--stats")

    config = params.section(params.load(), "preprocess", PreprocessParams)
    prepared = preprocess(read_table(args.raw, "download", ["user_id", "item_id", "rating", "timestamp"]), config)
    stats = {**statistics(prepared.interactions), "duplicate_rows": prepared.duplicates}
    # The prepared tables and their statistics are moved into place together, as one set.
    with atomic_paths(args.out, args.stats) as (out, stats_path):
        out.mkdir()
        for name, table in zip(PREPARED, (prepared.interactions, prepared.users, prepared.items)):
            table.to_parquet(out / name, index=False)
        stats_path.write_text(json_text(stats))
    if prepared.duplicates:
        done = "dropped" if config.duplicates == "drop" else "kept (set preprocess.duplicates: drop to drop them)"
        print(f"{prepared.duplicates} row(s) repeat an earlier row's user_id, item_id and timestamp "
              f"(counted among the rows the filters keep): {done}", file=sys.stderr)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
