"""Training throughput: our loop against a naive loop in the style of the paper's code.

For ml-100k (the pipeline's own data/split, or a generated table of its size) and a
generated dataset of ML-1M's size (6,040 users, 3,416 items, about 1M interactions),
prints sequences per second, seconds per epoch (training and validation) and peak
memory of both loops, and their ratio. Both loops see the same model, batches and order.

    python benchmarks/bench_train.py [--epochs 3] [--device auto]

Model and training settings come from params.yaml (model, train), epochs and patience aside.

The naive loop pads every sequence to the full window and projects every position,
padding included, onto the catalogue, and validates on full-sequence logits: what a
direct port of the paper's training loop does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from genrec import model as gpt2
from genrec import params as genrec_params
from genrec import training
from genrec.device import resolve_device
from genrec.model import ModelParams, build, training_matrix
from genrec.ranking import PADDING
from genrec.sequences import UserSequences
from genrec.training import Data, TrainParams
from measure import timed

ROOT = Path(__file__).resolve().parents[1]


def generated(users: int, items: int, interactions: int, seed: int = 0) -> tuple[UserSequences, np.ndarray, np.ndarray]:
    """Heavy-tailed user lengths (≥ 20) and Zipf-like item popularity."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(90), 1.0, users), 20, None)
    lengths = np.maximum((lengths / lengths.sum() * interactions).astype(np.int64), 20)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    flat = rng.choice(np.arange(1, items + 1), size=int(lengths.sum()), p=popularity / popularity.sum())
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    sequences = UserSequences(indptr=indptr, items=flat)
    val_users = rng.choice(users, users // 2, replace=False)
    return sequences, np.sort(val_users), rng.integers(1, items + 1, len(val_users))


def pipeline_data() -> tuple[UserSequences, np.ndarray, np.ndarray, int] | None:
    split = Path("data/split")
    if not (split / "meta.json").exists():
        return None
    meta = json.loads((split / "meta.json").read_text())
    sequences = UserSequences.from_frame(pd.read_parquet(split / "train.parquet"), meta["num_users"])
    first = pd.read_parquet(split / "validation.parquet").query("position == 0").sort_values("user_id")
    return sequences, first["user_id"].to_numpy(), first["item_id"].to_numpy(), meta["num_items"]


def naive_epoch(model, sequences, val_users, val_targets, params: TrainParams, device, generator) -> tuple[float, float]:
    """One epoch of the naive loop; returns (training seconds, validation seconds)."""
    start = time.perf_counter()
    window = model.config.n_positions
    data = training_matrix(sequences, window)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    for batch in data[torch.randperm(len(data), generator=generator)].split(params.batch_size):
        batch = batch.to(device)
        inputs, labels = batch[:, :-1], batch[:, 1:]
        logits = model(input_ids=inputs, attention_mask=(inputs != PADDING).long()).logits  # (B, 128, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=PADDING)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(device)
    middle = time.perf_counter()
    model.eval()
    with torch.no_grad():
        for begin in range(0, len(val_users), params.batch_size):
            users = val_users[begin:begin + params.batch_size]
            items = torch.from_numpy(sequences.last_items(users, window, side="right")).to(device)
            logits = model(input_ids=items, attention_mask=(items != PADDING).long()).logits  # (B, L, V)
            rows = torch.arange(len(users), device=device)
            last = logits[rows, torch.from_numpy(np.minimum(sequences.lengths(users), window) - 1).to(device)]
            last[sequences.seen_mask(users, last.shape[1] - 1, device)] = -torch.inf
            torch.topk(last, 10).indices.cpu()
    synchronize(device)
    return middle - start, time.perf_counter() - middle


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def our_epochs(model, data: Data, params: TrainParams, device, epochs: int) -> list[tuple[float, float]]:
    """(training seconds, validation seconds) of each epoch of the pipeline's loop."""
    matrix = training_matrix(data.sequences, model.config.n_positions)
    model.to(device)
    generator = torch.Generator().manual_seed(params.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    score = gpt2.scorer(model, data, device)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        gpt2.train_epoch(model, matrix, params, optimizer, generator, device)
        synchronize(device)
        middle = time.perf_counter()
        training.validate(score, data)
        synchronize(device)
        times.append((middle - start, time.perf_counter() - middle))
    return times


def bench(label: str, sequences, val_users, val_targets, num_items: int, epochs: int, device,
          model_params: ModelParams, train_params: TrainParams) -> None:
    params = train_params.model_copy(update={"max_epochs": epochs, "patience": epochs + 1, "device": str(device)})
    n_train = len(training_matrix(sequences, model_params.n_positions))
    rows = []

    # Warm-up, untimed: the first epoch on a device pays one-off costs (kernels, allocator).
    warm = params.model_copy(update={"max_epochs": 1, "patience": 2})
    data = Data(sequences, num_items, val_users, val_targets)
    our_epochs(build(num_items, model_params), data, warm, device, 1)
    naive_epoch(build(num_items, model_params).to(device), sequences, val_users, val_targets, warm, device,
                torch.Generator().manual_seed(0))

    torch.manual_seed(0)
    model = build(num_items, model_params)
    out = {}
    _, peak = timed(lambda: out.setdefault("ours", our_epochs(model, data, params, device, epochs)), device)
    times = np.array(out["ours"]).mean(axis=0)
    rows.append(("ours", times[0], times[1], peak))

    torch.manual_seed(0)
    naive = build(num_items, model_params).to(device)
    generator = torch.Generator().manual_seed(0)
    _, peak = timed(lambda: out.setdefault("naive", [
        naive_epoch(naive, sequences, val_users, val_targets, params, device, generator) for _ in range(epochs)]),
        device)
    times = np.array(out["naive"]).mean(axis=0)
    rows.append(("naive (paper-style)", times[0], times[1], peak))

    print(f"\n{label}: {n_train:,} training sequences, {len(val_users):,} validation users, "
          f"{num_items:,} items, mean of {epochs} epochs on {device}")
    print(f"{'loop':<22}{'train s':>9}{'val s':>8}{'epoch s':>9}{'seq/s':>9}{'peak MB':>9}")
    for name, train_s, val_s, peak in rows:
        print(f"{name:<22}{train_s:>9.2f}{val_s:>8.2f}{train_s + val_s:>9.2f}{n_train / train_s:>9.0f}{peak:>9.0f}")
    ours, naive_row = rows
    print(f"ours is {(naive_row[1] + naive_row[2]) / (ours[1] + ours[2]):.1f}x faster per epoch "
          f"({naive_row[1] / ours[1]:.1f}x training, {naive_row[2] / ours[2]:.1f}x validation)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device, "--device")
    # The current params.yaml's model and training settings (the repository's without one).
    config = genrec_params.load("params.yaml" if Path("params.yaml").exists() else ROOT / "params.yaml")
    settings = (genrec_params.section(config, "model", ModelParams), genrec_params.section(config, "train", TrainParams))
    print(f"{settings[0]}\n{settings[1]}")
    data = pipeline_data()
    if data is not None:
        bench("ml-100k (data/split)", *data[:3], data[3], args.epochs, device, *settings)
    else:
        sequences, val_users, targets = generated(941, 1349, 89_839)
        bench("ml-100k-sized (generated)", sequences, val_users, targets, 1349, args.epochs, device, *settings)
    sequences, val_users, targets = generated(6040, 3416, 1_000_000)
    bench("ML-1M-sized (generated)", sequences, val_users, targets, 3416, args.epochs, device, *settings)


if __name__ == "__main__":
    main()
