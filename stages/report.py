"""Stage `report`: compare all strategies in one table (markdown, JSON) and one figure."""

import argparse
import json
from pathlib import Path

from genrec import report
from genrec.errors import stage_main
from genrec.io import atomic_paths


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="+", help="strategies (and baselines) to compare, in table order")
    parser.add_argument("--metrics", default="metrics", type=Path)
    args = parser.parse_args()

    frame = report.table(args.metrics, args.names)
    names = ("report.md", "report.json", "positions.png")
    with atomic_paths(*(args.metrics / name for name in names)) as (md, table, png):  # one set
        md.write_text(report.markdown(frame))
        table.write_text(json.dumps(frame.to_dict(orient="index"), indent=2) + "\n")
        report.figure(args.metrics, args.names, png)
    print(report.markdown(frame))


if __name__ == "__main__":
    main()
