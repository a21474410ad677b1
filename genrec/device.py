"""Which torch device a stage runs on (the ``device`` key of train, generation and the
neural baselines)."""

from __future__ import annotations

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
