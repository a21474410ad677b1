"""The GPT-2 next-item model (docs/method.md §4): construction, device choice, saving and loading."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import transformers
from pydantic import Field, model_validator
from transformers import GPT2Config, GPT2LMHeadModel

from genrec.errors import UserError
from genrec.params import AtLeast1, Dropout, Section
from genrec.sequences import UserSequences

PADDING = 0  # item id 0 pads sequences and is never recommended


class ModelParams(Section):
    n_positions: Annotated[int, Field(ge=2)]
    n_embd: AtLeast1
    n_layer: AtLeast1
    n_head: AtLeast1
    dropout: Dropout

    @model_validator(mode="after")
    def _heads_divide_the_embedding(self) -> ModelParams:
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")
        return self


def build(num_items: int, params: ModelParams) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 whose vocabulary is the item ids 0..num_items."""
    config = GPT2Config(
        vocab_size=num_items + 1,
        n_positions=params.n_positions,
        n_embd=params.n_embd,
        n_layer=params.n_layer,
        n_head=params.n_head,
        resid_pdrop=params.dropout,
        embd_pdrop=params.dropout,
        attn_pdrop=params.dropout,
        # No special tokens: every id is an item and generation never stops early.
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=PADDING,
    )
    return GPT2LMHeadModel(config)


def resolve_device(name: str, label: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"params.yaml: {label} must be auto, cpu or cuda, got '{name}'")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"params.yaml: {label} is '{name}' but no CUDA GPU is available; use auto or cpu")
    return torch.device(name)


def load(path: str | Path, device: torch.device) -> GPT2LMHeadModel:
    path = Path(path)
    if not (path / "config.json").exists():
        raise UserError(f"no trained model in {path}: run `dvc repro train` first")
    transformers.utils.logging.disable_progress_bar()  # a per-weight bar for a 28-tensor model is noise
    model = GPT2LMHeadModel.from_pretrained(path)
    return model.to(device).eval()


def last_logits(model: GPT2LMHeadModel, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Next-item logits after each right-padded sequence: (B, V) from items (B, L)."""
    hidden = model.transformer(input_ids=items, attention_mask=(items != PADDING).long()).last_hidden_state
    last = hidden[torch.arange(len(items), device=items.device), lengths - 1]  # (B, E)
    return model.lm_head(last)


def rank_next_items(model: GPT2LMHeadModel, sequences: UserSequences, users: np.ndarray, window: int, k: int,
                    batch_size: int = 256) -> torch.Tensor:
    """Top-k next items of each user from the last ``window`` items, seen items removed.

    Returns a (len(users), k) int64 CPU tensor ranked by logit; ties go to the lower id
    (``torch.topk`` on CPU and CUDA is not guaranteed stable, so ties are broken explicitly).
    """
    return top_next_items(model, sequences, users, window, k, batch_size)[0]


@torch.no_grad()
def top_next_items(model: GPT2LMHeadModel, sequences: UserSequences, users: np.ndarray, window: int, k: int,
                   batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``rank_next_items`` and the items' next-item probabilities (softmax over the unseen
    items), both (len(users), k) on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    num_items = model.config.vocab_size - 1
    out, scores = [], []
    for start in range(0, len(users), batch_size):
        batch = np.asarray(users[start:start + batch_size])
        items = torch.from_numpy(sequences.last_items(batch, window, side="right")).to(device)
        lengths = torch.from_numpy(np.minimum(sequences.lengths(batch), window)).to(device)
        logits = check_scores(last_logits(model, items, lengths).float())
        logits[sequences.seen_mask(batch, num_items, device)] = -torch.inf
        ranked = top_k_stable(logits, k)
        out.append(ranked.cpu())
        scores.append(logits.softmax(dim=-1).gather(1, ranked).cpu())
    return torch.cat(out), torch.cat(scores)


def check_scores(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` if no score is NaN or +inf (-inf marks banned items): weights that blew up
    in training must not rank items silently."""
    if torch.isnan(scores).any() or torch.isposinf(scores).any():
        raise FloatingPointError("the model's scores hold NaN or inf: its weights have overflowed")
    return scores


def stop_if_diverged(epoch: int, values: dict[str, float], lr_label: str) -> None:
    """Stop with the fix when an epoch's loss or validation is NaN or infinite: the weights
    have overflowed, and every later epoch and every downstream stage would use them."""
    bad = [f"{name} {value}" for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise UserError(
            f"training diverged at epoch {epoch} ({', '.join(bad)}): the weights overflowed, so nothing "
            f"was written. Lower {lr_label}"
        )


def top_k_stable(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores per row, ties broken towards the lower index."""
    # A stable descending sort keeps equal scores in index order on every device.
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
