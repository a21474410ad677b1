"""genrec.training with GPT-2 (genrec.model): causal next-item training, validation NDCG@10 and
early stopping (docs/method.md §4). The same loop's early stopping with the baselines: test_baselines.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from genrec import dropout, training
from genrec import model as gm
from genrec.errors import UserError
from genrec.sequences import UserSequences
from genrec.training import Data, TrainParams
from helpers import cyclic_walks, defaults, run_stage

NUM_ITEMS = 30
TINY = gm.ModelParams(n_positions=16, n_embd=16, n_layer=1, n_head=2,
                      activation_function="gelu_pytorch_tanh", dropout=0.0)


def tiny_model(seed: int = 0, dropout: float = 0.0, n_positions: int = 16):
    torch.manual_seed(seed)
    return gm.build(NUM_ITEMS, gm.ModelParams(n_positions=n_positions, n_embd=16, n_layer=1, n_head=2,
                                              activation_function="gelu_pytorch_tanh", dropout=dropout))


def cyclic_data(num_users: int = 60, seed: int = 0):
    """Cyclic walks; every user validates on the item after its walk."""
    sequences, targets = cyclic_walks(num_users, NUM_ITEMS, seed)
    return sequences, np.arange(num_users), targets


SEQUENCES, USERS, TARGETS = cyclic_data()
CPU = torch.device("cpu")


def data(users=USERS, targets=TARGETS) -> Data:
    return Data(SEQUENCES, NUM_ITEMS, users, targets)


def train(model, users, targets, params: TrainParams, on_epoch=lambda result: None):
    """The pipeline's loop on a given GPT-2: ``training.fit`` with GPT-2's epoch and scorer."""
    matrix = gm.training_matrix(SEQUENCES, model.config.n_positions)
    return training.fit(model, matrix, gm.train_epoch, gm.scorer, data(users, targets), params, CPU, on_epoch,
                        "train.lr", objective=gm.NextItemLoss(model))


# --- params --------------------------------------------------------------------------------------

def test_params_yaml_is_the_papers():
    p = defaults("train")  # the learning rate is the search's winner (tests/test_search.py)
    assert (p.batch_size, p.max_epochs, p.patience) == (64, 100, 10)


# --- training data -------------------------------------------------------------------------------

def test_training_matrix():
    sequences = UserSequences.from_frame(pd.DataFrame({
        "user_id": [0, 0, 0, 1, 2, 2, 2, 2, 2],
        "item_id": [5, 6, 7, 9, 1, 2, 3, 4, 5],
    }), 3)
    matrix = gm.training_matrix(sequences, n_positions=3)  # user 1 (one item) has nothing to learn
    np.testing.assert_array_equal(matrix.numpy(), [[5, 6, 7, 0], [2, 3, 4, 5]])


# --- learning ------------------------------------------------------------------------------------

def test_training_lowers_the_loss():
    model = tiny_model()
    result = train(model, USERS[:20], TARGETS[:20],
                   defaults("train", lr=1e-2, batch_size=16, max_epochs=6, patience=6, seed=0))
    losses = [epoch.train["loss"] for epoch in result.history]
    assert len(losses) == 6
    assert losses[0] > 3.0  # about ln(31) at the start
    assert losses[-1] < 0.6 * losses[0], losses
    assert losses[-1] < min(losses[:-1]) + 1e-9 or losses[-1] < 1.0
    assert [e.epoch for e in result.history] == [1, 2, 3, 4, 5, 6]
    assert result.best.ndcg == max(e.ndcg for e in result.history)
    assert result.best.ndcg > 0.3  # the cycle is easy: the next item is learnt


def test_epoch_loss_is_the_mean_next_item_cross_entropy():
    """With a negligible learning rate the first epoch's loss is the untrained model's mean
    cross-entropy over every next-item label of the last 17 items (padding never counts)."""
    model = tiny_model(5)
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for user in range(SEQUENCES.num_users):
            history = torch.from_numpy(SEQUENCES.items[SEQUENCES.indptr[user]:SEQUENCES.indptr[user + 1]])
            window = history[-(16 + 1):]  # n_positions + 1 items: 16 inputs, 16 labels
            logits = model(input_ids=window[None, :-1]).logits[0]
            total += float(torch.nn.functional.cross_entropy(logits.double(), window[1:], reduction="sum"))
            tokens += len(window) - 1
    result = train(model, USERS, TARGETS,
                   defaults("train", lr=1e-12, batch_size=7, max_epochs=1, patience=1, seed=0))
    assert result.history[0].train["loss"] == pytest.approx(total / tokens, rel=1e-5)


def hand_ndcg(model, sequences: UserSequences, users, targets, window: int, k: int = 10):
    """Validation NDCG@k and HR@k computed independently from the full model's logits."""
    model.eval()
    ndcgs, hits = [], []
    for user, target in zip(users, targets):
        history = sequences.items[sequences.indptr[user]:sequences.indptr[user + 1]]
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(history[-window:])[None]).logits[0, -1].double()
        logits[0] = -torch.inf
        logits[torch.from_numpy(history)] = -torch.inf
        if torch.isinf(logits[target]):
            ndcgs.append(0.0)
            hits.append(0.0)
            continue
        # 1-based rank; ties to the lower id.
        better = (logits > logits[target]).sum() + (logits[:target] == logits[target]).sum()
        rank = int(better) + 1
        ndcgs.append(1.0 / np.log2(rank + 1) if rank <= k else 0.0)
        hits.append(1.0 if rank <= k else 0.0)
    return float(np.mean(ndcgs)), float(np.mean(hits))


def test_validate_matches_hand_computation():
    model = tiny_model(3)
    train(model, USERS, TARGETS,
          defaults("train", lr=3e-3, batch_size=16, max_epochs=1, patience=1, seed=0))
    targets = TARGETS.copy()
    targets[5] = SEQUENCES.items[SEQUENCES.indptr[5]]  # a seen target can never be hit
    ndcg, hit_rate = training.validate(gm.scorer(model, data(), CPU), data(USERS, targets))
    expected_ndcg, expected_hr = hand_ndcg(model, SEQUENCES, USERS, targets, window=16)
    assert 0 < expected_ndcg < 1 and 0 < expected_hr < 1  # a mixed case, neither trivial extreme
    assert ndcg == pytest.approx(expected_ndcg, abs=1e-9)
    assert hit_rate == pytest.approx(expected_hr, abs=1e-9)


def test_validate_on_a_random_model_and_shorter_window():
    model = tiny_model(4, n_positions=6)
    users = USERS[::3]
    ndcg, hit_rate = training.validate(gm.scorer(model, data(), CPU), data(users, TARGETS[users]))
    expected = hand_ndcg(model, SEQUENCES, users, TARGETS[users], window=6)
    assert (ndcg, hit_rate) == pytest.approx(expected, abs=1e-9)


# --- early stopping ------------------------------------------------------------------------------

def scripted_validation(monkeypatch, ndcgs):
    calls = iter(ndcgs)
    monkeypatch.setattr(training, "validate", lambda *args, **kwargs: (next(calls), 0.5))


def snapshot_each_epoch(model):
    states = {}

    def on_epoch(result):
        states[result.epoch] = {name: t.detach().clone() for name, t in model.state_dict().items()}

    return states, on_epoch


def test_early_stopping_after_patience(monkeypatch):
    scripted_validation(monkeypatch, [0.1, 0.3, 0.2, 0.2, 0.3, 0.9, 0.9, 0.9])  # 0.3 again is no better
    model = tiny_model()
    states, on_epoch = snapshot_each_epoch(model)
    result = train(model, USERS, TARGETS,
                   defaults("train", lr=1e-2, batch_size=16, max_epochs=8, patience=3, seed=0),
                            on_epoch=on_epoch)
    assert [e.epoch for e in result.history] == [1, 2, 3, 4, 5]  # stops exactly 3 epochs after epoch 2
    assert [e.ndcg for e in result.history] == [0.1, 0.3, 0.2, 0.2, 0.3]
    assert result.best.epoch == 2 and result.best.ndcg == 0.3
    assert result.best is result.history[1]
    assert sorted(states) == [1, 2, 3, 4, 5]
    assert result.best_state.keys() == states[2].keys()
    for name, tensor in result.best_state.items():
        assert torch.equal(tensor, states[2][name]), name
    # The weights moved after the best epoch (epoch 5's differ), and fit put the best ones back.
    assert any(not torch.equal(states[5][n], t) for n, t in states[2].items())
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, states[2][name]), name


def test_early_stopping_patience_one_and_flat(monkeypatch):
    scripted_validation(monkeypatch, [0.0] * 10)
    result = train(tiny_model(), USERS, TARGETS,
                   defaults("train", lr=1e-2, batch_size=32, max_epochs=10, patience=1, seed=0))
    assert len(result.history) == 2 and result.best.epoch == 1


def test_max_epochs_bounds_training(monkeypatch):
    scripted_validation(monkeypatch, [0.1, 0.2, 0.3, 0.4])  # always improving
    events = []
    result = train(tiny_model(), USERS, TARGETS,
                   defaults("train", lr=1e-2, batch_size=32, max_epochs=4, patience=2, seed=0),
                            on_epoch=events.append)
    assert len(result.history) == 4 and result.best.epoch == 4
    assert events == result.history


def test_same_seed_same_history():
    def run(seed):
        model_params = gm.ModelParams(n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                      activation_function="gelu_pytorch_tanh", dropout=0.1)  # dropout draws too
        model, result = gm.fit(data(), model_params,
                               defaults("train", lr=1e-2, batch_size=16, max_epochs=2, patience=2, seed=seed), CPU)
        return [(e.train["loss"], e.ndcg, e.hit_rate) for e in result.history], result.best_state

    first, state = run(0)
    second, state2 = run(0)
    assert first == second
    assert all(torch.equal(state[n], state2[n]) for n in state)
    other, _ = run(1)
    assert other != first  # the seed drives the shuffling and the dropout


def test_gpt2_takes_the_fast_masks_on_a_cpu_and_saves_a_plain_gpt2(tmp_path, monkeypatch):
    model_params = TINY.model_copy(update={"dropout": 0.3})
    params = defaults("train", lr=1e-2, batch_size=16, max_epochs=2, patience=2, seed=0)
    assert params.dropout_masks == "auto"  # params.yaml's: fast on a CPU
    fast, fast_result = gm.fit(data(), model_params, params, CPU)
    exact, exact_result = gm.fit(data(), model_params, params.model_copy(update={"dropout_masks": "torch"}), CPU)
    assert any(isinstance(m, dropout.FastDropout) for m in fast.modules())
    assert not any(isinstance(m, dropout.FastDropout) for m in exact.modules())
    assert fast.config._attn_implementation == dropout.HF_ATTENTION  # attention's dropout takes them too
    assert fast_result.history[0].train["loss"] != exact_result.history[0].train["loss"]  # other draws

    # What the stage saves is a plain GPT-2: Hugging Face's attention and dropout when loaded.
    gm.save(fast, tmp_path)
    assert "genrec" not in (tmp_path / "config.json").read_text()
    loaded = gm.load(tmp_path, CPU)
    assert loaded.config._attn_implementation != dropout.HF_ATTENTION
    assert not any(isinstance(m, dropout.FastDropout) for m in loaded.modules())
    items = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 0, 0]])
    with torch.no_grad():
        expected = loaded(input_ids=items, attention_mask=(items != 0).long()).logits
        torch.testing.assert_close(fast.eval()(input_ids=items, attention_mask=(items != 0).long()).logits, expected,
                                   rtol=1e-5, atol=1e-5)
        # Masks that keep every unit make training mode the eval-mode network: only the draws differ.
        monkeypatch.setattr(dropout, "fast_dropout", lambda x, p, training=True: x)
        torch.testing.assert_close(fast.train()(input_ids=items, attention_mask=(items != 0).long()).logits,
                                   expected, rtol=1e-5, atol=1e-5)


# --- the train stage -----------------------------------------------------------------------------

def write_split(folder: Path) -> None:
    split = folder / "data" / "split"
    split.mkdir(parents=True)
    users = np.repeat(np.arange(SEQUENCES.num_users), SEQUENCES.lengths(np.arange(SEQUENCES.num_users)))
    pd.DataFrame({"user_id": users, "item_id": SEQUENCES.items, "timestamp": np.arange(len(users))}
                 ).to_parquet(split / "train.parquet")
    pd.DataFrame({"user_id": USERS, "item_id": TARGETS, "position": 0}).to_parquet(split / "validation.parquet")
    pd.DataFrame({"user_id": USERS, "item_id": TARGETS, "position": 0}).to_parquet(split / "test.parquet")
    (split / "meta.json").write_text(json.dumps({"num_users": SEQUENCES.num_users, "num_items": NUM_ITEMS}))
    (folder / "params.yaml").write_text(yaml.safe_dump({
        "model": {"n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 2, "dropout": 0.1,
                  "activation_function": "gelu_pytorch_tanh"},
        "train": {"lr": 0.01, "batch_size": 16, "max_epochs": 1, "patience": 1, "seed": 42, "device": "cpu",
                  "processes": 1, "precision": "fp32", "step": "auto", "dropout_masks": "torch"},
    }))


@pytest.mark.slow
def test_train_stage_is_reproducible(tmp_path):
    weights = []
    for run in ("a", "b"):
        folder = tmp_path / run
        write_split(folder)
        result = run_stage("train", cwd=folder, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr
        weights.append(load_file(folder / "data" / "model" / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name


def test_training_that_diverges_stops_with_the_fix():
    # Before issue 10 lr 1e10 trained to NaN weights and returned them as the best epoch.
    events = []
    with pytest.raises(UserError, match=r"diverged at epoch 1 \(training loss nan.*Lower train\.lr"):
        train(tiny_model(), USERS, TARGETS,
              defaults("train", lr=1e10, batch_size=16, max_epochs=3, patience=3), on_epoch=events.append)
    assert events == []  # stopped before the epoch was logged


def test_bf16_precision_trains_and_changes_the_arithmetic():
    """train.precision bf16 autocasts the training forward pass (on the CPU here too); fp32 is
    the committed arithmetic."""
    losses = {}
    for precision in ("fp32", "bf16"):
        model = tiny_model()
        result = train(model, USERS, TARGETS, defaults("train", lr=1e-2, batch_size=16, max_epochs=2, patience=2,
                                                       seed=0, precision=precision))
        losses[precision] = [e.train["loss"] for e in result.history]
    assert all(np.isfinite(losses["bf16"])) and losses["bf16"][1] < losses["bf16"][0]
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


# --- the graphs step (train.step) ----------------------------------------------------------------

def test_step_auto_is_graphs_on_cuda_in_one_process_and_exact_elsewhere():
    auto = defaults("train")
    assert auto.step == "auto"  # params.yaml's
    assert not training.graphs_step(auto, CPU) and training.graphs_step(auto, torch.device("cuda"))
    assert not training.graphs_step(auto.model_copy(update={"processes": 2}), torch.device("cuda"))
    assert training.graphs_step(auto.model_copy(update={"step": "graphs"}), CPU)
    assert not training.graphs_step(auto.model_copy(update={"step": "exact"}), torch.device("cuda"))


def test_graphs_step_in_several_processes_is_refused():
    from genrec import params
    values = {**defaults("train").model_dump(), "step": "graphs", "processes": 2}
    with pytest.raises(UserError, match="train.step graphs runs in one process, but train.processes is 2"):
        params.section({"train": values}, "train", TrainParams)


def test_static_batches_are_the_epochs_rows_in_one_shape():
    matrix = torch.arange(1, 1 + 10 * 3).view(10, 3)
    batches = training.static_batches(matrix, 4, torch.Generator().manual_seed(0))
    expected = training.epoch_batches(matrix, 4, torch.Generator().manual_seed(0))
    assert [b.shape for b in batches] == [(4, 3)] * 3
    torch.testing.assert_close(torch.cat(batches)[:10], torch.cat(expected))
    assert (batches[-1][2:] == 0).all()  # the last batch filled with padding rows


def test_static_loss_is_the_exact_loss_and_gradient():
    torch.manual_seed(1)
    batch = torch.randint(1, NUM_ITEMS + 1, (5, 17))
    for row, length in enumerate([17, 9, 4, 2, 0]):
        batch[row, length:] = 0
    inputs, labels = batch[:, :-1], batch[:, 1:]
    model = tiny_model(2).eval()
    expected = gm.NextItemLoss(model)(inputs, labels)
    loss = gm.StaticNextItemLoss(model)(inputs, labels)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    grads = [torch.autograd.grad(value, model.lm_head.weight)[0] for value in (loss, expected)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # torch.compile on the CPU
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU: on a lent one, the CUDA graphs repeat too"))])
def test_graphs_step_trains_and_repeats(device, request):
    # On the CPU one thread: with two, inductor's compiled CPU kernels do not repeat bit for bit
    # (weights apart by up to 1e-4 after three epochs; docs/reproducibility.md). The exact step does.
    request.addfinalizer(lambda threads=torch.get_num_threads(): torch.set_num_threads(threads))
    torch.set_num_threads(1)
    params = defaults("train", lr=1e-2, batch_size=16, max_epochs=3, patience=3, seed=0, step="graphs",
                      device=device)
    model, result = gm.fit(data(), TINY, params, torch.device(device))
    losses = [epoch.train["loss"] for epoch in result.history]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    # Rerun in the same process (the compiled code may come from dynamo's cache): bit for bit.
    rerun, repeat = gm.fit(data(), TINY, params, torch.device(device))
    assert [epoch.train["loss"] for epoch in repeat.history] == losses
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rerun.state_dict().values()))
    exact, again = gm.fit(data(), TINY, params.model_copy(update={"step": "exact"}), torch.device(device))
    # Other arithmetic (one shape, no attention mask), same loss to rounding: the first epoch agrees closely.
    assert again.history[0].train["loss"] == pytest.approx(losses[0], rel=1e-3)
