"""benchmarks/bench_pipeline.py: the real `dvc repro` on a synthetic ML-20M-shaped file, timed
stage by stage; a failing stage fails the benchmark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs DVC and every stage as processes

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pipeline.py"
STAGES = ["download", "preprocess", "split", "train", "topk", "greedy", "beam", "sampling", "rra", "ra", "bundle",
          "popularity", "baseline@bpr", "baseline@sasrec", "baseline@bert4rec", "report"]
SMALL = ["--set", "model.n_embd=16", "--set", "sasrec.hidden=16", "--set", "bert4rec.hidden=16",
         "--set", "generation.temperature=0.5", "--set", "generation.num_sequences=4"]


def bench(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--keep", str(tmp_path / "bench")],
                          capture_output=True, text=True, timeout=900)


def test_every_stage_gets_a_row(tmp_path):
    result = bench("--scale", "0.001", "--epochs", "1", *SMALL, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()
            if line.split() and line.split()[0] in STAGES}
    assert list(rows) == STAGES  # dvc.yaml's order, each once
    assert all(float(seconds) > 0 and float(rss) > 0.05 for seconds, rss, *_ in rows.values())
    assert "138 users, 20,000 interactions" in result.stdout
    repo = tmp_path / "bench" / "repo"
    assert (repo / "metrics" / "report.md").exists()
    params = (repo / "params.yaml").read_text()
    assert "max_epochs: 1" in params and "n_embd: 16" in params


def test_a_failing_stage_fails_the_benchmark(tmp_path):
    result = bench("--scale", "0.001", "--set", "preprocess.min_user_items=100000", tmp_path=tmp_path)
    assert result.returncode != 0
    assert "FAILED (exit 2)" in result.stdout and "preprocess" in result.stdout
    assert "dvc repro failed; the end of its log" in result.stderr
