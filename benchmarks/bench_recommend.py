"""Latency of one recommendation request: `Recommender.recommend` for one history, after loading.

    python benchmarks/bench_recommend.py [--model data/recommender] [--repeats 20] [--command]

Without ``--model`` it builds a recommender folder in a temporary directory around a random
GPT-2 of the paper's size (speed does not depend on the weights) with ml-100k's catalogue
(1,349 items) and, to see the catalogue's effect, ML-1M's (3,416), with the paper's
settings (beam 2, RRA/RA 30 sequences, no top-k cut). Histories of 64 items (ml-100k's
median user) and 118 (a full prompt window). Prints the median and the worst of
``--repeats`` requests after one warm-up, and the load time, with ``--threads`` torch threads
(default 1, as the command uses for one history). ``--command`` also times the
whole `genrec recommend` process once per strategy (Python and torch start included).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genrec import bundle, params
from genrec.model import ModelParams, build
from genrec.recommender import Recommender
from genrec.strategies import STRATEGIES

# The repository's model size; the generation settings of the benchmark.
MODEL = params.section(params.load(Path(__file__).resolve().parents[1] / "params.yaml"), "model", ModelParams)
SETTINGS = {"horizon": 10, "num_beams": 2, "temperature": 0.5, "top_k": 0, "num_sequences": 30, "seed": 42}


def synthetic_folder(root: Path, num_items: int) -> Path:
    torch.manual_seed(0)
    model_dir = root / f"model-{num_items}"
    build(num_items, MODEL).save_pretrained(model_dir)
    items = pd.DataFrame({"item_id": np.arange(1, num_items + 1), "raw_item_id": np.arange(1, num_items + 1)})
    items["title"] = pd.Series([f"Film {i}" for i in items["raw_item_id"]], dtype="string")
    users = pd.DataFrame({"user_id": [0], "raw_user_id": [1]})
    history = pd.DataFrame({"user_id": 0, "item_id": np.arange(1, 65)})
    out = root / f"recommender-{num_items}"
    bundle.write(out, model_dir, items, users, history, bundle.strategy_settings(SETTINGS, {}))
    return out


def bench(folder: Path, repeats: int, command: bool) -> None:
    start = time.perf_counter()
    recommender = Recommender.load(folder, device="cpu")
    load = time.perf_counter() - start
    raw = recommender.items["raw_item_id"].to_numpy()
    print(f"\n{folder}: {len(raw):,} items, loaded in {load:.2f} s")
    print("| strategy | settings | history | median ms | max ms | command s |")
    print("|---|---|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for strategy in STRATEGIES:
        settings = {k: v for k, v in recommender.settings[strategy].items() if k != "horizon"}
        for length in (64, 118):
            history = rng.choice(raw, size=min(length, len(raw) - 20), replace=False).tolist()
            recommender.recommend(history, strategy)  # warm-up
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                recommender.recommend(history, strategy)
                times.append(1000 * (time.perf_counter() - t))
            wall = ""
            if command and length == 64:
                t = time.perf_counter()
                subprocess.run([Path(sys.executable).parent / "genrec", "recommend", "--model", str(folder),
                                "--device", "cpu", "--strategy", strategy, "--history", ",".join(map(str, history))],
                               check=True, capture_output=True)
                wall = f"{time.perf_counter() - t:.2f}"
            print(f"| {strategy} | {settings or '-'} | {len(history)} | {statistics.median(times):.1f} "
                  f"| {max(times):.1f} | {wall} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a recommender folder; default: synthetic ones")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--command", action="store_true", help="also time the whole command")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the command uses 1 for one history)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    if args.model:
        bench(args.model, args.repeats, args.command)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for num_items in (1349, 3416):
            bench(synthetic_folder(Path(tmp), num_items), args.repeats, args.command)


if __name__ == "__main__":
    main()
