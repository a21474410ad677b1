"""Where training time goes: torch's profiler over a few epochs of each trained model.

Trains GPT-2 (the train stage's ``genrec.model.fit``) and the SASRec and BERT4Rec baselines
(their ``fit``) on the pipeline's own split, with params.yaml's settings but only
``--epochs`` epochs, under ``torch.profiler``, and prints seconds per epoch (training and
validation) and the operators that took the most CPU time, with their share; then, outside
the profiler, the seconds one validation takes, and the share of the positions in an epoch's
batches (each trimmed to its longest row) that hold an item rather than padding.

    python benchmarks/profile_training.py [--models gpt2 sasrec bert4rec] [--epochs 2] [--top 8]
                                          [--split data/split]

Training is most of `dvc repro` (README, "Two commands"); this says what in it is costly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genrec import params as genrec_params, training  # noqa: E402
from genrec.baselines.common import training_matrix  # noqa: E402
from genrec.ranking import PADDING  # noqa: E402
from genrec.sequences import Split  # noqa: E402
from genrec.training import Data, TrainParams  # noqa: E402


def trainer(name: str, data: Data, config: dict, epochs: int):
    """For ``name``: a function that trains it for ``epochs`` epochs on the CPU as its stage does
    and returns the model, its scorer (model -> users -> scores), its training matrix and batch size."""
    cpu = torch.device("cpu")
    if name == "gpt2":
        from genrec import model
        model_params = genrec_params.section(config, "model", model.ModelParams)
        train_params = genrec_params.section(config, "train", TrainParams).model_copy(update={"max_epochs": epochs})
        matrix = model.training_matrix(data.sequences, model_params.n_positions)
        return (lambda: model.fit(data, model_params, train_params, cpu)[0], model.scorer, matrix,
                train_params.batch_size)
    baseline = importlib.import_module(f"genrec.baselines.{name}")
    params = genrec_params.section(config, name, baseline.Params).model_copy(update={"max_epochs": epochs})
    matrix = training_matrix(data.sequences, baseline.training_width(params))
    return lambda: baseline.fit(data, params, cpu)[0], baseline.scorer, matrix, params.batch_size


def real_share(matrix: torch.Tensor, batch_size: int, epochs: int = 5) -> float:
    """Items over positions in ``epochs`` epochs of shuffled batches, each as wide as its longest row."""
    generator = torch.Generator().manual_seed(0)
    items = positions = 0
    for _ in range(epochs):
        for batch in training.epoch_batches(matrix, batch_size, generator):
            lengths = (batch != PADDING).sum(dim=1)
            items, positions = items + int(lengths.sum()), positions + len(batch) * int(lengths.max())
    return items / positions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["gpt2", "sasrec", "bert4rec"],
                        choices=["gpt2", "sasrec", "bert4rec"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--top", type=int, default=8, help="operators to list per model")
    parser.add_argument("--split", default=str(ROOT / "data/split"))
    args = parser.parse_args()

    data = Data.from_split(Split.load(args.split))
    config = genrec_params.load(ROOT / "params.yaml")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.epochs} epochs on {args.split}")
    for name in args.models:
        train, scorer, matrix, batch_size = trainer(name, data, config, args.epochs)
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model = train()
        seconds = (time.perf_counter() - start) / args.epochs
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\n{name}: {seconds:.2f} s per epoch under the profiler; operators by self CPU time:")
        for event in events[:args.top]:
            print(f"  {event.key:45} {event.self_cpu_time_total / 1e6:7.2f} s  {event.self_cpu_time_total / total:6.1%}"
                  f"  {event.count:6d} calls")
        score = scorer(model, data, torch.device("cpu"))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            training.validate(score, data)
            times.append(time.perf_counter() - start)
        print(f"  one validation ({len(data.val_users)} users): {sorted(times)[1]:.2f} s (median of 3); "
              f"items fill {real_share(matrix, batch_size):.0%} of the positions of the batches of {batch_size}")


if __name__ == "__main__":
    main()
