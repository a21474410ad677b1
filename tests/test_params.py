"""genrec.params: params.yaml is read as DVC reads and writes it (YAML 1.2, issue 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import run_command as run
from helpers import section_values

from genrec import params
from genrec.errors import UserError
from genrec.training import TrainParams

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, value", [("1e-05", 1e-05), ("1.0e-5", 1e-05), ("1e-9", 1e-9), ("0.001", 0.001),
                                          ("1E3", 1000.0)])
def test_exponent_floats_are_numbers(tmp_path, text, value):
    # YAML 1.1 (PyYAML) reads 1e-05 as the string '1e-05'; DVC writes exactly that spelling.
    others = "".join(f"  {key}: {setting}\n" for key, setting in section_values("train").items() if key != "lr")
    (tmp_path / "params.yaml").write_text(f"train:\n  lr: {text}\n{others}")
    assert params.section(params.load(tmp_path / "params.yaml"), "train", TrainParams).lr == value


def test_invalid_yaml_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  lr: 1\n  lr: 2\n")
    with pytest.raises(UserError, match=r"not valid YAML at line 3: found duplicate key") as error:
        params.load(tmp_path / "params.yaml")
    assert "\n" not in str(error.value)




READ = """
import json
from genrec import params
from genrec.strategies import GenerationParams
from genrec.training import TrainParams
loaded = params.load()
train = params.section(loaded, "train", TrainParams)
generation = params.section(loaded, "generation", GenerationParams, keys=["temperature"])
json.dump({"lr": train.lr, "temperature": generation.temperature}, open("read.json", "w"))
"""


def test_dvc_exp_run_set_param_with_an_exponent(tmp_path):
    """The real ``dvc exp run -S``: DVC writes 1e-05 and 1e-09 into params.yaml, and the
    stage reads them as numbers (before issue 10: "must be a number, got '1e-05'")."""
    (tmp_path / "read.py").write_text(READ)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"read": {
        "cmd": "python read.py", "deps": ["read.py"], "params": ["train.lr", "generation.temperature"],
        "outs": [{"read.json": {"cache": False}}]}}}))
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "read params"], tmp_path)
    run(["dvc", "exp", "run", "-S", "train.lr=0.00001", "-S", "generation.temperature=1e-9"], tmp_path)
    assert "1e-05" in (tmp_path / "params.yaml").read_text()  # the spelling YAML 1.1 reads as a string
    assert json.loads((tmp_path / "read.json").read_text()) == {"lr": 1e-05, "temperature": 1e-09}
