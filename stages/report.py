"""Stage `report`: compare all strategies in one table (markdown, JSON) and one figure."""

import argparse
import json
from pathlib import Path

from genrec import report
from genrec.errors import stage_main
from genrec.io import atomic_path


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="+", help="strategies (and baselines) to compare, in table order")
    parser.add_argument("--metrics", default="metrics", type=Path)
    args = parser.parse_args()

    frame = report.table(args.metrics, args.names)
    with atomic_path(args.metrics / "report.md") as tmp:
        tmp.write_text(report.markdown(frame))
    with atomic_path(args.metrics / "report.json") as tmp:
        tmp.write_text(json.dumps(frame.to_dict(orient="index"), indent=2) + "\n")
    with atomic_path(args.metrics / "positions.png") as tmp:
        report.figure(args.metrics, args.names, tmp)
    print(report.markdown(frame))


if __name__ == "__main__":
    main()
