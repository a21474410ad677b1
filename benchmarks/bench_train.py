"""Training steps side by side: today's against faster candidates, on a CPU or a GPU.

    python benchmarks/bench_train.py [--variants today exact fast-masks graphs compiled chunked-ce liger
                                                bf16 gelu-new one-thread default-malloc naive]
                                     [--models gpt2 sasrec bert4rec] [--device auto]
                                     [--small | --no-small] [--large-scale 0.05] [--large-batches 60]
                                     [--large-val-users 0] [--large-cache FILE.npz] [--split data/split]
                                     [--params params.yaml] [--json rows.json]

Each row runs in a fresh process with params.yaml's settings (``--params`` names others;
``--json`` also writes the rows, unrounded). A variant runs on the models it applies to:

- today: the stage's training as params.yaml sets it (``step`` auto: on a CPU the exact
  step, on CUDA the graphs step; ``dropout_masks`` auto: the fast masks on a CPU, torch's
  on CUDA).
- exact: ``step: exact``, ``dropout_masks: torch``: the exact path of the runs before either
  (GPT-2 with params.yaml's activation; with ``gelu-new``'s too, give ``--params`` a copy
  that sets ``model.activation_function: gelu_new``).
- fast-masks: ``step: exact``, ``dropout_masks: fast`` (genrec/dropout.py: masks four to a
  64-bit draw, for every dropout and Hugging Face attention's).
- graphs: ``step: graphs`` (every batch one shape, compiled; on CUDA replayed as a CUDA
  graph), masks as params.yaml sets them.
- compiled: the exact step with ``torch.compile(dynamic=True)`` of the training loss module;
  the first epoch includes compiling.
- chunked-ce (GPT-2): the exact step with the catalogue projection and the cross-entropy
  fused, 4,096 labels at a time, gradients computed in the forward (``LinearCrossEntropy``):
  the (labels x catalogue) logits are never held whole.
- liger (GPT-2, CUDA): the same fusion by Liger Kernel's ``LigerFusedLinearCrossEntropyLoss``
  (Triton), when the package is installed.
- bf16 (GPT-2): today's with ``train.precision: bf16`` (the training forward pass under bf16
  autocast). Meant for GPUs; on a CPU with bf16 matrix units (Intel's AMX) it measured no
  faster on ml-100k and 0.74x at ML-20M's catalogue (docs/performance.md).
- gelu-new (GPT-2): today's with ``model.activation_function: gelu_new``, Hugging Face's
  formula for GPT-2's tanh GELU in six elementwise passes (every run before December 2026),
  in place of torch's fused kernel (``gelu_pytorch_tanh``): other rounding, so another model.
- one-thread (CPU): today's with ``torch.set_num_threads(1)``.
- default-malloc (CPU): today's without ``genrec.device.keep_freed_memory()``, which the
  stages (and every other variant here) call: glibc then hands a step's large blocks back
  and faults in fresh pages for them at the next batch. The same numbers.
- naive (GPT-2): every position padded to the window and projected onto the catalogue, as
  a direct port of the paper's loop does (ml-100k only).

On ``--split`` (ml-100k's data/split by default; ``--no-small`` skips it) each variant trains
with early stopping, as the stage does: epochs, the best validation NDCG@10, the median
seconds of an epoch after the first (training only), sequences per second, peak resident
memory and, on CUDA, peak GPU memory. With ``--large-scale`` a synthetic set of ML-20M's
shape at that scale (``bench_data.generate``, built once) adds one row per model and
variant: ``--large-batches`` training batches after three warm-up ones (compiling and
recording graphs), their sequences per second, the epoch this rate gives, peak memory, and
with ``--large-val-users`` the seconds of one validation of that many users.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from genrec.distributed import SINGLE  # noqa: E402
from genrec.ranking import PADDING  # noqa: E402

VARIANTS = ("today", "exact", "fast-masks", "graphs", "compiled", "chunked-ce", "liger", "bf16", "gelu-new",
            "one-thread", "default-malloc", "naive")
MODELS = ("gpt2", "sasrec", "bert4rec")
ONLY = {"naive": {"gpt2"}, "chunked-ce": {"gpt2"}, "liger": {"gpt2"}, "bf16": {"gpt2"}, "gelu-new": {"gpt2"}}
CUDA_ONLY = {"liger"}


class LinearCrossEntropy(torch.autograd.Function):
    """The summed cross-entropy of ``hidden @ weight.T`` against ``labels``, ``chunk`` rows at a
    time: each chunk's logits are made, turned into the loss and both gradients, and freed, so
    the (rows, catalogue) logits are never held whole. The gradients are computed in the
    forward and scaled in the backward (the loss is a sum, so they are linear in its grad)."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int) -> torch.Tensor:
        exact = torch.promote_types(hidden.dtype, torch.float32)  # bf16 activations: float32 sums
        loss = torch.zeros((), dtype=exact, device=hidden.device)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight, dtype=exact)
        for start in range(0, len(hidden), chunk):
            h, y = hidden[start:start + chunk], labels[start:start + chunk]
            logits = (h @ weight.T).to(exact)
            log_norm = logits.logsumexp(-1, keepdim=True)
            loss += (log_norm[:, 0] - logits.gather(1, y[:, None])[:, 0]).sum()
            grad = logits.sub_(log_norm).exp_()  # softmax, in the logits' memory
            grad[torch.arange(len(y), device=y.device), y] -= 1
            grad_hidden[start:start + chunk] = (grad @ weight.to(exact)).to(hidden.dtype)
            grad_weight.addmm_(grad.T, h.to(exact))
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None


class ChunkedNextItemLoss(nn.Module):
    """GPT-2's NextItemLoss with the projection and cross-entropy fused (``LinearCrossEntropy``)."""

    def __init__(self, model: nn.Module, chunk: int = 4096):
        super().__init__()
        self.model, self.chunk = model, chunk

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self.model.transformer(input_ids=inputs, attention_mask=(inputs != PADDING).long()).last_hidden_state
        real = labels != PADDING
        return LinearCrossEntropy.apply(hidden[real], self.model.lm_head.weight, labels[real], self.chunk)


class LigerNextItemLoss(nn.Module):
    """GPT-2's NextItemLoss with Liger Kernel's fused linear + cross-entropy."""

    def __init__(self, model: nn.Module):
        super().__init__()
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
        self.model, self.loss = model, LigerFusedLinearCrossEntropyLoss(reduction="sum")

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self.model.transformer(input_ids=inputs, attention_mask=(inputs != PADDING).long()).last_hidden_state
        real = labels != PADDING
        return self.loss(self.model.lm_head.weight, hidden[real], labels[real])


def gpt2_objective(model: nn.Module, variant: str) -> nn.Module:
    """The exact step's objective for ``variant`` (today's NextItemLoss, compiled or fused)."""
    from genrec import model as gpt2
    if variant == "chunked-ce":
        return ChunkedNextItemLoss(model)
    if variant == "liger":
        return LigerNextItemLoss(model)
    objective = gpt2.NextItemLoss(model)
    return torch.compile(objective, dynamic=True) if variant == "compiled" else objective


def model_variant(section, variant: str):
    """GPT-2's ``model`` section as ``variant`` builds it."""
    return section.model_copy(update={"activation_function": "gelu_new"}) if variant == "gelu-new" else section


def with_variant(section, variant: str):
    """A ``train``, ``sasrec`` or ``bert4rec`` section as ``variant`` trains it."""
    if variant == "bf16":
        return section.model_copy(update={"precision": "bf16"})
    update = ({} if variant in ("today", "one-thread", "default-malloc", "gelu-new") else
              {"step": "graphs" if variant == "graphs" else "exact"})
    if hasattr(section, "dropout_masks") and variant in ("exact", "fast-masks", "compiled"):
        update["dropout_masks"] = "fast" if variant == "fast-masks" else "torch"
    return section.model_copy(update=update)


def peak_gpu_gb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan


def peak_rss_gb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def small(model_name: str, variant: str, split: str, params_file: str, device_name: str) -> dict:
    """One variant's training with early stopping on the pipeline's split."""
    from genrec import params as genrec_params
    from genrec import training
    from genrec.sequences import Split
    from genrec.training import Data

    device = torch.device(device_name)
    config = genrec_params.load(Path(params_file))
    data = Data.from_split(Split.load(split))
    epochs, rows = [], 0
    original_fit = training.fit

    def timed_fit(model, matrix, train_epoch, *args, objective=None, **kwargs):
        nonlocal rows
        rows = len(matrix)
        if model_name == "gpt2" and variant in ("compiled", "chunked-ce", "liger"):
            objective = gpt2_objective(model, variant)
        elif variant == "compiled":
            objective = torch.compile(objective, dynamic=True)

        def epoch(*epoch_args):
            synchronize(device)
            start = time.perf_counter()
            out = train_epoch(*epoch_args)
            synchronize(device)
            epochs.append(time.perf_counter() - start)
            return out
        return original_fit(model, matrix, epoch, *args, objective=objective, **kwargs)

    training.fit = timed_fit
    if model_name == "gpt2":
        from genrec import model as gpt2
        model_params = model_variant(genrec_params.section(config, "model", gpt2.ModelParams), variant)
        train_params = with_variant(genrec_params.section(config, "train", training.TrainParams), variant)
        _, result = gpt2.fit(data, model_params, train_params, device)
    else:
        import importlib
        baseline = importlib.import_module(f"genrec.baselines.{model_name}")
        section = with_variant(genrec_params.section(config, model_name, baseline.Params), variant)
        _, result = baseline.fit(data, section.model_copy(update={"device": device.type}), device,
                                 lambda epoch: None, SINGLE)
    steady = float(np.median(epochs[1:] if len(epochs) > 1 else epochs))
    return {"epochs": len(result.history), "best_epoch": result.best.epoch, "ndcg": result.best.ndcg,
            "first": epochs[0], "epoch": steady, "rate": rows / steady, "peak_gb": peak_rss_gb(),
            "peak_gpu_gb": peak_gpu_gb(device)}


def naive_small(split: str, params_file: str, device_name: str) -> dict:
    """The paper-style loop on the split for a fixed 5 epochs: its time per epoch (it has no
    early stopping of its own here, so no NDCG is given)."""
    from genrec import params as genrec_params
    from genrec.model import ModelParams, build, training_matrix
    from genrec.sequences import Split
    from genrec.training import TrainParams

    device = torch.device(device_name)
    config = genrec_params.load(Path(params_file))
    model_params = genrec_params.section(config, "model", ModelParams)
    params = genrec_params.section(config, "train", TrainParams)
    split_data = Split.load(split)
    torch.manual_seed(params.seed)
    model = build(split_data.num_items, model_params).to(device)
    data = training_matrix(split_data.sequences, model.config.n_positions)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    generator = torch.Generator().manual_seed(params.seed)
    epochs = []
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        model.train()
        for batch in data[torch.randperm(len(data), generator=generator)].split(params.batch_size):
            batch = batch.to(device)
            inputs, labels = batch[:, :-1], batch[:, 1:]
            logits = model(input_ids=inputs, attention_mask=(inputs != PADDING).long()).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=PADDING)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        synchronize(device)
        epochs.append(time.perf_counter() - start)
    steady = float(np.median(epochs[1:]))
    return {"epochs": 5, "best_epoch": None, "ndcg": math.nan, "first": epochs[0], "epoch": steady,
            "rate": len(data) / steady, "peak_gb": peak_rss_gb(), "peak_gpu_gb": peak_gpu_gb(device)}


def build_large(scale: float, path: Path) -> None:
    """The synthetic ML-20M-shaped set at ``scale``, preprocessed as the pipeline does, saved
    as user sequences (built once; every row's process loads it)."""
    import pandas as pd
    from bench_data import generate

    from genrec import preprocess as prep
    from genrec.sequences import UserSequences

    users = max(100, round(138_000 * scale))
    raw = generate(round(20_000_000 * scale), users, 19_220, 0)
    prepared = prep.preprocess(pd.DataFrame(raw), prep.PreprocessParams(min_item_users=5, min_user_items=20,
                                                                        duplicates="keep"))
    sequences = UserSequences.from_frame(prepared.interactions, len(prepared.users))
    np.savez(path, indptr=sequences.indptr, items=sequences.items, num_items=len(prepared.items))


def large(model_name: str, variant: str, data_file: str, batches: int, val_users: int, params_file: str,
          device_name: str) -> dict:
    """``batches`` training batches of ``model_name`` on the synthetic set, after three warm-up
    ones; and one validation of ``val_users`` users when asked."""
    import importlib

    from genrec import params as genrec_params
    from genrec import training
    from genrec.baselines.common import training_matrix
    from genrec.dropout import fast_masks, use_fast_dropout
    from genrec.sequences import UserSequences

    device = torch.device(device_name)
    arrays = np.load(data_file)
    sequences = UserSequences(indptr=arrays["indptr"], items=arrays["items"])
    num_items = int(arrays["num_items"])
    config = genrec_params.load(Path(params_file))
    torch.manual_seed(0)
    if model_name == "gpt2":
        from genrec import model as module
        model = module.build(num_items, model_variant(genrec_params.section(config, "model", module.ModelParams),
                                                      variant))
        params = with_variant(genrec_params.section(config, "train", training.TrainParams), variant)
        matrix = module.training_matrix(sequences, model.config.n_positions)
        static = training.graphs_step(params, device)
        if fast_masks(params, device):  # as genrec.model.fit
            use_fast_dropout(model)
        objective = module.StaticNextItemLoss(model) if static else gpt2_objective(model, variant)
        train_epoch = module.static_train_epoch if static else module.train_epoch
    else:
        module = importlib.import_module(f"genrec.baselines.{model_name}")
        params = with_variant(genrec_params.section(config, model_name, module.Params), variant)
        static, fast = training.graphs_step(params, device), fast_masks(params, device)
        if model_name == "sasrec":
            model = module.SASRec(num_items, params, fast)
            objective = (module.StaticNextItemLoss if static else module.NextItemLoss)(model)
        else:
            model = module.build(num_items, params, fast)
            objective = (module.StaticMaskedItemLoss if static else module.MaskedItemLoss)(model)
        if variant == "compiled":
            objective = torch.compile(objective, dynamic=True)
        matrix = training_matrix(sequences, module.training_width(params))
        train_epoch = module.static_train_epoch if static else module.train_epoch
    model.to(device)
    warm_batches = 3  # compiling, recording a CUDA graph, first-touch costs: out of the timing
    rows = torch.randperm(len(matrix), generator=torch.Generator().manual_seed(0))
    part = matrix[rows[:(warm_batches + batches) * params.batch_size]]
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    train_epoch(objective, part[:warm_batches * params.batch_size], params, optimizer,
                torch.Generator().manual_seed(0), device)
    timed = part[warm_batches * params.batch_size:]
    synchronize(device)
    start = time.perf_counter()
    train_epoch(objective, timed, params, optimizer, torch.Generator().manual_seed(1), device)
    synchronize(device)
    seconds = time.perf_counter() - start
    validation = math.nan
    if val_users:
        users = np.arange(min(val_users, sequences.num_users))
        data = training.Data(sequences, num_items, users, np.ones(len(users), dtype=np.int64))
        score = module.scorer(model, data, device)
        training.recommend(score, sequences, users[:training.BATCH_USERS], training.VALIDATION_K)  # warm
        synchronize(device)
        start = time.perf_counter()
        training.recommend(score, sequences, users, training.VALIDATION_K)
        synchronize(device)
        validation = time.perf_counter() - start
    rate = len(timed) / seconds
    return {"items": num_items, "rows": len(matrix), "rate": rate, "epoch_estimate": len(matrix) / rate,
            "validation": validation, "peak_gb": peak_rss_gb(), "peak_gpu_gb": peak_gpu_gb(device)}


def child(task: dict) -> dict:
    if task["variant"] == "one-thread":
        torch.set_num_threads(1)
    if task["variant"] != "default-malloc":  # as the stages do
        from genrec.device import keep_freed_memory
        keep_freed_memory()
    if task["kind"] == "large":
        return large(task["model"], task["variant"], task["data"], task["batches"], task["val_users"],
                     task["params"], task["device"])
    if task["variant"] == "naive":
        return naive_small(task["split"], task["params"], task["device"])
    return small(task["model"], task["variant"], task["split"], task["params"], task["device"])


def fresh(task: dict) -> dict | None:
    """The row from a fresh process; None, with the error's last lines printed, when it failed
    (one failed variant leaves the others their rows)."""
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(task)], capture_output=True, text=True)
    if out.returncode != 0:
        tail = "\n    ".join(out.stderr.strip().splitlines()[-6:])
        print(f"  {task['model']} {task['variant']}: failed (exit {out.returncode}):\n    {tail}", flush=True)
        return None
    # What torch.compile says about a step it could not capture whole is part of the result.
    notes = [line for line in out.stderr.splitlines() if re.search(r"cudagraph|graph break|recompil", line, re.I)]
    for line in notes[:3]:
        print(f"  {task['model']} {task['variant']}: {line.strip()[:200]}", flush=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def applies(model: str, variant: str, device: torch.device) -> bool:
    if model not in ONLY.get(variant, {model}) or (variant in CUDA_ONLY and device.type != "cuda"):
        return False
    if variant in ("one-thread", "default-malloc") and device.type == "cuda":  # the CPU's: nothing to measure here
        return False
    if variant == "liger":
        import importlib.util
        if importlib.util.find_spec("liger_kernel") is None:
            print("  liger: liger_kernel is not installed, skipped", flush=True)
            return False
    return True


def figure(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--split", default="data/split")
    parser.add_argument("--small", action=argparse.BooleanOptionalAction, default=True,
                        help="train on --split with early stopping (default); --no-small: the large rows only")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--json", help="also write every row here")
    parser.add_argument("--large-scale", type=float, help="also a synthetic ML-20M-shaped set at this scale")
    parser.add_argument("--large-batches", type=int, default=60)
    parser.add_argument("--large-val-users", type=int, default=0, help="also time one validation of this many users")
    parser.add_argument("--large-cache", help="keep the synthetic set in this .npz file (built when missing)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    import platform
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}")
    rows = []
    if args.small:
        print(f"\nEarly stopping on {args.split}")
        print(f"{'model':<9}{'variant':<15}{'epochs':>7}{'best':>6}{'val NDCG@10':>13}{'1st epoch s':>12}"
              f"{'epoch s':>9}{'seq/s':>8}{'speed-up':>9}{'peak GB':>9}{'GPU GB':>8}")
        for model in args.models:
            base = None
            for variant in args.variants:
                if not applies(model, variant, device):
                    continue
                r = fresh({"kind": "small", "model": model, "variant": variant, "split": args.split,
                           "params": args.params, "device": device.type})
                if r is None:
                    continue
                rows.append({"model": model, "variant": variant, "device": device.type, **r})
                base = base or r["epoch"]
                best = "—" if r["best_epoch"] is None else str(r["best_epoch"])
                ndcg = "—" if math.isnan(r["ndcg"]) else f"{r['ndcg']:.4f}"
                print(f"{model:<9}{variant:<15}{r['epochs']:>7}{best:>6}{ndcg:>13}{r['first']:>12.2f}"
                      f"{r['epoch']:>9.2f}{r['rate']:>8.0f}{base / r['epoch']:>8.2f}x{r['peak_gb']:>9.2f}"
                      f"{figure(r['peak_gpu_gb']):>8}", flush=True)
    if args.large_scale:
        with tempfile.TemporaryDirectory() as folder:
            data_file = args.large_cache or str(Path(folder) / "large.npz")
            start = time.perf_counter()
            if not Path(data_file).exists():
                build_large(args.large_scale, Path(data_file))
            print(f"\nThe ML-20M-shaped set at scale {args.large_scale:g} (ready in {time.perf_counter() - start:.0f} s), "
                  f"{args.large_batches} batches after 3 warm-up ones"
                  + (f"; validation of {args.large_val_users:,} users" if args.large_val_users else ""))
            print(f"{'model':<9}{'variant':<15}{'items':>7}{'seq/s':>9}{'speed-up':>9}{'epoch s':>9}"
                  f"{'valid. s':>9}{'peak GB':>9}{'GPU GB':>8}")
            for model in args.models:
                base = None
                for variant in args.variants:
                    if variant == "naive" or not applies(model, variant, device):
                        continue
                    r = fresh({"kind": "large", "model": model, "variant": variant, "data": data_file,
                               "batches": args.large_batches, "val_users": args.large_val_users,
                               "params": args.params, "device": device.type})
                    if r is None:
                        continue
                    rows.append({"model": model, "variant": variant, "device": device.type,
                                 "scale": args.large_scale, **r})
                    base = base or r["rate"]
                    print(f"{model:<9}{variant:<15}{r['items']:>7}{r['rate']:>9.0f}{r['rate'] / base:>8.2f}x"
                          f"{r['epoch_estimate']:>9.1f}{figure(r['validation']):>9}{r['peak_gb']:>9.2f}"
                          f"{figure(r['peak_gpu_gb']):>8}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
