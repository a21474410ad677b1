"""genrec.device: which torch device a stage runs on, and how its process keeps host memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genrec.device import resolve_device
from genrec.errors import UserError


def test_resolve_device_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", "train.device") == torch.device("cpu")
    assert resolve_device("cpu", "train.device") == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(UserError, match=r"train\.device") as info:
            resolve_device(name, "train.device")
        assert name in str(info.value)
    with pytest.raises(UserError, match=r"generation\.device"):
        resolve_device("cuda", "generation.device")


def test_resolve_device_auto_here():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto", "train.device").type == expected


def test_resolve_device_unknown():
    with pytest.raises(UserError, match=r"train\.device.*tpu"):
        resolve_device("tpu", "train.device")


# Trains a GPT-2 and samples from it, then keeps freed memory and does both again. Its own
# process, since glibc's setting holds for the rest of a process; tensors above glibc's 128 KB
# mmap threshold (the logits, the sampled scores), so the two runs get their memory differently.
KEPT_MEMORY_RUN = """
import sys
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
from helpers import cyclic_walks, defaults
from genrec import engine
from genrec import model as gm
from genrec.device import keep_freed_memory
from genrec.training import Data

NUM_ITEMS, USERS = 300, np.arange(200)
sequences, targets = cyclic_walks(len(USERS), NUM_ITEMS)
data = Data(sequences, NUM_ITEMS, USERS, targets)

def run():
    model, result = gm.fit(data, gm.ModelParams(n_positions=16, n_embd=64, n_layer=1, n_head=2,
                                                activation_function="gelu_pytorch_tanh", dropout=0.1),
                           defaults("train", lr=1e-2, batch_size=64, max_epochs=2, patience=2, seed=0),
                           torch.device("cpu"))
    prompts = torch.from_numpy(sequences.last_items(USERS, 12, side="left"))
    torch.manual_seed(0)
    items, scores = engine.sample(engine.Decoder(model.eval()), prompts, sequences.seen_mask(USERS, NUM_ITEMS), 4,
                                  num_sequences=20, relevance=True)
    return [e.train["loss"] for e in result.history], result.best_state, items, scores

before = run()
keep_freed_memory()
after = run()
assert before[0] == after[0], (before[0], after[0])
assert all(torch.equal(before[1][name], after[1][name]) for name in before[1])
assert torch.equal(before[2], after[2]) and torch.equal(before[3], after[3])
print("same")
"""


def test_keeping_freed_memory_changes_no_number():
    tests = Path(__file__).resolve().parent
    run = subprocess.run([sys.executable, "-c", KEPT_MEMORY_RUN, str(tests)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("same"), run.stdout + run.stderr
