"""End to end: the real `dvc repro` and `dvc exp run` in a temporary git repository,
on a small generated MovieLens-shaped dataset and a tiny GPT-2."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import run_command as run, tool_env

pytestmark = pytest.mark.slow  # stages run as processes: the end-to-end tier

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["topk", "greedy", "beam", "sampling", "rra", "ra"]
BASELINES = ["popularity", "bpr", "sasrec", "bert4rec"]
BASELINE_STAGES = ["popularity", "baseline@bpr", "baseline@sasrec", "baseline@bert4rec"]  # dvc.yaml's foreach
STAGES = ["download", "preprocess", "split", "train", *STRATEGIES, "bundle", *BASELINE_STAGES, "report"]


def generated_interactions(users: int = 60, items: int = 40, seed: int = 0) -> pd.DataFrame:
    """Users walk through the catalogue in steps of a per-user stride: learnable order."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        start, stride, length = rng.integers(1, items), rng.choice([1, 3]), rng.integers(22, 34)
        for t in range(length):
            rows.append((1000 + user, 1 + (start + stride * t) % items, 4, 1_600_000_000 + 60 * t + user))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("pipeline")
    for folder in ("stages", "genrec"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / "metrics").mkdir()
    shutil.copy(ROOT / "metrics/untuned.json", repo / "metrics/untuned.json")  # the report's input; other data
    generated_interactions().to_csv(repo / "interactions.csv", index=False)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["dataset"] = "interactions.csv"
    params["split"]["n"] = 5
    params["model"].update(n_positions=16, n_embd=16, n_layer=1, n_head=2)
    params["train"].update(max_epochs=2, batch_size=16, device="cpu")
    params["evaluation"]["k"] = 5  # every list and metric: one length, and not the default 10
    params["generation"].update(num_sequences=3, device="cpu")
    params["generation"]["searched"] = {"sampling": {}, "rra": {}, "ra": {}}  # the grids, which these tests tune
    params["bpr"].update(factors=8, max_epochs=4, eval_every=2, patience=2)
    for name in ("sasrec", "bert4rec"):
        params[name].update(max_len=16, hidden=16, layers=1, heads=2, max_epochs=2, batch_size=16, device="cpu")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    shutil.copytree(ROOT / ".dvc/plots", repo / ".dvc/plots")  # the project's plot template
    run(["dvc", "config", "core.analytics", "false"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny pipeline"], repo)
    return repo


def test_repro_runs_every_stage_and_writes_the_outputs(repo: Path) -> None:
    out = run(["dvc", "repro"], repo).stdout
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    test = pd.read_parquet(repo / "data/split/test.parquet")
    train = pd.read_parquet(repo / "data/split/train.parquet")
    for strategy in STRATEGIES + BASELINES:
        recs = pd.read_parquet(repo / f"data/recs/{strategy}.parquet")
        assert list(recs.columns) == ["user_id", "item_id", "rank"]
        assert set(recs["user_id"]) == set(test["user_id"])
        assert recs.groupby("user_id")["item_id"].nunique().eq(5).all()  # no repeats
        seen = recs.merge(train, on=["user_id", "item_id"])
        assert seen.empty, f"{strategy} recommends seen items"
        metrics = json.loads((repo / f"metrics/{strategy}.json").read_text())
        assert 0.0 <= metrics["ndcg@5"] <= 1.0
        positions = pd.read_csv(repo / f"metrics/positions/{strategy}.csv")
        assert positions["position"].tolist() == [1, 2, 3, 4, 5]
        validation = json.loads((repo / f"metrics/validation/{strategy}.json").read_text())
        assert set(validation) == set(metrics)
    # params.yaml's grids: each tuned strategy tried every combination of its keys on validation.
    grid = yaml.safe_load((repo / "params.yaml").read_text())["generation"]
    tuning = pd.read_csv(repo / "metrics/tuning/rra.csv")
    assert len(tuning) == len(grid["temperature"]) * len(grid["top_k"])  # num_sequences is a single value here
    best = tuning.loc[tuning["ndcg@5"].idxmax()]  # idxmax: the first of equal maxima
    rra = json.loads((repo / "metrics/rra.json").read_text())
    assert rra["chosen"] == {"temperature": best["temperature"], "top_k": best["top_k"], "num_sequences": 3}
    assert len(pd.read_csv(repo / "metrics/tuning/beam.csv")) == len(grid["num_beams"])
    report = json.loads((repo / "metrics/report.json").read_text())
    assert list(report["methods"]) == STRATEGIES + BASELINES
    assert report["methods"]["rra"]["chosen"] == rra["chosen"]
    assert (repo / "metrics/positions.png").stat().st_size > 0
    assert "## Example users" in (repo / "metrics/report.md").read_text()
    assert (repo / "data/recommender/settings.json").exists()
    # A second repro finds everything up to date.
    assert "Data and pipelines are up to date" in run(["dvc", "repro"], repo).stdout
    shown = run(["dvc", "metrics", "show", "--json"], repo).stdout
    assert "ndcg@5" in shown
    # The per-position plot draws every method, coloured by method.
    plot = json.loads(run(["dvc", "plots", "show", "--json", "ndcg_first_p"], repo).stdout)["data"]["ndcg_first_p"]
    content = plot[0]["content"]
    assert content["encoding"]["color"]["field"] == "method"
    assert {row["method"] for row in content["data"]["values"]} == set(STRATEGIES + BASELINES)


def test_temperature_experiment_reruns_only_temperature_stages(repo: Path) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline results"], repo)
    out = run(["dvc", "exp", "run", "-S", "generation.temperature=0.3"], repo).stdout
    ran = {s for s in STAGES if f"Running stage '{s}'" in out}
    assert ran == {"sampling", "rra", "ra", "bundle", "report"}, out
    assert "Stage 'train' didn't change, skipping" in out
    diff = run(["dvc", "metrics", "diff", "--json"], repo).stdout
    assert "metrics/rra.json" in diff or "metrics/ra.json" in diff or "metrics/sampling.json" in diff
    # The temperature is fixed; top_k is still tuned.
    tuning = pd.read_csv(repo / "metrics/tuning/rra.csv")
    assert set(tuning["temperature"]) == {0.3} and len(tuning) == len(set(tuning["top_k"])) > 1
    assert json.loads((repo / "metrics/rra.json").read_text())["chosen"]["temperature"] == 0.3


def readme_commands() -> list[str]:
    """The commands of the README's "everyday questions" block."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("The everyday questions"):]
    block = block[block.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_everyday_commands_run_and_stay_readable(repo: Path) -> None:
    """After the temperature experiment: the README's commands answer which temperature won,
    on validation and test, in lines a terminal can show."""
    commands = readme_commands()
    assert len(commands) == 5
    outputs = {}
    env = tool_env()
    for command in commands:
        command = command.replace("@10", "@5")  # the tiny pipeline recommends 5 items
        result = subprocess.run(command, shell=True, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        # 230: the metrics table of RRA is 223 columns wide on ml-100k since entropy_bits and novelty_bits (issue 45)
        assert all(len(line) <= 230 for line in result.stdout.splitlines()), command
        outputs[" ".join(command.split()[:3])] = result.stdout
    shown = outputs["dvc metrics show"]
    assert "chosen.temperature" in shown and "metrics/validation/rra.json" in shown
    assert "generation.temperature" in outputs["dvc exp show"] and "0.3" in outputs["dvc exp show"]
    assert outputs["column -s, -t"].split()[:3] == ["setting", "temperature", "top_k"]  # the tuning grid's header
    # Issue 24: the experiment view once showed RRA alone, which had already chosen 0.3; every
    # strategy that reads the temperature is there now.
    assert all(f"metrics/{name}.json:ndcg@5" in outputs["dvc exp show"] for name in ("sampling", "rra", "ra"))
    assert (repo / "dvc_plots/index.html").exists()


def test_baseline_experiment_reruns_only_that_baseline(repo: Path) -> None:
    out = run(["dvc", "exp", "run", "-S", "sasrec.dropout=0.2"], repo).stdout
    ran = {s for s in STAGES if f"Running stage '{s}'" in out}
    assert ran == {"baseline@sasrec", "report"}, out


def test_an_interrupted_repro_says_so_and_make_restore_brings_everything_back(repo: Path) -> None:
    """Ctrl-C during `dvc repro -s rra`: DVC removes the stage's outputs before running it, so the
    stage cannot keep them; it says so and names `make restore`, which brings back every output,
    the cache: false metrics included (`dvc checkout` alone does not)."""
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "before the interruption", "--allow-empty"], repo)
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    committed = {path: (repo / path).read_bytes() for path in ("data/recs/rra.parquet", "metrics/rra.json",
                                                               "metrics/validation/rra.json", "metrics/tuning/rra.csv")}
    env = tool_env()
    # An uncommitted change, as `dvc exp run -S` leaves one; it also keeps the stage busy for
    # seconds after its first progress line, so the Ctrl-C cannot come after the stage's end.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["generation"]["num_sequences"] = 4000
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # SIGINT at its default, as at a terminal: tests started in the background (`make test &`)
    # inherit an ignored SIGINT, and DVC and the stage would then never see the Ctrl-C.
    dvc = subprocess.Popen(["dvc", "repro", "-f", "-s", "rra"], cwd=repo, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in dvc.stdout:  # wait until the stage itself runs (its first progress line)
        lines.append(line)
        if line.startswith("rra tuning"):
            break
    os.killpg(dvc.pid, signal.SIGINT)  # what Ctrl-C at a terminal does
    out = "".join(lines) + dvc.communicate(timeout=120)[0]
    assert dvc.returncode != 0, out
    assert "interrupted: the stage stopped. DVC had removed its previous outputs before running it; " \
           "`make restore` brings back the last committed ones" in out, out
    assert not (repo / "data/recs/rra.parquet").exists()
    result = subprocess.run(["make", "-o", "setup", "restore"], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {path: (repo / path).read_bytes() for path in committed} == committed
    assert "Data and pipelines are up to date" in run(["dvc", "status"], repo).stdout
    (repo / "Makefile").unlink()
