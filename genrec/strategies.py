"""The six generation strategies of docs/method.md §5, on top of the engine.

``STRATEGIES`` is the one list of the strategies: what each reads from the ``generation``
section (and so declares in dvc.yaml), which of those may be tuned, and how a batch is
generated. ``recommend`` turns a trained model and users' training sequences into a
(users, K) matrix of ranked, unseen, non-repeating items and their scores.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, Any, Callable

import numpy as np
import psutil
import torch
from pydantic import Field, field_validator

from genrec import engine
from genrec.distributed import SINGLE, Group
from genrec.errors import UserError
from genrec.model import top_next_items
from genrec.metrics import EvaluationParams
from genrec.params import AtLeast0, AtLeast1, Section, require, section, value_or_grid
from genrec.progress import Progress
from genrec.sequences import UserSequences

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

    A strategy stage reads only the keys it declares (``params.section(..., keys=STRATEGIES[strategy].params)``):
    a key it does not read is None, "not read by this stage". That is the only default a key
    has; every value comes from ``params.yaml``."""

    # K: items to recommend, and new items to generate. Not a key of the generation section: the
    # stages take it from evaluation.k, the recommender from its k.
    horizon: AtLeast1 = None
    num_beams: value_or_grid(Annotated[int, Field(ge=1, le=MAX_NUM_BEAMS)]) = None
    temperature: value_or_grid(float) = None  # bounds: _temperature_in_bounds
    top_k: value_or_grid(AtLeast0) = None  # sampling: keep the k most likely items per step (0: no cut)
    num_sequences: value_or_grid(Annotated[int, Field(ge=1, le=MAX_NUM_SEQUENCES)]) = None  # rra/ra: per user
    seed: AtLeast0 = None
    batch_size: AtLeast0 = None  # users per batch; 0: chosen from the available memory
    processes: AtLeast1 = None  # processes sharing the users (torch.distributed); 1: this process alone
    device: str = None  # auto (CUDA when present), cpu or cuda
    # generation.searched.<strategy>: a search's winner, put in place of the grid by read_params.
    searched: dict[str, dict[str, Any]] | None = None

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
        require(self.horizon < n_positions, "evaluation.k",
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
        keys = STRATEGIES[strategy].tuned
        return [self.model_copy(update=dict(zip(keys, point)))
                for point in itertools.product(*(values(getattr(self, key)) for key in keys))]

    def chosen(self, strategy: str) -> dict[str, Any]:
        """The strategy's tunable values of this (single-valued) setting."""
        return {key: getattr(self, key) for key in STRATEGIES[strategy].tuned}


def read_params(values: dict, strategy: str | None = None) -> GenerationParams:
    """The ``generation`` section of params.yaml ``values`` as a strategy stage reads it: the
    strategy's own keys (every key without ``strategy``), and evaluation.k as the horizon, so
    that a strategy generates the list's k items."""
    k = section(values, "evaluation", EvaluationParams).k
    keys = STRATEGIES[strategy].params if strategy else [key for key in GenerationParams.model_fields
                                                          if key != "horizon"]
    generation = values.get("generation")
    if isinstance(generation, dict) and "searched" in generation:
        generation = dict(generation)
        found = searched(generation.pop("searched"), strategy)
        # The keys as written are checked too: a bad grid is one line even where a search's winner replaces it.
        section({**values, "generation": generation}, "generation", GenerationParams, keys=keys)
        generation.update(found)
        values = {**values, "generation": generation}
    return section(values, "generation", GenerationParams, keys=keys).model_copy(update={"horizon": k})


def searched(raw: Any, strategy: str | None) -> dict[str, Any]:
    """``generation.searched.<strategy>``: a search's winner (``genrec search``), whose keys
    replace the strategy's grid; empty for a strategy no search has set."""
    label = "params.yaml: generation.searched"
    if raw is None or strategy is None:
        return {}
    if not isinstance(raw, dict) or not set(raw) <= {name for name, kind in STRATEGIES.items() if kind.tuned}:
        raise UserError(f"{label} must map tuned strategies ({', '.join(n for n, k in STRATEGIES.items() if k.tuned)}) "
                        f"to their searched settings, got {raw!r}")
    found = raw.get(strategy) or {}
    if not isinstance(found, dict) or not set(found) <= set(STRATEGIES[strategy].tuned):
        raise UserError(f"{label}.{strategy} may set {', '.join(STRATEGIES[strategy].tuned)}, got {found!r}")
    return dict(found)


# The generation keys every strategy reads (and evaluation.k, its horizon).
COMMON = ("batch_size", "device", "processes")
SPEED = ("batch_size", "device", "processes")  # keys that change how fast a list comes, never the list
Batch = Callable[..., tuple[torch.Tensor, "torch.Tensor | None"]]


def _greedy(decoder, prompts, seen, params, exact=False, uniforms=None):
    return engine.greedy(decoder, prompts, seen, params.horizon), None


def _beam(decoder, prompts, seen, params, exact=False, uniforms=None):
    return engine.beam_search(decoder, prompts, seen, params.horizon, params.num_beams), None


def _sampled(decoder, prompts, seen, params, exact, uniforms, num_sequences=1, relevance=False, prefixes=None):
    return engine.sample(decoder, prompts, seen, params.horizon, num_sequences=num_sequences,
                         temperature=params.temperature, top_k=params.top_k, relevance=relevance, exact=exact,
                         uniforms=uniforms, prefixes=prefixes)


def _sampling(decoder, prompts, seen, params, exact=False, uniforms=None):
    return _sampled(decoder, prompts, seen, params, exact, uniforms)[0][:, 0], None


def _aggregated(scores: torch.Tensor, seen: torch.Tensor, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    ranked = engine.rank_scores(scores, seen, horizon)
    return ranked, scores.gather(1, ranked)


# RRA and RA return one (items, scores) per number of sequences in ``counts``, all from one draw
# of params.num_sequences (the largest): its first n sequences are a draw of n (engine.sample).
def _rra(decoder, prompts, seen, params, counts, exact=False, uniforms=None):
    items, _ = _sampled(decoder, prompts, seen, params, exact, uniforms, params.num_sequences)
    return [_aggregated(engine.reciprocal_rank_scores(items[:, :n], seen.shape[1]), seen, params.horizon)
            for n in counts]


def _ra(decoder, prompts, seen, params, counts, exact=False, uniforms=None):
    _, sums = _sampled(decoder, prompts, seen, params, exact, uniforms, params.num_sequences, relevance=True,
                       prefixes=tuple(counts))
    return [_aggregated(scores, seen, params.horizon) for scores in sums]


def _one_count(batch_of_counts: Callable) -> Batch:
    """The batch of the setting's own number of sequences."""
    def batch(decoder, prompts, seen, params, exact=False, uniforms=None):
        return batch_of_counts(decoder, prompts, seen, params, (params.num_sequences,), exact, uniforms)[0]
    return batch


@dataclass(frozen=True)
class Strategy:
    name: str
    tuned: tuple[str, ...] = ()  # keys that may be grids, tuned on the validation users, in grid order
    sampled: bool = False  # draws random numbers: reads generation.seed
    width_key: str | None = None  # the key giving the sequences (or beams) kept per user
    # (decoder, prompts, seen, params, exact, uniforms) -> items (B, K), scores (B, K) or None;
    # None for topk, which needs no autoregression (one forward pass, genrec.model.top_next_items).
    batch: Batch | None = None
    # rra, ra: (decoder, prompts, seen, params, counts, exact, uniforms) -> one (items, scores) per
    # number of sequences in ``counts``, all from one draw (tuning shares it over its num_sequences grid).
    batch_of_counts: Callable | None = None

    @property
    def params(self) -> list[str]:
        """The generation keys the strategy reads, as its stage declares them in dvc.yaml."""
        return [*COMMON, *self.tuned, *(["seed"] if self.sampled else [])]

    @property
    def settings(self) -> list[str]:
        """What shapes its list: the horizon and its keys but batch size, device and processes
        (which only change its speed)."""
        return ["horizon", *(key for key in self.params if key not in SPEED)]

    def width(self, params: GenerationParams) -> int:
        """Sequences (or beams) generated per user."""
        return getattr(params, self.width_key) if self.width_key else 1


STRATEGIES = {s.name: s for s in (
    Strategy("topk"),
    Strategy("greedy", batch=_greedy),
    Strategy("beam", ("num_beams",), width_key="num_beams", batch=_beam),
    Strategy("sampling", ("temperature", "top_k"), sampled=True, batch=_sampling),
    Strategy("rra", ("temperature", "top_k", "num_sequences"), sampled=True, width_key="num_sequences",
             batch=_one_count(_rra), batch_of_counts=_rra),
    Strategy("ra", ("temperature", "top_k", "num_sequences"), sampled=True, width_key="num_sequences",
             batch=_one_count(_ra), batch_of_counts=_ra),
)}


def auto_batch_size(strategy: str, params: GenerationParams, num_items: int, window: int, n_embd: int,
                    n_layer: int, device: torch.device) -> int:
    """Users per batch so that the batch's tensors take about a quarter of free memory."""
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else psutil.virtual_memory().available
    s = STRATEGIES[strategy].width(params)
    per_user = (
        4 * window * n_embd * (6 + 2 * n_layer)  # prefill activations and the prompt cache
        + 4 * s * (num_items + 1) * 4  # logits, scaled logits, probabilities, their CDF
    )
    if per_user > free // 2:
        key = STRATEGIES[strategy].width_key
        raise UserError(f"params.yaml: generation.{key} ({s}) needs {per_user / 2**30:.1f} GiB per user over "
                        f"{num_items} items, more than half the free {device.type} memory "
                        f"({free / 2**30:.1f} GiB); lower it")
    if params.batch_size:
        return params.batch_size
    by_memory = int(max(1, free // 4 // per_user))
    # A GPU takes as many users as its memory holds; on the CPU batches beyond 512 users gain nothing.
    return by_memory if device.type == "cuda" else min(512, by_memory)


def user_uniforms(seed: int, users: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """(len(users), *shape) random numbers in [0, 1). User u's come from its own stream, seeded
    by (seed, u), so its sampled items depend neither on the batch size nor on the other users
    recommended with it (the `genrec recommend` command asks for one user)."""
    out = np.empty((len(users), *shape), dtype=np.float32)
    for row, user in enumerate(users):
        out[row] = np.random.default_rng([seed, int(user)]).random(shape, dtype=np.float32)
    return torch.from_numpy(out)


def recommend(strategy: str, model, sequences: UserSequences, users: np.ndarray, params: GenerationParams,
              streams: np.ndarray | None = None, progress: str | None = None,
              group: Group = SINGLE) -> tuple[np.ndarray, np.ndarray]:
    """(len(users), horizon) recommended item ids in rank order, and their scores: the next-item
    probability (topk), the RRA or RA score (rra, ra); NaN where the order is the generation order.
    ``streams``: each row's random-number stream (``user_uniforms``), by default its user id.
    With ``progress``, a bar (or one line per batch in a log) of that name. In a ``group`` of
    processes each rank recommends for its share of the users and every rank gets all the lists,
    in user order: the same as one process's, since a user's random numbers are its own and
    each batch holds the same users."""
    return _recommend(strategy, model, sequences, users, params, None, streams, progress, group)[0]


def recommend_counts(strategy: str, model, sequences: UserSequences, users: np.ndarray, params: GenerationParams,
                     counts: list[int], progress: str | None = None,
                     group: Group = SINGLE) -> list[tuple[np.ndarray, np.ndarray]]:
    """``recommend`` of rra or ra for each number of sequences in ``counts``, from one draw of
    max(counts) sequences per user, at the cost of one generation instead of one per count.
    A user's random numbers are laid out sequence by sequence, so the first n sequences of the
    draw are those ``recommend`` draws with ``num_sequences`` n, up to float rounding (the
    matrix products see more rows, which can move a logit in its last bit; on ml-100k no
    validation metric of the tuning grids moved: benchmarks/bench_tuning.py)."""
    if STRATEGIES[strategy].batch_of_counts is None:
        raise ValueError(f"{strategy} keeps no sequences to share between sequence counts")
    widest = params.model_copy(update={"num_sequences": max(counts)})
    return _recommend(strategy, model, sequences, users, widest, list(counts), None, progress, group)


def _recommend(strategy: str, model, sequences: UserSequences, users: np.ndarray, params: GenerationParams,
               counts: list[int] | None, streams: np.ndarray | None, progress: str | None,
               group: Group) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (items, scores) per number of sequences in ``counts``; one, of the setting's own, without."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    model.eval()  # no dropout: recommendations must not change between runs
    device = next(model.parameters()).device
    config = model.config
    window = config.n_positions - params.horizon  # room for the generated items
    batch_size = auto_batch_size(strategy, params, config.vocab_size - 1, window, config.n_embd,
                                 config.n_layer, device)
    lists = 1 if counts is None else len(counts)
    if len(users) == 0:  # a rank with no batch of its own
        return [(np.zeros((0, params.horizon), dtype=np.int64), np.zeros((0, params.horizon), dtype=np.float32))
                for _ in range(lists)]
    if group.world > 1:
        # Whole batches of rank 0's batch size per rank: every batch holds the users it would
        # hold in one process, so the arithmetic, and the lists, are the same to the bit.
        batch_size = int(group.broadcast([batch_size])[0])
        part = group.shard(-(-len(users) // batch_size))
        rows = slice(part.start * batch_size, part.stop * batch_size)
        shares = _recommend(strategy, model, sequences, np.asarray(users)[rows],
                            params.model_copy(update={"batch_size": batch_size}), counts,
                            None if streams is None else np.asarray(streams)[rows], progress, SINGLE)
        return [(group.gather(items), group.gather(scores)) for items, scores in shares]
    kind = STRATEGIES[strategy]
    if kind.batch is None:
        items, scores = top_next_items(model, sequences, users, window, params.horizon, batch_size)
        return [(items.numpy(), scores.numpy())]
    # Every (user, sequence, step) gets its own random number, drawn up front from the seed,
    # so sampled recommendations depend on the seed and the user, not on the batch size or device.
    uniforms = user_uniforms(params.seed, users if streams is None else streams,
                             (kind.width(params), params.horizon)) if kind.sampled else None
    decoder = engine.Decoder(model)
    # Filled in place, not gathered from per-batch pieces, which fragment the heap among the
    # freed (batch, catalogue) temporaries (training.recommend).
    out = [(np.zeros((len(users), params.horizon), dtype=np.int64), np.full((len(users), params.horizon), np.nan,
                                                                          dtype=np.float32)) for _ in range(lists)]
    bar = Progress(len(users), progress, "users") if progress else None
    for start in range(0, len(users), batch_size):
        batch = np.asarray(users[start:start + batch_size])
        prompts = torch.from_numpy(sequences.last_items(batch, window, side="left")).to(device)
        seen = sequences.seen_mask(batch, config.vocab_size - 1, device)
        batch_uniforms = None if uniforms is None else uniforms[start:start + batch_size].to(device)
        results = ([kind.batch(decoder, prompts, seen, params, uniforms=batch_uniforms)] if counts is None
                   else kind.batch_of_counts(decoder, prompts, seen, params, counts, uniforms=batch_uniforms))
        for (items_out, scores_out), (items, scores) in zip(out, results):
            items_out[start:start + len(batch)] = items.cpu().numpy()
            if scores is not None:
                scores_out[start:start + len(batch)] = scores.cpu().numpy()
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()
    return out
