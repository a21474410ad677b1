"""genrec.params: params.yaml is read as DVC reads and writes it (YAML 1.2, issue 10)."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from helpers import run_command as run
from helpers import section_models, section_values

import genrec
from genrec import params
from genrec.errors import UserError
from genrec.strategies import GenerationParams
from genrec.training import TrainParams

ROOT = Path(__file__).resolve().parents[1]


# --- every section of params.yaml and its model ---------------------------------------------------

@pytest.mark.parametrize("name", list(params.load(ROOT / "params.yaml")))
def test_each_section_of_params_yaml_is_its_model_exactly(name):
    """params.yaml is the only source of values: each of its sections has a model that reads it,
    with exactly its keys (no key the model lacks, no field params.yaml lacks)."""
    models = section_models()
    assert name in models, f"params.yaml section '{name}' has no model in tests/helpers.py's section_models()"
    section = params.load(ROOT / "params.yaml")[name]
    fields = set(models[name].model_fields) - ({"horizon"} if name == "generation" else set())  # evaluation.k
    assert set(section) == fields, name
    read = params.section({name: section}, name, models[name], keys=sorted(fields))
    assert read.model_dump(include=fields) == section  # every value as written (floats that are whole stay equal)


def all_subclasses(cls: type) -> set[type]:
    return {c for sub in cls.__subclasses__() for c in {sub} | all_subclasses(sub)}


def test_every_model_reads_a_section_of_params_yaml():
    for module in pkgutil.walk_packages(genrec.__path__, "genrec."):
        importlib.import_module(module.name)
    models = section_models()
    from genrec.baselines import popularity
    from genrec.baselines.common import TransformerParams
    from genrec.training import LoopParams
    from genrec.search import TargetParams
    shared = {LoopParams, TransformerParams}  # fields that several sections share; no section of their own
    shared |= {TargetParams}  # a part of the search section, one per target
    empty = {popularity.Params}  # nothing to set, so no section
    assert all_subclasses(params.Section) - shared - empty == set(models.values())
    assert not popularity.Params.model_fields
    assert set(models) == set(params.load(ROOT / "params.yaml"))


def test_models_have_no_defaults():
    """Only GenerationParams has one: None, for a key that a strategy stage does not read."""
    for name, model in section_models().items():
        for key, field in model.model_fields.items():
            if model is GenerationParams:
                assert field.default is None, key
            else:
                assert field.is_required(), f"{name}.{key}"


# --- one clear line naming the key -----------------------------------------------------------------

def read_train(**changes):
    return params.section({"train": section_values("train", **changes)}, "train", TrainParams)


@pytest.mark.parametrize("section, message", [
    (section_values("train", foo=1), "unknown key(s) train.foo; known keys are batch_size, device, dropout_masks, "
                                     "lr, max_epochs, patience, precision, processes, seed, step"),
    ({k: v for k, v in section_values("train").items() if k != "lr"}, "train.lr is missing"),
    (section_values("train", lr=-1), "train.lr must be greater than 0, got -1"),
    (section_values("train", lr="5"), "train.lr must be a number, got '5'"),  # a string is not a number
    (section_values("train", batch_size=True), "train.batch_size must be an integer, got True"),  # nor a bool
    (section_values("train", batch_size=2.0), "train.batch_size must be an integer, got 2.0"),
    (section_values("train", device=None), "train.device must be a string, got None"),
    ([1, 2], "section 'train' is missing or not a mapping"),
])
def test_bad_sections_are_one_line_naming_the_key(section, message):
    with pytest.raises(UserError) as error:
        params.section({"train": section}, "train", TrainParams)
    assert str(error.value) == f"params.yaml: {message}"


@pytest.mark.parametrize("name, changes, key", [
    ("model", {"n_embd": 10, "n_head": 3}, "model.n_embd"),
    ("model", {"n_positions": 0}, "model.n_positions"),
    ("model", {"n_positions": 1}, "model.n_positions"),
    ("model", {"n_embd": 0}, "model.n_embd"),
    ("model", {"n_layer": 0}, "model.n_layer"),
    ("model", {"n_layer": -2}, "model.n_layer"),
    ("model", {"n_head": 0}, "model.n_head"),
    ("model", {"dropout": -0.1}, "model.dropout"),
    ("model", {"dropout": 1.0}, "model.dropout"),
    ("train", {"lr": 0.0}, "train.lr"),
    ("train", {"lr": -1e-3}, "train.lr"),
    ("train", {"batch_size": 0}, "train.batch_size"),
    ("train", {"max_epochs": 0}, "train.max_epochs"),
    ("train", {"patience": 0}, "train.patience"),
    ("evaluation", {"k": 0}, "evaluation.k"),
    ("bpr", {"factors": 0}, "bpr.factors"),
    ("bpr", {"lr": 0.0}, "bpr.lr"),
    ("bpr", {"regularization": -0.1}, "bpr.regularization"),
    ("bpr", {"eval_every": 3}, "bpr.max_epochs"),  # 200 is not a multiple of 3
    ("bpr", {"patience": 0}, "bpr.patience"),
    ("sasrec", {"hidden": 60, "heads": 8}, "sasrec.hidden"),
    ("sasrec", {"max_len": 1}, "sasrec.max_len"),
    ("sasrec", {"dropout": 1.0}, "sasrec.dropout"),
    ("sasrec", {"batch_size": 0}, "sasrec.batch_size"),
    ("bert4rec", {"mask_prob": 0.0}, "bert4rec.mask_prob"),
    ("bert4rec", {"layers": 0}, "bert4rec.layers"),
    ("bert4rec", {"max_epochs": 0}, "bert4rec.max_epochs"),
])
def test_a_bad_value_names_the_param(name, changes, key):
    """Each section's out-of-range values, through params.section (one line naming the key) and
    through the model itself."""
    model = section_models()[name]
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        params.section({name: section_values(name, **changes)}, name, model)
    with pytest.raises(ValidationError):
        model(**section_values(name, **changes))


@pytest.mark.parametrize("name, changes, message", [
    ("model", {"n_embd": 30, "n_head": 4}, "model.n_embd (30) must be a multiple of model.n_head (4)"),
    ("sasrec", {"hidden": 60, "heads": 8}, "sasrec.hidden (60) must be a multiple of sasrec.heads (8)"),
    ("bert4rec", {"hidden": 10, "heads": 3}, "bert4rec.hidden (10) must be a multiple of bert4rec.heads (3)"),
    ("bpr", {"max_epochs": 200, "eval_every": 3}, "bpr.max_epochs (200) must be a multiple of bpr.eval_every (3)"),
])
def test_keys_that_must_divide_name_both(name, changes, message):
    with pytest.raises(UserError) as error:
        params.section({name: section_values(name, **changes)}, name, section_models()[name])
    assert str(error.value) == f"params.yaml: {message}"


def test_missing_section():
    with pytest.raises(UserError, match=r"^params\.yaml: section 'train' is missing or not a mapping$"):
        params.section({"model": {}}, "train", TrainParams)


def test_an_integer_is_a_float():
    assert read_train(lr=1).lr == 1.0 and isinstance(read_train(lr=1).lr, float)


@pytest.mark.parametrize("value, message", [
    ([], "must be an integer or a non-empty list of integers, got an empty list"),
    ([2, "3"], "must be an integer, got '3'"),
    ([2, 0], "must be between 1 and 1000, got 0"),
    ([2, 3.0], "must be an integer, got 3.0"),
    (True, "must be an integer or a non-empty list of integers, got True"),
])
def test_bad_grids_name_the_key_and_the_value(value, message):
    with pytest.raises(UserError) as error:
        params.section({"generation": {"num_beams": value}}, "generation", GenerationParams, keys=["num_beams"])
    assert str(error.value) == f"params.yaml: generation.num_beams {message}"


def test_a_grid_of_integers_reads_as_floats():
    got = params.section({"generation": {"temperature": [1, 0.5]}}, "generation", GenerationParams,
                         keys=["temperature"])
    assert got.temperature == [1.0, 0.5] and all(isinstance(t, float) for t in got.temperature)


def test_a_stage_reads_only_its_keys():
    section = section_values("generation", num_beams=0, unknown=1)
    with pytest.raises(UserError, match=r"unknown key\(s\) generation\.unknown;"):  # unknown keys: always
        params.section({"generation": section}, "generation", GenerationParams, keys=["horizon"])
    del section["unknown"]
    read = params.section({"generation": section}, "generation", GenerationParams, keys=["horizon"])
    assert read.horizon == 10 and read.num_beams is None  # the bad num_beams is not read
    with pytest.raises(UserError, match=r"generation\.seed is missing"):
        params.section({"generation": {"horizon": 10}}, "generation", GenerationParams, keys=["horizon", "seed"])


def test_models_are_frozen():
    with pytest.raises(ValidationError):
        read_train().lr = 0.1


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


@pytest.mark.slow
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
