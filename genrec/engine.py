"""The generation engine behind every strategy (docs/method.md §5).

Each batch of users runs its prompt through GPT-2 once (the prefill); every sampled
sequence or beam then attends to that one shared prompt cache plus a small,
preallocated cache of its own generated items, so the prompt is never recomputed
or copied and no cache grows by concatenation. Seen-item and no-repeat filters are
boolean tensors on the device, updated in place; sampling and the RRA/RA
aggregations are vectorised over users and sequences.

The arithmetic follows Hugging Face's GPT-2 and ``generate()`` step for step
(log-softmax before the filters in beam search; filter, temperature, then top-k in
sampling), so greedy and beam give ``generate()``'s items and sampling draws from the
same distributions. Sampling draws through the inverse CDF (and among the top-k items
only, when there is a cut) rather than ``torch.multinomial``; ``exact=True`` switches to
``generate()``'s own ``torch.multinomial`` call, which then consumes the same random
numbers and gives identical sequences (the tests use it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel

from genrec.ranking import PADDING, rank_unseen


@dataclass
class PromptCache:
    keys: list[torch.Tensor]  # per layer (B, H, L, D)
    values: list[torch.Tensor]  # per layer (B, H, L, D)
    valid: torch.Tensor  # (B, L) bool: False on left padding
    lengths: torch.Tensor  # (B,) prompt lengths


class GenerationCache:
    """Keys and values of the generated items: per layer (B, S, H, horizon, D), preallocated."""

    def __init__(self, n_layer: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device):
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]

    def reorder(self, beams: torch.Tensor, steps: int) -> None:
        """Keep, for each (user, slot), the cache of beam ``beams[b, s]`` (B, S)."""
        index = beams[:, :, None, None, None]
        for cache in (*self.keys, *self.values):
            past = cache[:, :, :, :steps]
            past.copy_(past.gather(1, index.expand_as(past)))


class Decoder:
    """GPT-2 inference with a shared prompt cache; weights are those of ``model``."""

    def __init__(self, model: GPT2LMHeadModel):
        self.model = model
        self.config = model.config
        self.n_head = model.config.n_head
        self.head_dim = model.config.n_embd // model.config.n_head

    def _mlp(self, block, x: torch.Tensor) -> torch.Tensor:
        if self.config.activation_function in ("gelu_new", "gelu_pytorch_tanh"):
            # The same tanh approximation as GPT-2's gelu_new, in one fused kernel.
            return block.mlp.c_proj(F.gelu(block.mlp.c_fc(x), approximate="tanh"))
        return block.mlp(x)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.n_head, self.head_dim)

    @torch.no_grad()
    def prefill(self, items: torch.Tensor) -> tuple[torch.Tensor, PromptCache]:
        """Run left-padded prompts (B, L); return next-item logits (B, V) and the prompt cache."""
        tr = self.model.transformer
        valid = items != PADDING
        lengths = valid.sum(dim=1)
        positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0)  # as generate() derives them
        B, L = items.shape
        causal = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()
        # Padding rows attend to themselves only, so no row is all -inf (NaN) in the softmax.
        mask = (causal & valid[:, None, :]) | torch.eye(L, dtype=torch.bool, device=items.device)
        h = tr.wte(items) + tr.wpe(positions)  # (B, L, E)
        keys, values = [], []
        for block in tr.h:
            q, k, v = block.attn.c_attn(block.ln_1(h)).split(self.config.n_embd, dim=-1)
            q, k, v = (self._heads(t).transpose(1, 2) for t in (q, k, v))  # (B, H, L, D)
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
            h = h + block.attn.c_proj(attended.transpose(1, 2).reshape(B, L, -1))
            h = h + self._mlp(block, block.ln_2(h))
            keys.append(k)
            values.append(v)
        logits = self.model.lm_head(tr.ln_f(h[:, -1]))  # (B, V)
        return logits.float(), PromptCache(keys, values, valid, lengths)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, t: int, prompt: PromptCache, cache: GenerationCache) -> torch.Tensor:
        """Feed the t-th generated item of every sequence (B, S); return logits (B, S, V)."""
        tr = self.model.transformer
        B, S = tokens.shape
        h = tr.wte(tokens) + tr.wpe(prompt.lengths[:, None] + t)  # (B, S, E)
        scale = 1.0 / math.sqrt(self.head_dim)
        pad = ~prompt.valid[:, None, None, :]  # (B, 1, 1, L)
        for layer, block in enumerate(tr.h):
            q, k, v = block.attn.c_attn(block.ln_1(h)).split(self.config.n_embd, dim=-1)
            q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, S, H, D)
            cache.keys[layer][:, :, :, t] = k
            cache.values[layer][:, :, :, t] = v
            own_k = cache.keys[layer][:, :, :, : t + 1]  # (B, S, H, t+1, D)
            own_v = cache.values[layer][:, :, :, : t + 1]
            # Scores against the shared prompt (broadcast over S, never copied) and own items.
            shared = torch.einsum("bshd,bhld->bshl", q, prompt.keys[layer]) * scale  # (B, S, H, L)
            shared = shared.masked_fill(pad, -torch.inf)
            own = torch.einsum("bshd,bshtd->bsht", q, own_k) * scale  # (B, S, H, t+1)
            weights = torch.cat([shared, own], dim=-1).softmax(dim=-1)
            w_shared, w_own = weights.split([shared.shape[-1], t + 1], dim=-1)
            attended = (torch.einsum("bshl,bhld->bshd", w_shared, prompt.values[layer])
                        + torch.einsum("bsht,bshtd->bshd", w_own, own_v))  # (B, S, H, D)
            h = h + block.attn.c_proj(attended.reshape(B, S, -1))
            h = h + self._mlp(block, block.ln_2(h))
        return self.model.lm_head(tr.ln_f(h)).float()

    def new_cache(self, B: int, S: int, horizon: int, like: torch.Tensor) -> GenerationCache:
        shape = (B, S, self.n_head, horizon, self.head_dim)
        return GenerationCache(self.config.n_layer, shape, like.dtype, like.device)


def sample_filter(logits: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """Temperature, then the top-k cut (as ``TopKLogitsWarper``): logits of the kept items."""
    logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    return logits


def inverse_cdf(probs: torch.Tensor, uniform: torch.Tensor | None = None) -> torch.Tensor:
    """One index per row drawn from ``probs`` (..., V): a uniform number through the CDF.

    Same distribution as ``torch.multinomial(probs, 1)``, which on the CPU draws V
    exponential numbers per row and is ~10x slower here. ``uniform`` (...) gives the
    numbers in [0, 1) to use; by default they come from the global generator.
    """
    cdf = probs.cumsum(dim=-1)
    if uniform is None:
        uniform = torch.rand(cdf.shape[:-1], device=probs.device)
    u = uniform[..., None].to(cdf.dtype) * cdf[..., -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(-1)


def sample_step(logits: torch.Tensor, temperature: float, top_k: int, exact: bool,
                relevance: list[tuple[int, torch.Tensor]], uniform: torch.Tensor | None = None) -> torch.Tensor:
    """Draw the next item of every sequence from filtered ``logits`` (B, S, V). For each
    ``(n, scores)`` of ``relevance``, add the sampling probability of each item in the first n
    sequences to ``scores`` (B, V). ``uniform`` (B, S): the random numbers of the fast sampler.
    Returns (B, S)."""
    B, S, V = logits.shape
    if exact:  # generate()'s arithmetic and random draws, for tests against the reference
        probs = sample_filter(logits, temperature, top_k).softmax(dim=-1)
        add_relevance(relevance, probs)
        return torch.multinomial(probs.reshape(B * S, V), num_samples=1).view(B, S)
    if 0 < top_k < V:
        # Only the k best items can be drawn: sample among them, never touching the rest.
        values, index = torch.topk(logits, top_k, dim=-1)  # (B, S, k)
        probs = (values / temperature).softmax(dim=-1)
        for n, scores in relevance:
            scores.scatter_add_(1, index[:, :n].reshape(B, -1), probs[:, :n].reshape(B, -1))
        return index.gather(-1, inverse_cdf(probs, uniform)[..., None]).squeeze(-1)
    probs = (logits / temperature).softmax(dim=-1)
    add_relevance(relevance, probs)
    return inverse_cdf(probs, uniform)


def add_relevance(relevance: list[tuple[int, torch.Tensor]], probs: torch.Tensor) -> None:
    """Add each item's probability summed over the first n sequences of ``probs`` (B, S, V)."""
    for n, scores in relevance:
        scores += probs[:, :n].sum(dim=1)


@torch.no_grad()
def greedy(decoder: Decoder, prompts: torch.Tensor, seen: torch.Tensor, horizon: int) -> torch.Tensor:
    """The most likely unseen, unrepeated item at each of ``horizon`` steps (B, horizon).

    ``prompts`` (B, L) left-padded, ``seen`` (B, V) bool."""
    return _decode(decoder, prompts, seen, horizon, 1, lambda logits, t: logits.argmax(dim=-1))[:, 0]


@torch.no_grad()
def sample(decoder: Decoder, prompts: torch.Tensor, seen: torch.Tensor, horizon: int, *, num_sequences: int = 1,
           temperature: float = 1.0, top_k: int = 0, relevance: bool = False, exact: bool = False,
           uniforms: torch.Tensor | None = None, prefixes: tuple[int, ...] | None = None
           ) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor] | None]:
    """``num_sequences`` sequences per user of ``horizon`` items sampled from softmax(logits /
    ``temperature``), cut to the ``top_k`` most likely items per step when ``top_k`` > 0.

    Returns the items (B, S, horizon) and, with ``relevance``, each item's summed sampling
    probability over sequences and steps (B, V), the RA score. With ``prefixes`` as well, a list
    of those scores over the first n sequences, one (B, V) per n: each sequence has its own
    random numbers (``uniforms[:, s]``), so the first n sequences of a draw are a draw of n,
    and one draw serves every n. (Only up to float rounding the same numbers as a draw of n
    alone: the matrix products see more rows, which can change logits in the last bit.)
    ``exact`` samples with ``torch.multinomial`` exactly as ``generate()`` does (same random
    draws); the default draws from the same distributions faster, with the numbers ``uniforms``
    (B, S, horizon) when given.
    """
    V = seen.shape[1]
    counts = (num_sequences,) if prefixes is None else prefixes
    if max(counts) > num_sequences:
        raise ValueError(f"prefixes {counts} ask for more than the {num_sequences} sequences drawn")
    sums = [(n, torch.zeros(prompts.shape[0], V, device=prompts.device)) for n in counts] if relevance else []

    def draw(logits: torch.Tensor, t: int) -> torch.Tensor:
        uniform = None if uniforms is None else uniforms[:, :, t]
        return sample_step(logits, temperature, top_k, exact, sums, uniform)

    items = _decode(decoder, prompts, seen, horizon, num_sequences, draw)
    if not relevance:
        return items, None
    scores = [s for _, s in sums]
    return items, (scores if prefixes is not None else scores[0])


def _decode(decoder: Decoder, prompts: torch.Tensor, seen: torch.Tensor, horizon: int, num_sequences: int,
            choose) -> torch.Tensor:
    """(B, S, horizon) items: at step t, ``choose(logits (B, S, V), t)`` picks each sequence's
    next item among the logits with seen and already generated items at -inf."""
    B, S = prompts.shape[0], num_sequences
    logits, prompt = decoder.prefill(prompts)
    # Every sequence starts from the same prompt: one (B, S, V) copy with the seen items banned.
    logits = logits[:, None].expand(B, S, -1).masked_fill(seen[:, None, :], -torch.inf)
    cache = decoder.new_cache(B, S, horizon, prompt.keys[0])
    items = torch.empty(B, S, horizon, dtype=torch.long, device=prompts.device)
    for t in range(horizon):
        if t > 0:
            logits = decoder.step(items[:, :, t - 1], t - 1, prompt, cache)
            ban(logits, seen, items[:, :, :t])
        items[:, :, t] = choose(logits, t)
    return items


def ban(scores: torch.Tensor, seen: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """In place: -inf for each user's seen items (B, V) and each sequence's own items (B, S, t)."""
    scores.masked_fill_(seen[:, None, :], -torch.inf)
    return scores.scatter_(2, generated, -torch.inf)


@torch.no_grad()
def beam_search(decoder: Decoder, prompts: torch.Tensor, seen: torch.Tensor, horizon: int,
                num_beams: int) -> torch.Tensor:
    """The highest-scoring of ``num_beams`` beams (B, horizon), as ``generate(num_beams=...)``."""
    B = prompts.shape[0]
    logits, prompt = decoder.prefill(prompts)
    log_probs = logits.log_softmax(dim=-1)  # filters come after the log-softmax, as in generate()
    V = log_probs.shape[-1]
    # Step 0: all beams share one prompt, so the first beams are its num_beams best items.
    scores, tokens = torch.topk(log_probs.masked_fill(seen, -torch.inf), num_beams, dim=-1)  # (B, S)
    cache = decoder.new_cache(B, num_beams, horizon, prompt.keys[0])
    items = torch.empty(B, num_beams, horizon, dtype=torch.long, device=prompts.device)
    items[:, :, 0] = tokens
    for t in range(1, horizon):
        log_probs = decoder.step(tokens, t - 1, prompt, cache).log_softmax(dim=-1)
        candidates = (ban(log_probs, seen, items[:, :, :t]) + scores[:, :, None]).view(B, -1)
        scores, flat = torch.topk(candidates, num_beams, dim=-1)  # (B, S), best first
        beams, tokens = flat // V, flat % V
        cache.reorder(beams, t)
        items[:, :, :t] = items[:, :, :t].gather(1, beams[:, :, None].expand(-1, -1, t))
        items[:, :, t] = tokens
    return items[:, 0]


def reciprocal_rank_scores(sequences: torch.Tensor, num_items_plus_one: int) -> torch.Tensor:
    """RRA: each item's sum over sequences of 1 / (1-based position) — (B, V) from (B, S, K)."""
    B, S, K = sequences.shape
    weights = (1.0 / torch.arange(1, K + 1, device=sequences.device, dtype=torch.float32)).expand(B, S, K)
    scores = torch.zeros(B, num_items_plus_one, device=sequences.device)
    return scores.scatter_add_(1, sequences.reshape(B, -1), weights.reshape(B, -1))


def rank_scores(scores: torch.Tensor, seen: torch.Tensor, k: int) -> torch.Tensor:
    """The k best-scoring unseen items (B, k); ties go to the lower item id."""
    return rank_unseen(scores, seen, k)
