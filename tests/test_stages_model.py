"""The train and strategy stage scripts: bad params are one clear error, before any work."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import run_stage

pytestmark = pytest.mark.slow  # stages run as processes


REPO = Path(__file__).resolve().parents[1]
GOOD = yaml.safe_load((REPO / "params.yaml").read_text())


def run(folder: Path, script: str, *args: str, **overrides: dict) -> subprocess.CompletedProcess:
    params = {name: dict(section) for name, section in GOOD.items()}
    for name, values in overrides.items():
        params[name].update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return run_stage(script.removesuffix(".py"), *args, cwd=folder)


def assert_clear_error(result: subprocess.CompletedProcess, parameter: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and parameter in result.stderr


@pytest.mark.parametrize("overrides, parameter", [
    ({"model": {"n_embd": 65, "n_head": 2}}, "model.n_embd"),
    ({"model": {"dropout": 1.5}}, "model.dropout"),
    ({"model": {"activation_function": "relu"}}, "model.activation_function"),
    ({"train": {"lr": 0}}, "train.lr"),
    ({"train": {"batch_size": -1}}, "train.batch_size"),
    ({"train": {"device": "cuda:7" if not __import__("torch").cuda.is_available() else "tpu"}}, "train.device"),
    ({"train": {"patiense": 3}}, "train.patiense"),
    ({"train": {"dropout_masks": "fastest"}}, "train.dropout_masks"),
])
def test_train_stage_rejects_bad_params_before_reading_data(tmp_path, overrides, parameter):
    # No data/split exists here: the error must come from the params check, before any work.
    result = run(tmp_path, "train.py", **overrides)
    assert_clear_error(result, parameter)
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()


@pytest.mark.parametrize("strategy, overrides, parameter", [
    ("sampling", {"generation": {"temperature": 0}}, "generation.temperature"),
    ("rra", {"generation": {"num_sequences": 0}}, "generation.num_sequences"),
    ("beam", {"generation": {"num_beams": 0}}, "generation.num_beams"),
    ("ra", {"generation": {"top_k": -1}}, "generation.top_k"),
    ("topk", {"evaluation": {"k": 128}}, "evaluation.k (128) must be smaller than the model's window"),
    ("greedy", {"evaluation": {"k": 0}}, "evaluation.k"),
])
def test_strategy_stage_rejects_bad_params_before_loading_the_model(tmp_path, strategy, overrides, parameter):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"n_positions": 128}')  # no weights: loading would fail loudly
    result = run(tmp_path, "recommend.py", strategy, "--model", str(model), **overrides)
    assert_clear_error(result, parameter)
    assert not (tmp_path / "data").exists()


def test_a_searched_strategy_says_that_its_search_replaces_the_grid(tmp_path):
    """generation.searched.rra (genrec search rra) takes the place of the grid: the stage says so,
    so that `-S generation.temperature=...` never silently misses it."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"n_positions": 128}')
    searched = {"sampling": {}, "rra": {"num_sequences": 30, "temperature": 0.1, "top_k": 50}, "ra": {}}
    result = run(tmp_path, "recommend.py", "rra", "--model", str(model), generation={"searched": searched})
    assert ("rra: generation.searched.rra (`genrec search rra`) sets num_sequences 30, temperature 0.1, top_k 50 in "
            "place of the generation grid; `-S 'generation.searched.rra={}'` tunes the grid again") in result.stderr
    result = run(tmp_path, "recommend.py", "ra", "--model", str(model), generation={"searched": searched})
    assert "generation.searched" not in result.stderr
