"""genrec.model: params, device choice, save/load, last-position logits and next-item ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genrec import model as gm
from genrec.errors import UserError
from genrec.model import ModelParams
from genrec.sequences import UserSequences
from helpers import defaults

TINY = ModelParams(n_positions=16, n_embd=16, n_layer=1, n_head=2,
                   activation_function="gelu_pytorch_tanh", dropout=0.1)
NUM_ITEMS = 40


def tiny_model(seed: int = 0, num_items: int = NUM_ITEMS):
    torch.manual_seed(seed)
    return gm.build(num_items, TINY).eval()


def random_sequences(num_users: int, num_items: int, max_length: int, seed: int = 0) -> UserSequences:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        length = int(rng.integers(1, max_length + 1))
        rows += [(user, int(item)) for item in rng.choice(np.arange(1, num_items + 1), length, replace=False)]
    return UserSequences.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]), num_users)


# --- ModelParams ---------------------------------------------------------------------------------

def test_params_yaml_is_the_papers():
    """The paper's window; the size is its search's winner (tests/test_search.py checks the space)."""
    assert defaults("model").n_positions == 128


def test_build_config():
    model = tiny_model()
    assert model.config.vocab_size == NUM_ITEMS + 1
    assert model.config.n_positions == 16 and model.config.n_embd == 16
    assert model.config.n_layer == 1 and model.config.n_head == 2
    assert model.config.resid_pdrop == model.config.embd_pdrop == model.config.attn_pdrop == 0.1


def test_both_activations_are_gpt2s_tanh_gelu():
    """gelu_pytorch_tanh (torch's fused kernel) computes gelu_new (Hugging Face's six passes): the
    same weights from the same seed, the same logits to rounding."""
    items = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6], [0, 0, 0, 2, 7, 1, 8, 2]])
    models = {}
    for activation in ("gelu_new", "gelu_pytorch_tanh"):
        torch.manual_seed(0)
        models[activation] = gm.build(NUM_ITEMS, TINY.model_copy(update={"activation_function": activation})).eval()
    new, fused = models["gelu_new"], models["gelu_pytorch_tanh"]
    assert type(new.transformer.h[0].mlp.act).__name__ == "NewGELUActivation"
    assert type(fused.transformer.h[0].mlp.act).__name__ == "GELUTanh"
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), fused.state_dict().values()))
    with torch.no_grad():
        torch.testing.assert_close(fused(input_ids=items).logits, new(input_ids=items).logits, rtol=1e-5, atol=1e-5)


# --- save / load ---------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path, capfd):
    model = tiny_model()
    gm.save(model, tmp_path / "model")
    assert sorted(path.name for path in (tmp_path / "model").iterdir()) == sorted(gm.MODEL)
    assert capfd.readouterr().err == ""  # no progress bar in the stage's output
    loaded = gm.load(tmp_path / "model", torch.device("cpu"))
    assert not loaded.training  # ready for inference: dropout off
    items = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=items).logits, loaded(input_ids=items).logits)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_load_without_a_model(tmp_path):
    with pytest.raises(UserError, match="no trained model"):
        gm.load(tmp_path, torch.device("cpu"))


# --- last_logits / top_next_items ---------------------------------------------------------------

def test_last_logits_matches_full_model_on_right_padding():
    model = tiny_model()
    rows = [[5, 7, 2], [1], [9, 8, 7, 6, 5, 4, 3, 2, 1, 10, 11, 12, 13, 14, 15, 16], [40, 39]]
    items = torch.zeros(len(rows), 16, dtype=torch.long)
    for i, row in enumerate(rows):
        items[i, :len(row)] = torch.tensor(row)
    lengths = torch.tensor([len(r) for r in rows])
    with torch.no_grad():
        got = gm.last_logits(model, items, lengths)
        for i, row in enumerate(rows):
            expected = model(input_ids=torch.tensor([row])).logits[0, -1]
            torch.testing.assert_close(got[i], expected, rtol=1e-5, atol=1e-5)


def reference_ranking(model, sequences: UserSequences, users, window: int, k: int) -> np.ndarray:
    """Full model on each user's last ``window`` items, seen items removed, stable descending sort."""
    out = []
    for user in users:
        history = sequences.items[sequences.indptr[user]:sequences.indptr[user + 1]]
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(history[-window:])[None]).logits[0, -1].numpy()
        logits = logits.astype(np.float64)
        logits[0] = -np.inf
        logits[history] = -np.inf
        out.append(np.argsort(-logits, kind="stable")[:k])
    return np.array(out)


def test_top_next_items_matches_full_model():
    model = tiny_model()
    sequences = random_sequences(12, NUM_ITEMS, max_length=25)  # some longer than the window of 8
    users = np.array([11, 0, 3, 5, 7, 2, 9])
    got = gm.top_next_items(model, sequences, users, window=8, k=10, batch_size=3)[0]
    assert got.dtype == torch.int64 and got.shape == (len(users), 10)
    np.testing.assert_array_equal(got.numpy(), reference_ranking(model, sequences, users, 8, 10))


def test_top_next_items_never_seen_nor_padding():
    model = tiny_model(1)
    sequences = random_sequences(10, NUM_ITEMS, max_length=30, seed=1)
    users = np.arange(10)
    # k = all unseen items for the longest history: everything ranked must still be unseen.
    got = gm.top_next_items(model, sequences, users, window=16, k=NUM_ITEMS - 30)[0].numpy()
    seen = sequences.seen_mask(users, NUM_ITEMS).numpy()
    assert not (got == 0).any()
    assert not seen[np.arange(10)[:, None], got].any()
    assert all(len(set(row)) == len(row) for row in got)


def test_top_next_items_ties_go_to_the_lower_id():
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied to the item embeddings: every logit is 0, all tie
    sequences = UserSequences.from_frame(pd.DataFrame({"user_id": [0, 0, 1], "item_id": [2, 4, 1]}), 2)
    got = gm.top_next_items(model, sequences, np.array([0, 1]), window=16, k=5)[0]
    np.testing.assert_array_equal(got.numpy(), [[1, 3, 5, 6, 7], [2, 3, 4, 5, 6]])
