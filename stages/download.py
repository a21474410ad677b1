"""Stage `download`: fetch the dataset named by data.dataset into one raw interactions table."""

import argparse

from genrec import datasets, params
from genrec.errors import stage_main
from genrec.io import write_parquet


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="data/raw/interactions.parquet")
    args = parser.parse_args()

    data = params.section(params.load(), "data", datasets.DataParams)
    raw = datasets.load(data.dataset)
    write_parquet(args.out, raw)
    print(f"{data.dataset}: {len(raw):,} interactions, {raw['user_id'].nunique():,} users, "
          f"{raw['item_id'].nunique():,} items -> {args.out}")


if __name__ == "__main__":
    main()
