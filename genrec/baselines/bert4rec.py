"""``bert4rec``: BERT4Rec (Sun et al. 2019) with Hugging Face BERT.

Masked-item training: each real item of a user's last ``max_len`` items is replaced, with
probability ``mask_prob``, by the mask token (id num_items + 1) and predicted with
cross-entropy over every item. Top-K prediction appends the mask token to the user's last
``max_len - 1`` items and ranks the items at that position.

The network is ``BertForMaskedLM``: a ``BertModel`` plus BERT's masked-LM head (dense, GELU,
LayerNorm, then the item embeddings shared as output weights with a per-item bias), which
is BERT4Rec's output layer. Sequences are left-padded with position ids counted back from
the last column, so the latest item (or, when predicting, the mask) has the last position.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM

from genrec import training
from genrec.baselines.common import TransformerParams, fit_then_recommend, fit_transformer, trim_left
from genrec.dropout import fast_masks, use_fast_dropout
from genrec.distributed import SINGLE, Group
from genrec.params import Fraction
from genrec.ranking import PADDING
from genrec.training import Data, EpochResult, TrainResult

TRAINED = True


class Params(TransformerParams):
    SECTION = "bert4rec"
    mask_prob: Fraction  # share of items replaced by the mask token in training


def build(num_items: int, params: Params, fast_masks: bool = False) -> BertForMaskedLM:
    """A randomly initialised BERT over ids 0 (padding), 1..num_items (items), num_items + 1 (mask);
    its dropout takes the fast masks when asked (genrec/baselines/common.py)."""
    config = BertConfig(
        vocab_size=num_items + 2,
        hidden_size=params.hidden,
        num_hidden_layers=params.layers,
        num_attention_heads=params.heads,
        intermediate_size=4 * params.hidden,
        hidden_act="gelu",
        hidden_dropout_prob=params.dropout,
        attention_probs_dropout_prob=params.dropout,
        max_position_embeddings=params.max_len,
        type_vocab_size=1,
        pad_token_id=PADDING,
    )
    model = BertForMaskedLM(config)
    return use_fast_dropout(model) if fast_masks else model


def hidden_states(model: BertForMaskedLM, items: torch.Tensor) -> torch.Tensor:
    """(B, L, H) of left-padded ``items`` (B, L), L <= max_len; position ids end at max_len - 1."""
    max_len, length = model.config.max_position_embeddings, items.shape[1]
    positions = torch.arange(max_len - length, max_len, device=items.device).expand(len(items), -1)
    return model.bert(input_ids=items, attention_mask=(items != PADDING).long(),
                      position_ids=positions).last_hidden_state


def mask_items(batch: torch.Tensor, mask_prob: float, mask_token: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each real item by ``mask_token`` with probability ``mask_prob``; return the
    inputs and the (B, L) bool mask of the replaced positions (the ones with a label)."""
    draws = torch.rand(batch.shape, generator=generator)
    masked = (draws < mask_prob) & (batch != PADDING)
    return batch.masked_fill(masked, mask_token), masked


class MaskedItemLoss(torch.nn.Module):
    """BERT4Rec's training objective as a module, so that DistributedDataParallel can wrap it:
    the cross-entropy over every item at the masked positions, summed."""

    def __init__(self, model: BertForMaskedLM):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        num_items = self.model.config.vocab_size - 2
        hidden = hidden_states(self.model, inputs)[masked]  # (tokens, H): the head only where there is a label
        # Only items 1..num_items compete: padding and the mask token are never a label.
        logits = self.model.cls(hidden)[:, 1:num_items + 1]
        return F.cross_entropy(logits, labels - 1, reduction="sum")


def train_epoch(objective: torch.nn.Module, data: torch.Tensor, params: Params, optimizer: torch.optim.Optimizer,
                generator: torch.Generator, device: torch.device, group: Group = SINGLE) -> dict[str, float]:
    """One pass over this process's share of ``data`` ((users, max_len) left-padded last items)
    in shuffled batches; ``objective`` is a ``MaskedItemLoss`` (or its DDP wrapper)."""
    objective.train()
    mask_token = config_of(objective).vocab_size - 1
    # One process masks with the shuffling generator, as it always has. Several must keep that
    # generator in step (it orders every rank's epoch), so each masks from its own stream,
    # seeded from one shared draw.
    masker = generator if group.world == 1 else torch.Generator().manual_seed(
        int(torch.randint(2**62, (1,), generator=generator)) + group.rank)
    total_loss, total_tokens = 0.0, 0
    for batch in training.epoch_batches(data, params.batch_size, generator, group):
        batch = trim_left(batch)
        inputs, masked = mask_items(batch, params.mask_prob, mask_token, masker)
        tokens = int(masked.sum())
        if tokens == 0 and group.world == 1:  # nothing drawn to predict in this batch
            continue  # (several processes must all take every step: a rank without a label steps on 0)
        inputs, masked, labels = inputs.to(device), masked.to(device), batch[masked].to(device)
        loss = objective(inputs, masked, labels)
        training.optimizer_step(optimizer, loss, max(tokens, 1))
        total_loss += loss.detach().item()
        total_tokens += tokens
    total_loss, total_tokens = group.sum([total_loss, total_tokens])
    return {"loss": total_loss / max(total_tokens, 1)}


class StaticMaskedItemLoss(torch.nn.Module):
    """MaskedItemLoss for the graphs step (``bert4rec.step``): full-width batches of one shape,
    every position through the head, ``labels`` the item where masked and padding elsewhere
    (ignored). The same loss up to rounding."""

    def __init__(self, model: BertForMaskedLM):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        num_items = self.model.config.vocab_size - 2
        logits = self.model.cls(hidden_states(self.model, inputs))[..., 1:num_items + 1]
        return F.cross_entropy(logits.flatten(0, 1), (labels - 1).flatten(), ignore_index=PADDING - 1,
                               reduction="sum")


def static_train_epoch(objective: torch.nn.Module, data: torch.Tensor, params: Params,
                       optimizer: torch.optim.Optimizer, generator: torch.Generator, device: torch.device,
                       group: Group = SINGLE) -> dict[str, float]:
    """``train_epoch`` for the graphs step: every batch (batch_size, max_len), none trimmed,
    masked as ``train_epoch`` masks, through the compiled ``objective`` (a ``StaticMaskedItemLoss``)."""
    step = training.compiled(objective, device)
    objective.train()
    mask_token = config_of(objective).vocab_size - 1
    total_loss, total_tokens = torch.zeros((), device=device), 0
    for batch in training.static_batches(data, params.batch_size, generator):
        inputs, masked = mask_items(batch, params.mask_prob, mask_token, generator)
        tokens = int(masked.sum())
        if tokens == 0:  # nothing drawn to predict in this batch
            continue
        labels = batch.masked_fill(~masked, PADDING)
        loss = step(inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True))
        training.optimizer_step(optimizer, loss, tokens)
        total_loss += loss.detach()  # before the next replay writes over the graph's output
        total_tokens += tokens
    return {"loss": float(total_loss) / max(total_tokens, 1)}


def config_of(objective: torch.nn.Module):
    """The BERT config behind a ``MaskedItemLoss``, wrapped in DistributedDataParallel or not."""
    return getattr(objective, "module", objective).model.config


def scorer(model: BertForMaskedLM, data: Data, device: torch.device) -> Callable[[np.ndarray], torch.Tensor]:
    """Users -> scores (B, num_items + 1) at a mask token appended to their last max_len - 1 items."""
    max_len, mask_token = model.config.max_position_embeddings, model.config.vocab_size - 1

    def score(users: np.ndarray) -> torch.Tensor:
        model.eval()
        history = torch.from_numpy(data.sequences.last_items(users, max_len - 1, side="left"))
        items = trim_left(torch.cat([history, torch.full((len(users), 1), mask_token)], dim=1))
        return model.cls(hidden_states(model, items.to(device))[:, -1])[:, :mask_token]  # drop the mask token

    return score


def training_width(params: Params) -> int:
    """Items per training row: the last max_len, some of them masked."""
    return params.max_len


def fit(data: Data, params: Params, device: torch.device,
        on_epoch: Callable[[EpochResult], None] = lambda result: None,
        group: Group = SINGLE) -> tuple[BertForMaskedLM, TrainResult]:
    """Train with early stopping; return the model with the best epoch's weights, and the history."""
    static = training.graphs_step(params, device)
    return fit_transformer(lambda: build(data.num_items, params, fast_masks(params, device)),
                           StaticMaskedItemLoss if static else MaskedItemLoss,
                           static_train_epoch if static else train_epoch, scorer, data, params, device, on_epoch,
                           group, width=training_width(params))


fit_recommend = fit_then_recommend(fit, scorer)
