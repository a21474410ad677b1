"""Stages `topk`, `greedy`, `beam`, `sampling`, `rra`, `ra`: choose the strategy's generation
settings on the validation users (method §6b), then recommend for the test users with them
(method §5) and evaluate (method §6). With ``generation.processes`` above 1 the stage starts
itself again under ``torchrun``; the processes share the users and rank 0 writes. The list goes
to ``--recs``, by default data/recs/<strategy>.parquet; the metrics under ``--metrics``."""

import os
import sys
import time

import numpy as np

from genrec import distributed, estimate, metrics, params
from genrec.device import keep_freed_memory, resolve_device
from genrec.errors import stage_main
from genrec.io import atomic_path, check_output, read_json, stage_arguments
from genrec.model import load
from genrec.sequences import Split, check_unseen
from genrec.strategies import STRATEGIES, GenerationParams, read_params, recommend, searched
from genrec.tuning import draws, estimated_seconds, tune


@stage_main
def main() -> None:
    parser = stage_arguments(__doc__, model="data/model", split="data/split", recs=None, metrics="metrics")
    parser.add_argument("strategy", choices=STRATEGIES)
    args = parser.parse_args()
    strategy = args.strategy
    recs_path = args.recs or f"data/recs/{strategy}.parquet"
    metrics.check_result_paths(strategy, recs_path, args.metrics)
    check_output(args.metrics / "tuning" / f"{strategy}.csv", "--metrics")
    keep_freed_memory()

    # Read and check every param before the model is loaded.
    values = params.load()
    config = read_params(values, strategy)  # its own generation keys; evaluation.k its horizon
    found = searched((values.get("generation") or {}).get("searched"), strategy)
    # Said once (rank 0 under torchrun), never silent: `-S generation.temperature=...` does not reach it.
    if found and os.environ.get("RANK", "0") == "0":
        print(f"{strategy}: generation.searched.{strategy} (`genrec search {strategy}`) sets "
              f"{', '.join(f'{key} {value}' for key, value in found.items())} in place of the generation grid; "
              f"`-S 'generation.searched.{strategy}={{}}'` tunes the grid again", file=sys.stderr)
    config.check_window(read_json(args.model / "config.json", "train", ["n_positions"])["n_positions"])
    device = resolve_device(config.device, "generation.device")

    split = Split.load(args.split)
    config.check_catalogue(split.num_items)
    sequences, val_users, users = split.sequences, split.validation_users, split.test_users
    catalogue = metrics.Catalogue.from_train(split.train)
    check_unseen(sequences, np.concatenate([val_users, users]), split.num_items, config.horizon, "evaluation.k")
    distributed.relaunch("stages.recommend", config.processes, device, "generation.processes")
    group = distributed.start(device)
    try:
        model = load(args.model, group.device)
        say_time(strategy, model, split, config, group)
        # Validation users only: the test users are scored once, with the chosen setting.
        chosen, grid, val_recs = tune(strategy, model, sequences, val_users, split.validation, catalogue, config,
                                      show_progress=group.main, group=group)
        start = time.perf_counter()
        recs, _ = recommend(strategy, model, sequences, users, chosen, group=group,
                            progress=f"{strategy} on the test users" if group.main else None)
        seconds = time.perf_counter() - start
    finally:
        distributed.stop()
    if not group.main:
        return

    tuned = bool(STRATEGIES[strategy].tuned)
    extra = {"chosen": chosen.chosen(strategy)} if tuned else {}
    if tuned:
        with atomic_path(f"{args.metrics}/tuning/{strategy}.csv") as tmp:
            grid.to_csv(tmp, index=False, float_format="%.6f")
    summary = metrics.write_results(strategy, users, recs, split.test, split.train,
                                    recs_path, args.metrics, extra,
                                    validation=(val_users, val_recs, split.validation))
    processes = f" ({group.world} processes)" if group.world > 1 else ""
    print(f"{strategy}: {len(users)} test users in {seconds:.1f} s on {device}{processes}"
          + "".join(f", {k} {v}" for k, v in extra.get("chosen", {}).items()) + "; "
          + ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if k != "users"))


def say_time(strategy: str, model, split: Split, config: GenerationParams, group: distributed.Group) -> None:
    """When the work is large, its time estimated before it starts; stop if over the limit."""
    seconds = estimated_seconds(strategy, model, split.sequences, split.validation_users, split.test_users,
                                config, group.world) if group.main else None
    seconds = group.broadcast([-1.0 if seconds is None else seconds])[0]  # rank 0's: every rank stops, or none
    if seconds < 0:
        return
    tuned = [f"generation.{key}" for key in STRATEGIES[strategy].tuned if isinstance(getattr(config, key), list)]
    advice = ["generate on a GPU (generation.device: cuda)"] if group.device.type == "cpu" else []
    if tuned:
        advice.append(f"tune over fewer values of {', '.join(tuned)} (a single value is not tuned)")
    generations = draws(strategy, config)
    estimate.check(f"{strategy}: tuning ({generations} generation{'s' if generations != 1 else ''} for "
                   f"{len(split.validation_users):,} validation users) and {len(split.test_users):,} test users",
                   seconds, f"one batch timed on {group.device.type}", advice, show=group.main)


if __name__ == "__main__":
    main()
