"""Scale: a synthetic ML-20M-sized set, GPT-2 training and every strategy, on 1 or N processes.

    python benchmarks/bench_scale.py [--scale 1] [--processes 1 2] [--batch-sizes 64 256]
                                     [--precisions fp32 bf16] [--epochs 1] [--eval-users 20000]
                                     [--device auto]

At ``--scale 1`` the set has ML-20M's shape: 138,000 users with heavy-tailed lengths (at
least 20 items) over 18,345 items with Zipf-like popularity, 17.8 million interactions;
``--scale 0.05`` keeps the catalogue and takes 5% of the users (for a small CPU). Each row
runs in fresh processes started by torch's launcher (``torch.distributed.run``), as the
stages do with ``train.processes`` / ``generation.processes``:

- train: GPT-2 epochs through the pipeline's loop (``genrec.model.fit``: DDP over the
  processes, rank 0 validating 2,000 users after each epoch), per processes, batch size and
  precision; seconds per epoch and training sequences per second.
- generate: each strategy at the paper's settings (beam 2; sampling T 0.5; RRA T 0.6,
  top-k 20, 30 sequences; RA T 0.7, 30 sequences) for ``--eval-users`` users, shared by the
  processes; users per second. The lists of N processes equal one process's (tests/test_distributed.py).

The model is the repository's GPT-2 size, randomly initialised (speed does not depend on the
weights). bf16 rows need a GPU (or a CPU with bf16 arithmetic) to mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genrec import distributed  # noqa: E402
from genrec import model as gpt2  # noqa: E402
from genrec import params as genrec_params  # noqa: E402
from genrec.device import resolve_device  # noqa: E402
from genrec.model import ModelParams  # noqa: E402
from genrec.sequences import UserSequences  # noqa: E402
from genrec.strategies import STRATEGIES, auto_batch_size, read_params, recommend  # noqa: E402
from genrec.training import Data, TrainParams  # noqa: E402

USERS, ITEMS = 138_000, 18_345
PAPER = {"topk": {}, "greedy": {}, "beam": {"num_beams": 2}, "sampling": {"temperature": 0.5, "top_k": 0},
         "rra": {"temperature": 0.6, "top_k": 20, "num_sequences": 30},
         "ra": {"temperature": 0.7, "top_k": 0, "num_sequences": 30}}


def synthetic(scale: float, seed: int = 0) -> UserSequences:
    """Lognormal lengths (median 70, at least 20, about 129 interactions per user on average) and
    Zipf-like item popularity; each user's items distinct, in random order."""
    rng = np.random.default_rng(seed)
    users = max(2, int(USERS * scale))
    lengths = np.clip(rng.lognormal(np.log(70), 1.1, users), 20, ITEMS // 2).astype(np.int64)
    weights = 1.0 / np.arange(1, ITEMS + 1) ** 0.9
    draws = rng.choice(np.arange(1, ITEMS + 1), size=int(lengths.sum() * 1.3), p=weights / weights.sum())
    # Each user takes the first n distinct items of its own stretch of int(1.3 n) draws: one
    # sort over (user, item) keys finds every first occurrence at once.
    stretch = (lengths * 1.3).astype(np.int64)
    owner = np.repeat(np.arange(users), stretch)
    chunk = draws[:len(owner)]
    _, first = np.unique(owner * (ITEMS + 1) + chunk, return_index=True)
    keep = np.sort(first)  # first occurrences, back in draw order
    owner, picked = owner[keep], chunk[keep]
    distinct = np.bincount(owner, minlength=users)
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(distinct) - distinct, distinct)
    picked = picked[rank < lengths[owner]]
    items = np.split(picked, np.cumsum(np.minimum(distinct, lengths))[:-1])
    taken = np.zeros(ITEMS + 1, dtype=bool)
    # About 15% of users drew fewer distinct items than their length: top them up with the
    # lowest ids they have not drawn.
    for user in np.flatnonzero(distinct < lengths):
        taken[items[user]] = True
        rest = np.flatnonzero(~taken[1:])[: lengths[user] - len(items[user])] + 1
        taken[items[user]] = False
        items[user] = np.concatenate([items[user], rest])
    flat = np.concatenate(items)
    return UserSequences(indptr=np.concatenate([[0], np.cumsum(lengths)]), items=flat.astype(np.int64))


def config(name: str) -> dict:
    return genrec_params.load(ROOT / "params.yaml")[name]


def worker(task: dict) -> None:
    """One measurement inside a process group; rank 0 writes the result to ``task["out"]``."""
    group = distributed.start(resolve_device(task["device"], "--device"))
    data = np.load(task["data"])  # built once by the parent, not again in every process of every row
    sequences = UserSequences(indptr=data["indptr"], items=data["items"])
    rng = np.random.default_rng(1)
    val_users = np.sort(rng.choice(sequences.num_users, min(2000, sequences.num_users), replace=False))
    targets = rng.integers(1, ITEMS + 1, len(val_users))
    model_params = genrec_params.section({"model": config("model")}, "model", ModelParams)
    result = {}
    if group.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(group.device)
    if task["kind"] == "train":
        train = genrec_params.section({"train": {**config("train"), "batch_size": task["batch_size"],
                                                 "max_epochs": task["epochs"], "patience": task["epochs"] + 1,
                                                 "precision": task["precision"], "processes": group.world}},
                                      "train", TrainParams)
        data = Data(sequences, ITEMS, val_users, targets)
        start = time.perf_counter()
        _, history = gpt2.fit(data, model_params, train, group.device, group=group)
        seconds = (time.perf_counter() - start) / task["epochs"]
        rows = len(gpt2.training_matrix(sequences, model_params.n_positions))
        result = {"seconds": seconds, "rate": rows / seconds, "unit": "sequences/s"}
    else:
        torch.manual_seed(0)
        model = gpt2.build(ITEMS, model_params).to(group.device).eval()
        users = np.arange(min(task["eval_users"], sequences.num_users))
        generation = {**config("generation"), "batch_size": 0, "device": task["device"],
                      "processes": group.world, "num_beams": 2, "temperature": 0.5, "top_k": 0,
                      "num_sequences": 30, **PAPER[task["strategy"]]}
        settings = read_params({"generation": generation, "evaluation": {"k": 10}}, task["strategy"])
        shape = model.config
        batch = auto_batch_size(task["strategy"], settings, ITEMS, shape.n_positions - settings.horizon,
                                shape.n_embd, shape.n_layer, group.device)
        start = time.perf_counter()
        recommend(task["strategy"], model, sequences, users, settings, group=group)
        if group.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        result = {"seconds": seconds, "rate": len(users) / seconds, "unit": "users/s", "batch": batch}
    # Peak GPU memory of this process (rank 0); NaN on the CPU.
    result["peak_gib"] = torch.cuda.max_memory_allocated(group.device) / 2**30 \
        if group.device.type == "cuda" else float("nan")
    if group.main:
        Path(task["out"]).write_text(json.dumps(result))
    distributed.stop()


def run(task: dict, processes: int) -> dict:
    """``task`` in ``processes`` fresh processes under torch's launcher."""
    with tempfile.TemporaryDirectory() as folder:
        task = {**task, "out": f"{folder}/result.json"}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "OMP_NUM_THREADS": str(distributed.threads_per_process(processes))}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   __file__, "--worker", json.dumps(task)]
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        return json.loads(Path(task["out"]).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[64, 256], help="none: no training rows")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--eval-users", type=int, default=20_000)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    device = resolve_device(args.device, "--device")
    sequences = synthetic(args.scale)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}, " \
        f"{os.cpu_count()} cores"
    print(f"synthetic set at scale {args.scale}: {sequences.num_users:,} users, {ITEMS:,} items, "
          f"{len(sequences.items):,} interactions; {where}; torch {torch.__version__}")
    print(f"{'what':<10}{'processes':>10}{'batch':>7}{'precision':>10}{'seconds':>10}{'rate':>12}{'peak GiB':>10}  unit")
    with tempfile.TemporaryDirectory() as folder:
        np.savez(f"{folder}/data.npz", indptr=sequences.indptr, items=sequences.items)
        base = {"data": f"{folder}/data.npz", "device": args.device}
        for batch_size in args.batch_sizes:
            for precision in args.precisions:
                for processes in args.processes:
                    r = run({**base, "kind": "train", "batch_size": batch_size, "precision": precision,
                             "epochs": args.epochs}, processes)
                    print(f"{'train':<10}{processes:>10}{batch_size:>7}{precision:>10}{r['seconds']:>10.1f}"
                          f"{r['rate']:>12,.0f}{r['peak_gib']:>10.2f}  {r['unit']} (an epoch)", flush=True)
        for strategy in args.strategies:
            for processes in args.processes:
                r = run({**base, "kind": "generate", "strategy": strategy, "eval_users": args.eval_users}, processes)
                print(f"{strategy:<10}{processes:>10}{r['batch']:>7}{'fp32':>10}{r['seconds']:>10.1f}{r['rate']:>12,.0f}"
                      f"{r['peak_gib']:>10.2f}  {r['unit']} ({min(args.eval_users, sequences.num_users):,} users)",
                      flush=True)


if __name__ == "__main__":
    main()
