"""Stage `report`: compare all methods on the test users, with bootstrap intervals and paired
tests (markdown, JSON), show a few example users' lists by title, draw the per-position figure,
and gather all per-position curves in one table for `dvc plots`."""

import json
from pathlib import Path

from genrec import examples, report
from genrec.errors import UserError, stage_main
from genrec.io import atomic_paths, check_folder, check_output, read_json, read_table, require_input, stage_arguments



OUTPUTS = ("report.md", "report.json", "positions.csv", "positions.png", "learning_curves.csv")  # into --metrics


@stage_main
def main() -> None:
    # The example users (genrec/examples.py) also need the id mappings (prepared) and the titles.
    parser = stage_arguments(__doc__, metrics="metrics", recs="data/recs", split="data/split",
                             prepared="data/prepared", titles="data/raw/items.parquet")
    parser.add_argument("--untuned", type=Path, default=None,
                        help="the comparison of the run before the models were searched (JSON), set beside this one")
    parser.add_argument("names", nargs="+", help="strategies (and baselines) to compare, in table order")
    args = parser.parse_args()
    check_folder(args.metrics, "--metrics")
    for name in OUTPUTS:
        check_output(args.metrics / name, "--metrics")

    # Every input checked first, each message naming the stage that writes it.
    inputs = {args.split / "test.parquet": "split", args.split / "train.parquet": "split",
              args.prepared / "items.parquet": "preprocess", args.prepared / "users.parquet": "preprocess",
              args.titles: "download"}
    for name in args.names:
        for path in (args.recs / f"{name}.parquet", args.metrics / f"{name}.json",
                     args.metrics / "positions" / f"{name}.csv"):
            inputs[path] = report.stage_of(name)
    for path, stage in inputs.items():
        require_input(path, stage)
    untuned = None
    if args.untuned is not None:  # a committed record, not a stage's output
        if not args.untuned.exists():
            raise UserError(f"--untuned {args.untuned} not found: it is committed with the report "
                            f"(`git checkout -- {args.untuned}`), or leave --untuned out")
        untuned = read_json(args.untuned, "report", ["commit", "searched", "methods", "comparisons"])

    test = read_table(args.split / "test.parquet", "split", ["user_id", "item_id", "position"])
    result = report.build(args.metrics, args.recs, test, args.names, untuned)
    shown = [name for name in args.names if name not in report.BASELINES]  # the GPT-2 strategies
    example_users = examples.section(
        read_table(args.split / "train.parquet", "split", ["user_id", "item_id"]), test,
        {name: report.read_recommendations(args.recs, name) for name in shown},
        examples.item_table(read_table(args.prepared / "items.parquet", "preprocess", ["item_id", "raw_item_id"]),
                            read_table(args.titles, "download", ["raw_item_id", "title"])),
        read_table(args.prepared / "users.parquet", "preprocess", ["user_id", "raw_user_id"]))
    text = report.markdown(result)
    learning = report.learning_curves(args.metrics, args.names)
    with atomic_paths(*(args.metrics / name for name in OUTPUTS)) as (md, table, curves, png, trained):  # one set
        md.write_text(text + "\n" + example_users)
        table.write_text(json.dumps(result, indent=2) + "\n")
        report.positions(args.metrics, args.names).to_csv(curves, index=False, float_format="%.6f")
        report.figure(args.metrics, args.recs, test, args.names, png, best=result["best"])
        learning.to_csv(trained, index=False, float_format="%.6f")
    # The answer, not the whole report: `dvc repro` and every `dvc exp run` print this.
    print("\n".join(report.summary(result)) + f"\n\nThe whole report: {args.metrics / 'report.md'}")


if __name__ == "__main__":
    main()
