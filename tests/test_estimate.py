"""genrec.estimate, and the stages' time estimates before they start: the training probe
(genrec.training) and the generation probe (genrec.tuning, stages/recommend.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genrec import estimate, training, tuning
from genrec import model as gm
from genrec.errors import UserError
from genrec.sequences import Split
from helpers import cyclic_walks, defaults

NUM_ITEMS = 30
SEQUENCES, TARGETS = cyclic_walks(60, NUM_ITEMS)
CPU = torch.device("cpu")


@pytest.mark.parametrize("seconds, text", [(5, "5 s"), (89, "89 s"), (600, "10 min"), (7_260, "2 h 1 min"),
                                           (7_200, "2 h"), (3 * 86_400 + 7_200, "3 days 2 h")])
def test_duration(seconds, text):
    assert estimate.duration(seconds) == text


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_a_bad_limit_is_named(monkeypatch, value):
    monkeypatch.setenv("GENREC_MAX_HOURS", value)
    with pytest.raises(UserError, match=f"GENREC_MAX_HOURS is '{value}'; set it to a number of hours above 0"):
        estimate.limit_hours()


def test_check_says_the_estimate_or_stops_with_the_advice(monkeypatch, capsys):
    estimate.check("rra: tuning", 3_600, "one batch timed on cpu", ["generate on a GPU"])
    assert "rra: tuning: about 60 min (one batch timed on cpu)" in capsys.readouterr().err
    monkeypatch.setenv("GENREC_MAX_HOURS", "0.5")
    with pytest.raises(UserError) as error:
        estimate.check("rra: tuning", 3_600, "one batch timed on cpu", ["generate on a GPU", "tune less"])
    assert str(error.value) == ("rra: tuning would take about 60 min (one batch timed on cpu), more than "
                                "GENREC_MAX_HOURS = 0.5 h. generate on a GPU; tune less; or set GENREC_MAX_HOURS=2 "
                                "to run it anyway")


def fit(params, **patches):
    torch.manual_seed(0)
    model = gm.build(NUM_ITEMS, gm.ModelParams(n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                               activation_function="gelu_pytorch_tanh", dropout=0.3))
    data = training.Data(SEQUENCES, NUM_ITEMS, np.arange(60), TARGETS)
    matrix = gm.training_matrix(SEQUENCES, 16)
    result = training.fit(model, matrix, gm.train_epoch, gm.scorer, data, params, CPU, lr_label="train.lr",
                          objective=gm.NextItemLoss(model))
    return model, result


def test_training_probe_changes_nothing_and_stops_a_run_over_the_limit(monkeypatch, capsys):
    params = defaults("train", batch_size=8, max_epochs=3, patience=3, seed=1)
    plain, _ = fit(params)
    assert "train: up to" not in capsys.readouterr().err  # small work: no probe
    monkeypatch.setattr(training, "ESTIMATE_ABOVE", 0)
    probed, _ = fit(params)  # dropout on: the probe's draws must not shift the run's
    assert "train: up to 3 epochs: about" in capsys.readouterr().err
    for name, weight in plain.state_dict().items():
        assert torch.equal(weight, probed.state_dict()[name]), name
    monkeypatch.setenv("GENREC_MAX_HOURS", "1e-9")
    with pytest.raises(UserError, match=r"train: up to 3 epochs would take about .* train on a GPU "
                                         r"\(train.device: cuda\); lower train.max_epochs"):
        fit(params)


def test_generation_probe_counts_the_shared_draws():
    config = defaults("generation", temperature=[0.2, 0.5], top_k=[0, 20], num_sequences=[20, 30])
    assert tuning.draws("rra", config) == 4  # 2 temperatures x 2 top-k; the sequence counts share a draw
    assert tuning.draws("sampling", config) == 4
    assert tuning.draws("beam", config.model_copy(update={"num_beams": [2, 3, 5]})) == 3
    assert tuning.draws("greedy", config) == 1


def test_generation_probe_estimates_from_one_batch(monkeypatch):
    torch.manual_seed(0)
    model = gm.build(NUM_ITEMS, gm.ModelParams(n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                               activation_function="gelu_pytorch_tanh", dropout=0.0)).eval()
    config = defaults("generation", horizon=3, temperature=[0.2, 0.5], top_k=[0], num_sequences=[2, 4],
                      batch_size=16, device="cpu")
    users = np.arange(60)
    assert tuning.estimated_seconds("rra", model, SEQUENCES, users[:30], users[30:], config) is None  # small
    monkeypatch.setattr(tuning, "ESTIMATE_ABOVE", 0)
    clock = iter([100.0, 101.0, 200.0, 201.0])  # each timed batch takes 1 s
    monkeypatch.setattr(tuning.time, "perf_counter", lambda: next(clock))
    # One batch of 16 validation users in 1 s; 30 users x 2 draws (two temperatures; the sequence
    # counts share one) + 30 test users = 90 users.
    assert tuning.estimated_seconds("rra", model, SEQUENCES, users[:30], users[30:], config) == 90 / 16
    assert tuning.estimated_seconds("rra", model, SEQUENCES, users[:30], users[30:], config, world=2) == 45 / 16


def test_the_strategy_stage_stops_before_tuning_over_the_limit(monkeypatch):
    from stages.recommend import say_time
    from genrec.distributed import Group
    torch.manual_seed(0)
    model = gm.build(NUM_ITEMS, gm.ModelParams(n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                               activation_function="gelu_pytorch_tanh", dropout=0.0)).eval()
    rows = [(u, int(i), t) for u in range(60) for t, i in
            enumerate(SEQUENCES.items[SEQUENCES.indptr[u]:SEQUENCES.indptr[u + 1]])]
    train = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    held = pd.DataFrame({"user_id": np.arange(60), "item_id": TARGETS, "position": 0})
    split = Split(train, held[held.user_id < 30], held[held.user_id >= 30], 60, NUM_ITEMS, SEQUENCES)
    config = defaults("generation", horizon=3, num_sequences=[2, 4], batch_size=16, device="cpu")
    monkeypatch.setattr(tuning, "ESTIMATE_ABOVE", 0)
    monkeypatch.setenv("GENREC_MAX_HOURS", "1e-9")
    with pytest.raises(UserError, match=r"rra: tuning \(10 generations for 30 validation users\) and 30 test users "
                                         r"would take about .* generate on a GPU \(generation.device: cuda\); tune "
                                         r"over fewer values of generation.temperature, generation.top_k, "
                                         r"generation.num_sequences \(a single value is not tuned\)"):
        say_time("rra", model, split, config, Group(device=CPU))
