"""Experiments and reruns with the real DVC, in the tiny repository of test_pipeline.py:
queued experiments run their own copy of the code and say clearly when a file is missing
from their copy (issue 11); a forced rerun reproduces every output byte for byte."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import genrec
from test_pipeline import generated_interactions, repo, run  # noqa: F401 (repo: the module's fixture)

pytestmark = pytest.mark.slow  # DVC experiments of the whole pipeline


def queue_and_run(repo: Path, *experiments: list[str]) -> str:
    """Queue each experiment (``dvc exp run --queue`` arguments), run the queue, return its log."""
    for arguments in experiments:
        run(["dvc", "exp", "run", "--queue", *arguments], repo)
    # The exit code is 0 even when an experiment fails: the log says which did.
    result = run(["dvc", "exp", "run", "--run-all"], repo)
    return result.stdout + result.stderr


def experiment_file(repo: Path, name: str, path: str) -> str:
    """A git-tracked file as experiment ``name`` committed it; "" when there is no such experiment
    (a failed experiment leaves none)."""
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    ref = [r for r in refs if r.endswith(f"/{name}")]
    return run(["git", "show", f"{ref[0]}:{path}"], repo).stdout if ref else ""


def with_extra_statistic(source: str, value: int) -> str:
    """genrec/preprocess.py changed so that the statistics the stage writes gain a key."""
    return source + (
        "\n\n_statistics = statistics\n\n\n"
        "def statistics(interactions):  # a library change made by tests/test_experiments.py\n"
        f"    return {{**_statistics(interactions), 'library_change': {value}}}\n"
    )


def test_a_rerun_reproduces_the_model_and_sampled_recommendations_byte_for_byte(repo: Path) -> None:
    """`dvc repro -f` retrains the model and reruns a sampled strategy: dvc.lock records the same
    md5 for every output but the learning curves, which hold each epoch's duration."""
    def output_hashes() -> dict[str, str]:
        lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
        return {out["path"]: out["md5"] for stage in ("train", "rra") for out in lock[stage]["outs"]
                if out["path"] != "metrics/train/plots/metrics"}

    run(["dvc", "repro", "rra"], repo)
    first = output_hashes()
    assert {"data/model", "metrics/train/metrics.json", "data/recs/rra.parquet", "metrics/rra.json"} <= set(first)
    for stage in ("train", "rra"):
        assert f"Running stage '{stage}'" in run(["dvc", "repro", "--force", "--single-item", stage], repo).stdout
    assert output_hashes() == first


def test_experiments_and_repro_run_the_library_code_of_their_own_workspace(repo: Path) -> None:
    """The stages import genrec from the workspace DVC runs them in, not from the installed copy."""
    # The genrec this test runs with (the installed one) is another copy than the repository's:
    # a stage that imported the installed genrec would miss the change below.
    assert not Path(genrec.__file__).resolve().is_relative_to(repo.resolve())
    source = repo / "genrec" / "preprocess.py"
    original = source.read_text()
    source.write_text(with_extra_statistic(original, 1))
    try:
        # Queueing stashes the changed file; the experiment runs in a temporary copy of the repo.
        run(["dvc", "exp", "run", "--queue", "-n", "library-change", "preprocess"], repo)
        source.write_text(with_extra_statistic(original, 2))
        run(["dvc", "repro", "preprocess"], repo)
        assert json.loads((repo / "metrics/preprocess.json").read_text())["library_change"] == 2
    finally:
        source.write_text(original)
    log = queue_and_run(repo)
    stats = experiment_file(repo, "library-change", "metrics/preprocess.json")
    assert stats, log
    assert json.loads(stats)["library_change"] == 1


def test_a_relative_dataset_missing_from_the_experiment_copy_is_a_clear_error(repo: Path) -> None:
    """An untracked file is not copied into a queued experiment's workspace: the error says so and
    what to do, and the remedies it names work."""
    (repo / "mine").mkdir()
    generated_interactions(users=40, seed=1).to_csv(repo / "mine" / "x.csv", index=False)  # never committed
    log = queue_and_run(repo, ["-n", "relative-file", "-S", "data.dataset=mine/x.csv", "download"])
    assert not experiment_file(repo, "relative-file", "dvc.lock"), log
    message = re.search(r"error: data\.dataset file mine/x\.csv .*", log)
    assert message, log
    message = message.group(0)
    assert "is in your workspace but is not in this experiment's temporary copy" in message
    absolute = re.search(r"-S data\.dataset=(\S+)\)", message).group(1)
    assert Path(absolute) == (repo / "mine" / "x.csv").resolve()
    assert "--copy-paths mine " in message
    log = queue_and_run(repo, ["-n", "absolute-path", "-S", f"data.dataset={absolute}", "download"],
                        ["-n", "copied-in", "--copy-paths", "mine", "-S", "data.dataset=mine/x.csv", "download"])
    for name in ("absolute-path", "copied-in"):
        assert experiment_file(repo, name, "dvc.lock"), log
