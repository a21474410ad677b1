"""genrec.strategies: the six strategies end to end through recommend(), and GenerationParams."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genrec import model as gm
from genrec import engine, params, reference
from genrec.errors import UserError
from genrec.sequences import UserSequences
from genrec.strategies import (STRATEGIES, GenerationParams, auto_batch_size, recommend, recommend_counts,
                               user_uniforms)
from helpers import defaults


NUM_ITEMS = 80
HORIZON = 5
N_POSITIONS = 16  # the prompt window is 16 - 5 = 11


def tiny_model():
    torch.manual_seed(0)
    params_ = gm.ModelParams(n_positions=N_POSITIONS, n_embd=16, n_layer=1, n_head=2,
                             activation_function="gelu_pytorch_tanh", dropout=0.1)
    return gm.build(NUM_ITEMS, params_).eval()


def user_sequences(num_users: int = 9) -> UserSequences:
    """Histories of 1 to 25 distinct items: some shorter, some longer than the window."""
    rng = np.random.default_rng(0)
    lengths = [1, 3, 11, 25, 7, 12, 2, 18, 5][:num_users]
    rows = [(u, int(i)) for u, n in enumerate(lengths)
            for i in rng.choice(np.arange(1, NUM_ITEMS + 1), n, replace=False)]
    return UserSequences.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]), num_users)


MODEL = tiny_model()
SEQUENCES = user_sequences()
USERS = np.array([8, 0, 3, 1, 5, 2, 7])  # not in id order
PARAMS = GenerationParams(horizon=HORIZON, num_beams=2, temperature=0.8, top_k=0, num_sequences=4, seed=1,
                          batch_size=0, device="cpu", processes=1)


def run(strategy: str, **changes) -> np.ndarray:
    return recommend(strategy, MODEL, SEQUENCES, USERS, GenerationParams(**{**PARAMS.model_dump(), **changes}))[0]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_valid_recommendations(strategy):
    recs = run(strategy)
    assert recs.shape == (len(USERS), HORIZON)
    assert np.issubdtype(recs.dtype, np.integer)
    assert not (recs == 0).any()
    seen = SEQUENCES.seen_mask(USERS, NUM_ITEMS).numpy()  # the whole history, not just the window
    assert not seen[np.arange(len(USERS))[:, None], recs].any()
    assert all(len(set(row)) == HORIZON for row in recs)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_deterministic(strategy):
    np.testing.assert_array_equal(run(strategy), run(strategy))


@pytest.mark.parametrize("strategy", ["sampling", "rra", "ra"])
def test_seed_changes_sampled_strategies(strategy):
    assert not np.array_equal(run(strategy, seed=1), run(strategy, seed=2))


@pytest.mark.parametrize("strategy", ["topk", "greedy", "beam"])
def test_seed_does_not_matter_for_deterministic_strategies(strategy):
    np.testing.assert_array_equal(run(strategy, seed=1), run(strategy, seed=2))


@pytest.mark.parametrize("top_k", [0, 10])
def test_rra_with_one_sequence_is_sampling(top_k):
    np.testing.assert_array_equal(run("rra", num_sequences=1, top_k=top_k), run("sampling", top_k=top_k))


@pytest.mark.parametrize("strategy, changes", [
    ("topk", {}), ("greedy", {}), ("beam", {"num_beams": 2}), ("beam", {"num_beams": 3}),
])
def test_batch_size_does_not_matter(strategy, changes):
    expected = run(strategy, batch_size=0, **changes)
    np.testing.assert_array_equal(run(strategy, batch_size=2, **changes), expected)
    np.testing.assert_array_equal(run(strategy, batch_size=1, **changes), expected)


def test_topk_is_the_best_next_items():
    recs = run("topk")
    window = N_POSITIONS - HORIZON
    for row, user in zip(recs, USERS):
        history = SEQUENCES.items[SEQUENCES.indptr[user]:SEQUENCES.indptr[user + 1]]
        with torch.no_grad():
            logits = MODEL(input_ids=torch.from_numpy(history[-window:])[None]).logits[0, -1].double().numpy()
        logits[0] = -np.inf
        logits[history] = -np.inf
        np.testing.assert_array_equal(row, np.argsort(-logits, kind="stable")[:HORIZON])


def test_greedy_first_item_is_topk_first_item():
    np.testing.assert_array_equal(run("greedy")[:, 0], run("topk")[:, 0])


def prompts_and_seen():
    """recommend()'s inputs built by hand: the last 16 - 5 = 11 items, left-padded, and the whole history."""
    window = N_POSITIONS - HORIZON
    prompts = torch.zeros(len(USERS), window, dtype=torch.long)
    seen = torch.zeros(len(USERS), NUM_ITEMS + 1, dtype=torch.bool)
    seen[:, 0] = True
    for row, user in enumerate(USERS):
        history = torch.from_numpy(SEQUENCES.items[SEQUENCES.indptr[user]:SEQUENCES.indptr[user + 1]])
        last = history[-window:]
        prompts[row, window - len(last):] = last
        seen[row, history] = True
    return prompts, seen


@pytest.mark.parametrize("strategy, num_beams", [("greedy", 1), ("beam", 2), ("beam", 3)])
def test_recommend_equals_generate(strategy, num_beams):
    got = run(strategy, num_beams=num_beams)
    prompts, seen = prompts_and_seen()
    expected = reference.generate(MODEL, prompts, seen, HORIZON, strategy=strategy, num_beams=num_beams)
    np.testing.assert_array_equal(got, expected.numpy())


@pytest.mark.parametrize("strategy", ["sampling", "rra", "ra"])
@pytest.mark.parametrize("top_k", [0, 10])
def test_recommend_sampled_equals_engine(strategy, top_k):
    """recommend() draws every user's random numbers up front from the seed, then samples
    with the engine on the prompts built above."""
    got = run(strategy, top_k=top_k, seed=3)
    prompts, seen = prompts_and_seen()
    decoder = engine.Decoder(MODEL)
    sequences = 1 if strategy == "sampling" else PARAMS.num_sequences
    uniforms = user_uniforms(3, USERS, (sequences, HORIZON))
    options = dict(temperature=PARAMS.temperature, top_k=top_k, uniforms=uniforms)
    if strategy == "sampling":
        expected = engine.sample(decoder, prompts, seen, HORIZON, **options)[0][:, 0]
    elif strategy == "rra":
        items, _ = engine.sample(decoder, prompts, seen, HORIZON, num_sequences=PARAMS.num_sequences, **options)
        expected = engine.rank_scores(engine.reciprocal_rank_scores(items, NUM_ITEMS + 1), seen, HORIZON)
    else:
        _, scores = engine.sample(decoder, prompts, seen, HORIZON, num_sequences=PARAMS.num_sequences,
                                  relevance=True, **options)
        expected = engine.rank_scores(scores, seen, HORIZON)
    np.testing.assert_array_equal(got, expected.numpy())


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown strategy"):
        run("nucleus")


# --- GenerationParams ----------------------------------------------------------------------------

def test_keys_a_stage_does_not_read_are_none():
    """Neither checked nor defaulted: a stage that reads ``horizon`` is not stopped by a bad
    ``num_beams`` it never uses, and cannot use a value it did not declare."""
    section = {"horizon": 10, "num_beams": 0, "device": "cpu"}
    p = params.section({"generation": section}, "generation", GenerationParams, keys=["horizon", "device"])
    assert (p.horizon, p.device) == (10, "cpu")
    assert p.num_beams is p.temperature is p.top_k is p.num_sequences is p.seed is p.batch_size is None


@pytest.mark.parametrize("changes, key", [
    ({"temperature": 0.0}, "generation.temperature"),
    ({"temperature": -0.5}, "generation.temperature"),
    ({"num_beams": 0}, "generation.num_beams"),
    ({"num_sequences": 0}, "generation.num_sequences"),
    ({"top_k": -1}, "generation.top_k"),
    ({"batch_size": -1}, "generation.batch_size"),
    ({"horizon": 0}, "generation.horizon"),
    # grids: every value is checked as a single value would be
    ({"temperature": [0.3, -0.5]}, "generation.temperature"),
    ({"num_beams": [2, 0]}, "generation.num_beams"),
    ({"top_k": [0, -1]}, "generation.top_k"),
    # finite-positive on paper, but overflowing float32 or unbounded in practice
    ({"temperature": float("inf")}, "generation.temperature"),
    ({"temperature": 1e-45}, "generation.temperature"),
    ({"temperature": float("nan")}, "generation.temperature"),
    ({"num_beams": 5000}, "generation.num_beams"),
    ({"num_sequences": 100_000}, "generation.num_sequences"),
    ({"seed": -1}, "generation.seed"),
])
def test_validation_names_the_param(changes, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        defaults("generation", **changes)
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        params.section({"generation": changes}, "generation", GenerationParams, keys=list(changes))


@pytest.mark.parametrize("value, message", [
    ([], "must be a number or a non-empty list of numbers, got an empty list"),
    ([0.5, "hot"], "must be a number, got 'hot'"),
    ("hot", "must be a number or a non-empty list of numbers, got 'hot'"),
    ([0.5, True], "must be a number, got True"),
])
def test_bad_grids_are_one_line_errors(value, message):
    with pytest.raises(UserError) as error:
        params.section({"generation": {"temperature": value}}, "generation", GenerationParams,
                       keys=["temperature"])
    assert str(error.value) == f"params.yaml: generation.temperature {message}"


def test_a_grid_is_read_as_a_list_of_values():
    got = params.section({"generation": {"temperature": [1, 0.5], "num_beams": 3}}, "generation",
                         GenerationParams, keys=["temperature", "num_beams"])
    assert got.temperature == [1.0, 0.5] and got.num_beams == 3
    assert [p.temperature for p in got.grid("sampling")] == [1.0, 0.5]


def test_tiny_and_huge_temperatures_give_valid_lists():
    """The extremes that pass validation stay finite: near 0 sampling is greedy decoding."""
    np.testing.assert_array_equal(run("sampling", temperature=1e-30), run("greedy"))
    for strategy in ("sampling", "rra", "ra"):
        for temperature in (1e-30, 1e-9, 1e6):
            recs = run(strategy, temperature=temperature)
            assert not (recs == 0).any() and all(len(set(row)) == HORIZON for row in recs)


def test_check_catalogue():
    GenerationParams(num_beams=[2, 80]).check_catalogue(NUM_ITEMS)
    GenerationParams(horizon=10).check_catalogue(1)  # a stage that does not read num_beams
    with pytest.raises(UserError, match=r"generation\.num_beams \(81\) must not exceed .* \(80\)"):
        GenerationParams(num_beams=[2, 81]).check_catalogue(NUM_ITEMS)


def test_sequences_that_cannot_fit_in_memory_are_refused(monkeypatch):
    monkeypatch.setattr("psutil.virtual_memory", lambda: type("M", (), {"available": 8_000})())
    with pytest.raises(UserError, match=r"generation\.num_sequences \(4\) needs .* lower it"):
        run("rra")


def test_check_window():
    GenerationParams(horizon=10).check_window(11)
    for n_positions in (10, 5):
        with pytest.raises(UserError, match=r"evaluation\.k.*model\.n_positions"):
            GenerationParams(horizon=10).check_window(n_positions)


def test_params_of_each_strategy():
    assert list(STRATEGIES) == ["topk", "greedy", "beam", "sampling", "rra", "ra"]
    fields = set(GenerationParams.model_fields)
    for name, strategy in STRATEGIES.items():
        assert strategy.name == name
        assert set(strategy.params) <= fields, name
        assert {"batch_size", "device", "processes"} <= set(strategy.params)
        assert "horizon" not in strategy.params and strategy.settings[0] == "horizon"  # from evaluation.k
        assert set(strategy.tuned) <= set(strategy.params), name
        assert ("seed" in strategy.params) == strategy.sampled, name
        assert (strategy.batch is None) == (name == "topk")  # topk needs no autoregression
        assert set(strategy.settings) == {"horizon"} | set(strategy.params) - {"batch_size", "device", "processes"}
    assert "num_beams" in STRATEGIES["beam"].params and "seed" not in STRATEGIES["greedy"].params
    assert {"temperature", "top_k", "num_sequences", "seed"} <= set(STRATEGIES["ra"].params)
    assert STRATEGIES["rra"].width(PARAMS) == PARAMS.num_sequences and STRATEGIES["beam"].width(PARAMS) == 2
    assert STRATEGIES["sampling"].width(PARAMS) == 1


@pytest.mark.parametrize("strategy", ["sampling", "rra", "ra"])
def test_sampled_recommendations_do_not_depend_on_the_batch_size(strategy):
    np.testing.assert_array_equal(run(strategy, seed=4, batch_size=2), run(strategy, seed=4, batch_size=0))


@pytest.mark.parametrize("strategy", ["sampling", "rra", "ra"])
def test_a_users_sampled_items_do_not_depend_on_the_other_users(strategy):
    """Each user's random numbers come from (seed, user): recommending one user alone, as
    `genrec recommend --user` does, gives that user's items in the stage's output."""
    together = run(strategy)
    for row, user in enumerate(USERS):
        alone, _ = recommend(strategy, MODEL, SEQUENCES, np.array([user]), PARAMS)
        np.testing.assert_array_equal(alone[0], together[row])


@pytest.mark.parametrize("strategy", ["rra", "ra"])
@pytest.mark.parametrize("changes", [{"top_k": 0}, {"top_k": 10}, {"top_k": 0, "batch_size": 2}])
def test_one_draw_gives_the_list_of_each_num_sequences(strategy, changes):
    """recommend_counts (tuning's shared draw) gives, for each number of sequences, the items
    and (to float rounding) the scores that recommend gives with num_sequences set to it."""
    counts = [3, 1, 6]
    lists = recommend_counts(strategy, MODEL, SEQUENCES, USERS, PARAMS.model_copy(update=changes), counts)
    assert len(lists) == len(counts)
    for n, (items, scores) in zip(counts, lists):
        alone_items, alone_scores = recommend(strategy, MODEL, SEQUENCES, USERS,
                                              PARAMS.model_copy(update={**changes, "num_sequences": n}))
        np.testing.assert_array_equal(items, alone_items, err_msg=f"{n} sequences")
        np.testing.assert_allclose(scores, alone_scores, rtol=1e-6, err_msg=f"{n} sequences")
    assert not np.array_equal(lists[1][1], lists[2][1])  # the counts do give other scores


def test_only_rra_and_ra_share_a_draw_between_counts():
    with pytest.raises(ValueError, match="beam keeps no sequences to share"):
        recommend_counts("beam", MODEL, SEQUENCES, USERS, PARAMS, [1, 2])


def test_user_uniforms_are_per_user_streams():
    first = user_uniforms(7, np.array([3, 5]), (2, 4))
    assert first.shape == (2, 2, 4) and first.dtype == torch.float32
    assert ((first >= 0) & (first < 1)).all()
    torch.testing.assert_close(user_uniforms(7, np.array([5]), (2, 4))[0], first[1])
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(user_uniforms(8, np.array([3]), (2, 4))[0], first[0])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_scores_rank_the_items(strategy):
    items, scores = recommend(strategy, MODEL, SEQUENCES, USERS, PARAMS)
    np.testing.assert_array_equal(items, run(strategy))
    if strategy in ("greedy", "beam", "sampling"):  # ranked by generation order: no score
        assert np.isnan(scores).all()
        return
    assert (scores > 0).all() and (np.diff(scores, axis=1) <= 0).all()
    if strategy == "topk":  # the next-item probability among the unseen items
        seen = SEQUENCES.seen_mask(USERS, NUM_ITEMS)
        prompts = torch.from_numpy(SEQUENCES.last_items(USERS, N_POSITIONS - HORIZON, side="right"))
        lengths = torch.from_numpy(np.minimum(SEQUENCES.lengths(USERS), N_POSITIONS - HORIZON))
        with torch.no_grad():
            probs = gm.last_logits(MODEL, prompts, lengths).masked_fill(seen, -torch.inf).softmax(dim=-1)
        np.testing.assert_allclose(scores, probs.gather(1, torch.from_numpy(items)).numpy(), rtol=1e-5)
    if strategy == "rra":  # at most num_sequences * 1 (first place in every sequence)
        assert scores.max() <= PARAMS.num_sequences


def test_automatic_batch_size_follows_the_device_memory(monkeypatch):
    """On a GPU the batch is what a quarter of the free memory holds, with no fixed cap (issue 14);
    on the CPU it stops at 512 users."""
    params = PARAMS.model_copy(update={"batch_size": 0, "num_sequences": 30})
    shape = dict(num_items=18_345, window=118, n_embd=64, n_layer=2)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * 2**30, 80 * 2**30))
    for strategy, sequences in (("greedy", 1), ("rra", 30)):
        on_gpu = auto_batch_size(strategy, params, device=torch.device("cuda"), **shape)
        per_user = 4 * 118 * 64 * (6 + 2 * 2) + 4 * sequences * 18_346 * 4
        assert on_gpu == 80 * 2**30 // 4 // per_user
    assert auto_batch_size("greedy", params, device=torch.device("cuda"), **shape) > 4096  # the former cap
    assert auto_batch_size("rra", params, device=torch.device("cpu"), **shape) <= 512
    assert auto_batch_size("rra", params.model_copy(update={"batch_size": 7}), device=torch.device("cuda"),
                           **shape) == 7
