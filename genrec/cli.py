"""The `genrec` console command: `genrec recommend` asks the trained model for recommendations,
`genrec items` finds item ids by title.

    genrec items --search "star wars"
    genrec recommend --history 50,172,133 --strategy rra -k 10
    genrec recommend --user 196 --strategy beam --json
    genrec recommend --input histories.csv --output recs.csv   # user,item rows, in time order
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from genrec.device import keep_freed_memory
from genrec.errors import Terminated, UserError, terminated
from genrec.io import atomic_path, check_output, read_table
from genrec.recommender import Recommender
from genrec.strategies import STRATEGIES


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UserError(f"{message} (see `genrec recommend --help`)")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def parser() -> argparse.ArgumentParser:
    root = Parser(prog="genrec", description="Autoregressive generation strategies for sequential recommendation.")
    commands = root.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = commands.add_parser("recommend", help="recommend items for a history, a dataset user, or a file of histories",
                            description="Recommend items with one of the six strategies. Settings default to "
                                        "the ones the pipeline chose (the recommender folder's settings.json).")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--history", help="raw item ids, oldest first, comma-separated: 50,172,133")
    who.add_argument("--user", help="a user of the dataset (raw id), from their training history")
    who.add_argument("--input", type=Path, help="a CSV of user,item rows (raw ids), each user's in time order")
    p.add_argument("--output", type=Path, help="with --input: write the recommendations here (.csv or .parquet); "
                                               "default: print them")
    p.add_argument("--strategy", default="rra", choices=STRATEGIES, help="default: %(default)s")
    p.add_argument("-k", type=positive_int, help="the list's length: the first k items of the strategy's list "
                                                 "(default: all of them)")
    p.add_argument("--horizon", type=positive_int, help="items the strategy generates and ranks (default: the "
                                                        "pipeline's evaluation.k)")
    p.add_argument("--temperature", type=float, help="sampling, rra, ra")
    p.add_argument("--top-k", dest="top_k", type=int, help="sampling, rra, ra: keep the k most likely items (0: all)")
    p.add_argument("--num-sequences", dest="num_sequences", type=positive_int, help="rra, ra: sampled sequences")
    p.add_argument("--num-beams", dest="num_beams", type=positive_int, help="beam")
    p.add_argument("--seed", type=int, help="sampling, rra, ra")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--model", type=Path, help=f"the recommender folder (default: {FOLDER} here or in the "
                                              "repository above this folder)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    search = commands.add_parser("search", help="search a model's params or a strategy's settings (Optuna)",
                                 description="Run an Optuna study over the ranges of params.yaml's search section "
                                             "and write the winner into params.yaml (docs/method.md, §6c).")
    from genrec.search import add_arguments
    add_arguments(search)
    items = commands.add_parser("items", help="find items (raw ids and titles) by title",
                                description="List the items whose title holds every word of --search.")
    items.add_argument("--search", required=True, help='words of the title, any case: --search "star wars"')
    items.add_argument("--model", type=Path, help=f"the recommender folder (default: {FOLDER}, as for recommend)")
    return root


FOLDER = Path("data/recommender")


def recommender_folder(given: Path | None) -> Path:
    """``--model``, or data/recommender in this folder or in the nearest folder above it that
    holds a dvc.yaml (the repository), so the command works from any folder of the repository."""
    if given is not None:
        return given
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / FOLDER).is_dir() or (folder / "dvc.yaml").is_file():
            found = folder / FOLDER
            if found.is_dir():
                return found
            raise UserError(f"no recommender folder at {found}: run `dvc repro bundle` in {folder} first, "
                            "or give --model PATH")
    raise UserError(f"no recommender folder at {here / FOLDER} and no repository (dvc.yaml) above {here}: "
                    "run the command in the repository, or give --model PATH")


def main(argv: list[str] | None = None) -> None:
    guarded(lambda: run(parser().parse_args(argv)))


def guarded(command: Callable[[], str], stopped: str = "the command stopped; it writes its output only at the end"
            ) -> None:
    """Run ``command`` and print what it returns; a ``UserError`` is one line and exit code 2,
    Ctrl-C and SIGTERM one line (``stopped`` says what was left) and exit codes 130 and 143,
    library warnings a line each."""
    signal.signal(signal.SIGTERM, terminated)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            output = command()
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as interruption:
        by_term = isinstance(interruption, Terminated)
        said = getattr(interruption, "message", None) or stopped  # a command's own account of what it left
        print(f"{'terminated' if by_term else 'interrupted'}: {said}", file=sys.stderr)
        sys.exit(143 if by_term else 130)
    if output:
        print(output)


def run(args: argparse.Namespace) -> str:
    """What to print (nothing when the recommendations went to --output)."""
    if args.command == "search":
        from genrec import search  # Optuna and the training code, for this command alone
        return search.run(args)
    if args.command == "items":
        return find_items(recommender_folder(args.model), args.search)
    settings = {key: getattr(args, key) for key in ("horizon", "temperature", "top_k", "num_sequences", "num_beams",
                                                    "seed") if getattr(args, key) is not None}
    if args.output and not args.input:
        raise UserError("--output goes with --input; --history and --user print their recommendations")
    if args.output:
        check_output(args.output, "--output")
    if args.input:
        histories = read_histories(args.input)
        keep_freed_memory()  # many users: the strategy stages' batches, and their allocation pattern
    recommender = Recommender.load(recommender_folder(args.model), args.device)
    params = recommender.params(args.strategy, **settings)  # bad settings fail before any work
    if args.input:
        recs = recommender.recommend_many(histories, args.strategy, args.k, **settings)
        if args.output:
            with atomic_path(args.output) as tmp:
                recs.to_parquet(tmp, index=False) if args.output.suffix == ".parquet" else recs.to_csv(tmp, index=False)
            print(f"{recs['user'].nunique():,} users, {len(recs):,} recommendations -> {args.output}", file=sys.stderr)
            return ""
    elif args.user is not None:
        recs = recommender.recommend_user(args.user, args.strategy, args.k, **settings)
    else:
        recs = recommender.recommend(parse_ids(args.history), args.strategy, args.k, **settings)
    if args.json:
        used = {key: getattr(params, key) for key in recommender.settings[args.strategy]}
        return json.dumps({"strategy": args.strategy, "settings": used, "recommendations": records(recs)}, indent=2)
    return table(recs)


def parse_ids(text: str) -> list[str]:
    """``--history 50,172,133`` as raw ids; an empty one (``50,,172``) is kept, for the check
    that the Python API makes too (``recommender.checked_history``): one message for both."""
    return [part.strip() for part in text.split(",")]


def read_histories(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str)
    except FileNotFoundError:
        raise UserError(f"--input {path} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"--input {path} is not a readable CSV ({error}); it needs a header user,item") from None
    missing = [c for c in ("user", "item") if c not in frame.columns]
    if missing:
        raise UserError(f"--input {path} lacks column(s) {', '.join(missing)}; it needs a header user,item "
                        f"and one row per interaction, in time order")
    if frame.empty:
        raise UserError(f"--input {path} has a header but no rows; give one user,item row per interaction")
    if frame[["user", "item"]].isna().any().any():
        raise UserError(f"--input {path} has an empty user or item in data row "
                        f"{int(frame[['user', 'item']].isna().any(axis=1).to_numpy().argmax()) + 1}")
    return frame


def records(recs: pd.DataFrame) -> list[dict]:
    """JSON-ready rows: numpy numbers to Python ones, a missing title or score to null, and a
    score to the digits its float32 holds (9.999999, not 9.999999046325684)."""
    out = []
    for row in recs.to_dict(orient="records"):
        row["score"] = float(str(np.float32(row["score"])))
        out.append({key: None if value is pd.NA or (isinstance(value, float) and math.isnan(value))
                    else value.item() if hasattr(value, "item") else value for key, value in row.items()})
    return out


def find_items(folder: Path, search: str) -> str:
    """The items whose title holds every word of ``search`` (any case), as a table."""
    if not (folder / "items.parquet").exists():
        raise UserError(f"{folder} is not a recommender folder (no items.parquet): run `dvc repro bundle` first")
    items = read_table(folder / "items.parquet", "bundle", ["raw_item_id", "title"])
    words = search.lower().split()
    if not words:
        raise UserError('--search is empty: give words of a title, such as --search "star wars"')
    titles = items["title"].fillna("").astype(str).str.lower()
    found = items[np.logical_and.reduce([titles.str.contains(word, regex=False) for word in words])]
    if found.empty:
        with_titles = int(items["title"].notna().sum())
        raise UserError(f"no title holds {search!r} ({with_titles:,} of the {len(items):,} items have a title)")
    rows = [f"{'item':>8}  title"] + [f"{str(raw):>8}  {title}" for raw, title in zip(found["raw_item_id"], found["title"])]
    return "\n".join(rows)


def table(recs: pd.DataFrame) -> str:
    """rank, raw item id, title and the score where the strategy has one, as aligned text."""
    columns = {"rank": recs["rank"].astype(str), "item": recs["raw_item_id"].astype(str),
               "title": recs["title"].fillna("").astype(str)}
    if recs["score"].notna().any():
        columns["score"] = recs["score"].map(lambda s: f"{s:.4f}")
    if "user" in recs:
        columns = {"user": recs["user"].astype(str), **columns}
    widths = {name: max([len(name), *map(len, values)]) for name, values in columns.items()}
    left = {"user", "title"}  # text left-aligned, numbers right-aligned

    def line(cells: dict) -> str:
        return "  ".join(cells[n].ljust(widths[n]) if n in left else cells[n].rjust(widths[n]) for n in columns).rstrip()

    rows = [line({n: n for n in columns})]
    rows += [line({n: values.iloc[i] for n, values in columns.items()}) for i in range(len(recs))]
    return "\n".join(rows)
