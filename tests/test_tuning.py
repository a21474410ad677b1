"""genrec.tuning and the strategy stage's tuning: the validation argmax is chosen, ties go to
the earlier grid point, and the test users never sway the choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from genrec import engine, metrics
from genrec import model as gm
from genrec.sequences import UserSequences
from genrec.strategies import recommend
from genrec.tuning import tune
from helpers import defaults, run_stage

REPO = Path(__file__).resolve().parents[1]
NUM_ITEMS, HORIZON, N_POSITIONS = 40, 4, 16


def walks(num_users: int = 24, seed: int = 0) -> pd.DataFrame:
    """Each user steps through the catalogue with a stride of 1 or 3: 12 training items."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        start, stride = int(rng.integers(0, NUM_ITEMS)), int(rng.choice([1, 3]))
        rows += [(user, (start + stride * t) % NUM_ITEMS + 1, t) for t in range(12 + HORIZON)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def targets_of(frame: pd.DataFrame, users) -> pd.DataFrame:
    held = frame[frame["user_id"].isin(users)].groupby("user_id").tail(HORIZON).copy()
    held["position"] = held.groupby("user_id").cumcount()
    return held[["user_id", "item_id", "position"]].reset_index(drop=True)


FRAME = walks()
TRAIN = FRAME.groupby("user_id").head(12).reset_index(drop=True)
SEQUENCES = UserSequences.from_frame(TRAIN, 24)
VAL_USERS, TEST_USERS = np.arange(0, 24, 2), np.arange(1, 24, 2)
VALIDATION = targets_of(FRAME, VAL_USERS)
CONFIG = defaults("generation", horizon=HORIZON, temperature=[0.3, 1.0, 3.0], top_k=[0, 5], num_sequences=4,
                  num_beams=[1, 2, 3], seed=1, device="cpu")


def tiny_model():
    torch.manual_seed(0)
    return gm.build(NUM_ITEMS, gm.ModelParams(n_positions=N_POSITIONS, n_embd=16, n_layer=1, n_head=2,
                                              activation_function="gelu_pytorch_tanh", dropout=0.0)).eval()


MODEL = tiny_model()
# Coverage over the NUM_ITEMS items, each had by one of 40 training users.
CATALOGUE = metrics.Catalogue(NUM_ITEMS, 40, np.r_[0, np.ones(NUM_ITEMS, dtype=np.int64)])


@pytest.mark.parametrize("strategy", ["beam", "rra", "sampling"])
def test_tune_picks_the_first_validation_argmax(strategy):
    chosen, table, recs = tune(strategy, MODEL, SEQUENCES, VAL_USERS, VALIDATION, CATALOGUE, CONFIG,
                               show_progress=False)
    grid = CONFIG.grid(strategy)
    assert len(table) == len(grid) and table["chosen"].sum() == 1
    # Every row is the point's validation metrics, computed here directly.
    direct = [metrics.evaluate(recommend(strategy, MODEL, SEQUENCES, VAL_USERS, point)[0], VAL_USERS, VALIDATION,
                               CATALOGUE)[0][f"ndcg@{HORIZON}"] for point in grid]
    np.testing.assert_allclose(table[f"ndcg@{HORIZON}"], direct)
    best = int(np.argmax(direct))  # numpy's argmax: the first of equal maxima
    assert chosen == grid[best] and table["chosen"].tolist().index(True) == best
    for key, value in chosen.chosen(strategy).items():
        assert table.loc[best, key] == value
    np.testing.assert_array_equal(recs, recommend(strategy, MODEL, SEQUENCES, VAL_USERS, grid[best])[0])


@pytest.mark.parametrize("strategy", ["rra", "ra"])
def test_one_draw_serves_the_points_that_differ_in_num_sequences(strategy, monkeypatch):
    """RRA and RA generate once per (temperature, top_k), for the largest num_sequences; every
    row is still exactly the point's own validation metrics and the choice is unchanged."""
    config = CONFIG.model_copy(update={"num_sequences": [3, 6, 1], "top_k": [0, 5]})
    grid = config.grid(strategy)
    direct = [metrics.evaluate(recommend(strategy, MODEL, SEQUENCES, VAL_USERS, point)[0], VAL_USERS, VALIDATION,
                               CATALOGUE)[0] for point in grid]
    draws = []
    sample = engine.sample
    monkeypatch.setattr(engine, "sample", lambda *a, **k: draws.append(k["num_sequences"]) or sample(*a, **k))
    chosen, table, recs = tune(strategy, MODEL, SEQUENCES, VAL_USERS, VALIDATION, CATALOGUE, config,
                               show_progress=False)
    assert draws == [6] * 6  # 3 temperatures x 2 top_k, one batch of users each
    assert table.drop(columns=["setting", "chosen"]).to_dict("records") == [{**p.chosen(strategy), **d}
                                                                  for p, d in zip(grid, direct)]
    assert table["setting"].iloc[0] == " / ".join(f"{v:g}" for v in grid[0].chosen(strategy).values())
    best = int(np.argmax([d[f"ndcg@{HORIZON}"] for d in direct]))
    assert chosen == grid[best]
    np.testing.assert_array_equal(recs, recommend(strategy, MODEL, SEQUENCES, VAL_USERS, grid[best])[0])


def test_ties_go_to_the_earlier_grid_point():
    config = defaults("generation", horizon=HORIZON, num_beams=[2, 2, 2], device="cpu")
    chosen, table, _ = tune("beam", MODEL, SEQUENCES, VAL_USERS, VALIDATION, CATALOGUE, config, show_progress=False)
    assert table["chosen"].tolist() == [True, False, False]


def test_grid_order_and_single_values():
    grid = CONFIG.grid("rra")
    assert len(grid) == 3 * 2 * 1
    assert [(p.temperature, p.top_k) for p in grid] == [(0.3, 0), (0.3, 5), (1.0, 0), (1.0, 5), (3.0, 0), (3.0, 5)]
    assert all(p.num_sequences == 4 and p.num_beams == [1, 2, 3] for p in grid)  # keys rra does not read stay
    assert CONFIG.grid("topk") == [CONFIG]


# --- the stage: test users never change the choice ---------------------------------------------

@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tuning")
    model = tiny_model()
    gm.save(model, folder / "model")
    split = folder / "split"
    split.mkdir()
    TRAIN.to_parquet(split / "train.parquet", index=False)
    VALIDATION.to_parquet(split / "validation.parquet", index=False)
    targets_of(FRAME, TEST_USERS).to_parquet(split / "test.parquet", index=False)
    (split / "meta.json").write_text(json.dumps({"num_items": NUM_ITEMS, "num_users": 24}))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["evaluation"]["k"] = HORIZON
    params["generation"].update(temperature=[0.3, 1.0, 3.0], top_k=[0, 5], num_sequences=4,
                                device="cpu", searched={"sampling": {}, "rra": {}, "ra": {}})  # the grids
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder


def run_recommend(folder: Path, strategy: str) -> dict:
    result = run_stage("recommend", strategy, "--model", "model", "--split", "split",
                       "--recs", f"recs/{strategy}.parquet", "--metrics", "metrics", cwd=folder, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads((folder / f"metrics/{strategy}.json").read_text())


@pytest.mark.slow
def test_stage_choice_ignores_the_test_users(folder):
    first = run_recommend(folder, "rra")
    table = pd.read_csv(folder / "metrics/tuning/rra.csv")
    assert len(table) == 6 and table["chosen"].sum() == 1
    chosen = table[table["chosen"]].iloc[0]
    assert first["chosen"] == {"temperature": chosen["temperature"], "top_k": chosen["top_k"], "num_sequences": 4}
    validation = json.loads((folder / "metrics/validation/rra.json").read_text())
    # the CSV keeps 6 decimals
    assert validation[f"ndcg@{HORIZON}"] == pytest.approx(chosen[f"ndcg@{HORIZON}"], abs=1e-6)
    assert set(validation) == set(first)  # the same keys as the test result

    # A test split whose targets are exactly what another grid point recommends: were the test
    # users consulted, that point would win. The choice and the validation table stay as they were.
    other = next(p for p in defaults("generation", horizon=HORIZON, temperature=[0.3, 1.0, 3.0], top_k=[0, 5],
                                     num_sequences=4, seed=42).grid("rra")
                 if p.chosen("rra") != first["chosen"])
    recs, _ = recommend("rra", tiny_model(), SEQUENCES, TEST_USERS, other)
    rigged = metrics.recommendations_frame(TEST_USERS, recs).rename(columns={"rank": "position"})
    rigged["position"] -= 1
    rigged.to_parquet(folder / "split/test.parquet", index=False)
    second = run_recommend(folder, "rra")
    assert second["chosen"] == first["chosen"]
    pd.testing.assert_frame_equal(pd.read_csv(folder / "metrics/tuning/rra.csv"), table)
    assert second[f"ndcg@{HORIZON}"] < 1.0  # the rigged targets would have given the other point 1.0


@pytest.mark.slow
def test_stage_without_a_grid_writes_no_tuning_table(folder):
    summary = run_recommend(folder, "greedy")
    assert "chosen" not in summary
    assert not (folder / "metrics/tuning/greedy.csv").exists()
    assert (folder / "metrics/validation/greedy.json").exists()
