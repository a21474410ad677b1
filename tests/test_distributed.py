"""genrec.distributed and the multi-process paths: GPT-2 training on 2 gloo processes, and
generation shared by 2 processes, which must equal one process's lists (issue 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from genrec import distributed, training
from genrec import model as gm
from genrec.distributed import Group
from genrec.errors import UserError
from genrec.strategies import STRATEGIES, recommend
from helpers import REPO, cyclic_walks, defaults, run_stage

NUM_ITEMS = 30


# --- sharding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (7, 3), (2, 4), (0, 2)])
def test_shards_cover_the_rows_once_in_order(n, world):
    parts = [Group(rank, world).shard(n) for rank in range(world)]
    rows = np.concatenate([np.arange(n)[part] for part in parts])
    np.testing.assert_array_equal(rows, np.arange(n))
    sizes = [len(range(n)[part]) for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_one_process_epoch_is_the_single_process_order():
    matrix = torch.arange(50).reshape(25, 2)
    got = training.epoch_batches(matrix, 4, torch.Generator().manual_seed(3))
    expected = matrix[torch.randperm(25, generator=torch.Generator().manual_seed(3))].split(4)
    assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_ranks_see_disjoint_shards_and_take_the_same_steps():
    matrix = torch.arange(27)[:, None]
    shards = [training.epoch_batches(matrix, 8, torch.Generator().manual_seed(0), Group(rank, 2))
              for rank in range(2)]
    rows = [torch.cat(batches).flatten().tolist() for batches in shards]
    assert not set(rows[0]) & set(rows[1])
    assert len(rows[0]) == len(rows[1]) == 13  # 27 - 27 % 2 rows, half each
    assert len(shards[0]) == len(shards[1])  # the same number of optimizer steps
    assert all(len(batch) <= 4 for batches in shards for batch in batches)  # a global batch of 8


def test_relaunch_does_nothing_for_one_process_or_inside_torchrun(monkeypatch):
    cpu = torch.device("cpu")
    distributed.relaunch("stages.train", 1, cpu, "train.processes")  # returns
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    distributed.relaunch("stages.train", 2, cpu, "train.processes")  # already launched: returns
    assert distributed.launched()


def test_more_processes_than_gpus_is_a_user_error_before_anything_starts(monkeypatch):
    """NCCL runs one process per GPU: 2 processes on a 1-GPU machine would fail inside rank 1
    with a CUDA traceback; the stage says so first, naming the param."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(distributed.subprocess, "call", lambda *a, **k: pytest.fail("launched"))
    with pytest.raises(UserError, match=r"generation.processes is 2, but this machine has 1 GPU .*at most 1"):
        distributed.relaunch("stages.recommend", 2, torch.device("cuda"), "generation.processes")
    # Under an outer torchrun with too many processes per machine, the extra rank says so too.
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(UserError, match=r"process 1 on this machine, which has 1 GPU.*--nproc-per-node"):
        distributed.start(torch.device("cuda"))


# --- generation on 2 processes -------------------------------------------------------------------

GENERATE = """
import sys
import numpy as np
from genrec import distributed, model, params
from genrec.sequences import UserSequences
from genrec.strategies import GenerationParams, STRATEGIES, recommend, recommend_counts
import torch
folder = sys.argv[1]
COUNTS = [2, 5, 3]
group = distributed.start(torch.device("cpu"))
net = model.load(folder + "/model", group.device)
data = np.load(folder + "/data.npz")
sequences = UserSequences(indptr=data["indptr"], items=data["items"])
config = GenerationParams.model_validate_json(open(folder + "/params.json").read())
out = {}
for name in STRATEGIES:
    items, scores = recommend(name, net, sequences, data["users"], config, group=group)
    out[name + "_items"], out[name + "_scores"] = items, scores
for name in ("rra", "ra"):  # tuning's draw shared between sequence counts
    for n, (items, scores) in zip(COUNTS, recommend_counts(name, net, sequences, data["users"], config, COUNTS,
                                                           group=group)):
        out[f"{name}_{n}_items"], out[f"{name}_{n}_scores"] = items, scores
if group.main:
    np.savez(folder + "/two.npz", **out)
distributed.stop()
"""


def tiny_setup(folder: Path):
    torch.manual_seed(0)
    model = gm.build(NUM_ITEMS, gm.ModelParams(n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                               activation_function="gelu_pytorch_tanh", dropout=0.0)).eval()
    sequences, _ = cyclic_walks(23, NUM_ITEMS, seed=1)
    users = np.array([5, 0, 22, 3, 17, 9, 11, 1, 14])  # not in id order, an odd count
    config = defaults("generation", horizon=5, num_beams=2, temperature=0.8, top_k=0, num_sequences=4, seed=7,
                      batch_size=2, device="cpu", processes=2)
    gm.save(model, folder / "model")
    np.savez(folder / "data.npz", indptr=sequences.indptr, items=sequences.items, users=users)
    (folder / "params.json").write_text(config.model_dump_json())
    return model, sequences, users, config


@pytest.mark.slow
def test_two_processes_recommend_what_one_does(tmp_path):
    model, sequences, users, config = tiny_setup(tmp_path)
    (tmp_path / "generate.py").write_text(GENERATE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             str(tmp_path / "generate.py"), str(tmp_path)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    two = np.load(tmp_path / "two.npz")
    for name in STRATEGIES:
        items, scores = recommend(name, model, sequences, users, config)
        np.testing.assert_array_equal(two[name + "_items"], items, err_msg=name)
        np.testing.assert_array_equal(two[name + "_scores"], scores, err_msg=name)
    for name in ("rra", "ra"):
        for n in (2, 5, 3):
            items, scores = recommend(name, model, sequences, users, config.model_copy(update={"num_sequences": n}))
            np.testing.assert_array_equal(two[f"{name}_{n}_items"], items, err_msg=f"{name} {n}")
            np.testing.assert_allclose(two[f"{name}_{n}_scores"], scores, rtol=1e-6, err_msg=f"{name} {n}")


# --- the stages on 2 processes -------------------------------------------------------------------

def write_split(folder: Path, processes: int) -> None:
    sequences, targets = cyclic_walks(60, NUM_ITEMS, seed=0)
    split = folder / "data" / "split"
    split.mkdir(parents=True)
    users = np.repeat(np.arange(60), sequences.lengths(np.arange(60)))
    pd.DataFrame({"user_id": users, "item_id": sequences.items, "timestamp": np.arange(len(users))}
                 ).to_parquet(split / "train.parquet")
    for name, rows in (("validation", np.arange(30)), ("test", np.arange(30, 60))):
        pd.DataFrame({"user_id": rows, "item_id": targets[rows], "position": 0}).to_parquet(split / f"{name}.parquet")
    (split / "meta.json").write_text(json.dumps({"num_users": 60, "num_items": NUM_ITEMS}))
    config = yaml.safe_load((REPO / "params.yaml").read_text())
    config["model"].update(n_positions=16, n_embd=16, n_layer=1, n_head=2)
    config["train"].update(lr=0.01, batch_size=16, max_epochs=3, patience=2, device="cpu", processes=processes)
    config["evaluation"] = {"k": 5}
    config["generation"].update(temperature=[0.5, 1.0], top_k=0, num_sequences=4, batch_size=4,
                                device="cpu", processes=processes)
    (folder / "params.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.slow
def test_train_and_rra_stages_on_two_processes(tmp_path):
    """The train stage relaunches itself under torchrun with 2 gloo processes: rank 0 alone
    writes the model and the learning curves. The rra stage (a grid tuned on the validation
    users) run on 2 processes writes the same lists and the same choice as on 1."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    write_split(tmp_path, processes=2)
    result = run_stage("train", cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2 processes" in result.stdout
    summary = json.loads((tmp_path / "metrics/train/metrics.json").read_text())
    assert 1 <= summary["best_epoch"] <= summary["epochs"] <= 3
    assert (tmp_path / "data/model/model.safetensors").exists()
    assert not list(tmp_path.glob("data/.model*")) and not list(tmp_path.glob("metrics/.train*"))

    outputs = {}
    for processes in (2, 1):
        config = yaml.safe_load((tmp_path / "params.yaml").read_text())
        config["generation"]["processes"] = processes
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(config))
        result = run_stage("recommend", "rra", cwd=tmp_path, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[processes] = (pd.read_parquet(tmp_path / "data/recs/rra.parquet"),
                              (tmp_path / "metrics/tuning/rra.csv").read_text(),
                              json.loads((tmp_path / "metrics/rra.json").read_text()))
    pd.testing.assert_frame_equal(outputs[2][0], outputs[1][0])
    assert outputs[2][1] == outputs[1][1]
    assert outputs[2][2] == outputs[1][2]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_neural_baselines_train_on_two_processes(tmp_path, name):
    """SASRec and BERT4Rec share GPT-2's loop, and so its data-parallel path: the baseline stage
    with <name>.processes 2 trains on 2 gloo processes; rank 0 writes the lists and the curves."""
    write_split(tmp_path, processes=1)
    config = yaml.safe_load((tmp_path / "params.yaml").read_text())
    config["evaluation"] = {"k": 5}
    config[name].update(max_len=16, hidden=16, layers=1, heads=2, batch_size=16, max_epochs=3, patience=2,
                        device="cpu", processes=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(config))
    result = run_stage("baseline", name, "--split", "data/split", cwd=tmp_path,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(f"{name}: best epoch") == 1  # rank 0 alone reports
    recs = pd.read_parquet(tmp_path / f"data/recs/{name}.parquet")
    assert recs["user_id"].nunique() == 30 and len(recs) == 30 * 5
    summary = json.loads((tmp_path / f"metrics/{name}_train/metrics.json").read_text())
    assert 1 <= summary["best_epoch"] <= summary["epochs"] <= 3 and np.isfinite(summary["train"]["loss"])
