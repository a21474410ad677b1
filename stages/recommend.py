"""Stages `topk`, `greedy`, `beam`, `sampling`, `rra`, `ra`: recommend for the test users
with one generation strategy (SPEC §5) and evaluate the recommendations (SPEC §6)."""

import argparse
import json
import time

import pandas as pd

from genrec import metrics, params
from genrec.errors import stage_main
from genrec.io import require_input
from genrec.model import load, resolve_device
from genrec.sequences import UserSequences, check_unseen
from genrec.strategies import PARAMS_OF, STRATEGIES, GenerationParams, recommend


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("strategy", choices=STRATEGIES)
    parser.add_argument("--model", default="data/model")
    parser.add_argument("--split", default="data/split")
    parser.add_argument("--recs", help="default: data/recs/<strategy>.parquet")
    parser.add_argument("--metrics", default="metrics")
    args = parser.parse_args()
    strategy = args.strategy

    # Read and check every param before the model is loaded.
    config = params.section(params.load(), "generation", GenerationParams, keys=PARAMS_OF[strategy])
    config.check_window(json.loads(open(require_input(f"{args.model}/config.json", "train")).read())["n_positions"])
    device = resolve_device(config.device, "generation.device")

    meta = json.loads(open(require_input(f"{args.split}/meta.json", "split")).read())
    train = pd.read_parquet(f"{args.split}/train.parquet")
    test = pd.read_parquet(f"{args.split}/test.parquet")
    sequences = UserSequences.from_frame(train, meta["num_users"])
    users = test["user_id"].drop_duplicates().sort_values().to_numpy()
    check_unseen(sequences, users, meta["num_items"], config.horizon, "generation.horizon")
    model = load(args.model, device)

    start = time.perf_counter()
    recs = recommend(strategy, model, sequences, users, config)
    seconds = time.perf_counter() - start

    summary = metrics.write_results(strategy, users, recs, test, train,
                                    args.recs or f"data/recs/{strategy}.parquet", args.metrics)
    print(f"{strategy}: {len(users)} users in {seconds:.1f} s on {device}; "
          + ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if k != "users"))


if __name__ == "__main__":
    main()
