"""train.precision: fp32 against bf16 on the pipeline's own split, in speed and in validation NDCG.

    python benchmarks/bench_precision.py [--split data/split] [--precisions fp32 bf16]
                                         [--seeds 42 43] [--max-epochs N] [--device auto]

Trains GPT-2 exactly as the train stage does (``genrec.model.fit``: params.yaml's model and
train sections, early stopping on validation NDCG@10), once per seed and precision, and
prints for each run the epochs it took, the best epoch, seconds per epoch (training and
validation), the best validation NDCG@10 and HR@10, and peak GPU memory. Runs with the same
seed start from the same weights and batches, so the NDCG difference between precisions at
one seed sits beside the difference between seeds at one precision.

bf16 autocasts the training forward pass only; validation runs in fp32 either way. It is
meant for a GPU: a CPU without bf16 matrix units runs it, slowly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genrec import model as gpt2  # noqa: E402
from genrec import params as genrec_params  # noqa: E402
from genrec.device import resolve_device  # noqa: E402
from genrec.model import ModelParams  # noqa: E402
from genrec.sequences import Split  # noqa: E402
from genrec.training import Data, TrainParams  # noqa: E402


def run(data: Data, model_params: ModelParams, train: dict, device: torch.device) -> dict:
    params = genrec_params.section({"train": train}, "train", TrainParams)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    _, result = gpt2.fit(data, model_params, params, device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"precision": params.precision, "seed": params.seed, "epochs": len(result.history),
            "best_epoch": result.best.epoch, "seconds_per_epoch": seconds / len(result.history),
            "ndcg": result.best.ndcg, "hit_rate": result.best.hit_rate, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default=str(ROOT / "data/split"))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--max-epochs", type=int, help="cap on epochs (default: params.yaml's train.max_epochs)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    config = genrec_params.load(ROOT / "params.yaml")
    model_params = genrec_params.section(config, "model", ModelParams)
    device = resolve_device(args.device, "--device")
    data = Data.from_split(Split.load(args.split))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.split}: {data.sequences.num_users:,} users, {data.num_items:,} items, "
          f"{len(data.val_users):,} validation users; {where}; torch {torch.__version__}")
    print(f"{'precision':<10}{'seed':>6}{'epochs':>8}{'best':>6}{'s/epoch':>9}{'NDCG@10':>9}{'HR@10':>8}{'peak GiB':>10}")
    rows = []
    for seed in args.seeds:
        for precision in args.precisions:
            train = {**config["train"], "precision": precision, "seed": seed, "processes": 1}
            if args.max_epochs:
                train["max_epochs"] = args.max_epochs
            row = run(data, model_params, train, device)
            rows.append(row)
            print(f"{precision:<10}{seed:>6}{row['epochs']:>8}{row['best_epoch']:>6}{row['seconds_per_epoch']:>9.2f}"
                  f"{row['ndcg']:>9.4f}{row['hit_rate']:>8.4f}{row['peak_gib']:>10.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": where, "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
