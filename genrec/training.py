"""docs/method.md §4: the one training loop of every trained model (GPT-2, SASRec, BERT4Rec, BPR).

A model brings its ``train_epoch`` (one pass over its training data) and a scorer (users ->
next-item scores over the catalogue); this module validates after each epoch on the
validation users' first held-out item, keeps the best epoch's weights and stops ``patience``
epochs after it.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import torch
from pydantic import model_validator
from torch.nn.parallel import DistributedDataParallel

from genrec import estimate, metrics
from genrec.distributed import SINGLE, Group
from genrec.dropout import DropoutMasks
from genrec.errors import UserError
from genrec.params import AtLeast1, PositiveFloat, Section
from genrec.ranking import PADDING, rank_unseen
from genrec.sequences import Split, UserSequences

VALIDATION_K = 10  # validation NDCG@10 / HR@10, whatever a model's list length
BATCH_USERS = 256  # users scored at once when ranking
# Training is timed before it starts when rows x epochs x items reaches this (ML-20M on GPT-2:
# 2.5e11; ML-1M: 2e9, minutes on a CPU), on this many batches.
ESTIMATE_ABOVE = 1e10
ESTIMATE_BATCHES = 8


class LoopParams(Section):
    """The keys of the training loop, in ``train`` and in each trained baseline's section."""

    lr: PositiveFloat
    batch_size: AtLeast1  # rows per optimizer step, split over the processes
    max_epochs: AtLeast1
    patience: AtLeast1  # stop after this many epochs without a better validation NDCG@10
    seed: int
    device: str  # auto (CUDA when present), cpu or cuda
    # exact: batches trimmed to their longest row, losses on the labelled positions only (every
    # committed CPU run); graphs: every batch one shape, compiled, replayed as a CUDA graph on
    # CUDA (3.2x a GPT-2 epoch on an H200; slower on a CPU); auto: graphs on CUDA with one
    # process, else exact. Other arithmetic, so other models (docs/performance.md, "Training").
    step: Literal["auto", "exact", "graphs"]

    @model_validator(mode="after")
    def _graphs_in_one_process(self) -> LoopParams:
        processes = getattr(self, "processes", 1)
        if self.step == "graphs" and processes > 1:
            section = getattr(self, "SECTION", "train")
            raise ValueError(f"{section}.step graphs runs in one process, but {section}.processes is {processes}: "
                             f"set {section}.step to auto or exact, or {section}.processes to 1")
        return self


def graphs_step(params: LoopParams, device: torch.device) -> bool:
    """Whether training takes the static-shape compiled step (``step: graphs``, or ``auto`` on
    CUDA in one process)."""
    processes = getattr(params, "processes", 1)
    return params.step == "graphs" or (params.step == "auto" and device.type == "cuda" and processes == 1)


def compiled(objective: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``objective`` compiled for the graphs step, once (kept on the module itself, so that a
    copy, such as the one the estimate trains, compiles its own): a CUDA graph replayed every
    batch on CUDA (``reduce-overhead``), plain compiled code on a CPU."""
    found = objective.__dict__.get("_genrec_compiled")
    if found is None:
        found = torch.compile(objective, mode="reduce-overhead" if device.type == "cuda" else None, dynamic=False)
        objective.__dict__["_genrec_compiled"] = found  # not a submodule: state_dict stays the model's
    return found


def static_batches(matrix: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One process's epoch for the graphs step: the rows of ``matrix`` shuffled by ``generator``
    (as ``epoch_batches``), in batches of exactly ``batch_size`` rows, the last one filled up
    with rows of padding (they hold no label)."""
    batches = epoch_batches(matrix, batch_size, generator)
    if batches and len(batches[-1]) < batch_size:
        last = batches[-1]
        batches[-1] = torch.cat([last, last.new_full((batch_size - len(last), last.shape[1]), PADDING)])
    return batches


class TrainParams(LoopParams):
    """The ``train`` section (GPT-2)."""

    processes: AtLeast1  # data-parallel processes (torch.distributed); 1: this process alone
    precision: Literal["fp32", "bf16"]  # the training forward pass; validation and generation stay fp32
    dropout_masks: DropoutMasks  # auto: fast on a CPU, torch's own on CUDA (genrec/dropout.py)


@dataclass(frozen=True)
class Data:
    """What training reads: every user's training sequence and the validation users' first held-out item."""

    sequences: UserSequences
    num_items: int  # item ids are 1..num_items; 0 is padding
    val_users: np.ndarray
    val_targets: np.ndarray

    @classmethod
    def from_split(cls, split: Split) -> "Data":
        return cls(split.sequences, split.num_items, *split.first_held_out())


@dataclass
class EpochResult:
    epoch: int  # 1-based: epochs trained so far
    train: dict[str, float]  # the epoch's training statistics ({"loss": ...}), logged as train/<key>
    ndcg: float  # validation NDCG@10 on the first held-out item
    hit_rate: float
    seconds: float  # training since the previous validation, and this validation


@dataclass
class TrainResult:
    best: EpochResult
    history: list[EpochResult] = field(default_factory=list)
    best_state: Any = None  # whatever ``snapshot`` returned at the best epoch


Scorer = Callable[[np.ndarray], torch.Tensor]  # users (B,) -> scores (B, num_items + 1)


def training_users(sequences: UserSequences) -> np.ndarray:
    """Users with at least two training items: a single item has no next item to learn."""
    return np.flatnonzero(sequences.lengths(np.arange(sequences.num_users)) >= 2)


@torch.no_grad()
def recommend(score: Scorer, sequences: UserSequences, users: np.ndarray, k: int) -> np.ndarray:
    """(len(users), k) unseen items of the best scores, ties to the lower id, ``BATCH_USERS`` at a time."""
    users = np.asarray(users)
    # Filled in place: a small result kept from every batch, among the freed (batch, catalogue)
    # temporaries, fragments the heap and the process grows by a batch of scores per batch
    # (9.7 GB for popularity at ML-20M's size; benchmarks/bench_pipeline.py).
    out = np.zeros((len(users), k), dtype=np.int64)
    for start in range(0, len(users), BATCH_USERS):
        batch = users[start:start + BATCH_USERS]
        scores = score(batch).float()
        ranked = rank_unseen(scores, sequences.seen_mask(batch, scores.shape[1] - 1, scores.device), k)
        out[start:start + len(batch)] = ranked.cpu().numpy()
    return out


def validate(score: Scorer, data: Data) -> tuple[float, float]:
    """Validation NDCG@10 and HR@10 against each validation user's first held-out item."""
    try:
        recs = recommend(score, data.sequences, data.val_users, VALIDATION_K)
    except FloatingPointError:  # overflowed weights: early_stopping stops the training
        return math.nan, math.nan
    per_user = metrics.per_user(recs, np.asarray(data.val_targets)[:, None])
    return float(per_user["ndcg"].mean()), float(per_user["hit_rate"].mean())


def early_stopping(train_epoch: Callable[[], dict[str, float]], score: Scorer, snapshot: Callable[[], Any],
                   data: Data, max_epochs: int, patience: int,
                   on_epoch: Callable[[EpochResult], None] = lambda result: None, step: int = 1,
                   lr_label: str = "the learning rate", group: Group = SINGLE) -> TrainResult:
    """Train epoch by epoch, validating after each; stop ``patience`` epochs after the best one.

    ``snapshot`` copies the model's state; the best epoch's copy is returned, never the last.
    A tie is no improvement: the earlier epoch stays the best. With ``step`` > 1 each call of
    ``train_epoch`` trains ``step`` epochs and validation follows every ``step``-th epoch.
    A NaN or infinite training statistic or validation stops with a ``UserError`` naming ``lr_label``.
    In a ``group`` of processes rank 0 validates and every rank takes its result, so all stop together.
    """
    result: TrainResult | None = None
    for epoch in range(step, max_epochs + 1, step):
        start = time.perf_counter()
        stats = train_epoch()
        ndcg, hit_rate = group.broadcast(list(validate(score, data)) if group.main else [0.0, 0.0])
        current = EpochResult(epoch, stats, ndcg, hit_rate, time.perf_counter() - start)
        stop_if_diverged(epoch, {**{f"training {k}": v for k, v in stats.items()}, "validation NDCG@10": ndcg},
                         lr_label)
        if result is None or current.ndcg > result.best.ndcg:
            result = TrainResult(best=current, history=result.history if result else [], best_state=snapshot())
        result.history.append(current)
        on_epoch(current)
        if current.epoch - result.best.epoch >= patience:
            break
    return result


def fit(model: torch.nn.Module, matrix: torch.Tensor, train_epoch: Callable, scorer: Callable, data: Data,
        params: Any, device: torch.device, on_epoch: Callable[[EpochResult], None] = lambda result: None,
        lr_label: str = "the learning rate", objective: torch.nn.Module | None = None,
        group: Group = SINGLE) -> TrainResult:
    """Adam on shuffled rows of ``matrix`` (seeded by ``params.seed``) with early stopping on
    validation NDCG@10; loads the best epoch's weights into ``model``. Serves GPT-2, SASRec
    and BERT4Rec, whose ``train_epoch(module, matrix, params, optimizer, generator, device, group)``
    and ``scorer(model, data, device)`` differ. ``train_epoch`` gets ``objective`` (a module
    around ``model`` whose forward is the training loss; ``model`` itself by default), wrapped in
    ``DistributedDataParallel`` when ``group`` has several processes."""
    model.to(device)
    module = model if objective is None else objective
    score = scorer(model, data, device)
    seconds = estimated_seconds(module, matrix, train_epoch, score, data, params, device, group.world) \
        if group.main else None
    seconds = group.broadcast([-1.0 if seconds is None else seconds])[0]  # rank 0's: every rank stops, or none
    if seconds >= 0:
        section = lr_label.split(".")[0] if "." in lr_label else "training"
        estimate.check(f"{section}: up to {params.max_epochs} epochs", seconds,
                       f"{ESTIMATE_BATCHES} batches and {min(BATCH_USERS, len(data.val_users))} validation users "
                       f"timed on {device.type}",
                       [*([f"train on a GPU ({section}.device: cuda)"] if device.type == "cpu" else []),
                        f"lower {section}.max_epochs (early stopping often ends sooner)"], show=group.main)
    if group.world > 1:
        module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    generator = torch.Generator().manual_seed(params.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    result = early_stopping(lambda: train_epoch(module, matrix, params, optimizer, generator, device, group),
                            score, lambda: state_copy(model), data,
                            params.max_epochs, params.patience, on_epoch, lr_label=lr_label, group=group)
    model.load_state_dict(result.best_state)
    return result


def estimated_seconds(module: torch.nn.Module, matrix: torch.Tensor, train_epoch: Callable, score: Scorer,
                      data: Data, params: Any, device: torch.device, world: int = 1) -> float | None:
    """Seconds for ``params.max_epochs`` epochs of training and validation, from a few batches
    trained on a copy of ``module`` (the random streams restored after, so the run is the same
    as without) and one batch of validation users scored; None when the work is too small to
    be worth timing."""
    if len(matrix) * params.max_epochs * data.num_items < ESTIMATE_ABOVE:
        return None
    rows = matrix[:(1 + ESTIMATE_BATCHES) * params.batch_size]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        copied = copy.deepcopy(module)
        optimizer = torch.optim.Adam(copied.parameters(), lr=params.lr)
        # One batch untimed first: allocations, threads and kernels start up once per process.
        train_epoch(copied, rows[:params.batch_size], params, optimizer, torch.Generator().manual_seed(0), device,
                    SINGLE)
        start = time.perf_counter()
        train_epoch(copied, rows[params.batch_size:], params, optimizer, torch.Generator().manual_seed(0), device,
                    SINGLE)
        train = (time.perf_counter() - start) / max(len(rows) - params.batch_size, 1) * len(matrix) / world
        del copied, optimizer
    users = data.val_users[:BATCH_USERS]
    start = time.perf_counter()
    recommend(score, data.sequences, users, VALIDATION_K)
    validation = (time.perf_counter() - start) / max(len(users), 1) * len(data.val_users)
    return (train + validation) * params.max_epochs


def epoch_batches(matrix: torch.Tensor, batch_size: int, generator: torch.Generator,
                  group: Group = SINGLE) -> list[torch.Tensor]:
    """This process's batches of one epoch: the rows of ``matrix`` shuffled by ``generator`` (the
    same order on every rank), then every rank takes its own rows of each ``batch_size`` block.
    With several processes the last ``len(matrix) % world`` rows of the order sit the epoch out,
    so that every rank takes the same number of steps."""
    order = torch.randperm(len(matrix), generator=generator)
    if group.world == 1:
        return list(matrix[order].split(batch_size))
    order = order[:len(order) - len(order) % group.world]
    per_rank = -(-batch_size // group.world)  # ceil: the global batch stays about batch_size
    return list(matrix[order[group.rank::group.world]].split(per_rank))


def optimizer_step(optimizer: torch.optim.Optimizer, loss_sum: torch.Tensor, tokens: int) -> None:
    """One step on the mean loss per label: ``loss_sum`` is summed over ``tokens`` labels, so that
    an epoch's loss can be reported as the mean over all its labels."""
    optimizer.zero_grad(set_to_none=True)
    (loss_sum / tokens).backward()
    optimizer.step()


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def stop_if_diverged(epoch: int, values: dict[str, float], lr_label: str) -> None:
    """Stop with the fix when an epoch's loss or validation is NaN or infinite: the weights
    have overflowed, and every later epoch and every downstream stage would use them."""
    bad = [f"{name} {value}" for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise UserError(
            f"training diverged at epoch {epoch} ({', '.join(bad)}): the weights overflowed, so nothing "
            f"was written. Lower {lr_label}"
        )
