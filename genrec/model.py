"""The GPT-2 next-item model (docs/method.md §4): construction, training epoch, scoring, saving and loading."""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from pydantic import Field, model_validator
from transformers import GPT2Config, GPT2LMHeadModel

from genrec import training
from genrec.distributed import SINGLE, Group
from genrec.dropout import fast_masks, use_fast_dropout
from genrec.errors import UserError
from genrec.params import AtLeast1, Dropout, Section, require_multiple
from genrec.ranking import PADDING, mask_seen, top_k_stable
from genrec.sequences import UserSequences
from genrec.training import Data, EpochResult, TrainParams, TrainResult


MODEL = ("config.json", "generation_config.json", "model.safetensors")  # what save_pretrained writes


class ModelParams(Section):
    n_positions: Annotated[int, Field(ge=2)]
    n_embd: AtLeast1
    n_layer: AtLeast1
    n_head: AtLeast1
    # GPT-2's tanh approximation of GELU, either way: gelu_new is Hugging Face's formula for it
    # (six elementwise passes; every run before December 2026), gelu_pytorch_tanh torch's fused
    # kernel, 1.06-1.11x a training epoch on a 2-core CPU. Other rounding, so other models.
    activation_function: Literal["gelu_new", "gelu_pytorch_tanh"]
    dropout: Dropout

    @model_validator(mode="after")
    def _heads_divide_the_embedding(self) -> ModelParams:
        require_multiple("model", self, "n_embd", of="n_head")
        return self


def build(num_items: int, params: ModelParams) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 whose vocabulary is the item ids 0..num_items. The ``model``
    keys other than ``dropout`` are GPT2Config's own; ``dropout`` is all three of its dropouts."""
    dropout = params.dropout
    config = GPT2Config(vocab_size=num_items + 1, **params.model_dump(exclude={"dropout"}),
                        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                        # No special tokens: every id is an item and generation never stops early.
                        bos_token_id=None, eos_token_id=None, pad_token_id=PADDING)
    return GPT2LMHeadModel(config)



def training_matrix(sequences: UserSequences, n_positions: int) -> torch.Tensor:
    """(users with >= 2 items, n_positions + 1) right-padded last items: inputs are [:, :-1],
    labels [:, 1:]. Built once; epochs only permute rows."""
    users = training.training_users(sequences)
    return torch.from_numpy(sequences.last_items(users, n_positions + 1, side="right"))


class NextItemLoss(torch.nn.Module):
    """GPT-2's training objective as a module, so that DistributedDataParallel can wrap it: the
    next-item cross-entropy summed over the real (non-padding) labels of a batch."""

    def __init__(self, model: GPT2LMHeadModel):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self.model.transformer(input_ids=inputs, attention_mask=(inputs != PADDING).long()).last_hidden_state
        # Project only real positions onto the catalogue: the (tokens, V) logits dominate the cost.
        real = labels != PADDING
        logits = self.model.lm_head(hidden[real])  # (tokens, V)
        return F.cross_entropy(logits, labels[real], reduction="sum")


class StaticNextItemLoss(torch.nn.Module):
    """NextItemLoss for the graphs step (``train.step``), on full-window batches of one shape:
    every position projected and the padding labels ignored, and no attention mask, which a
    right-padded row does not need (its padding comes after its items, and causal attention
    never lets an item see what follows). The same loss up to rounding."""

    def __init__(self, model: GPT2LMHeadModel):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=inputs).logits
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=PADDING, reduction="sum")


def static_train_epoch(objective: torch.nn.Module, data: torch.Tensor, params: TrainParams,
                       optimizer: torch.optim.Optimizer, generator: torch.Generator, device: torch.device,
                       group: Group = SINGLE) -> dict[str, float]:
    """``train_epoch`` for the graphs step: every batch (batch_size, window), none trimmed, through
    the compiled ``objective`` (a ``StaticNextItemLoss``); one process."""
    step = training.compiled(objective, device)
    objective.train()
    precision = torch.autocast(device.type, dtype=torch.bfloat16) if params.precision == "bf16" else nullcontext()
    total_loss, total_tokens = torch.zeros((), device=device), 0
    for batch in training.static_batches(data, params.batch_size, generator):
        tokens = int((batch[:, 1:] != PADDING).sum())
        batch = batch.to(device, non_blocking=True)
        with precision:
            loss = step(batch[:, :-1], batch[:, 1:])
        training.optimizer_step(optimizer, loss, tokens)
        total_loss += loss.detach()  # before the next replay writes over the graph's output
        total_tokens += tokens
    return {"loss": float(total_loss) / total_tokens}


def train_epoch(objective: torch.nn.Module, data: torch.Tensor, params: TrainParams,
                optimizer: torch.optim.Optimizer, generator: torch.Generator, device: torch.device,
                group: Group = SINGLE) -> dict[str, float]:
    """One pass over this process's share of the ``training_matrix`` rows in shuffled batches;
    ``objective`` is a ``NextItemLoss`` (or its DistributedDataParallel wrapper)."""
    objective.train()
    precision = torch.autocast(device.type, dtype=torch.bfloat16) if params.precision == "bf16" else nullcontext()
    total_loss, total_tokens = torch.zeros((), device=device), 0
    for batch in training.epoch_batches(data, params.batch_size, generator, group):
        # Drop columns that are padding in every row: most users are shorter than the window.
        width = int((batch != PADDING).sum(dim=1).max())
        tokens = int((batch[:, 1:width] != PADDING).sum())  # counted on the CPU: no device sync
        batch = batch[:, :width].to(device, non_blocking=True)
        with precision:
            loss = objective(batch[:, :-1], batch[:, 1:])
        training.optimizer_step(optimizer, loss, tokens)
        total_loss += loss.detach()  # summed on the device: one sync per epoch
        total_tokens += tokens
    loss_sum, tokens = group.sum([float(total_loss), total_tokens])
    return {"loss": loss_sum / tokens}


def scorer(model: GPT2LMHeadModel, data: Data, device: torch.device) -> Callable[[np.ndarray], torch.Tensor]:
    """Users -> next-item logits (B, V) after their last ``n_positions`` items (validation)."""
    def score(users: np.ndarray) -> torch.Tensor:
        model.eval()
        return next_item_logits(model, data.sequences, users, model.config.n_positions)
    return score


def fit(data: Data, model_params: ModelParams, params: TrainParams, device: torch.device,
        on_epoch: Callable[[EpochResult], None] = lambda result: None,
        group: Group = SINGLE) -> tuple[GPT2LMHeadModel, TrainResult]:
    """A GPT-2 trained with early stopping: the best epoch's weights, and the history. In a
    ``group`` of processes every rank trains on its share of each epoch (data parallel)."""
    torch.manual_seed(params.seed)  # the initial weights, the same on every rank
    model = build(data.num_items, model_params)
    if fast_masks(params, device):
        use_fast_dropout(model)
    # Dropout draws from train.seed too, restarted after the initialisation (as every committed
    # run did); each rank has its own stream, or all would drop the same units.
    torch.manual_seed(params.seed + group.rank)
    matrix = training_matrix(data.sequences, model.config.n_positions)
    static = training.graphs_step(params, device)
    return model, training.fit(model, matrix, static_train_epoch if static else train_epoch, scorer, data, params,
                               device, on_epoch, "train.lr",
                               objective=(StaticNextItemLoss if static else NextItemLoss)(model), group=group)


def save(model: GPT2LMHeadModel, path: str | Path) -> None:
    """Write ``model`` as ``load`` reads it: safetensors weights and config.json (``MODEL``)."""
    transformers.utils.logging.disable_progress_bar()  # a bar for writing one shard is noise
    model.save_pretrained(path)


def load(path: str | Path, device: torch.device, stage: str = "train") -> GPT2LMHeadModel:
    """The GPT-2 that ``stage`` saved in ``path``; a missing or damaged one is one line."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise UserError(f"no trained model in {path}: run `dvc repro {stage}` first")
    transformers.utils.logging.disable_progress_bar()  # a per-weight bar for a 28-tensor model is noise
    try:
        with warnings.catch_warnings():  # a damaged file is our error below, not a library warning
            warnings.simplefilter("ignore")
            model = GPT2LMHeadModel.from_pretrained(path)
    except Exception as error:  # safetensors, json and transformers each raise their own kinds
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise UserError(f"{path} holds a damaged model ({reason}): run `dvc repro -f {stage}` to write it again") \
            from None
    return model.to(device).eval()


def last_logits(model: GPT2LMHeadModel, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Next-item logits after each right-padded sequence: (B, V) from items (B, L)."""
    hidden = model.transformer(input_ids=items, attention_mask=(items != PADDING).long()).last_hidden_state
    last = hidden[torch.arange(len(items), device=items.device), lengths - 1]  # (B, E)
    return model.lm_head(last)


def next_item_logits(model: GPT2LMHeadModel, sequences: UserSequences, users: np.ndarray, window: int) -> torch.Tensor:
    """Next-item logits (B, V) of ``users`` after their last ``window`` items, on the model's device."""
    device = next(model.parameters()).device
    items = torch.from_numpy(sequences.last_items(users, window, side="right")).to(device)
    lengths = torch.from_numpy(np.minimum(sequences.lengths(users), window)).to(device)
    return last_logits(model, items, lengths)


@torch.no_grad()
def top_next_items(model: GPT2LMHeadModel, sequences: UserSequences, users: np.ndarray, window: int, k: int,
                   batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k next items of each user from the last ``window`` items, seen items removed, ties to
    the lower id; and the items' next-item probabilities (softmax over the unseen items).
    Both (len(users), k) on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    num_items = model.config.vocab_size - 1
    # Filled in place, not gathered from per-batch pieces: see training.recommend.
    out = torch.zeros(len(users), min(k, num_items + 1), dtype=torch.long)
    scores = torch.zeros(out.shape)
    for start in range(0, len(users), batch_size):
        batch = np.asarray(users[start:start + batch_size])
        logits = mask_seen(next_item_logits(model, sequences, batch, window).float(),
                           sequences.seen_mask(batch, num_items, device))
        ranked = top_k_stable(logits, k)
        out[start:start + len(batch)] = ranked.cpu()
        scores[start:start + len(batch)] = logits.softmax(dim=-1).gather(1, ranked).cpu()
    return out, scores
