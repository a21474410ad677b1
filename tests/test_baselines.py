"""genrec.baselines and stages/baseline.py: popularity, BPR-MF, SASRec and BERT4Rec (issue 6)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from genrec import params, training
from genrec import dropout as gd
from genrec.baselines import NAMES, bert4rec, bpr, common, popularity, sasrec
from genrec.training import Data
from genrec.errors import UserError
from genrec.sequences import UserSequences
from helpers import cyclic_walks, defaults, section_values
from helpers import run_stage as run_stage_module
from test_dropout import reference_dropout, same_bits

REPO = Path(__file__).resolve().parents[1]
MODULES = {"popularity": popularity, "bpr": bpr, "sasrec": sasrec, "bert4rec": bert4rec}
CPU = torch.device("cpu")


NUM_ITEMS = 30


def cyclic_data(num_users: int = 60, seed: int = 0) -> Data:
    """Cyclic walks; the first half of the users validate on their next item."""
    sequences, targets = cyclic_walks(num_users, NUM_ITEMS, seed)
    return Data(sequences, NUM_ITEMS, np.arange(num_users // 2), targets[:num_users // 2])


DATA = cyclic_data()
TEST_USERS = np.arange(30, 60)
TINY = {
    "popularity": popularity.Params(),
    "bpr": defaults("bpr", factors=8, lr=0.05, max_epochs=1, eval_every=1, patience=1, seed=0),
    "sasrec": defaults("sasrec", max_len=16, hidden=16, layers=1, heads=2, dropout=0.1, batch_size=16,
                       max_epochs=1, patience=1, seed=0, device="cpu"),
    "bert4rec": defaults("bert4rec", max_len=16, hidden=16, layers=1, heads=2, dropout=0.1, batch_size=16,
                         max_epochs=1, patience=1, seed=0, device="cpu"),
}


def seen(data: Data, user: int) -> set[int]:
    return set(data.sequences.items[data.sequences.indptr[user]:data.sequences.indptr[user + 1]].tolist())


def assert_valid(recs: np.ndarray, data: Data, users: np.ndarray, k: int) -> None:
    assert recs.shape == (len(users), k)
    assert recs.dtype == np.int64
    assert ((recs >= 1) & (recs <= data.num_items)).all()  # never padding 0 (nor BERT4Rec's mask token)
    for row, user in zip(recs, users):
        assert len(set(row.tolist())) == k, row
        assert not set(row.tolist()) & seen(data, user), (user, row)


# --- every baseline ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_one_epoch_gives_valid_recommendations(name):
    epochs = []
    recs, result = MODULES[name].fit_recommend(DATA, TEST_USERS, TINY[name], 5, CPU, on_epoch=epochs.append)
    assert_valid(recs, DATA, TEST_USERS, k=5)
    if MODULES[name].TRAINED:
        assert [e.epoch for e in result.history] == [1] and epochs == result.history
        assert 0.0 <= result.best.ndcg <= result.best.hit_rate <= 1.0
        assert set(result.best.train) == ({"auc"} if name == "bpr" else {"loss"})
    else:
        assert result is None


@pytest.mark.parametrize("name", ["bpr", "sasrec", "bert4rec"])
def test_same_seed_same_recommendations(name):
    first, result = MODULES[name].fit_recommend(DATA, TEST_USERS, TINY[name], 5, CPU)
    second, again = MODULES[name].fit_recommend(DATA, TEST_USERS, TINY[name], 5, CPU)
    np.testing.assert_array_equal(first, second)
    assert result.best.train == again.best.train


def test_params_yaml_matches_the_issue():
    sasrec_, bert4rec_, bpr_ = defaults("sasrec"), defaults("bert4rec"), defaults("bpr")
    # The sizes and rates are the searches' winners (tests/test_search.py); the rest is fixed.
    assert (sasrec_.max_len, sasrec_.max_epochs, sasrec_.patience) == (128, 100, 10)
    assert (bert4rec_.max_len, bert4rec_.max_epochs, bert4rec_.patience) == (128, 200, 20)
    assert (bpr_.max_epochs, bpr_.eval_every) == (200, 5)
    assert defaults("evaluation").k == 10  # one list length for every method


# --- dropout masks (dropout_masks: auto | fast | torch) ------------------------------------------------

def reference_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Hugging Face's eager attention as first written here: scale, then add the mask."""
    weights = (query @ key.transpose(2, 3)) * scaling + attention_mask
    weights = gd.fast_dropout(weights.softmax(-1), dropout, module.training)
    return (weights @ value).transpose(1, 2).contiguous(), weights


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_fast_masks_train_as_their_reference_bit_for_bit(name, monkeypatch):
    """Three epochs with the fast masks give the same weights, bit for bit, as the first
    version of their arithmetic (one product fewer for the mask, one pass fewer for the scores)."""
    params = TINY[name].model_copy(update={"dropout_masks": "fast", "dropout": 0.3, "max_epochs": 3, "patience": 3})
    trained = []
    for reference in (False, True):
        if reference:
            monkeypatch.setattr(gd, "fast_dropout", reference_dropout)
            monkeypatch.setattr(sasrec, "fast_dropout", reference_dropout)
            monkeypatch.setattr(gd, "_hf_attention", reference_attention)
        model, result = MODULES[name].fit(DATA, params, CPU)
        trained.append((model.state_dict(), [e.train["loss"] for e in result.history]))
    monkeypatch.undo()
    gd._register_hf_attention()  # Hugging Face's registry is global: leave today's attention in it
    (weights, losses), (expected_weights, expected_losses) = trained
    assert losses == expected_losses and len(losses) == 3
    assert weights.keys() == expected_weights.keys()
    assert all(same_bits(weights[key], expected_weights[key]) for key in weights)


def build(name: str, masks: str) -> torch.nn.Module:
    torch.manual_seed(0)
    section = TINY[name].model_copy(update={"dropout": 0.3})
    fast = masks == "fast"
    return sasrec.SASRec(NUM_ITEMS, section, fast) if name == "sasrec" else bert4rec.build(NUM_ITEMS, section, fast)


def hidden(name: str, model: torch.nn.Module, items: torch.Tensor) -> torch.Tensor:
    return model(items) if name == "sasrec" else bert4rec.hidden_states(model, items)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_fast_masks_change_the_draws_and_nothing_else(name, monkeypatch):
    items = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    exact, fast = build(name, "torch"), build(name, "fast")
    assert all(torch.equal(a, b) for a, b in zip(exact.state_dict().values(), fast.state_dict().values()))
    with torch.no_grad():
        expected = hidden(name, exact.eval(), items)
        torch.testing.assert_close(hidden(name, fast.eval(), items), expected, atol=1e-5, rtol=1e-5)
        fast.train()
        assert not torch.allclose(hidden(name, fast, items), expected, atol=1e-3)  # dropout when training
        # With the masks keeping every unit, training mode is the eval-mode network: the eager
        # attention that takes the fast masks computes what SDPA computes.
        monkeypatch.setattr(gd, "fast_dropout", lambda x, p, training=True: x)
        monkeypatch.setattr(sasrec, "fast_dropout", lambda x, p, training=True: x)
        torch.testing.assert_close(hidden(name, fast, items), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_both_masks_train_and_differ(name):
    losses = {}
    for masks in ("fast", "torch"):
        params = TINY[name].model_copy(update={"dropout_masks": masks})
        recs, result = MODULES[name].fit_recommend(DATA, TEST_USERS, params, 5, CPU)
        assert_valid(recs, DATA, TEST_USERS, k=5)
        losses[masks] = result.best.train["loss"]
    assert losses["fast"] != losses["torch"]  # other masks, another model


# --- the graphs step (sasrec.step, bert4rec.step) -----------------------------------------------

def left_padded_batch(width: int) -> torch.Tensor:
    torch.manual_seed(1)
    batch = torch.randint(1, NUM_ITEMS + 1, (5, width))
    for row, length in enumerate([width, 9, 4, 2, 0]):
        batch[row, :width - length] = 0
    return batch


def test_static_losses_are_the_exact_losses():
    batch = left_padded_batch(17)
    model = build("sasrec", "torch").eval()
    inputs, labels = batch[:, :-1], batch[:, 1:]
    torch.testing.assert_close(sasrec.StaticNextItemLoss(model)(inputs, labels),
                               sasrec.NextItemLoss(model)(common.trim_left(inputs), common.trim_left(labels)),
                               rtol=1e-5, atol=1e-4)
    batch = left_padded_batch(16)
    model = build("bert4rec", "torch").eval()
    inputs, masked = bert4rec.mask_items(batch, 0.4, NUM_ITEMS + 1, torch.Generator().manual_seed(0))
    expected = bert4rec.MaskedItemLoss(model)(inputs, masked, batch[masked])
    got = bert4rec.StaticMaskedItemLoss(model)(inputs, batch.masked_fill(~masked, 0))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.slow  # torch.compile on the CPU
@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_graphs_step_trains_on_the_cpu(name):
    params = TINY[name].model_copy(update={"step": "graphs", "max_epochs": 2, "patience": 2})
    recs, result = MODULES[name].fit_recommend(DATA, TEST_USERS, params, 5, CPU)
    assert_valid(recs, DATA, TEST_USERS, k=5)
    assert len(result.history) == 2 and all(np.isfinite(e.train["loss"]) for e in result.history)


# --- popularity ----------------------------------------------------------------------------------

def test_popularity_by_hand():
    frame = pd.DataFrame({"user_id": [0, 0, 1, 1, 2, 2, 2, 3],
                          "item_id": [1, 2, 2, 3, 2, 3, 4, 5]})
    data = Data(UserSequences.from_frame(frame, 4), 6, np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    # Interactions: item 2 x3, item 3 x2, items 1, 4, 5 x1, item 6 never; equal counts go to the lower id.
    recs, _ = popularity.fit_recommend(data, np.array([0, 1, 2, 3]), popularity.Params(), 3)
    np.testing.assert_array_equal(recs, [[3, 4, 5],   # seen 1, 2
                                         [1, 4, 5],   # seen 2, 3
                                         [1, 5, 6],   # seen 2, 3, 4
                                         [2, 3, 1]])  # seen 5


def test_popularity_counts_interactions_not_users():
    frame = pd.DataFrame({"user_id": [0, 0, 0, 1, 2], "item_id": [4, 4, 4, 3, 3]})
    data = Data(UserSequences.from_frame(frame, 4), 4, np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    recs, _ = popularity.fit_recommend(data, np.array([3]), popularity.Params(), 2)
    np.testing.assert_array_equal(recs, [[4, 3]])  # 3 interactions of item 4 beat 2 users of item 3


# --- BPR -----------------------------------------------------------------------------------------

def test_bpr_matrix():
    frame = pd.DataFrame({"user_id": [0, 0, 0, 2], "item_id": [3, 1, 3, 2]})
    data = Data(UserSequences.from_frame(frame, 3), 4, np.array([0]), np.array([2]))
    matrix = bpr.user_items(data)
    assert matrix.shape == (3, 5) and matrix.has_sorted_indices
    np.testing.assert_array_equal(matrix.toarray(), [[0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [0, 0, 1, 0, 0]])


def test_bpr_learns_and_resumes():
    """Chunks of implicit's fit continue one SGD run: the training AUC climbs from chance."""
    _, result = bpr.fit(DATA, defaults("bpr", factors=16, lr=0.05, max_epochs=30, eval_every=10, patience=30, seed=0))
    aucs = [e.train["auc"] for e in result.history]
    assert [e.epoch for e in result.history] == [10, 20, 30]
    assert aucs[0] < aucs[-1] and aucs[-1] > 0.8, aucs


def test_bpr_scores_are_the_factors_dot_products():
    """torch's product (on ``bpr.device``) against numpy's: the same scores up to rounding, and
    read when called, not when the scorer was made: training goes on between validations."""
    model, _ = bpr.fit(DATA, defaults("bpr", factors=16, lr=0.05, max_epochs=10, eval_every=10, patience=10, seed=0))
    users = np.arange(60)
    score = bpr.scorer(model, DATA, CPU)
    by_numpy = model.user_factors[users] @ model.item_factors.T
    assert score(users).shape == (60, NUM_ITEMS + 1) and score(users).dtype == torch.float32
    np.testing.assert_allclose(score(users).numpy(), by_numpy, rtol=1e-5, atol=1e-6)
    model.user_factors = model.user_factors * 2
    np.testing.assert_allclose(score(users).numpy(), 2 * by_numpy, rtol=1e-5, atol=1e-6)


# --- SASRec --------------------------------------------------------------------------------------

def tiny_sasrec(seed: int = 0) -> sasrec.SASRec:
    torch.manual_seed(seed)
    return sasrec.SASRec(NUM_ITEMS, TINY["sasrec"]).eval()


def test_sasrec_is_causal():
    model = tiny_sasrec()
    items = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    changed = items.clone()
    changed[:, -1] = 9  # only the last item differs
    with torch.no_grad():
        a, b = model(items), model(changed)
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_sasrec_ignores_left_padding():
    """More padding columns change nothing: padding is never attended to, and positions count
    back from the last column."""
    model = tiny_sasrec()
    items = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[0, 0, 0, 0, 3, 4, 5]])
    with torch.no_grad():
        torch.testing.assert_close(model(items)[:, -3:], model(padded)[:, -3:])
        assert not torch.isnan(model(padded)).any()


def test_sasrec_learns_the_cycle():
    params = defaults("sasrec", max_len=16, hidden=32, layers=1, heads=1, dropout=0.0, lr=1e-2, batch_size=16,
                      max_epochs=15, patience=15, seed=0, device="cpu")
    _, result = sasrec.fit(DATA, params, CPU)
    losses = [e.train["loss"] for e in result.history]
    assert losses[-1] < 0.3 * losses[0], losses  # about ln(30) = 3.4 at the start
    assert result.best.ndcg > 0.5, [e.ndcg for e in result.history]


# --- BERT4Rec ------------------------------------------------------------------------------------

def test_mask_items():
    batch = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8, 9, 10]] * 200)
    inputs, masked = bert4rec.mask_items(batch, 0.3, 31, torch.Generator().manual_seed(0))
    assert not masked[:, :2].any()  # padding is never masked
    assert 0.25 < masked[:, 2:].float().mean() < 0.35
    assert (inputs[masked] == 31).all()
    assert torch.equal(inputs[~masked], batch[~masked])


def test_bert4rec_scores_the_appended_mask():
    """The score at the mask appended to the last max_len - 1 items: checked against a forward
    pass built by hand; the mask token's own score is left out."""
    torch.manual_seed(0)
    model = bert4rec.build(NUM_ITEMS, TINY["bert4rec"]).eval()
    user = int(np.argmax(DATA.sequences.lengths(np.arange(60))))  # longer than the window
    history = DATA.sequences.items[DATA.sequences.indptr[user]:DATA.sequences.indptr[user + 1]]
    items = torch.tensor([list(history[-15:]) + [NUM_ITEMS + 1]])
    with torch.no_grad():
        expected = model(input_ids=items, position_ids=torch.arange(16)[None]).logits[0, -1, :NUM_ITEMS + 1]
        scores = bert4rec.scorer(model, DATA, CPU)(np.array([user]))
    assert scores.shape == (1, NUM_ITEMS + 1)
    torch.testing.assert_close(scores[0], expected)


@pytest.mark.slow
def test_bert4rec_learns():
    """The masked neighbours of a cycle give the item away; BERT4Rec is slow to start (a plateau
    near ln(30) for the first 20 or so epochs here), as on real data."""
    params = defaults("bert4rec", max_len=16, hidden=32, layers=1, heads=2, dropout=0.0, mask_prob=0.3, lr=3e-3,
                      batch_size=16, max_epochs=30, patience=30, seed=0, device="cpu")
    _, result = bert4rec.fit(DATA, params, CPU)
    losses = [e.train["loss"] for e in result.history]
    assert losses[-1] < 0.6 * losses[0], losses
    assert result.best.ndcg > 0.7, [e.ndcg for e in result.history]


# --- early stopping ------------------------------------------------------------------------------

def scripted_validation(monkeypatch, ndcgs):
    calls = iter(ndcgs)
    monkeypatch.setattr(training, "validate", lambda *args, **kwargs: (next(calls), 0.5))


def test_early_stopping_after_patience(monkeypatch):
    scripted_validation(monkeypatch, [0.1, 0.3, 0.2, 0.2, 0.3, 0.9, 0.9])  # 0.3 again is no better
    trained, snapshots = [], []

    def train_epoch():
        trained.append(len(trained) + 1)
        return {"loss": 1.0}

    def snapshot():  # stands for a copy of the weights: the number of epochs trained
        snapshots.append(len(trained))
        return len(trained)

    result = training.early_stopping(train_epoch, None, snapshot, DATA, max_epochs=10, patience=3)
    assert [e.epoch for e in result.history] == [1, 2, 3, 4, 5]  # stops 3 epochs after epoch 2
    assert result.best.epoch == 2 and result.best.ndcg == 0.3 and result.best_state == 2
    assert snapshots == [1, 2]  # a copy only when the validation improved


def test_early_stopping_in_steps(monkeypatch):
    scripted_validation(monkeypatch, [0.1, 0.2, 0.1, 0.1, 0.1, 0.9])
    result = training.early_stopping(lambda: {}, None, lambda: None, DATA, max_epochs=20, patience=6, step=2)
    assert [e.epoch for e in result.history] == [2, 4, 6, 8, 10]  # 6 epochs after epoch 4
    assert result.best.epoch == 4


def test_sasrec_keeps_the_best_epoch(monkeypatch):
    scripted_validation(monkeypatch, [0.1, 0.3, 0.2, 0.2, 0.9])
    weights = []  # after each epoch
    original = sasrec.train_epoch

    def train_epoch(objective, *args):  # objective: the NextItemLoss around the model
        stats = original(objective, *args)
        weights.append(training.state_copy(objective.model))
        return stats

    monkeypatch.setattr(sasrec, "train_epoch", train_epoch)
    model, result = sasrec.fit(DATA, TINY["sasrec"].model_copy(update={"max_epochs": 10, "patience": 2}), CPU)
    assert [e.epoch for e in result.history] == [1, 2, 3, 4] and result.best.epoch == 2
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, weights[1][name]), name  # epoch 2's weights, not epoch 4's
    assert any(not torch.equal(weights[1][name], tensor) for name, tensor in weights[3].items())


def test_bpr_keeps_the_best_epoch(monkeypatch):
    scripted_validation(monkeypatch, [0.5, 0.1, 0.1])
    model, result = bpr.fit(DATA, defaults("bpr", factors=8, max_epochs=6, eval_every=2, patience=4, seed=0))
    assert [e.epoch for e in result.history] == [2, 4, 6] and result.best.epoch == 2
    np.testing.assert_array_equal(model.item_factors, result.best_state[1])
    np.testing.assert_array_equal(model.user_factors, result.best_state[0])


# --- params --------------------------------------------------------------------------------------

def test_unknown_and_mistyped_keys():
    with pytest.raises(UserError, match=r"sasrec\.hiden"):
        params.section({"sasrec": {"hiden": 64}}, "sasrec", sasrec.Params)
    with pytest.raises(UserError, match=r"bpr\.factors"):
        params.section({"bpr": section_values("bpr", factors="64")}, "bpr", bpr.Params)


# --- the stage -----------------------------------------------------------------------------------

def write_split(folder: Path, data: Data) -> None:
    """A split folder as stages/split.py writes it: the cyclic users, 3 held-out items each."""
    split = folder / "split"
    split.mkdir()
    all_users = np.arange(data.sequences.num_users)
    users = np.repeat(all_users, data.sequences.lengths(all_users))
    pd.DataFrame({"user_id": users, "item_id": data.sequences.items, "timestamp": np.arange(len(users))}
                 ).to_parquet(split / "train.parquet")
    held_out = []
    for user in range(data.sequences.num_users):
        last = data.sequences.items[data.sequences.indptr[user + 1] - 1]
        held_out += [(user, int((last + p) % NUM_ITEMS + 1), p) for p in range(3)]
    held_out = pd.DataFrame(held_out, columns=["user_id", "item_id", "position"])
    held_out[held_out["user_id"] < 30].to_parquet(split / "validation.parquet")
    held_out[held_out["user_id"] >= 30].to_parquet(split / "test.parquet")
    (split / "meta.json").write_text(json.dumps({"num_items": NUM_ITEMS, "num_users": data.sequences.num_users}))


def run_stage(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return run_stage_module("baseline", *args, cwd=folder, env=env, timeout=300)


@pytest.fixture(scope="module")
def stage_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("baseline")
    write_split(folder, DATA)
    sections = {name: TINY[name].model_dump() for name in NAMES if name != "popularity"}
    sections["bpr"]["max_epochs"] = 2
    sections["evaluation"] = {"k": 5}
    (folder / "params.yaml").write_text(yaml.safe_dump(sections))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", ["popularity", "sasrec"])
def test_stage_writes_what_recommend_writes(stage_folder, name):
    result = run_stage(stage_folder, name, "--split", "split", "--recs", f"recs/{name}.parquet",
                       "--metrics", "metrics")
    assert result.returncode == 0, result.stderr
    recs = pd.read_parquet(stage_folder / "recs" / f"{name}.parquet")
    assert list(recs.columns) == ["user_id", "item_id", "rank"]
    assert sorted(recs["user_id"].unique()) == list(range(30, 60))
    assert list(recs["rank"][:5]) == [1, 2, 3, 4, 5]
    summary = json.loads((stage_folder / "metrics" / f"{name}.json").read_text())
    assert summary["users"] == 30 and {"ndcg@5", "recall@5", "map@5", "coverage", "entropy_bits",
                                                          "novelty_bits"} <= set(summary)
    positions = pd.read_csv(stage_folder / "metrics" / "positions" / f"{name}.csv")
    assert list(positions["position"]) == [1, 2, 3]
    live = stage_folder / "metrics" / f"{name}_train"
    if name == "popularity":
        assert not live.exists()
    else:
        summary = json.loads((live / "metrics.json").read_text())
        assert summary["best_epoch"] == 1 and summary["epochs"] == 1 and "ndcg@10" in summary["val"]
        assert (live / "plots" / "metrics" / "val" / "ndcg@10.tsv").exists()
        assert (live / "plots" / "metrics" / "train" / "loss.tsv").exists()
        assert not (stage_folder / "dvc.yaml").exists()


@pytest.mark.slow
def test_stage_reports_bad_params(stage_folder, tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"bert4rec": section_values("bert4rec", mask_prob=2.0),
                                                          "evaluation": {"k": 5}}))
    result = run_stage(tmp_path, "bert4rec", "--split", str(stage_folder / "split"), "--metrics", "metrics")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "bert4rec.mask_prob" in result.stderr
    assert not (tmp_path / "metrics").exists()


@pytest.mark.parametrize("name", ["bpr", "sasrec", "bert4rec"])
def test_training_that_diverges_stops_with_the_fix(name):
    # Before issue 10 SASRec and BERT4Rec trained on with NaN weights; BPR raised implicit's traceback.
    config = TINY[name].model_copy(update={"lr": 1e10, "max_epochs": 2, "patience": 2})
    with pytest.raises(UserError, match=rf"diverged at epoch 1 .*Lower {name}\.lr"):
        MODULES[name].fit_recommend(DATA, TEST_USERS, config, 5, CPU)
