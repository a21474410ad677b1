"""Stage `report`: compare all methods on the test users, with bootstrap intervals and paired
tests (markdown, JSON), the per-position figure, and all per-position curves in one table for
`dvc plots`."""

import argparse
import json
from pathlib import Path

import pandas as pd

from genrec import report
from genrec.errors import stage_main
from genrec.io import atomic_path


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="+", help="strategies (and baselines) to compare, in table order")
    parser.add_argument("--metrics", default="metrics", type=Path)
    parser.add_argument("--recs", default="data/recs", type=Path)
    parser.add_argument("--split", default="data/split", type=Path)
    args = parser.parse_args()

    test = pd.read_parquet(args.split / "test.parquet")
    result = report.build(args.metrics, args.recs, test, args.names)
    text = report.markdown(result)
    with atomic_path(args.metrics / "report.md") as tmp:
        tmp.write_text(text)
    with atomic_path(args.metrics / "report.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    with atomic_path(args.metrics / "positions.csv") as tmp:
        report.positions(args.metrics, args.names).to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(args.metrics / "positions.png") as tmp:
        report.figure(args.metrics, args.recs, test, args.names, tmp)
    print(text)


if __name__ == "__main__":
    main()
