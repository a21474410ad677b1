"""benchmarks/profile_training.py: the share of batch positions that hold an item, and a run on a tiny split."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_training import write_split

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from profile_training import real_share  # noqa: E402


def test_real_share_counts_items_over_the_trimmed_width_of_each_batch():
    # Left-padded rows of 2 and 4 items in a window of 6.
    matrix = torch.tensor([[0, 0, 0, 0, 5, 6], [0, 0, 1, 2, 3, 4]])
    assert real_share(matrix, batch_size=2) == 6 / 8  # one batch as wide as its 4-item row
    assert real_share(matrix, batch_size=1) == 1.0  # each row its own batch: no padding
    assert real_share(torch.tensor([[0, 7], [0, 8]]), batch_size=2) == 1.0  # a column of padding everywhere is trimmed


@pytest.mark.slow  # three models trained for an epoch in a process of its own
def test_prints_each_models_operators_validation_and_items_share(tmp_path):
    write_split(tmp_path)
    result = subprocess.run([sys.executable, str(BENCHMARKS / "profile_training.py"), "--epochs", "1", "--top", "2",
                             "--split", str(tmp_path / "data" / "split")],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("gpt2", "sasrec", "bert4rec"):
        assert f"\n{name}: " in result.stdout
    assert result.stdout.count("one validation (") == 3
    assert result.stdout.count("items fill ") == 3
