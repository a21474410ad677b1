"""The six generation strategies of SPEC §5, on top of the engine.

``recommend`` turns a trained model and users' training sequences into a (users, K)
matrix of ranked, unseen, non-repeating items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psutil
import torch

from genrec import engine
from genrec.model import top_next_items
from genrec.params import require
from genrec.sequences import UserSequences

STRATEGIES = ("topk", "greedy", "beam", "sampling", "rra", "ra")
SAMPLED = ("sampling", "rra", "ra")

# The generation params each strategy reads, and so declares in dvc.yaml.
COMMON = ["horizon", "batch_size", "device"]
PARAMS_OF = {
    "topk": COMMON,
    "greedy": COMMON,
    "beam": COMMON + ["num_beams"],
    "sampling": COMMON + ["temperature", "top_k", "seed"],
    "rra": COMMON + ["temperature", "top_k", "num_sequences", "seed"],
    "ra": COMMON + ["temperature", "top_k", "num_sequences", "seed"],
}


@dataclass(frozen=True)
class GenerationParams:
    horizon: int = 10  # K: items to recommend, and new items to generate
    num_beams: int = 2
    temperature: float = 0.5
    top_k: int = 0  # sampling: keep the k most likely items per step (0: no cut)
    num_sequences: int = 30  # rra/ra: sampled sequences per user
    seed: int = 42
    batch_size: int = 0  # users per batch; 0: chosen from the available memory
    device: str = "auto"

    def validate(self) -> None:
        require(self.horizon >= 1, "generation.horizon", f"must be at least 1, got {self.horizon}")
        require(self.num_beams >= 1, "generation.num_beams", f"must be at least 1, got {self.num_beams}")
        require(self.temperature > 0, "generation.temperature", f"must be positive, got {self.temperature}")
        require(self.top_k >= 0, "generation.top_k", f"must be 0 (no cut) or more, got {self.top_k}")
        require(self.num_sequences >= 1, "generation.num_sequences", f"must be at least 1, got {self.num_sequences}")
        require(self.seed >= 0, "generation.seed", f"must be 0 or more, got {self.seed}")
        require(self.batch_size >= 0, "generation.batch_size", f"must be 0 (automatic) or more, got {self.batch_size}")

    def check_window(self, n_positions: int) -> None:
        """The prompt keeps at least one item after leaving room for the horizon."""
        require(self.horizon < n_positions, "generation.horizon",
                f"({self.horizon}) must be smaller than the model's window model.n_positions ({n_positions}), "
                "which must hold the prompt and the generated items")


def sequences_per_user(strategy: str, params: GenerationParams) -> int:
    return {"beam": params.num_beams, "rra": params.num_sequences, "ra": params.num_sequences}.get(strategy, 1)


def auto_batch_size(strategy: str, params: GenerationParams, num_items: int, window: int, n_embd: int,
                    n_layer: int, device: torch.device) -> int:
    """Users per batch so that the batch's tensors take about a quarter of free memory."""
    if params.batch_size:
        return params.batch_size
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else psutil.virtual_memory().available
    s = sequences_per_user(strategy, params)
    per_user = (
        4 * window * n_embd * (6 + 2 * n_layer)  # prefill activations and the prompt cache
        + 4 * s * (num_items + 1) * 4  # logits, scaled logits, probabilities, their CDF
    )
    cap = 4096 if device.type == "cuda" else 512  # beyond this, CPU batches gain nothing
    return int(max(1, min(cap, free // 4 // per_user)))


def user_uniforms(seed: int, users: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """(len(users), *shape) random numbers in [0, 1). User u's come from its own stream, seeded
    by (seed, u), so its sampled items depend neither on the batch size nor on the other users
    recommended with it (the `genrec recommend` command asks for one user)."""
    out = np.empty((len(users), *shape), dtype=np.float32)
    for row, user in enumerate(users):
        out[row] = np.random.default_rng([seed, int(user)]).random(shape, dtype=np.float32)
    return torch.from_numpy(out)


def recommend(strategy: str, model, sequences: UserSequences, users: np.ndarray,
              params: GenerationParams) -> np.ndarray:
    """(len(users), horizon) recommended item ids in rank order."""
    return recommend_scored(strategy, model, sequences, users, params)[0]


def recommend_scored(strategy: str, model, sequences: UserSequences, users: np.ndarray,
                     params: GenerationParams, streams: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``recommend``'s items and their scores (len(users), horizon): the next-item probability
    (topk), the RRA or RA score (rra, ra); NaN where the order is the generation order.
    ``streams``: each row's random-number stream (``user_uniforms``), by default its user id."""
    model.eval()  # no dropout: recommendations must not change between runs
    device = next(model.parameters()).device
    config = model.config
    window = config.n_positions - params.horizon  # room for the generated items
    batch_size = auto_batch_size(strategy, params, config.vocab_size - 1, window, config.n_embd,
                                 config.n_layer, device)
    if strategy == "topk":
        items, scores = top_next_items(model, sequences, users, window, params.horizon, batch_size)
        return items.numpy(), scores.numpy()
    # Every (user, sequence, step) gets its own random number, drawn up front from the seed,
    # so sampled recommendations depend on the seed and the user, not on the batch size or device.
    uniforms = user_uniforms(params.seed, users if streams is None else streams,
                             (sequences_per_user(strategy, params), params.horizon)) if strategy in SAMPLED else None
    decoder = engine.Decoder(model)
    out, out_scores = [], []
    for start in range(0, len(users), batch_size):
        batch = np.asarray(users[start:start + batch_size])
        prompts = torch.from_numpy(sequences.last_items(batch, window, side="left")).to(device)
        seen = sequences.seen_mask(batch, config.vocab_size - 1, device)
        batch_uniforms = None if uniforms is None else uniforms[start:start + batch_size].to(device)
        items, scores = generate_batch_scored(strategy, decoder, prompts, seen, params, uniforms=batch_uniforms)
        out.append(items.cpu())
        out_scores.append(torch.full(items.shape, torch.nan) if scores is None else scores.cpu())
    return torch.cat(out).numpy(), torch.cat(out_scores).numpy()


def generate_batch(strategy: str, decoder: engine.Decoder, prompts: torch.Tensor, seen: torch.Tensor,
                   params: GenerationParams, exact: bool = False,
                   uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """(B, horizon) recommendations for one batch. Sampling uses ``uniforms`` (B, S, horizon)
    as its random numbers, or the global generator; ``exact`` samples with generate()'s draws."""
    return generate_batch_scored(strategy, decoder, prompts, seen, params, exact, uniforms)[0]


def generate_batch_scored(strategy: str, decoder: engine.Decoder, prompts: torch.Tensor, seen: torch.Tensor,
                          params: GenerationParams, exact: bool = False,
                          uniforms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``generate_batch`` and the items' RRA/RA scores (B, horizon), or None for the others."""
    K = params.horizon
    if strategy == "greedy":
        return engine.decode(decoder, prompts, seen, K)[0][:, 0], None
    if strategy == "beam":
        return engine.beam_search(decoder, prompts, seen, K, params.num_beams), None
    sampled = dict(sample=True, temperature=params.temperature, top_k=params.top_k, exact=exact, uniforms=uniforms)
    if strategy == "sampling":
        return engine.decode(decoder, prompts, seen, K, **sampled)[0][:, 0], None
    if strategy == "rra":
        items, _ = engine.decode(decoder, prompts, seen, K, num_sequences=params.num_sequences, **sampled)
        scores = engine.reciprocal_rank_scores(items, seen.shape[1])
    elif strategy == "ra":
        _, scores = engine.decode(decoder, prompts, seen, K, num_sequences=params.num_sequences,
                                  relevance=True, **sampled)
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    ranked = engine.rank_scores(scores, seen, K)
    return ranked, scores.gather(1, ranked)
