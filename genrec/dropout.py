"""Cheaper dropout masks for training on a CPU (``dropout_masks`` in the ``train``, ``sasrec``
and ``bert4rec`` sections).

torch's dropout on a CPU draws its keep-mask with ``bernoulli_``, one number at a time on one
thread: 13% of a GPT-2 epoch and 28-29% of a SASRec or BERT4Rec epoch on a 2-core CPU
(docs/performance.md, "Training"). The fast masks take four 16-bit integers from each 64-bit
draw of torch's generator and keep a unit when its integer clears p's share of the 16-bit
range: p holds to within 2**-16 and each unit is still kept independently. Other random numbers
than torch's, so other models; ``dropout_masks: torch`` keeps torch's own masks, the exact path
of the runs before them.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

# auto: fast on a CPU, torch on CUDA; fast: the masks below; torch: torch's own.
DropoutMasks = Literal["auto", "fast", "torch"]


def fast_masks(params: Any, device: torch.device) -> bool:
    """Whether a model whose section sets ``params.dropout_masks`` trains with the fast masks:
    ``fast``, or ``auto`` on a CPU. On CUDA torch's own masks are one kernel and the fast ones
    cost more: 1.28x (BERT4Rec) and 1.44x (SASRec) an epoch on an H200 (benchmarks/bench_train.py)."""
    return params.dropout_masks == "fast" or (params.dropout_masks == "auto" and device.type == "cpu")


# The name under which Hugging Face models find attention whose dropout takes the fast masks.
HF_ATTENTION = "genrec_fast_dropout"


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``x`` with each element zeroed with probability ``p`` (to within 2**-16) and the rest
    scaled by 1 / (1 - p), as ``F.dropout``, from masks drawn four to a 64-bit random integer."""
    if not training or p == 0:
        return x
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, (-(-n // 4),), dtype=torch.int64, device=x.device)
    keep = words.view(torch.int16)[:n].view(x.shape) >= -(2**15) + round(p * 2**16)
    scale = 1.0 / (1.0 - p)
    if x.dtype not in (torch.float32, torch.float64):  # a half-precision mask would round the scale
        return x * keep * scale
    # One pass makes the scaled mask and one applies it, forward and backward, where
    # ``x * keep * scale`` takes three forward (bool to float, then two products) and two
    # backward: 1.3x on BERT4Rec's attention weights. The same bits: x * 1 * s and x * 0 * s
    # round as x * s and x * 0 (tests/test_dropout.py).
    return x * torch.where(keep, torch.tensor(scale, dtype=x.dtype, device=x.device),
                           torch.tensor(0.0, dtype=x.dtype, device=x.device))


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with the fast masks (a subclass, so code that looks for dropout finds it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def _hf_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                  **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face's eager attention with the fast masks on its weights (its own draws them
    with ``F.dropout``, and SDPA inside its kernel)."""
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    if attention_mask is None:
        weights = (query @ key.transpose(2, 3)) * scaling
    else:  # mask + scaling * scores in one pass: the same bits, the mask being 0 or the dtype's min
        weights = torch.add(attention_mask, query @ key.transpose(2, 3), alpha=scaling)
    weights = fast_dropout(weights.softmax(-1), dropout, module.training)
    return (weights @ value).transpose(1, 2).contiguous(), weights


def _register_hf_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
    AttentionInterface.register(HF_ATTENTION, _hf_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(HF_ATTENTION, eager_mask)  # additive masks, as eager attention takes


def use_fast_dropout(model: nn.Module) -> nn.Module:
    """Every ``nn.Dropout`` of ``model`` (in place) takes the fast masks, keeping its p and its
    train/eval mode; a Hugging Face model's attention dropout too (its attention then runs
    eagerly). SASRec's attention is its own (``CausalSelfAttention(fast_masks=True)``)."""
    for name, child in model.named_children():
        if type(child) is nn.Dropout:
            setattr(model, name, FastDropout(child.p).train(child.training))
        else:
            use_fast_dropout(child)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "_attn_implementation"):
        _register_hf_attention()
        config._attn_implementation = HF_ATTENTION
    return model
