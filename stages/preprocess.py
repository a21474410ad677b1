"""Stage `preprocess`: filter, sort and remap ids (docs/method.md §2); write the dataset statistics."""

import argparse
import json

import pandas as pd

from genrec import params
from genrec.errors import stage_main
from genrec.io import atomic_path, write_json
from genrec.preprocess import PreprocessParams, preprocess, statistics


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", default="data/raw/interactions.parquet")
    parser.add_argument("--out", default="data/prepared")
    parser.add_argument("--stats", default="metrics/preprocess.json")
    args = parser.parse_args()

    config = params.section(params.load(), "preprocess", PreprocessParams)
    prepared = preprocess(pd.read_parquet(args.raw), config)
    with atomic_path(args.out) as out:
        out.mkdir()
        prepared.interactions.to_parquet(out / "interactions.parquet", index=False)
        prepared.users.to_parquet(out / "users.parquet", index=False)
        prepared.items.to_parquet(out / "items.parquet", index=False)
    stats = statistics(prepared.interactions)
    write_json(args.stats, stats)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
