"""The reference path: the same strategies through Hugging Face ``generate()``.

Slow (it recomputes the prompt for every sampled sequence and grows its cache by
concatenation) but independent of our engine: tests check the engine against it and
``benchmarks/bench_generation.py`` times both.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper

from genrec import engine


class ForbidSeenAndRepeated(LogitsProcessor):
    """Sets the logits of each user's seen items and of the sequence's own items to -inf."""

    def __init__(self, seen: torch.Tensor, prompt_length: int, copies: int):
        self.seen = seen.repeat_interleave(copies, dim=0)  # generate() repeats each user's rows
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        banned = self.seen.clone()
        banned.scatter_(1, input_ids[:, self.prompt_length:], True)
        return scores.masked_fill(banned, -torch.inf)


@torch.no_grad()
def generate(model, prompts: torch.Tensor, seen: torch.Tensor, horizon: int, *, strategy: str,
             num_beams: int = 1, num_sequences: int = 1, temperature: float = 1.0,
             top_k: int = 0) -> torch.Tensor:
    """(B, horizon) recommendations for left-padded ``prompts`` (B, L) via ``generate()``."""
    B, L = prompts.shape
    sample = strategy in ("sampling", "rra", "ra")
    copies = {"beam": num_beams, "rra": num_sequences, "ra": num_sequences}.get(strategy, 1)
    processors = [ForbidSeenAndRepeated(seen, L, copies)]
    if sample:  # filter, temperature, top-k: the engine's order
        processors.append(TemperatureLogitsWarper(temperature))
        if top_k > 0:
            processors.append(TopKLogitsWarper(top_k))
    output = model.generate(
        input_ids=prompts,
        attention_mask=(prompts != 0).long(),
        max_new_tokens=horizon,
        min_new_tokens=horizon,
        do_sample=sample,
        top_k=0 if sample else None,  # generate() would otherwise add its default top-50 cut
        num_beams=num_beams if strategy == "beam" else 1,
        num_return_sequences=copies if sample else 1,
        logits_processor=LogitsProcessorList(processors),
        output_scores=strategy == "ra",
        return_dict_in_generate=True,
        pad_token_id=0,
        eos_token_id=None,
        bos_token_id=None,
    )
    items = output.sequences[:, L:].view(B, -1, horizon)  # (B, sequences per user, horizon)
    if strategy in ("greedy", "beam", "sampling"):
        return items[:, 0]
    if strategy == "rra":
        return engine.rank_scores(engine.reciprocal_rank_scores(items, seen.shape[1]), seen, horizon)
    # ra: output.scores holds each step's processed logits, (B * S, V) per step.
    probs = torch.stack([s.softmax(dim=-1) for s in output.scores]).sum(dim=0)  # (B * S, V)
    return engine.rank_scores(probs.view(B, copies, -1).sum(dim=1), seen, horizon)
