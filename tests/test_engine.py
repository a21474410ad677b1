"""genrec.engine against Hugging Face generate() (genrec.reference), and its aggregations by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genrec import engine, reference
from genrec import model as gm


# More than 50 items: generate()'s default top-k of 50 would otherwise go unnoticed.
NUM_ITEMS = 120
V = NUM_ITEMS + 1
HORIZON = 6
WINDOW = 18  # prompt width; n_positions 24 leaves room for the horizon


def tiny_model():
    torch.manual_seed(0)
    params = gm.ModelParams(n_positions=24, n_embd=16, n_layer=2, n_head=2,
                            activation_function="gelu_pytorch_tanh", dropout=0.1)
    return gm.build(NUM_ITEMS, params).eval()


def left_padded_prompts():
    """Five users with prompts of 1, 4, 9, 17 and 18 (= the full width) distinct items."""
    g = torch.Generator().manual_seed(1)
    lengths = [1, 4, 9, 17, WINDOW]
    prompts = torch.zeros(len(lengths), WINDOW, dtype=torch.long)
    seen = torch.zeros(len(lengths), V, dtype=torch.bool)
    seen[:, 0] = True
    for b, n in enumerate(lengths):
        history = torch.randperm(NUM_ITEMS, generator=g)[:n + 3] + 1  # 3 older items out of the window
        prompts[b, WINDOW - n:] = history[3:]
        seen[b, history] = True
    return prompts, seen


# The engine's default sampler draws from the same distributions as generate() but with other
# random numbers; ``exact=True`` (where the engine has it) replays generate()'s own draws.
EXACT = {"exact": True}  # generate()'s own torch.multinomial call: the same random draws

MODEL = tiny_model()
DECODER = engine.Decoder(MODEL)
PROMPTS, SEEN = left_padded_prompts()


def check_valid(recs: torch.Tensor, seen: torch.Tensor = SEEN):
    assert recs.shape == (len(seen), HORIZON)
    assert not (recs == 0).any()
    assert not seen.gather(1, recs).any()
    assert all(len(set(row.tolist())) == HORIZON for row in recs)


def test_prefill_matches_the_model():
    logits, prompt = DECODER.prefill(PROMPTS)
    mask = (PROMPTS != 0).long()
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # each prompt starts at position 0, as in generate()
    with torch.no_grad():
        expected = MODEL(input_ids=PROMPTS, attention_mask=mask, position_ids=positions).logits[:, -1]
        # And unpadded, one user at a time.
        for b, n in enumerate([1, 4, 9, 17, WINDOW]):
            alone = MODEL(input_ids=PROMPTS[b:b + 1, WINDOW - n:]).logits[0, -1]
            torch.testing.assert_close(logits[b], alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    assert prompt.lengths.tolist() == [1, 4, 9, 17, 18]


def test_greedy_equals_generate():
    items = engine.greedy(DECODER, PROMPTS, SEEN, HORIZON)
    assert items.shape == (5, HORIZON)
    expected = reference.generate(MODEL, PROMPTS, SEEN, HORIZON, strategy="greedy")
    assert torch.equal(items, expected)
    check_valid(expected)


@pytest.mark.parametrize("num_beams", [2, 3])
def test_beam_equals_generate(num_beams):
    got = engine.beam_search(DECODER, PROMPTS, SEEN, HORIZON, num_beams)
    expected = reference.generate(MODEL, PROMPTS, SEEN, HORIZON, strategy="beam", num_beams=num_beams)
    assert torch.equal(got, expected)
    check_valid(got)


def test_beam_one_is_greedy():
    assert torch.equal(engine.beam_search(DECODER, PROMPTS, SEEN, HORIZON, 1),
                       engine.greedy(DECODER, PROMPTS, SEEN, HORIZON))


def engine_sampled(strategy: str, num_sequences: int, temperature: float, top_k: int) -> torch.Tensor:
    options = dict(temperature=temperature, top_k=top_k, **EXACT)
    if strategy == "sampling":
        return engine.sample(DECODER, PROMPTS, SEEN, HORIZON, **options)[0][:, 0]
    if strategy == "rra":
        items, _ = engine.sample(DECODER, PROMPTS, SEEN, HORIZON, num_sequences=num_sequences, **options)
        return engine.rank_scores(engine.reciprocal_rank_scores(items, V), SEEN, HORIZON)
    _, scores = engine.sample(DECODER, PROMPTS, SEEN, HORIZON, num_sequences=num_sequences, relevance=True,
                              **options)
    return engine.rank_scores(scores, SEEN, HORIZON)


def compare_with_generate(strategy: str, top_k: int, seed: int = 3):
    num_sequences = 1 if strategy == "sampling" else 4
    torch.manual_seed(seed)
    got = engine_sampled(strategy, num_sequences, 0.7, top_k)
    torch.manual_seed(seed)
    expected = reference.generate(MODEL, PROMPTS, SEEN, HORIZON, strategy=strategy, num_sequences=num_sequences,
                                  temperature=0.7, top_k=top_k)
    check_valid(got)
    return got, expected


@pytest.mark.parametrize("strategy", ["sampling", "rra", "ra"])
@pytest.mark.parametrize("top_k", [5, 20])
def test_sampled_strategies_equal_generate(strategy, top_k):
    got, expected = compare_with_generate(strategy, top_k)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("strategy", ["sampling", "rra", "ra"])
@pytest.mark.parametrize("top_k", [0, 60])
def test_sampled_strategies_equal_generate_without_a_top_50_cut(strategy, top_k):
    got, expected = compare_with_generate(strategy, top_k)
    assert torch.equal(got, expected)


def test_no_top_k_samples_beyond_fifty_items():
    """The engine's top_k 0 is no cut (docs/method.md §5): RA gives weight to more than 50 items per step."""
    torch.manual_seed(0)
    _, scores = engine.sample(DECODER, PROMPTS, SEEN, 1, num_sequences=1, temperature=1.0,
                              top_k=0, relevance=True)
    assert ((scores > 0).sum(dim=1) == (~SEEN).sum(dim=1)).all()
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(len(SEEN)))


@pytest.mark.parametrize("top_k", [0, 5, 200])
def test_default_sampler_gives_the_same_relevance_scores(top_k):
    """At one step the RA scores are the sampling probabilities, whatever is drawn: the default
    (fast) sampler and the exact one must agree, with and without a top-k cut."""
    def ra(**options):
        torch.manual_seed(0)
        return engine.sample(DECODER, PROMPTS, SEEN, 1, num_sequences=3, temperature=0.7,
                             top_k=top_k, relevance=True, **options)

    fast_items, fast = ra()
    exact_items, exact = ra(**EXACT)
    torch.testing.assert_close(fast, exact, rtol=1e-5, atol=1e-7)
    assert not SEEN.gather(1, fast_items[:, :, 0]).any()
    if 0 < top_k < NUM_ITEMS:
        assert ((fast > 0).sum(dim=1) == top_k).all()
        kept = fast > 0
        assert kept.gather(1, fast_items[:, :, 0]).all()  # only the k best items are drawn


def test_inverse_cdf_draws_from_the_distribution():
    inverse_cdf = engine.inverse_cdf
    probs = torch.tensor([0.0, 0.1, 0.0, 0.6, 0.3, 0.0])
    torch.manual_seed(0)
    draws = inverse_cdf(probs.expand(40_000, -1))
    counts = torch.bincount(draws, minlength=6).double() / len(draws)
    assert counts[[0, 2, 5]].sum() == 0  # zero-probability items (banned, cut, trailing) never come up
    torch.testing.assert_close(counts, probs.double(), atol=0.01, rtol=0)
    # Unnormalised rows and leading batch dimensions.
    draws = inverse_cdf(torch.tensor([[[0.0, 0.0, 2.0]], [[5.0, 0.0, 0.0]]]))
    assert draws.tolist() == [[2], [0]]


def test_sample_filter():
    logits = torch.tensor([[1.0, 3.0, 2.0, -torch.inf, 0.0]])
    torch.testing.assert_close(engine.sample_filter(logits, 0.5, 0), logits / 0.5)
    cut = engine.sample_filter(logits, 2.0, 2)
    torch.testing.assert_close(cut, torch.tensor([[-torch.inf, 1.5, 1.0, -torch.inf, -torch.inf]]))


# --- aggregations by hand ------------------------------------------------------------------------

def test_reciprocal_rank_scores_by_hand():
    sequences = torch.tensor([[[3, 1, 4], [1, 5, 3]],  # user 0: 2 sequences of 3 items
                              [[2, 4, 1], [2, 4, 1]]])  # user 1: twice the same sequence
    scores = engine.reciprocal_rank_scores(sequences, 6)
    expected = torch.tensor([
        # 0   1          2    3              4        5
        [0.0, 1 / 2 + 1, 0.0, 1 + 1 / 3, 1 / 3, 1 / 2],
        [0.0, 2 / 3, 2.0, 0.0, 2 / 2, 0.0],
    ])
    torch.testing.assert_close(scores, expected)
    seen = torch.tensor([[True, False, False, False, False, False],
                         [True, False, False, False, True, False]])
    # User 0: 1 (1.5), 3 (1.33), 5 (0.5), 4 (0.33), then 2 (0, unsampled).
    # User 1: 2 (2), 1 (0.67), then the unsampled 3 and 5 (0, lower id first); 4 is seen.
    np.testing.assert_array_equal(engine.rank_scores(scores[:1], seen[:1], 5).numpy(), [[1, 3, 5, 4, 2]])
    np.testing.assert_array_equal(engine.rank_scores(scores, seen, 4).numpy(), [[1, 3, 5, 4], [2, 1, 3, 5]])


def test_rank_scores_ties_go_to_the_lower_id():
    scores = torch.tensor([[0.0, 1.0, 2.0, 2.0, 1.0, 0.0, 2.0]])
    seen = torch.tensor([[True, False, True, False, False, False, False]])
    np.testing.assert_array_equal(engine.rank_scores(scores, seen, 5).numpy(), [[3, 6, 1, 4, 5]])


class ScriptedDecoder:
    """A stand-in decoder: fixed next-item logits at every step, whatever came before."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits  # (V,)

    def prefill(self, prompts):
        B = prompts.shape[0]
        prompt = engine.PromptCache([torch.zeros(B, 1, 1, 1)], [torch.zeros(B, 1, 1, 1)],
                                    torch.ones(B, 1, dtype=torch.bool), torch.ones(B, dtype=torch.long))
        return self.logits.expand(B, -1).clone(), prompt

    def new_cache(self, B, S, horizon, like):
        return None

    def step(self, tokens, t, prompt, cache):
        B, S = tokens.shape
        return self.logits.expand(B, S, -1).clone()


def test_ra_scores_by_hand():
    # Items 1..4 with weights 1 : 2 : 1 : 4 (logits = log weights); item 4 is seen.
    decoder = ScriptedDecoder(torch.log(torch.tensor([1e-30, 1.0, 2.0, 1.0, 4.0])))
    seen = torch.tensor([[True, False, False, False, True]])
    # Step 1: p = 1/4, 2/4, 1/4 over items 1, 2, 3. Step 2: the sequence's first item is banned.
    step2 = {1: [0, 0, 2 / 3, 1 / 3, 0], 2: [0, 1 / 2, 0, 1 / 2, 0], 3: [0, 1 / 3, 2 / 3, 0, 0]}
    torch.manual_seed(0)
    items, scores = engine.sample(decoder, torch.ones(1, 1, dtype=torch.long), seen, 2, num_sequences=2,
                                  temperature=1.0, top_k=0, relevance=True)
    first = items[0, :, 0].tolist()
    expected = 2 * torch.tensor([0, 1 / 4, 2 / 4, 1 / 4, 0]) + torch.tensor(step2[first[0]]) \
        + torch.tensor(step2[first[1]])
    torch.testing.assert_close(scores[0], expected.float())
    assert scores[0, 4] == 0  # seen items never gather probability
    assert not (items == 4).any()


def test_ra_scores_temperature_and_top_k_by_hand():
    # Weights 1 : 2 : 1 : 4 at T = 0.5 become 1 : 4 : 1 : 16; top_k 2 keeps items 2 and 4.
    decoder = ScriptedDecoder(torch.log(torch.tensor([1e-30, 1.0, 2.0, 1.0, 4.0])))
    seen = torch.tensor([[True, False, False, False, False]])
    torch.manual_seed(0)
    items, scores = engine.sample(decoder, torch.ones(1, 1, dtype=torch.long), seen, 1, num_sequences=3,
                                  temperature=0.5, top_k=2, relevance=True)
    torch.testing.assert_close(scores[0], torch.tensor([0, 0, 3 * 4 / 20, 0, 3 * 16 / 20]))
    assert set(items.flatten().tolist()) <= {2, 4}
    np.testing.assert_array_equal(engine.rank_scores(scores, seen, 3).numpy(), [[4, 2, 1]])


def test_same_seed_same_draws_other_seed_other_draws():
    def draw(seed, options):
        torch.manual_seed(seed)
        return engine.sample(DECODER, PROMPTS, SEEN, HORIZON, num_sequences=3, temperature=1.0,
                             **options)[0]

    for options in ({}, EXACT):
        assert torch.equal(draw(5, options), draw(5, options))
        assert not torch.equal(draw(5, options), draw(6, options))


@pytest.mark.parametrize("top_k", [0, 3, 10])
def test_sampled_sequences_never_repeat_nor_recommend_seen(top_k):
    torch.manual_seed(0)
    items, _ = engine.sample(DECODER, PROMPTS, SEEN, HORIZON, num_sequences=8, temperature=2.0,
                             top_k=top_k)
    for b in range(len(SEEN)):
        for s in range(8):
            row = items[b, s]
            assert len(set(row.tolist())) == HORIZON
            assert not SEEN[b, row].any()


def test_positions_leave_room_for_the_horizon():
    assert WINDOW + HORIZON <= MODEL.config.n_positions
    assert math.isfinite(float(DECODER.prefill(PROMPTS)[0].sum()))


def test_reference_sampling_draws_one_sequence_whatever_num_sequences():
    torch.manual_seed(5)
    one = reference.generate(MODEL, PROMPTS, SEEN, HORIZON, strategy="sampling", num_sequences=1, temperature=0.7)
    torch.manual_seed(5)
    many = reference.generate(MODEL, PROMPTS, SEEN, HORIZON, strategy="sampling", num_sequences=7, temperature=0.7)
    assert torch.equal(one, many)


@pytest.mark.parametrize("top_k", [0, 3])
def test_the_first_n_sequences_of_a_draw_are_a_draw_of_n(top_k):
    """Sequences take their random numbers row by row, so one draw of 7 holds the draws of 2
    and of 5: their items, and with ``prefixes`` their RA scores (to float rounding: the
    products of 7 sequences and of 2 may round a logit differently)."""
    uniforms = torch.rand(len(PROMPTS), 7, HORIZON, generator=torch.Generator().manual_seed(3))
    options = dict(temperature=0.8, top_k=top_k, relevance=True)
    items, sums = engine.sample(DECODER, PROMPTS, SEEN, HORIZON, num_sequences=7, uniforms=uniforms,
                                prefixes=(2, 7, 5), **options)
    assert len(sums) == 3
    for n, scores in zip((2, 7, 5), sums):
        alone, alone_scores = engine.sample(DECODER, PROMPTS, SEEN, HORIZON, num_sequences=n,
                                            uniforms=uniforms[:, :n], **options)
        assert torch.equal(items[:, :n], alone)
        torch.testing.assert_close(scores, alone_scores, rtol=1e-6, atol=1e-7)
    assert torch.equal(sums[1], engine.sample(DECODER, PROMPTS, SEEN, HORIZON, num_sequences=7, uniforms=uniforms,
                                              **options)[1])  # all 7: the draw's own scores, to the bit
    assert not torch.allclose(sums[0], sums[1])


def test_prefixes_cannot_exceed_the_draw():
    with pytest.raises(ValueError, match="more than the 3 sequences"):
        engine.sample(DECODER, PROMPTS, SEEN, HORIZON, num_sequences=3, relevance=True, prefixes=(2, 4))
