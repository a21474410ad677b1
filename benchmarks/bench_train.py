"""Training steps side by side: today's against faster candidates, and a naive loop.

    python benchmarks/bench_train.py [--variants today masks compiled one-thread naive]
                                     [--models gpt2 sasrec bert4rec] [--large-scale 0.05]
                                     [--large-batches 60] [--split data/split]
                                     [--params params.yaml] [--json rows.json]

Each row runs in a fresh process on the pipeline's own split (data/split, ml-100k by
default) with params.yaml's settings (``--split`` and ``--params`` name others; ``--json``
also writes the rows, unrounded):

- today: the stage's training loop as it is (genrec.training.fit and the model's epoch).
- masks: dropout masks drawn from 16-bit random integers (four per int64 draw) instead of
  torch's CPU ``bernoulli_``, which draws them one at a time on one thread; attention runs
  eagerly (Hugging Face's and SASRec's) so that its dropout takes the same masks. Other
  masks: other models.
- compiled: ``torch.compile(dynamic=True)`` of the training loss module; the first epoch
  includes compiling.
- one-thread: ``torch.set_num_threads(1)``.
- naive (GPT-2 only): every position padded to the window and projected onto the catalogue,
  as a direct port of the paper's loop does.

On ml-100k each variant trains with early stopping, as the stage does, and the row gives the
epochs, the best validation NDCG@10, the median seconds of an epoch after the first (training
only), sequences per second and the process's peak resident memory. With ``--large-scale``
a synthetic set of ML-20M's shape at that scale (``bench_data.generate``) adds one row per
variant: ``--large-batches`` training batches of GPT-2, their sequences per second and peak
memory (its validation NDCG would take a GPU's hours).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = ("today", "masks", "compiled", "one-thread", "naive")
MODELS = ("gpt2", "sasrec", "bert4rec")


class MaskDropout(nn.Module):
    """Dropout whose keep-mask comes from 16-bit random integers: four per int64 draw of
    torch's generator, compared with p's share of the 16-bit range (p to within 2**-16)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.threshold = -(2**15) + round(p * 2**16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, (-(-n // 4),), dtype=torch.int64, device=x.device)
        keep = words.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep * (1.0 / (1.0 - self.p))


def eager_sasrec_attention(attention: nn.Module) -> None:
    """SASRec's attention computed eagerly, its dropout a MaskDropout on the attention weights
    (scaled_dot_product_attention draws its own masks, with bernoulli_, from ``dropout_p``)."""
    attention.attention_dropout = MaskDropout(attention.dropout).train(attention.training)

    def forward(x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = attention.qkv(x).split(hidden, dim=2)
        q, k, v = (t.view(batch, length, attention.heads, -1).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        weights = scores.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)  # the diagonal is always allowed
        y = attention.attention_dropout(weights) @ v
        return attention.proj(y.transpose(1, 2).reshape(batch, length, hidden))

    attention.forward = forward


def with_mask_dropout(model: nn.Module) -> nn.Module:
    """Every nn.Dropout of ``model`` replaced by MaskDropout, and attention dropout too: Hugging
    Face attention runs eagerly (its dropout is then a module), SASRec's through
    eager_sasrec_attention."""
    from genrec.baselines.sasrec import CausalSelfAttention
    if isinstance(model, CausalSelfAttention):
        eager_sasrec_attention(model)
    for name, child in model.named_children():
        if isinstance(child, nn.Dropout):
            setattr(model, name, MaskDropout(child.p).train(child.training))
        else:
            with_mask_dropout(child)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "_attn_implementation"):
        config._attn_implementation = "eager"
    return model


def peak_rss_gb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def small(model_name: str, variant: str, split: str, params_file: str) -> dict:
    """One variant's training with early stopping on the pipeline's split."""
    from genrec import params as genrec_params
    from genrec import training
    from genrec.sequences import Split
    from genrec.training import Data

    config = genrec_params.load(Path(params_file))
    data = Data.from_split(Split.load(split))
    epochs, rows = [], 0
    original_fit = training.fit

    def timed_fit(model, matrix, train_epoch, *args, objective=None, **kwargs):
        nonlocal rows
        rows = len(matrix)
        if variant == "masks":
            with_mask_dropout(model)
        if variant == "compiled" and objective is not None:
            objective = torch.compile(objective, dynamic=True)

        def epoch(*epoch_args):
            start = time.perf_counter()
            out = train_epoch(*epoch_args)
            epochs.append(time.perf_counter() - start)
            return out
        return original_fit(model, matrix, epoch, *args, objective=objective, **kwargs)

    training.fit = timed_fit
    if model_name == "gpt2":
        from genrec import model as gpt2
        model_params = genrec_params.section(config, "model", gpt2.ModelParams)
        train_params = genrec_params.section(config, "train", training.TrainParams)
        _, result = gpt2.fit(data, model_params, train_params, torch.device("cpu"))
    else:
        import importlib
        baseline = importlib.import_module(f"genrec.baselines.{model_name}")
        from genrec.distributed import SINGLE
        section = genrec_params.section(config, model_name, baseline.Params).model_copy(update={"device": "cpu"})
        _, result = baseline.fit(data, section, torch.device("cpu"), lambda epoch: None, SINGLE)
    steady = float(np.median(epochs[1:] if len(epochs) > 1 else epochs))
    return {"epochs": len(result.history), "best_epoch": result.best.epoch, "ndcg": result.best.ndcg,
            "first": epochs[0], "epoch": steady, "rate": rows / steady, "peak_gb": peak_rss_gb()}


def naive_small(split: str, params_file: str) -> dict:
    """The paper-style loop on the split for a fixed 5 epochs: its time per epoch (it has no
    early stopping of its own here, so no NDCG is given)."""
    from genrec import params as genrec_params
    from genrec.model import ModelParams, build, training_matrix
    from genrec.ranking import PADDING
    from genrec.sequences import Split
    from genrec.training import TrainParams

    config = genrec_params.load(Path(params_file))
    model_params = genrec_params.section(config, "model", ModelParams)
    params = genrec_params.section(config, "train", TrainParams)
    split_data = Split.load(split)
    torch.manual_seed(params.seed)
    model = build(split_data.num_items, model_params)
    data = training_matrix(split_data.sequences, model.config.n_positions)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    generator = torch.Generator().manual_seed(params.seed)
    epochs = []
    for _ in range(5):
        start = time.perf_counter()
        model.train()
        for batch in data[torch.randperm(len(data), generator=generator)].split(params.batch_size):
            inputs, labels = batch[:, :-1], batch[:, 1:]
            logits = model(input_ids=inputs, attention_mask=(inputs != PADDING).long()).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=PADDING)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        epochs.append(time.perf_counter() - start)
    steady = float(np.median(epochs[1:]))
    return {"epochs": 5, "best_epoch": None, "ndcg": math.nan, "first": epochs[0], "epoch": steady,
            "rate": len(data) / steady, "peak_gb": peak_rss_gb()}


def large(variant: str, scale: float, batches: int, params_file: str) -> dict:
    """``batches`` GPT-2 training batches on the synthetic ML-20M-shaped set at ``scale``."""
    from bench_data import generate

    from genrec import model as gpt2
    from genrec import params as genrec_params
    from genrec import preprocess as prep
    from genrec import training
    from genrec.sequences import UserSequences

    users = max(100, round(138_000 * scale))
    raw = generate(round(20_000_000 * scale), users, 19_220, 0)
    import pandas as pd
    prepared = prep.preprocess(pd.DataFrame(raw), prep.PreprocessParams(min_item_users=5, min_user_items=20,
                                                                        duplicates="keep"))
    frame = prepared.interactions
    sequences = UserSequences.from_frame(frame, len(prepared.users))
    num_items = len(prepared.items)
    config = genrec_params.load(Path(params_file))
    model_params = genrec_params.section(config, "model", gpt2.ModelParams)
    params = genrec_params.section(config, "train", training.TrainParams)
    torch.manual_seed(0)
    model = gpt2.build(num_items, model_params)
    if variant == "masks":
        with_mask_dropout(model)
    objective = gpt2.NextItemLoss(model)
    if variant == "compiled":
        objective = torch.compile(objective, dynamic=True)
    matrix = gpt2.training_matrix(sequences, model.config.n_positions)
    rows = torch.randperm(len(matrix), generator=torch.Generator().manual_seed(0))[:batches * params.batch_size]
    part = matrix[rows]
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    warm = part[:params.batch_size * 2]  # compiling and first-touch costs out of the timing
    gpt2.train_epoch(objective, warm, params, optimizer, torch.Generator().manual_seed(0), torch.device("cpu"))
    start = time.perf_counter()
    gpt2.train_epoch(objective, part, params, optimizer, torch.Generator().manual_seed(1), torch.device("cpu"))
    seconds = time.perf_counter() - start
    return {"items": num_items, "rate": len(part) / seconds, "peak_gb": peak_rss_gb(),
            "epoch_estimate": len(matrix) / (len(part) / seconds)}


def child(task: dict) -> dict:
    if task["variant"] == "one-thread":
        torch.set_num_threads(1)
    if task["kind"] == "large":
        return large(task["variant"], task["scale"], task["batches"], task["params"])
    if task["variant"] == "naive":
        return naive_small(task["split"], task["params"])
    return small(task["model"], task["variant"], task["split"], task["params"])


def fresh(task: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(task)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{task} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--split", default="data/split")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--json", help="also write every row here")
    parser.add_argument("--large-scale", type=float, help="also a synthetic ML-20M-shaped set at this scale")
    parser.add_argument("--large-batches", type=int, default=60)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    import platform
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or 'CPU'}; "
          f"split {args.split}")
    print(f"{'model':<9}{'variant':<11}{'epochs':>7}{'best':>6}{'val NDCG@10':>13}{'1st epoch s':>12}"
          f"{'epoch s':>9}{'seq/s':>8}{'speed-up':>9}{'peak GB':>9}")
    rows = []
    for model in args.models:
        base = None
        for variant in args.variants:
            if variant == "naive" and model != "gpt2":
                continue
            r = fresh({"kind": "small", "model": model, "variant": variant, "split": args.split,
                       "params": args.params})
            rows.append({"model": model, "variant": variant, **r})
            base = base or r["epoch"]
            best = "—" if r["best_epoch"] is None else str(r["best_epoch"])
            ndcg = "—" if math.isnan(r["ndcg"]) else f"{r['ndcg']:.4f}"
            print(f"{model:<9}{variant:<11}{r['epochs']:>7}{best:>6}{ndcg:>13}{r['first']:>12.2f}{r['epoch']:>9.2f}"
                  f"{r['rate']:>8.0f}{base / r['epoch']:>8.2f}x{r['peak_gb']:>9.2f}", flush=True)
    if args.large_scale:
        print(f"\nGPT-2 on the ML-20M-shaped set at scale {args.large_scale:g}, {args.large_batches} batches")
        print(f"{'variant':<11}{'items':>7}{'seq/s':>8}{'speed-up':>9}{'peak GB':>9}{'epoch estimate':>16}")
        base = None
        for variant in args.variants:
            if variant == "naive":
                continue
            r = fresh({"kind": "large", "variant": variant, "scale": args.large_scale, "batches": args.large_batches,
                       "params": args.params})
            rows.append({"model": "gpt2", "variant": variant, "scale": args.large_scale, **r})
            base = base or r["rate"]
            print(f"{variant:<11}{r['items']:>7}{r['rate']:>8.0f}{r['rate'] / base:>8.2f}x{r['peak_gb']:>9.2f}"
                  f"{r['epoch_estimate'] / 60:>13.1f} min", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
