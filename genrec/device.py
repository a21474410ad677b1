"""Which torch device a stage runs on (the ``device`` key of train, generation and the
neural baselines), and how its process keeps host memory."""

from __future__ import annotations

import ctypes

import torch

from genrec.errors import UserError


def resolve_device(name: str, label: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"params.yaml: {label} must be auto, cpu or cuda, got '{name}'")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"params.yaml: {label} is '{name}' but no CUDA GPU is available; use auto or cpu")
    return torch.device(name)


def keep_freed_memory() -> None:
    """Have glibc keep freed memory in this process rather than hand it back to the system.

    A generation step allocates and frees (users, sequences, items) tensors of tens of MB, a
    training step its activations and logits. glibc serves blocks that large with fresh pages
    from the kernel and returns them on free, so every step pays the page faults again: a
    fifth to a third of RRA's and RA's tuning time on a 2-core CPU, a few percent of a training
    epoch on ml-100k and 1.4-1.8x at ML-20M's catalogue (benchmarks/bench_tuning.py,
    bench_train.py). Only the speed changes, never a number. For processes that generate or
    train and then exit (the torch stages, ``genrec recommend --input``); without glibc it does
    nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_max = -1, -4  # mallopt's parameter numbers (malloc.h)
    libc.mallopt(m_mmap_max, 0)  # large blocks from the heap, not from mmap
    libc.mallopt(m_trim_threshold, 2**31 - 1)  # and the heap's free top kept, not trimmed
