"""``sasrec``: SASRec (Kang & McAuley 2018) trained with full cross-entropy over the catalogue
("SASRec+", Klenitskiy & Vasilev 2023), in plain torch.

Item embeddings are shared with the output layer; learned positional embeddings; pre-LN
causal self-attention blocks with dropout. Sequences are left-padded, so a user's latest
item is always in the last column and has the last position embedding, in training and
in prediction alike; Top-K prediction reads the last position.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec import training
from genrec.baselines.common import TransformerParams, fit_then_recommend, fit_transformer, trim_left
from genrec.dropout import fast_dropout, fast_masks, use_fast_dropout
from genrec.distributed import SINGLE, Group
from genrec.ranking import PADDING
from genrec.training import Data, EpochResult, TrainResult

TRAINED = True


class Params(TransformerParams):
    SECTION = "sasrec"


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float, fast_masks: bool = False):
        super().__init__()
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.heads, self.dropout, self.fast_masks = heads, dropout, fast_masks

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=2)
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, nh, L, hs)
        if self.fast_masks and self.training and self.dropout > 0:
            # Eagerly, so that the dropout on the weights takes the fast masks (SDPA draws its own).
            weights = ((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])).masked_fill(~allowed[:, None], -math.inf)
            y = fast_dropout(weights.softmax(-1), self.dropout) @ v  # the diagonal is always allowed: no NaN
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None],
                                               dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(batch, length, hidden))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, hidden: int, heads: int, dropout: float, fast_masks: bool = False):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, heads, dropout, fast_masks)
        # SASRec's point-wise feed-forward network keeps the hidden size.
        self.ffn = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), allowed))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRec(nn.Module):
    def __init__(self, num_items: int, params: Params, fast_masks: bool = False):
        super().__init__()
        self.max_len = params.max_len
        self.items = nn.Embedding(num_items + 1, params.hidden, padding_idx=PADDING)
        self.positions = nn.Embedding(params.max_len, params.hidden)
        self.drop = nn.Dropout(params.dropout)
        self.blocks = nn.ModuleList(Block(params.hidden, params.heads, params.dropout, fast_masks)
                                    for _ in range(params.layers))
        self.ln = nn.LayerNorm(params.hidden)
        for name, weight in self.named_parameters():  # GPT-2's initialisation
            if weight.dim() == 2:
                nn.init.normal_(weight, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(weight)
        with torch.no_grad():
            self.items.weight[PADDING].zero_()
        if fast_masks:
            use_fast_dropout(self)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, H) of left-padded ``items`` (B, L), L <= max_len."""
        length = items.shape[1]
        real = items != PADDING  # (B, L)
        # Positions count back from the last column, so the latest item always has the last one.
        positions = torch.arange(self.max_len - length, self.max_len, device=items.device)
        x = self.items(items) * math.sqrt(self.items.embedding_dim) + self.positions(positions)
        x = self.drop(x) * real[..., None]
        # A query attends to itself and the real items before it; the diagonal keeps a padding
        # query from having no key at all (a NaN softmax). Padding outputs are never used.
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        allowed = causal & (real[:, None, :] | torch.eye(length, dtype=torch.bool, device=items.device))  # (B, L, L)
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln(x)

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., num_items + 1) scores of every item id, padding included, from the shared embeddings."""
        return hidden @ self.items.weight.T


class NextItemLoss(nn.Module):
    """SASRec's training objective as a module, so that DistributedDataParallel can wrap it: the
    cross-entropy over every item, summed over the positions that have a label."""

    def __init__(self, model: SASRec):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        real = (inputs != PADDING) & (labels != PADDING)
        hidden = self.model(inputs)[real]  # (tokens, H): the catalogue projection only where there is a label
        # Column 0 (padding) is left out of the softmax: labels are items 1..num_items.
        logits = self.model.item_logits(hidden)[:, 1:]
        return F.cross_entropy(logits, labels[real] - 1, reduction="sum")


class StaticNextItemLoss(nn.Module):
    """NextItemLoss for the graphs step (``sasrec.step``): full-width batches of one shape,
    every position projected, the positions without a label ignored. The same loss up to rounding."""

    def __init__(self, model: SASRec):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        real = (inputs != PADDING) & (labels != PADDING)
        logits = self.model.item_logits(self.model(inputs))[..., 1:]  # (B, L, num_items): labels are items 1..
        targets = torch.where(real, labels - 1, -1)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1, reduction="sum")


def static_train_epoch(objective: nn.Module, data: torch.Tensor, params: Params, optimizer: torch.optim.Optimizer,
                       generator: torch.Generator, device: torch.device, group: Group = SINGLE) -> dict[str, float]:
    """``train_epoch`` for the graphs step: every batch (batch_size, max_len + 1), none trimmed,
    through the compiled ``objective`` (a ``StaticNextItemLoss``); one process."""
    step = training.compiled(objective, device)
    objective.train()
    total_loss, total_tokens = torch.zeros((), device=device), 0
    for batch in training.static_batches(data, params.batch_size, generator):
        tokens = int(((batch[:, :-1] != PADDING) & (batch[:, 1:] != PADDING)).sum())  # on the CPU: no sync
        batch = batch.to(device, non_blocking=True)
        loss = step(batch[:, :-1], batch[:, 1:])
        training.optimizer_step(optimizer, loss, max(tokens, 1))
        total_loss += loss.detach()  # before the next replay writes over the graph's output
        total_tokens += tokens
    return {"loss": float(total_loss) / max(total_tokens, 1)}


def train_epoch(objective: nn.Module, data: torch.Tensor, params: Params, optimizer: torch.optim.Optimizer,
                generator: torch.Generator, device: torch.device, group: Group = SINGLE) -> dict[str, float]:
    """One pass over this process's share of ``data`` ((users, max_len + 1) left-padded last
    items) in shuffled batches; ``objective`` is a ``NextItemLoss`` (or its DDP wrapper).

    Each position predicts the next item with cross-entropy over every item (not sampled negatives).
    """
    objective.train()
    total_loss, total_tokens = 0.0, 0
    for batch in training.epoch_batches(data, params.batch_size, generator, group):
        batch = trim_left(batch).to(device)
        inputs, labels = batch[:, :-1], batch[:, 1:]
        loss = objective(inputs, labels)
        tokens = int(((inputs != PADDING) & (labels != PADDING)).sum())
        training.optimizer_step(optimizer, loss, tokens)
        total_loss += loss.detach().item()
        total_tokens += tokens
    total_loss, total_tokens = group.sum([total_loss, total_tokens])
    return {"loss": total_loss / max(total_tokens, 1)}


def scorer(model: SASRec, data: Data, device: torch.device) -> Callable[[np.ndarray], torch.Tensor]:
    """Users -> next-item scores (B, num_items + 1) from the last position of their last max_len items."""

    def score(users: np.ndarray) -> torch.Tensor:
        model.eval()
        items = trim_left(torch.from_numpy(data.sequences.last_items(users, model.max_len, side="left")))
        return model.item_logits(model(items.to(device))[:, -1])

    return score


def training_width(params: Params) -> int:
    """Items per training row: max_len inputs and, shifted by one, their labels."""
    return params.max_len + 1


def fit(data: Data, params: Params, device: torch.device,
        on_epoch: Callable[[EpochResult], None] = lambda result: None,
        group: Group = SINGLE) -> tuple[SASRec, TrainResult]:
    """Train with early stopping; return the model with the best epoch's weights, and the history.
    Each user's last ``training_width`` items: inputs are [:, :-1], labels [:, 1:]."""
    static = training.graphs_step(params, device)
    return fit_transformer(lambda: SASRec(data.num_items, params, fast_masks(params, device)),
                           StaticNextItemLoss if static else NextItemLoss, static_train_epoch if static else train_epoch,
                           scorer, data, params, device, on_epoch, group, width=training_width(params))


fit_recommend = fit_then_recommend(fit, scorer)
