"""Repeat the whole comparison over seeds with DVC's experiment queue, and summarise it.

    python -m genrec.seeds queue 1 2 3 4 5   # one queued experiment per seed: every model's and sampling's seed
    dvc exp run --run-all                    # run the queue (or: dvc queue start; dvc queue status)
    python -m genrec.seeds table --out metrics/seeds.md   # --rev COMMIT if HEAD moved since

``table`` reads ``dvc exp show --json`` and prints (and writes) each method's test NDCG@10,
mean ± standard deviation over the experiments named ``seed-<n>``. The split stays fixed, so
the spread is that of training and sampling, the noise a strategy comparison has to beat.

To see whether a change of params moves a result beyond that noise, queue the same seeds
with it under another name and compare the two tables:

    python -m genrec.seeds queue 1 2 3 4 5 --name lr-3e-4- -S train.lr=0.0003
    dvc exp run --run-all
    python -m genrec.seeds table --name lr-3e-4-

Seeds queued from several commits (more seeds added after a commit) go in one table with
``--rev`` once per commit: ``table --rev 09bdeda --rev HEAD``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from genrec.errors import UserError, stage_main
from genrec.io import atomic_path, check_output

# Every seed of a trained model or of sampling; split.seed is left alone (same users everywhere).
SEED_PARAMS = ("train.seed", "generation.seed", "bpr.seed", "sasrec.seed", "bert4rec.seed")
PREFIX = "seed-"


def queue(seeds: list[int], prefix: str = PREFIX, settings: tuple[str, ...] = ()) -> None:
    """One queued experiment per seed, named ``<prefix><seed>``, with ``settings`` (``-S``
    values, as ``dvc exp run`` takes them) on top of the seeds."""
    for setting in settings:
        if "=" not in setting or setting.split("=", 1)[0] in SEED_PARAMS:
            raise UserError(f"-S {setting}: give KEY=VALUE for a key other than the seeds, such as -S train.lr=0.0003")
    for seed in seeds:
        command = ["dvc", "exp", "run", "--queue", "--name", f"{prefix}{seed}"]
        for key in SEED_PARAMS:
            command += ["-S", f"{key}={seed}"]
        for setting in settings:
            command += ["-S", setting]
        print(" ".join(command), flush=True)
        if subprocess.run(command).returncode != 0:
            raise UserError(f"queuing the experiment for seed {seed} failed (see dvc's message above)")


def experiments(shown: Any) -> Iterator[tuple[str, dict]]:
    """(name, data) of every finished experiment in ``dvc exp show --json``'s nested output;
    a queued, running or failed one (its executor's state) is left out."""
    if isinstance(shown, list):
        for entry in shown:
            yield from experiments(entry)
    elif isinstance(shown, dict):
        if (shown.get("executor") or {}).get("state") not in (None, "success"):
            return
        if shown.get("name") and isinstance(shown.get("data"), dict) and "metrics" in shown["data"]:
            yield shown["name"], shown["data"]
        for key in ("experiments", "revs"):
            yield from experiments(shown.get(key))


def ndcg_by_seed(shown: Any, metric: str = "ndcg@10", prefix: str = PREFIX) -> dict[str, dict[str, float]]:
    """{experiment name: {method: test metric}} for the ``<prefix><n>`` experiments."""
    table = {}
    for name, data in experiments(shown):
        if not (name.startswith(prefix) and name[len(prefix):].isdigit()):
            continue
        methods = {}
        for path, content in (data.get("metrics") or {}).items():
            values = (content or {}).get("data") or {}
            method = Path(path).stem
            if Path(path).parent == Path("metrics") and metric in values:
                methods[method] = values[metric]
        if not methods:  # a queued, running or failed experiment has no metrics yet
            continue
        if name in table:
            raise UserError(f"two finished experiments are named {name} (queued from two of the --rev commits): "
                            f"give those commits' seeds separate tables, or remove one with 'dvc exp remove'")
        table[name] = methods
    return table


def summary(table: dict[str, dict[str, float]], prefix: str = PREFIX) -> str:
    if not table:
        name = "" if prefix == PREFIX else f" --name {prefix}"
        raise UserError(f"no finished experiments named {prefix}<n>: queue them with "
                        f"'python -m genrec.seeds queue 1 2 3{name}' and run 'dvc exp run --run-all' first")
    methods = list(dict.fromkeys(m for values in table.values() for m in values))
    names = sorted(table, key=lambda n: int(n[len(prefix):]))
    seeds = f"{len(names)} seed{'s' if len(names) > 1 else ''}"
    lines = [f"Test NDCG@10 over {seeds} ({', '.join(names)}): mean ± standard deviation (ddof 1)",
             "", "| method | mean ± sd | min | max | " + " | ".join(names) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(names)]
    for method in methods:
        values = np.array([table[n].get(method, np.nan) for n in names], dtype=float)
        sd = np.nanstd(values, ddof=1) if np.sum(~np.isnan(values)) > 1 else float("nan")
        lines.append(f"| {method} | {np.nanmean(values):.4f} ± {sd:.4f} | {np.nanmin(values):.4f} | "
                     f"{np.nanmax(values):.4f} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    queued = commands.add_parser("queue", help="queue one experiment per seed")
    queued.add_argument("seeds", nargs="+", type=int)
    queued.add_argument("-S", "--set-param", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml value for every seed's experiment, as dvc exp run -S takes it")
    shown = commands.add_parser("table", help="mean ± sd of each method's test NDCG@10 over the seed experiments")
    for command in (queued, shown):
        command.add_argument("--name", default=PREFIX, help=f"the experiments' names before the seed (default {PREFIX})")
    shown.add_argument("--out", type=Path, help="also write the table to this file")
    shown.add_argument("--rev", action="append", default=[],
                       help="a commit the experiments were queued from (default: HEAD); once per commit")
    args = parser.parse_args()
    if args.command == "queue":
        queue(args.seeds, args.name, tuple(args.settings))
        return
    if args.out:
        check_output(args.out, "--out")
    result = subprocess.run(["dvc", "exp", "show", "--json", *(f"--rev={rev}" for rev in args.rev)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"'dvc exp show --json' failed: {result.stderr.strip().splitlines()[-1:]}")
    text = summary(ndcg_by_seed(json.loads(result.stdout), prefix=args.name), args.name)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
