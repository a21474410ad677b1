"""benchmarks/bench_train.py: every training variant (compiled and not) trains on a tiny split and on a tiny
synthetic set, its "today" row is the train stage's own training (the exact path, unchanged), and the fused
loss is GPT-2's loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from helpers import run_stage
from test_training import write_split

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from bench_train import ChunkedNextItemLoss, LinearCrossEntropy  # noqa: E402

TINY_TRANSFORMER = {"max_len": 16, "hidden": 16, "layers": 1, "heads": 2, "dropout": 0.1, "dropout_masks": "auto",
                    "lr": 0.01, "batch_size": 16, "max_epochs": 2, "patience": 2, "seed": 42, "device": "cpu",
                    "processes": 1, "step": "auto"}
MODELS = ("gpt2", "sasrec", "bert4rec")
EAGER_VARIANTS = ("today", "exact", "fast-masks", "chunked-ce")
GPT2_ONLY = {("sasrec", "chunked-ce"), ("bert4rec", "chunked-ce")}


def bench(tmp_path, *arguments):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows_file = tmp_path / "rows.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_train.py"), "--split", str(tmp_path / "data" / "split"),
                             "--params", str(tmp_path / "params.yaml"), "--json", str(rows_file), "--device", "cpu",
                             *arguments], capture_output=True, text=True, timeout=1200, env=env)
    assert result.returncode == 0 and "failed" not in result.stdout, result.stdout + result.stderr
    return json.loads(rows_file.read_text())


def keyed(rows: list[dict], field: str) -> dict:
    """The rows that have ``field`` (a split row: epochs; a synthetic-set row: epoch_estimate) by (model, variant)."""
    return {(r["model"], r["variant"]): r for r in rows if field in r}


@pytest.mark.slow  # one process per row, torch.compile among them
def test_every_variant_trains_and_today_is_the_stage(tmp_path):
    write_split(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"].update(max_epochs=2, patience=2)
    params["sasrec"] = TINY_TRANSFORMER
    params["bert4rec"] = {**TINY_TRANSFORMER, "mask_prob": 0.2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    large = ("--large-scale", "0.0008", "--large-batches", "2", "--large-val-users", "50")
    # Each row is a process of its own (5 s to start): every model with the variants that compile
    # nothing on the split and today's on the synthetic set; the compiled variants (and glibc's
    # default allocation, which changes no number, bf16 autocast and the six-pass GELU) on GPT-2 alone.
    eager = bench(tmp_path, "--variants", *EAGER_VARIANTS) + bench(tmp_path, "--no-small", "--variants", "today", *large)
    compiled = bench(tmp_path, "--models", "gpt2", "--variants", "graphs", "compiled", "default-malloc", "bf16",
                     "gelu-new", *large)
    small = keyed(eager + compiled, "epochs")
    gpt2_alone = [("gpt2", v) for v in ("graphs", "compiled", "default-malloc", "bf16", "gelu-new")]
    assert sorted(small) == sorted([(m, v) for m in MODELS for v in EAGER_VARIANTS if (m, v) not in GPT2_ONLY]
                                   + gpt2_alone)
    for key, row in small.items():
        assert row["epoch"] > 0 and row["rate"] > 0 and row["peak_gb"] > 0, key
        assert 1 <= row["epochs"] <= 2 and 0 < row["ndcg"] <= 1, key
    # On a CPU step auto is the exact step; this test's params (write_split's) give GPT-2 torch's
    # masks and SASRec and BERT4Rec auto, the fast ones on a CPU: bit for bit.
    assert small[("gpt2", "today")]["ndcg"] == small[("gpt2", "exact")]["ndcg"]
    assert small[("gpt2", "today")]["ndcg"] == small[("gpt2", "default-malloc")]["ndcg"]
    for model in ("sasrec", "bert4rec"):
        assert small[(model, "today")]["ndcg"] == small[(model, "fast-masks")]["ndcg"]

    synthetic = keyed(eager + compiled, "epoch_estimate")
    assert sorted(synthetic) == sorted([(m, "today") for m in MODELS] + gpt2_alone)
    for key, row in synthetic.items():
        assert row["rate"] > 0 and row["epoch_estimate"] > 0 and row["validation"] > 0 and row["items"] > 100, key

    stage = run_stage("train", cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert stage.returncode == 0, stage.stderr
    summary = json.loads((tmp_path / "metrics" / "train" / "metrics.json").read_text())
    assert small[("gpt2", "today")]["ndcg"] == summary["val"]["ndcg@10"]  # bit for bit
    assert small[("gpt2", "today")]["epochs"] == summary["epochs"]


def test_linear_cross_entropy_is_the_projection_then_cross_entropy():
    torch.manual_seed(0)
    hidden = torch.randn(37, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(23, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 23, (37,))
    expected = F.cross_entropy(hidden @ weight.T, labels, reduction="sum")
    expected_grads = torch.autograd.grad(3 * expected, (hidden, weight))
    loss = LinearCrossEntropy.apply(hidden, weight, labels, 10)  # chunks of 10, 10, 10, 7
    grads = torch.autograd.grad(3 * loss, (hidden, weight))
    assert torch.allclose(loss, expected)
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want)


def tiny_gpt2():
    from genrec import model as gpt2
    torch.manual_seed(0)
    return gpt2.build(30, gpt2.ModelParams(n_positions=12, n_embd=16, n_layer=1, n_head=2,
                                           activation_function="gelu_pytorch_tanh", dropout=0.1)).eval()


def test_chunked_loss_is_gpt2s_loss_and_gradient():
    from genrec import model as gpt2
    torch.manual_seed(1)
    batch = torch.randint(1, 31, (5, 13))
    for row, length in enumerate([13, 9, 4, 2, 7]):
        batch[row, length:] = 0
    inputs, labels = batch[:, :-1], batch[:, 1:]
    model = tiny_gpt2()
    expected = gpt2.NextItemLoss(model)(inputs, labels)
    expected_grad = torch.autograd.grad(expected, model.lm_head.weight)[0]
    loss = ChunkedNextItemLoss(model, chunk=7)(inputs, labels)
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert torch.allclose(torch.autograd.grad(loss, model.lm_head.weight)[0], expected_grad, atol=1e-5)
