"""Where training time goes: torch's profiler over a few epochs of each trained model.

Trains GPT-2 (the train stage's ``genrec.model.fit``) and the SASRec and BERT4Rec baselines
(their ``fit``) on the pipeline's own split, with params.yaml's settings but only
``--epochs`` epochs, under ``torch.profiler``, and prints seconds per epoch (training and
validation) and the operators that took the most CPU time, with their share.

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

from genrec import params as genrec_params  # noqa: E402
from genrec.sequences import Split  # noqa: E402
from genrec.training import Data, TrainParams  # noqa: E402


def trainer(name: str, data: Data, config: dict, epochs: int):
    """A function that trains ``name`` for ``epochs`` epochs on the CPU, as its stage does."""
    cpu = torch.device("cpu")
    if name == "gpt2":
        from genrec import model
        model_params = genrec_params.section(config, "model", model.ModelParams)
        train_params = genrec_params.section(config, "train", TrainParams).model_copy(update={"max_epochs": epochs})
        return lambda: model.fit(data, model_params, train_params, cpu)
    baseline = importlib.import_module(f"genrec.baselines.{name}")
    params = genrec_params.section(config, name, baseline.Params).model_copy(update={"max_epochs": epochs})
    return lambda: baseline.fit(data, params, cpu)


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
        train = trainer(name, data, config, args.epochs)
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train()
        seconds = (time.perf_counter() - start) / args.epochs
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\n{name}: {seconds:.2f} s per epoch under the profiler; operators by self CPU time:")
        for event in events[:args.top]:
            print(f"  {event.key:45} {event.self_cpu_time_total / 1e6:7.2f} s  {event.self_cpu_time_total / total:6.1%}"
                  f"  {event.count:6d} calls")


if __name__ == "__main__":
    main()
