"""genrec.device: which torch device a stage runs on."""

from __future__ import annotations

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
