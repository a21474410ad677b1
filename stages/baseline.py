"""Stages `popularity`, `baseline@bpr`, `baseline@sasrec`, `baseline@bert4rec`: train a baseline
on the training sequences (early stopping on the validation users, dvclive learning curves),
recommend for the validation and the test users and evaluate exactly as the generation
strategies are (docs/method.md §6).
The list goes to ``--recs``, by default data/recs/<name>.parquet; the metrics and the learning
curves (<name>_train/) under ``--metrics``."""

import contextlib
import importlib
import time

import numpy as np
import torch

from genrec import distributed, metrics, params
from genrec.baselines import NAMES
from genrec.curves import CURVES, LearningCurves
from genrec.device import keep_freed_memory, resolve_device
from genrec.errors import stage_main
from genrec.io import atomic_path, check_output, stage_arguments
from genrec.sequences import Split, check_unseen
from genrec.training import Data


@stage_main
def main() -> None:
    parser = stage_arguments(__doc__, split="data/split", recs=None, metrics="metrics")
    parser.add_argument("name", choices=NAMES)
    args = parser.parse_args()
    name = args.name
    recs_path = args.recs or f"data/recs/{name}.parquet"
    metrics.check_result_paths(name, recs_path, args.metrics)
    check_output(args.metrics / f"{name}_train", "--metrics", CURVES)
    keep_freed_memory()

    # Only this baseline's module is imported, and its params checked before any work.
    baseline = importlib.import_module(f"genrec.baselines.{name}")
    values = params.load()
    k = params.section(values, "evaluation", metrics.EvaluationParams).k
    config = params.section(values, name, baseline.Params) if baseline.Params.model_fields else None
    device = resolve_device(config.device, f"{name}.device") if hasattr(config, "device") else torch.device("cpu")

    split = Split.load(args.split)
    data = Data.from_split(split)
    val_users, users = split.validation_users, split.test_users
    # One model recommends for both: the validation users (all their held-out items, as for
    # the strategies) and the test users.
    both = np.concatenate([val_users, users])

    check_unseen(data.sequences, both, data.num_items, k, "evaluation.k")

    # SASRec and BERT4Rec train on ``processes`` data-parallel processes, as GPT-2 does (genrec.distributed).
    distributed.relaunch("stages.baseline", getattr(config, "processes", 1), device, f"{name}.processes")
    group = distributed.start(device)
    parallel = {"group": group} if hasattr(config, "processes") else {}
    try:
        if not group.main:  # trains its share of each epoch; rank 0 writes
            baseline.fit_recommend(data, both, config, k, group.device, **parallel)
            return
        start = time.perf_counter()
        # The learning curves are written to a temporary folder and moved into place with the
        # recommendations and metrics: an interrupted run never leaves a partial summary.
        with contextlib.ExitStack() as outputs:
            if baseline.TRAINED:
                live_dir = outputs.enter_context(atomic_path(f"{args.metrics}/{name}_train"))
                with LearningCurves(live_dir, config.max_epochs, f"train {name}") as curves:
                    recs, result = baseline.fit_recommend(data, both, config, k, group.device, on_epoch=curves.log,
                                                           **parallel)
                    curves.summarize(result)
                trained = f"best epoch {result.best.epoch} of {result.history[-1].epoch}, "
            else:
                recs, _ = baseline.fit_recommend(data, both, config, k, device)
                trained = ""
            seconds = time.perf_counter() - start
            val_recs, recs = recs[:len(val_users)], recs[len(val_users):]

            summary = metrics.write_results(name, users, recs, split.test, split.train,
                                            recs_path, args.metrics,
                                            validation=(val_users, val_recs, split.validation))
    finally:
        distributed.stop()
    print(f"{name}: {trained}{len(users)} users in {seconds:.1f} s on {device}; "
          + ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if k != "users"))


if __name__ == "__main__":
    main()
