"""benchmarks/bench_train.py: the training variants (compiled and not) train on a tiny split, its "today" row is the
train stage's own training (the exact path, unchanged), and the cheaper dropout masks are dropout."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers import run_stage
from test_training import write_split

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from bench_train import MaskDropout, with_mask_dropout  # noqa: E402

TINY_TRANSFORMER = {"max_len": 16, "hidden": 16, "layers": 1, "heads": 2, "dropout": 0.1, "lr": 0.01,
                    "batch_size": 16, "max_epochs": 2, "patience": 2, "seed": 42, "device": "cpu", "processes": 1}


@pytest.mark.slow  # one process per row, torch.compile among them
def test_every_variant_trains_and_today_is_the_stage(tmp_path):
    write_split(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"].update(max_epochs=2, patience=2)
    params["sasrec"] = TINY_TRANSFORMER
    params["bert4rec"] = {**TINY_TRANSFORMER, "mask_prob": 0.2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows_file = tmp_path / "rows.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_train.py"), "--split", str(tmp_path / "data" / "split"),
                             "--params", str(tmp_path / "params.yaml"), "--json", str(rows_file),
                             "--variants", "today", "masks", "compiled"],
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {(r["model"], r["variant"]): r for r in json.loads(rows_file.read_text())}
    assert sorted(rows) == sorted((m, v) for m in ("gpt2", "sasrec", "bert4rec") for v in ("today", "masks", "compiled"))
    for key, row in rows.items():
        assert row["epoch"] > 0 and row["rate"] > 0 and row["peak_gb"] > 0, key
        assert 1 <= row["epochs"] <= 2 and 0 < row["ndcg"] <= 1, key

    stage = run_stage("train", cwd=tmp_path, env=env)
    assert stage.returncode == 0, stage.stderr
    summary = json.loads((tmp_path / "metrics" / "train" / "metrics.json").read_text())
    assert rows[("gpt2", "today")]["ndcg"] == summary["val"]["ndcg@10"]  # bit for bit
    assert rows[("gpt2", "today")]["epochs"] == summary["epochs"]


def test_mask_dropout_keeps_the_share_and_the_mean():
    torch.manual_seed(0)
    dropout = MaskDropout(0.1)
    x = torch.ones(400_000)
    y = dropout(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.9) < 0.003  # p to within 2**-16, plus sampling noise (sd 0.0005)
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.9))
    assert abs(y.mean().item() - 1.0) < 0.005
    dropout.eval()
    assert dropout(x) is x
    assert MaskDropout(0.0)(x) is x


def test_with_mask_dropout_replaces_every_dropout_of_a_model():
    from genrec import model as gm
    model = with_mask_dropout(gm.build(30, gm.ModelParams(n_positions=16, n_embd=16, n_layer=1, n_head=2, dropout=0.2)))
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout | MaskDropout)]
    assert dropouts and all(isinstance(m, MaskDropout) and math.isclose(m.p, 0.2) for m in dropouts)
    assert model.config._attn_implementation == "eager"  # attention's dropout is then a module


def test_sasrec_eager_attention_is_its_attention_without_dropout():
    from genrec.baselines.sasrec import CausalSelfAttention
    torch.manual_seed(0)
    attention = CausalSelfAttention(16, 2, 0.3).eval()
    x = torch.randn(3, 7, 16)
    allowed = torch.tril(torch.ones(7, 7, dtype=torch.bool)).expand(3, 7, 7).clone()
    allowed[0, :, :3] = torch.eye(7, dtype=torch.bool)[:, :3]  # left padding: padded positions see only themselves
    expected = attention(x, allowed)
    with_mask_dropout(attention)
    assert isinstance(attention.attention_dropout, MaskDropout)
    assert torch.allclose(attention(x, allowed), expected, atol=1e-6)
    attention.train()
    assert not torch.allclose(attention(x, allowed), expected, atol=1e-3)  # dropout on the weights when training
