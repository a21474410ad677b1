"""Stages `popularity`, `bpr`, `sasrec`, `bert4rec`: train a baseline on the training sequences
(early stopping on the validation users, dvclive learning curves), recommend for the validation
and the test users and evaluate exactly as the generation strategies are (docs/method.md §6)."""

import argparse
import contextlib
import importlib
import json
import time

import numpy as np
import pandas as pd
import torch
from dvclive import Live

from genrec import metrics, params
from genrec.baselines import NAMES
from genrec.baselines.common import Data
from genrec.errors import stage_main
from genrec.io import atomic_path, require_input
from genrec.model import resolve_device
from genrec.progress import Progress
from genrec.sequences import UserSequences, check_unseen


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=NAMES)
    parser.add_argument("--split", default="data/split")
    parser.add_argument("--recs", help="default: data/recs/<name>.parquet")
    parser.add_argument("--metrics", default="metrics", help="also holds <name>_train/, the learning curves")
    args = parser.parse_args()
    name = args.name

    # Only this baseline's module is imported, and its params checked before any work.
    baseline = importlib.import_module(f"genrec.baselines.{name}")
    config = params.section(params.load(), name, baseline.Params)
    device = resolve_device(config.device, f"{name}.device") if hasattr(config, "device") else torch.device("cpu")

    meta = json.loads(open(require_input(f"{args.split}/meta.json", "split")).read())
    train = pd.read_parquet(f"{args.split}/train.parquet")
    test = pd.read_parquet(f"{args.split}/test.parquet")
    validation = pd.read_parquet(f"{args.split}/validation.parquet")
    first = validation.query("position == 0").sort_values("user_id")
    data = Data(UserSequences.from_frame(train, meta["num_users"]), meta["num_items"],
                first["user_id"].to_numpy(), first["item_id"].to_numpy())
    val_users = validation["user_id"].drop_duplicates().sort_values().to_numpy()
    users = test["user_id"].drop_duplicates().sort_values().to_numpy()
    # One model recommends for both: the validation users (all their held-out items, as for
    # the strategies) and the test users.
    both = np.concatenate([val_users, users])

    check_unseen(data.sequences, both, data.num_items, config.k, f"{name}.k")

    start = time.perf_counter()
    # The learning curves are written to a temporary folder and moved into place with the
    # recommendations and metrics: an interrupted run never leaves a partial summary.
    with contextlib.ExitStack() as outputs:
        if baseline.TRAINED:
            live_dir = outputs.enter_context(atomic_path(f"{args.metrics}/{name}_train"))
            with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live, \
                    Progress(config.max_epochs, f"train {name}", "epochs") as bar:
                def log(epoch) -> None:
                    live.step = epoch.epoch  # epochs trained (BPR validates every bpr.eval_every epochs)
                    for key, value in epoch.train.items():
                        live.log_metric(f"train/{key}", value)
                    live.log_metric("val/ndcg@10", epoch.ndcg)
                    live.log_metric("val/hr@10", epoch.hit_rate)
                    live.log_metric("epoch_seconds", round(epoch.seconds, 3))
                    live.next_step()
                    bar.update(epoch.epoch - bar.done, **epoch.train, **{"val ndcg@10": epoch.ndcg},
                               seconds=f"{epoch.seconds:.1f}")

                recs, result = baseline.fit_recommend(data, both, config, device, on_epoch=log)
                # The summary is the best epoch, not the last one: its model made the recommendations.
                live.summary = {
                    "best_epoch": result.best.epoch,
                    "epochs": result.history[-1].epoch,
                    "train": result.best.train,
                    "val": {"ndcg@10": result.best.ndcg, "hr@10": result.best.hit_rate},
                }
                live.make_summary()
            trained = f"best epoch {result.best.epoch} of {result.history[-1].epoch}, "
        else:
            recs, _ = baseline.fit_recommend(data, both, config, device)
            trained = ""
        seconds = time.perf_counter() - start
        val_recs, recs = recs[:len(val_users)], recs[len(val_users):]

        summary = metrics.write_results(name, users, recs, test, train,
                                        args.recs or f"data/recs/{name}.parquet", args.metrics,
                                        validation=(val_users, val_recs, validation))
    print(f"{name}: {trained}{len(users)} users in {seconds:.1f} s on {device}; "
          + ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if k != "users"))


if __name__ == "__main__":
    main()
