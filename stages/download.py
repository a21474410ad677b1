"""Stage `download`: fetch the dataset named by data.dataset into one raw interactions table,
and its item titles (none for a user's own file) into another."""

import sys

from genrec import datasets, params
from genrec.errors import stage_main
from genrec.io import check_output, stage_arguments, write_parquet


@stage_main
def main() -> None:
    parser = stage_arguments(__doc__, out="data/raw/interactions.parquet", titles="data/raw/items.parquet")
    args = parser.parse_args()
    check_output(args.out, "--out")
    check_output(args.titles, "--titles")

    data = params.section(params.load(), "data", datasets.DataParams)
    if data.dataset in datasets.DATASETS and any(key != column for key, column in data.columns.items()):
        print(f"note: data.columns names the columns of your own file; {data.dataset} has its own, so it is not used",
              file=sys.stderr)
    raw = datasets.load(data.dataset, data.columns)
    titles = datasets.load_titles(data.dataset)
    write_parquet(args.out, raw)
    write_parquet(args.titles, titles)
    print(f"{data.dataset}: {len(raw):,} interactions, {raw['user_id'].nunique():,} users, "
          f"{raw['item_id'].nunique():,} items -> {args.out}; "
          f"{len(titles):,} titles -> {args.titles}")


if __name__ == "__main__":
    main()
