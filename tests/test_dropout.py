"""genrec.dropout: the fast dropout masks (``dropout_masks``). How each model trains with them:
test_training.py (GPT-2) and test_baselines.py (SASRec, BERT4Rec)."""

from __future__ import annotations

import pytest
import torch

from genrec import dropout as gd
from genrec import model as gpt2
from genrec.baselines import bert4rec
from helpers import defaults

CPU = torch.device("cpu")


def test_fast_dropout_keeps_the_share_and_the_mean():
    torch.manual_seed(0)
    dropout = gd.FastDropout(0.1)
    x = torch.ones(400_000)
    y = dropout(x)
    assert abs((y != 0).float().mean().item() - 0.9) < 0.003  # p to within 2**-16, plus noise (sd 0.0005)
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.9))
    assert abs(y.mean().item() - 1.0) < 0.005
    assert dropout.eval()(x) is x and gd.fast_dropout(x, 0.0) is x


def reference_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """The fast masks as first written: the same draws, three products."""
    if not training or p == 0:
        return x
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, (-(-n // 4),), dtype=torch.int64)
    keep = words.view(torch.int16)[:n].view(x.shape) >= -(2**15) + round(p * 2**16)
    return x * keep * (1.0 / (1.0 - p))


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))  # -0.0 too


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_fast_dropout_is_the_reference_bit_for_bit(dtype):
    torch.manual_seed(3)
    x = (torch.randn(3, 5, 7, 11) * 100).to(dtype)
    x.view(-1)[:4] = torch.tensor([0.0, -0.0, -1e-30, 1e30]).to(dtype)
    gradient = torch.randn(x.shape).to(dtype)
    outputs = []
    for dropout in (gd.fast_dropout, reference_dropout):
        leaf = x.clone().requires_grad_()
        torch.manual_seed(5)
        y = dropout(leaf, 0.3)
        y.backward(gradient)
        outputs.append((y.detach(), leaf.grad))
    (y, grad), (expected_y, expected_grad) = outputs
    assert same_bits(y, expected_y) and same_bits(grad, expected_grad)
    assert (y == 0).any() and (y != 0).any()


def test_use_fast_dropout_replaces_every_dropout_of_a_hugging_face_model():
    for model in (gpt2.build(30, defaults("model", n_positions=16, n_embd=16, n_layer=1, n_head=2, dropout=0.2)),
                  bert4rec.build(30, defaults("bert4rec", max_len=16, hidden=16, layers=1, heads=2))):
        model.eval()
        gd.use_fast_dropout(model)
        dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
        assert dropouts and all(type(m) is gd.FastDropout and not m.training for m in dropouts)
        assert model.config._attn_implementation == gd.HF_ATTENTION  # attention's dropout too


def test_auto_masks_are_fast_on_a_cpu_and_torchs_on_cuda():
    params = defaults("sasrec")
    assert params.dropout_masks == "auto"  # params.yaml's for SASRec, BERT4Rec and GPT-2
    assert defaults("train").dropout_masks == defaults("bert4rec").dropout_masks == "auto"
    assert gd.fast_masks(params, CPU) and not gd.fast_masks(params, torch.device("cuda"))
    assert gd.fast_masks(params.model_copy(update={"dropout_masks": "fast"}), torch.device("cuda"))
    assert not gd.fast_masks(params.model_copy(update={"dropout_masks": "torch"}), CPU)
