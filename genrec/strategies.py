"""The six generation strategies of docs/method.md §5, on top of the engine.

``recommend`` turns a trained model and users' training sequences into a (users, K)
matrix of ranked, unseen, non-repeating items.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any

import numpy as np
import psutil
import torch
from pydantic import Field, field_validator

from genrec import engine
from genrec.errors import UserError
from genrec.model import top_next_items
from genrec.params import AtLeast0, AtLeast1, Section, require, value_or_grid
from genrec.progress import Progress
from genrec.sequences import UserSequences

STRATEGIES = ("topk", "greedy", "beam", "sampling", "rra", "ra")
SAMPLED = ("sampling", "rra", "ra")

# The generation params each strategy reads, and so declares in dvc.yaml; TUNED lists those
# that may be grids, tuned on the validation users, in grid order (the first varies slowest).
COMMON = ["horizon", "batch_size", "device"]
TUNED = {
    "topk": [],
    "greedy": [],
    "beam": ["num_beams"],
    "sampling": ["temperature", "top_k"],
    "rra": ["temperature", "top_k", "num_sequences"],
    "ra": ["temperature", "top_k", "num_sequences"],
}
PARAMS_OF = {strategy: COMMON + tuned + (["seed"] if strategy in SAMPLED else []) for strategy, tuned in TUNED.items()}

# Bounds that keep generation finite: logits / temperature must neither overflow nor lose
# every difference in float32, and one user's sequences must fit in memory and finish.
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-30, 1e6
MAX_NUM_SEQUENCES = 10_000
MAX_NUM_BEAMS = 1_000


def values(setting: Any) -> list:
    """A param's grid: the list itself, or a single value as a one-point grid."""
    return setting if isinstance(setting, list) else [setting]


class GenerationParams(Section):
    """The ``generation`` section. The tunable keys hold one value or a list (a grid);
    ``grid()`` expands them into single-valued settings, which is what ``recommend`` takes.

    A strategy stage reads only the keys it declares (``params.section(..., keys=PARAMS_OF[strategy])``):
    a key it does not read is None, "not read by this stage". That is the only default a key
    has; every value comes from ``params.yaml``."""

    horizon: AtLeast1 = None  # K: items to recommend, and new items to generate
    num_beams: value_or_grid(Annotated[int, Field(ge=1, le=MAX_NUM_BEAMS)]) = None
    temperature: value_or_grid(float) = None  # bounds: _temperature_in_bounds
    top_k: value_or_grid(AtLeast0) = None  # sampling: keep the k most likely items per step (0: no cut)
    num_sequences: value_or_grid(Annotated[int, Field(ge=1, le=MAX_NUM_SEQUENCES)]) = None  # rra/ra: per user
    seed: AtLeast0 = None
    batch_size: AtLeast0 = None  # users per batch; 0: chosen from the available memory
    device: str = None  # auto (CUDA when present), cpu or cuda

    @field_validator("temperature")
    @classmethod
    def _temperature_in_bounds(cls, setting: float | list[float]) -> float | list[float]:
        for temperature in values(setting):
            if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
                raise ValueError(
                    f"generation.temperature must be between {MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g} (smaller "
                    f"values overflow float32; use the greedy strategy for a temperature near 0), got {temperature}")
        return setting

    def check_window(self, n_positions: int) -> None:
        """The prompt keeps at least one item after leaving room for the horizon."""
        require(self.horizon < n_positions, "generation.horizon",
                f"({self.horizon}) must be smaller than the model's window model.n_positions ({n_positions}), "
                "which must hold the prompt and the generated items")

    def check_catalogue(self, num_items: int) -> None:
        """Beam search keeps ``num_beams`` distinct continuations: it needs that many items."""
        if self.num_beams is None:  # not read by this stage
            return
        for beams in values(self.num_beams):
            require(beams <= num_items, "generation.num_beams",
                    f"({beams}) must not exceed the number of items in the catalogue ({num_items})")

    def grid(self, strategy: str) -> list[GenerationParams]:
        """Every combination of the strategy's tunable values, in grid order (the first key
        varies slowest); a strategy with no list-valued key has a one-point grid."""
        keys = TUNED[strategy]
        return [self.model_copy(update=dict(zip(keys, point)))
                for point in itertools.product(*(values(getattr(self, key)) for key in keys))]

    def chosen(self, strategy: str) -> dict[str, Any]:
        """The strategy's tunable values of this (single-valued) setting."""
        return {key: getattr(self, key) for key in TUNED[strategy]}


def sequences_per_user(strategy: str, params: GenerationParams) -> int:
    return {"beam": params.num_beams, "rra": params.num_sequences, "ra": params.num_sequences}.get(strategy, 1)


def auto_batch_size(strategy: str, params: GenerationParams, num_items: int, window: int, n_embd: int,
                    n_layer: int, device: torch.device) -> int:
    """Users per batch so that the batch's tensors take about a quarter of free memory."""
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else psutil.virtual_memory().available
    s = sequences_per_user(strategy, params)
    per_user = (
        4 * window * n_embd * (6 + 2 * n_layer)  # prefill activations and the prompt cache
        + 4 * s * (num_items + 1) * 4  # logits, scaled logits, probabilities, their CDF
    )
    if per_user > free // 2:
        key = "num_beams" if strategy == "beam" else "num_sequences"
        raise UserError(f"params.yaml: generation.{key} ({s}) needs {per_user / 2**30:.1f} GiB per user over "
                        f"{num_items} items, more than half the free {device.type} memory "
                        f"({free / 2**30:.1f} GiB); lower it")
    if params.batch_size:
        return params.batch_size
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
              params: GenerationParams, progress: str | None = None) -> np.ndarray:
    """(len(users), horizon) recommended item ids in rank order; with ``progress``, a bar (or one
    line per batch in a log) of that name."""
    return recommend_scored(strategy, model, sequences, users, params, progress=progress)[0]


def recommend_scored(strategy: str, model, sequences: UserSequences, users: np.ndarray,
                     params: GenerationParams, streams: np.ndarray | None = None,
                     progress: str | None = None) -> tuple[np.ndarray, np.ndarray]:
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
    bar = Progress(len(users), progress, "users") if progress else None
    for start in range(0, len(users), batch_size):
        batch = np.asarray(users[start:start + batch_size])
        prompts = torch.from_numpy(sequences.last_items(batch, window, side="left")).to(device)
        seen = sequences.seen_mask(batch, config.vocab_size - 1, device)
        batch_uniforms = None if uniforms is None else uniforms[start:start + batch_size].to(device)
        items, scores = generate_batch_scored(strategy, decoder, prompts, seen, params, uniforms=batch_uniforms)
        out.append(items.cpu())
        out_scores.append(torch.full(items.shape, torch.nan) if scores is None else scores.cpu())
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()
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
