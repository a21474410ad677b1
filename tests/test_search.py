"""genrec.search: an Optuna study over params.yaml's ranges that resumes, that several workers
share, whose winner lands in params.yaml; and each bad input as one line."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from genrec import params, search
from genrec.errors import UserError
from genrec.strategies import read_params
from helpers import REPO, tool_env

from test_bad_input import small_catalogue_file, stage

GOOD = params.load(REPO / "params.yaml")
# Tiny models and short trainings: a trial takes well under a second on the 30-item catalogue.
TINY = {"model": {"n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 2},
        "train": {"batch_size": 16, "max_epochs": 3, "device": "cpu"},
        "sasrec": {"max_len": 16, "hidden": 16, "layers": 1, "heads": 1, "batch_size": 16, "max_epochs": 3,
                   "device": "cpu"},
        "bert4rec": {"max_len": 16, "hidden": 16, "layers": 1, "heads": 2, "batch_size": 16, "max_epochs": 3,
                     "device": "cpu"},
        "bpr": {"factors": 8, "max_epochs": 10, "device": "cpu"}}
SPACES = {  # small spaces of the same shape as the paper's
    "gpt2": {"model.n_embd": [8, 16], "model.dropout": [0.1, 0.3], "train.lr": {"low": 1.0e-3, "high": 1.0e-2,
                                                                                 "log": True}},
    "sasrec": {"sasrec.hidden": [8, 16], "sasrec.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}},
    "bert4rec": {"bert4rec.hidden": [8, 16], "bert4rec.mask_prob": [0.1, 0.2]},
    "bpr": {"bpr.factors": [4, 8], "bpr.lr": {"low": 1.0e-3, "high": 1.0e-1, "log": True}},
    "rra": {"generation.temperature": [0.3, 1.0], "generation.top_k": [0, 5]},
}


def tiny_params(**search_overrides) -> dict:
    values = json.loads(json.dumps(GOOD))
    for name, section in TINY.items():
        values[name].update(section)
    for target, space in SPACES.items():
        values["search"][target] = {"trials": 3, "space": space, "fixed": {}}
    values["search"].update(storage="studies.journal", startup_trials=1, warmup_epochs=0, **search_overrides)
    values["generation"].update(num_sequences=4, device="cpu")
    return values


def write(folder: Path, values: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def split_folder(tmp_path_factory) -> Path:
    """data/split from the real data stages on the 30-item catalogue, and a tiny GPT-2 in data/model."""
    folder = tmp_path_factory.mktemp("search")
    small_catalogue_file(folder / "mine.csv")
    values = tiny_params()
    values["data"]["dataset"] = "mine.csv"
    values["preprocess"].update(min_item_users=2, min_user_items=5)
    values["split"]["n"] = 3
    values["evaluation"]["k"] = 3
    write(folder, values)
    for script in ("download.py", "preprocess.py", "split.py", "train.py"):
        result = stage(folder, script)
        assert result.returncode == 0, result.stderr
    return folder


def arguments(folder: Path, target: str, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    search.add_arguments(parser)
    return parser.parse_args([target, "--split", str(folder / "data" / "split"), "--model",
                              str(folder / "data" / "model"), "--params", str(folder / "params.yaml"), *extra])


def prepared(split_folder: Path, tmp_path: Path, **search_overrides) -> Path:
    """A folder whose params.yaml is the split folder's, with the search's storage in it."""
    values = params.load(split_folder / "params.yaml")
    values["search"].update(storage=str(tmp_path / "studies.journal"), **search_overrides)
    write(tmp_path, values)
    (tmp_path / "data").symlink_to(split_folder / "data")
    return tmp_path


def study(folder: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=search.open_storage(str(folder / "studies.journal")))


def command(folder: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "genrec.search", *args, "--split", str(folder / "data" / "split"),
            "--model", str(folder / "data" / "model"), "--params", str(folder / "params.yaml")]


# --- the search of each target --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("target", ["gpt2", "sasrec", "bert4rec", "bpr", "rra"])
def test_a_three_trial_search_writes_its_winner_into_params_yaml(split_folder, tmp_path, target):
    folder = prepared(split_folder, tmp_path)
    before = (folder / "params.yaml").read_text()
    said = search.run(arguments(folder, target))
    found = study(folder, target)
    counted = [t for t in found.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 3 and f"study {target}: 3 trials" in said
    # Trial 0 is params.yaml's own point where the space holds it (the small spaces hold each default but rra's).
    first = found.trials[0]
    values = params.load(folder / "params.yaml")
    chosen = search.winner(found, values["search"]["within"])
    text = (folder / "params.yaml").read_text()
    for key, value in chosen.params.items():
        section, name = key.split(".", 1)
        where = values["generation"]["searched"][target] if target == "rra" else values[section]
        assert where[name] == value
        assert f"# search {target} trial {chosen.number}: {chosen.value:.4f}" in text
    # The rest of the file is as it was: the same keys and comments.
    untouched = [line for line in before.splitlines() if not any(f" {key.split('.', 1)[1]}:" in line
                                                                 for key in chosen.params)]
    assert all(line in text for line in untouched if "searched" not in line and line.strip() != "rra: {}")
    if target == "rra":
        assert read_params(values, "rra").temperature == chosen.params["generation.temperature"]
        assert read_params(values, "ra").temperature == values["generation"]["temperature"]  # only rra's is set
    else:
        assert first.user_attrs.get("origin") == "params.yaml"
    # Every trial in the tables beside the study, and each trained trial's validation curve.
    trials = pd.read_csv(folder / "trials.csv")
    assert trials.query("method == @target")["number"].tolist() == [t.number for t in found.trials]
    if target != "rra":
        curves = pd.read_csv(folder / "curves.csv")
        assert set(curves.query("study == @target")["number"]) == {t.number for t in counted}
    # A finished study only applies its winner again: no new trial.
    assert "3 trials" in search.run(arguments(folder, target))
    assert len(study(folder, target).trials) == len(found.trials)


@pytest.mark.slow
def test_a_hopeless_trial_is_pruned_and_a_resumed_search_goes_on_counting(split_folder, tmp_path):
    folder = prepared(split_folder, tmp_path)
    search.run(arguments(folder, "gpt2", "--trials", "1", "--no-apply"))  # params.yaml's point, lr 1e-3
    found = study(folder, "gpt2")
    # A learning rate that learns nothing in three epochs: below the first trial's curve from epoch 1.
    found.enqueue_trial({"model.n_embd": 16, "model.dropout": 0.1, "train.lr": 1.0e-7})
    search.run(arguments(folder, "gpt2", "--trials", "3", "--no-apply"))
    found = study(folder, "gpt2")
    assert [t.number for t in found.trials] == [0, 1, 2]
    assert found.trials[1].state == TrialState.PRUNED and found.trials[1].params["train.lr"] == 1.0e-7
    assert found.trials[0].state == TrialState.COMPLETE
    assert params.load(folder / "params.yaml")["model"] == params.load(split_folder / "params.yaml")["model"]
    trials = pd.read_csv(folder / "trials.csv")
    assert trials["state"].tolist() == ["complete", "pruned", trials["state"].iloc[2]]


@pytest.mark.slow
def test_two_workers_share_one_study(split_folder, tmp_path):
    folder = prepared(split_folder, tmp_path, pruner="none")
    values = params.load(folder / "params.yaml")
    values["train"].update(max_epochs=200, patience=200)  # trials of seconds: the second worker starts in time
    write(folder, values)
    result = subprocess.run(command(folder, "gpt2", "--workers", "2", "--trials", "4", "--no-apply"), cwd=folder,
                            env=tool_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = study(folder, "gpt2")
    counted = [t for t in found.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 4 and len({t.number for t in counted}) == 4
    workers = {t.user_attrs["worker"] for t in counted}
    assert len(workers) == 2 and all(w.startswith(f"{socket.gethostname()}:") for w in workers)
    # A trial asked for once the study was full is marked surplus, never counted.
    assert all(t.user_attrs.get("surplus") for t in found.trials if t not in counted)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, word", [(signal.SIGTERM, 143, "terminated"),
                                                (signal.SIGINT, 130, "interrupted")])
def test_a_stopped_search_marks_its_trial_failed_and_resumes(split_folder, tmp_path, signum, code, word):
    folder = prepared(split_folder, tmp_path)
    values = params.load(folder / "params.yaml")
    values["train"].update(max_epochs=200, patience=200)  # trials of seconds, stopped in the first
    write(folder, values)
    before = (folder / "params.yaml").read_text()
    process = subprocess.Popen(command(folder, "gpt2", "--trials", "2"), cwd=folder, env=tool_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while True:  # until the first trial has reported an epoch or two
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        try:
            trials = study(folder, "gpt2").trials
        except KeyError:  # no study yet
            trials = []
        if trials and len(trials[0].intermediate_values) >= 2:
            break
        time.sleep(0.3)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == f"{word}: {search.STOPPED}"
    (trial,) = study(folder, "gpt2").trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["stopped"] == word
    assert (folder / "params.yaml").read_text() == before
    # Resumed: the failed trial is not counted, the numbers go on.
    search.run(arguments(folder, "gpt2", "--trials", "2", "--no-apply"))
    trials = study(folder, "gpt2").trials
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials[1:])
    assert trials[1].params == trial.params  # the failed point is tried again: it is still params.yaml's


@pytest.mark.slow
def test_a_trial_whose_worker_was_killed_is_marked_failed(split_folder, tmp_path):
    folder = prepared(split_folder, tmp_path)
    search.run(arguments(folder, "bpr", "--trials", "1", "--no-apply"))
    found = study(folder, "bpr")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    trial = found.ask()
    trial.set_user_attr("worker", f"{socket.gethostname()}:{dead.stdout.strip()}")  # a process that is gone
    search.run(arguments(folder, "bpr", "--trials", "2", "--no-apply"))
    trials = study(folder, "bpr").trials
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["stopped"] == "its worker was gone"
    assert trials[2].state == TrialState.COMPLETE


@pytest.mark.slow
def test_optuna_dashboard_opens_the_study(split_folder, tmp_path):
    folder = prepared(split_folder, tmp_path)
    search.run(arguments(folder, "bpr", "--trials", "2", "--no-apply"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = subprocess.Popen([str(Path(sys.executable).parent / "optuna-dashboard"),
                                  str(folder / "studies.journal"),
                                  "--port", str(port), "--host", "127.0.0.1"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.loads(response.read())["study_summaries"]
                break
            except OSError:
                assert dashboard.poll() is None and time.monotonic() < deadline, dashboard.communicate()[0]
                time.sleep(0.5)
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)
    assert [s["study_name"] for s in studies] == ["bpr"]


# --- bad input: one line, naming the key -----------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    ({"space": {"train.lr": {"low": 0.01, "high": 0.001}}}, ["search.gpt2.space.train.lr", "low (0.01) is above high"]),
    ({"space": {"model.n_embedding": [32, 64]}}, ["search.gpt2.space.model.n_embedding", "no such param",
                                                  "model.n_embd"]),
    ({"space": {"model.n_embd": []}}, ["search.gpt2.space.model.n_embd", "a choice with no values"]),
    ({"space": {"model.n_head": ["two"]}}, ["search.gpt2.space.model.n_head", "model.n_head must be an integer"]),
    ({"space": {"model.dropout": [0.1, 1.5]}}, ["search.gpt2.space.model.dropout", "model.dropout must be in [0, 1)"]),
    ({"space": {"train.lr": {"low": 0, "high": 0.1, "log": True}}},
     ["search.gpt2.space.train.lr", "needs low above 0"]),
    ({"space": {"train.lr": {"min": 0.001, "max": 0.1}}}, ["search.gpt2.space.train.lr", "low, high"]),
    ({"space": {"train.lr": 0.001}}, ["search.gpt2.space.train.lr", "a list of choices or a range"]),
    ({"space": {}}, ["search.gpt2.space is empty"]),
    ({"trials": 0}, ["search.gpt2.trials must be at least 1"]),
    ({"fixed": {"model.n_embd": 64}, "space": {"model.n_embd": [32, 64]}}, ["search.gpt2.fixed.model.n_embd",
                                                                             "searched too"]),
    ({"fixed": {"train.patiense": 3}}, ["search.gpt2.fixed.train.patiense", "no such param"]),
])
def test_a_bad_range_is_one_line_naming_its_key(change, words):
    values = tiny_params()
    values["search"]["gpt2"].update(change)
    with pytest.raises(UserError) as error:
        search.plan(values, "gpt2")
    message = str(error.value)
    assert "\n" not in message and message.startswith("params.yaml: ")
    for word in words:
        assert word in message, message


def test_the_search_section_own_keys_are_checked():
    values = tiny_params(pruner="hyperband")
    with pytest.raises(UserError, match=r"^params.yaml: search.pruner must be 'median' or 'none', got 'hyperband'$"):
        search.plan(values, "gpt2")
    values = tiny_params()
    del values["search"]["bpr"]
    with pytest.raises(UserError, match=r"search.bpr is missing"):
        search.plan(values, "gpt2")


def test_the_paper_s_spaces_are_params_yaml_s():
    """The committed ranges are the paper's (docs/method.md §6c)."""
    plans = {target: search.plan(GOOD, target) for target in search.TARGETS}
    gpt2 = plans["gpt2"]
    assert gpt2.trials == 50 and plans["sasrec"].trials == plans["bert4rec"].trials == 25
    assert gpt2.space["model.n_embd"].choices == (32, 64, 128, 256) and gpt2.space["model.n_head"].choices == (1, 2, 4)
    lr = gpt2.space["train.lr"]
    assert (lr.low, lr.high, lr.log) == (3e-4, 3e-3, True)
    assert plans["bert4rec"].space["bert4rec.mask_prob"].choices == (0.1, 0.2)
    assert plans["bert4rec"].fixed == {"bert4rec.max_epochs": 200}
    rra = plans["rra"].space
    assert len(rra["generation.top_k"].choices) == 14 and len(rra["generation.temperature"].choices) == 17
    assert plans["rra"].fixed == {"generation.num_sequences": 30}
    assert GOOD["train"]["max_epochs"] == 100 and GOOD["train"]["patience"] == 10
    assert GOOD["bert4rec"]["patience"] == 20


@pytest.mark.parametrize("target", ["gpt2", "sasrec", "bert4rec", "bpr", "rra"])
def test_params_yaml_holds_each_committed_study_s_winner(target):
    """The committed run trains what the committed searches chose: every searched param of
    params.yaml is inside the paper's space, is the winning trial's value and says so."""
    plan = search.plan(GOOD, target)
    found = optuna.load_study(study_name=target, storage=search.open_storage(str(REPO / GOOD["search"]["storage"])))
    chosen = search.winner(found, GOOD["search"]["within"] if target in search.TRAINED else 0.0)
    text = (REPO / "params.yaml").read_text()
    for key, dist in plan.space.items():
        section, name = key.split(".", 1)
        value = (GOOD["generation"]["searched"]["rra"] if target == "rra" else GOOD[section])[name]
        assert value == chosen.params[key]
        assert value in dist.choices if hasattr(dist, "choices") else dist.low <= value <= dist.high
        assert re.search(rf"^\s+{name}: {re.escape(str(value))}\s+# search {target} trial {chosen.number}: ", text,
                         re.MULTILINE), key


@pytest.mark.parametrize("url", ["sqlite:////no/such/folder/studies.db", "postgresql://nobody@127.0.0.1:1/none"])
def test_a_storage_that_cannot_be_opened_is_one_line(url):
    with pytest.raises(UserError, match=r"^search storage .* cannot be opened \(.*\): give search.storage"):
        search.open_storage(url)


def test_a_journal_under_a_file_cannot_be_opened(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=r"cannot be opened"):
        search.open_storage(str(tmp_path / "file" / "studies.journal"))


@pytest.mark.slow
def test_a_study_of_another_model_under_the_same_name_is_one_line(split_folder, tmp_path):
    folder = prepared(split_folder, tmp_path)
    search.run(arguments(folder, "bpr", "--trials", "1", "--no-apply"))
    result = subprocess.run(command(folder, "sasrec", "--study", "bpr"), cwd=folder, env=tool_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: study bpr in {folder / 'studies.journal'} does not fit this search: it "
                                     "searches bpr, not sasrec. Give another --study, or put params.yaml back as the "
                                     "study had it")
    # The same model with other fixed params is refused too: its trials would not compare.
    values = params.load(folder / "params.yaml")
    values["bpr"]["eval_every"] = 2
    write(folder, values)
    with pytest.raises(UserError, match=r"its trials ran with bpr.eval_every 5, params.yaml now says 2"):
        search.run(arguments(folder, "bpr", "--trials", "2"))


# --- the winner in params.yaml --------------------------------------------------------------------

def finished(storage, name: str, trials: tuple) -> optuna.Study:
    """A study of complete trials, each (value, seconds)."""
    found = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    for value, seconds in trials:
        trial = found.ask()
        trial.set_user_attr("seconds", seconds)
        found.tell(trial, value)
    return found


def test_a_much_quicker_trial_within_reach_of_the_best_wins(tmp_path):
    storage = search.open_storage(str(tmp_path / "s.journal"))
    found = finished(storage, "s", ((0.120, 30), (0.125, 300), (0.1215, 40), (0.118, 5), (0.1249, 280)))
    assert search.winner(found, 0.0).number == 1
    assert search.winner(found, 0.004).number == 2  # 0.1215 >= 0.125 - 0.004, and 40 s <= 0.75 x 300 s
    assert search.winner(found, 0.01).number == 2  # the best of the quicker ones, not the quickest
    # 280 s is no saving on 300 s: a trial that is only as quick as the best's noise does not win.
    assert search.winner(finished(storage, "t", ((0.125, 137), (0.1240, 126))), 0.004).number == 0
    # Nor does a second saved on a trial of two, a quarter of it or not.
    assert search.winner(finished(storage, "u", ((0.100, 1.4), (0.0972, 0.9))), 0.004).number == 0


def test_the_winner_s_comment_replaces_an_earlier_search_s_and_keeps_the_key_s_own(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  n_embd: 64               # the width\n  n_layer: 2\n\ntrain:\n  lr: 0.001\n")
    storage = search.open_storage(str(tmp_path / "s.journal"))
    found = optuna.create_study(storage=storage, study_name="direct", direction="maximize")
    found.add_trial(optuna.trial.create_trial(params={"model.n_embd": 128, "train.lr": 0.002}, value=0.1312,
                    distributions={"model.n_embd": optuna.distributions.CategoricalDistribution([32, 128]),
                                   "train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)}))
    plan = search.Plan("gpt2", "direct", None, 1, {}, {})
    search.apply(path, plan, found, found.trials[0])
    assert path.read_text() == ("model:\n  n_embd: 128              # search direct trial 0: 0.1312; the width\n"
                                "  n_layer: 2\n\ntrain:\n  lr: 0.002               # search direct trial 0: 0.1312\n")
    search.apply(path, plan, found, found.trials[0])  # again: the note is replaced, not repeated
    assert path.read_text().count("search direct") == 2 and "; the width" in path.read_text()


def test_a_searched_strategy_setting_replaces_its_grid_only():
    values = json.loads(json.dumps(GOOD))
    values["generation"]["searched"]["rra"] = {"temperature": 0.05, "top_k": 10, "num_sequences": 30}
    rra, ra = read_params(values, "rra"), read_params(values, "ra")
    assert (rra.temperature, rra.top_k, rra.num_sequences) == (0.05, 10, 30) and len(rra.grid("rra")) == 1
    assert ra.temperature == GOOD["generation"]["temperature"]
    values["generation"]["searched"]["rra"] = {"num_beams": 3}
    with pytest.raises(UserError, match=r"generation.searched.rra may set temperature, top_k, num_sequences"):
        read_params(values, "rra")
    values["generation"]["searched"] = {"mystery": {}}
    with pytest.raises(UserError, match=r"generation.searched must map tuned strategies"):
        read_params(values, "rra")


@pytest.mark.slow
def test_the_benchmark_reads_a_study_back(split_folder, tmp_path, capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_search
    folder = prepared(split_folder, tmp_path)
    search.run(arguments(folder, "bpr", "--trials", "3", "--no-apply"))
    capsys.readouterr()
    bench_search.studies(str(folder / "studies.journal"))
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:5] == ["study", "complete", "pruned", "failed", "running"]
    name, complete, pruned, failed, running, *_ = row.split()
    assert name == "bpr" and int(complete) + int(pruned) == 3 and (failed, running) == ("0", "0")
