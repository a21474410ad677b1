"""genrec.seeds: queue one experiment per seed with the real DVC queue, run it, and read the
seed table from `dvc exp show --json` (on a toy pipeline, so it takes seconds, not minutes)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import run_command as run, tool_env

from genrec import seeds
from genrec.errors import UserError

STAGE = """\
import json, os, yaml
os.makedirs("metrics/validation", exist_ok=True)
p = yaml.safe_load(open("params.yaml"))
json.dump({"ndcg@10": p["train"]["seed"] / 10 * p["train"]["scale"], "users": 3}, open("metrics/topk.json", "w"))
json.dump({"ndcg@10": p["generation"]["seed"] / 100 + p["sasrec"]["seed"] / 1000}, open("metrics/rra.json", "w"))
json.dump({"ndcg@10": 0.5}, open("metrics/validation/rra.json", "w"))  # not a test result
"""
PIPELINE = """\
stages:
  toy:
    cmd: python toy.py
    deps: [toy.py]
    params: [train.seed, train.scale, generation.seed, bpr.seed, sasrec.seed, bert4rec.seed]
    metrics:
      - metrics/topk.json: {cache: false}
      - metrics/rra.json: {cache: false}
      - metrics/validation/rra.json: {cache: false}
"""




@pytest.mark.slow
def test_queue_run_and_table(tmp_path):
    (tmp_path / "toy.py").write_text(STAGE)
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    (tmp_path / "params.yaml").write_text("train: {seed: 1, scale: 1}\n" + "".join(
        f"{section}: {{seed: 1}}\n" for section in ("generation", "bpr", "sasrec", "bert4rec")))
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "toy"]):
        run(command, tmp_path)
    run([sys.executable, "-m", "genrec.seeds", "queue", "2", "3"], tmp_path)
    # The same seeds with a change of params, under their own name.
    run([sys.executable, "-m", "genrec.seeds", "queue", "2", "3", "--name", "scaled-", "-S", "train.scale=2"], tmp_path)
    run(["dvc", "exp", "run", "--run-all"], tmp_path)
    out = run([sys.executable, "-m", "genrec.seeds", "table", "--out", "seeds.md"], tmp_path).stdout
    assert out == (tmp_path / "seeds.md").read_text()
    assert "over 2 seeds (seed-2, seed-3)" in out
    # topk: 0.2 and 0.3; rra: every seed moved together (generation and sasrec seeds alike)
    assert "| topk | 0.2500 ± 0.0707 | 0.2000 | 0.3000 | 0.2000 | 0.3000 |" in out
    assert "| rra | 0.0275 ± 0.0078 | 0.0220 | 0.0330 | 0.0220 | 0.0330 |" in out
    assert "validation" not in out
    scaled = run([sys.executable, "-m", "genrec.seeds", "table", "--name", "scaled-"], tmp_path).stdout
    assert "over 2 seeds (scaled-2, scaled-3)" in scaled
    assert "| topk | 0.5000 ± 0.1414 | 0.4000 | 0.6000 | 0.4000 | 0.6000 |" in scaled
    assert "| rra | 0.0275 ± 0.0078 |" in scaled  # what the change does not touch stays

    # More seeds after a commit: the table gathers the experiments of every --rev.
    first = run(["git", "rev-parse", "HEAD"], tmp_path).stdout.strip()
    (tmp_path / "notes.md").write_text("a commit after the first seeds\n")
    run(["git", "add", "notes.md"], tmp_path)
    run(["git", "commit", "-qm", "notes"], tmp_path)
    run([sys.executable, "-m", "genrec.seeds", "queue", "4"], tmp_path)
    run(["dvc", "exp", "run", "--run-all"], tmp_path)
    assert "over 1 seed (seed-4)" in run([sys.executable, "-m", "genrec.seeds", "table"], tmp_path).stdout
    both = run([sys.executable, "-m", "genrec.seeds", "table", "--rev", first, "--rev", "HEAD"], tmp_path).stdout
    assert "over 3 seeds (seed-2, seed-3, seed-4)" in both
    assert "| topk | 0.3000 ± 0.1000 | 0.2000 | 0.4000 | 0.2000 | 0.3000 | 0.4000 |" in both
    # The same seed finished from two of the commits: which one belongs in the table is the user's call.
    run([sys.executable, "-m", "genrec.seeds", "queue", "2"], tmp_path)
    run(["dvc", "exp", "run", "--run-all"], tmp_path)
    twice = subprocess.run([sys.executable, "-m", "genrec.seeds", "table", "--rev", first, "--rev", "HEAD"],
                           capture_output=True, text=True, cwd=tmp_path,
                           env=tool_env())
    assert twice.returncode == 2 and "Traceback" not in twice.stderr
    assert twice.stderr.startswith("error: two finished experiments are named seed-2")


def test_table_without_seed_experiments_is_a_clear_error():
    shown = [{"rev": "workspace", "name": None, "data": {"metrics": {}}, "experiments": None}]
    with pytest.raises(UserError, match="no finished experiments named seed-<n>"):
        seeds.summary(seeds.ndcg_by_seed(shown))


@pytest.mark.parametrize("setting", ["train.seed=3", "generation.seed=3", "train.lr"])
def test_queue_refuses_a_seed_or_a_setting_without_a_value(setting):
    with pytest.raises(UserError, match=f"-S {setting}: give KEY=VALUE for a key other than the seeds"):
        seeds.queue([1], settings=(setting,))


def test_a_named_table_reads_only_its_own_experiments():
    def entry(name, value):
        return {"revs": [{"rev": name, "name": name, "data": {"metrics": {"metrics/topk.json": {
            "data": {"ndcg@10": value}}}}, "experiments": None}], "name": name}
    shown = [{"rev": "abc", "name": "main", "data": {"metrics": {}}, "experiments": [
        entry("seed-1", 0.1), entry("lr-1", 0.2), entry("lr-x", 0.3), entry("seed-lr-1", 0.4)]}]
    assert seeds.ndcg_by_seed(shown) == {"seed-1": {"topk": 0.1}}
    assert seeds.ndcg_by_seed(shown, prefix="lr-") == {"lr-1": {"topk": 0.2}}
    with pytest.raises(UserError, match="no finished experiments named lr-<n>: .*queue 1 2 3 --name lr-'"):
        seeds.summary({}, "lr-")


def test_ndcg_by_seed_reads_nested_experiments():
    def data(value):
        return {"metrics": {"metrics/topk.json": {"data": {"ndcg@10": value}},
                            "metrics/train/metrics.json": {"data": {"ndcg@10": 9.0}}}}
    shown = [{"rev": "abc", "name": "main", "data": data(0.1), "experiments": [
        {"revs": [{"rev": "d1", "name": "seed-1", "data": data(0.2), "experiments": None}], "name": "seed-1"},
        {"revs": [{"rev": "d2", "name": "other", "data": data(0.3), "experiments": None}], "name": "other"},
        {"revs": [{"rev": "d3", "name": "seed-2", "data": data(0.4), "experiments": None}], "name": "seed-2",
         "executor": {"state": "running"}},  # partial metrics of a running experiment: left out
    ]}]
    assert seeds.ndcg_by_seed(shown) == {"seed-1": {"topk": 0.2}}


def test_table_out_never_replaces_a_folder(tmp_path):
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "notes.md").write_text("keep me")
    result = subprocess.run([sys.executable, "-m", "genrec.seeds", "table", "--out", str(tmp_path / "table")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: --out {tmp_path / 'table'} is a folder") and "Traceback" not in result.stderr
    assert (tmp_path / "table" / "notes.md").read_text() == "keep me"
