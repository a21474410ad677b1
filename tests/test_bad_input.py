"""Issue 10, run as the pipeline runs the stage scripts: a user file with a 30-item catalogue,
numeric blow-ups, missing inputs and Ctrl-C each get one clear line and leave no output behind."""

from __future__ import annotations

import json
import shutil
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GOOD = yaml.safe_load((REPO / "params.yaml").read_text())
STRATEGIES = ["topk", "greedy", "beam", "sampling", "rra", "ra"]
TINY_TRAIN = {"model": {"n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 2},
              "train": {"batch_size": 16, "max_epochs": 2, "device": "cpu"}}


def small_catalogue_file(path: Path) -> None:
    """40 users who each saw 22 to 28 of only 30 items: after 3 held-out items most have
    fewer than 10 unseen items left."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(40):
        items = rng.choice(np.arange(1, 31), size=int(rng.integers(22, 29)), replace=False)
        rows += [(f"u{user}", int(item), 1_600_000_000 + 60 * t) for t, item in enumerate(items)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(path, index=False)


def write_params(folder: Path, **overrides: dict) -> None:
    params = {name: dict(section) for name, section in GOOD.items()}
    for name, values in overrides.items():
        params[name].update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def stage(folder: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "stages" / script), *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: "), result.stderr
    for word in words:
        assert word in message, message


def temporaries(folder: Path) -> list[str]:
    """atomic_path's temporary folders (``.<name>.<random>``) anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.is_dir())


@pytest.fixture(scope="module")
def split_folder(tmp_path_factory) -> Path:
    """data/split made by the real download, preprocess and split stages from the small catalogue."""
    folder = tmp_path_factory.mktemp("catalogue30")
    small_catalogue_file(folder / "mine.csv")
    write_params(folder, data={"dataset": "mine.csv"}, preprocess={"min_item_users": 2, "min_user_items": 5},
                 split={"n": 3})
    for script in ("download.py", "preprocess.py", "split.py"):
        result = stage(folder, script)
        assert result.returncode == 0, result.stderr
    return folder


# Both stage scripts call the one check; two methods of each keep the subprocesses few.
@pytest.mark.slow
@pytest.mark.parametrize("method", ["topk", "rra", "popularity", "sasrec"])
def test_too_few_unseen_items_is_one_clear_error_before_any_work(split_folder, tmp_path, method):
    # Before issue 10 every method exited 0 here, writing padding 0, seen items and repeats.
    folder = tmp_path / "run"
    (folder / "model").mkdir(parents=True)
    # A config without weights: the check must come before the model is loaded.
    (folder / "model" / "config.json").write_text('{"n_positions": 128}')
    write_params(folder)
    split = str(split_folder / "data" / "split")
    if method in STRATEGIES:
        result = stage(folder, "recommend.py", method, "--model", "model", "--split", split)
    else:
        result = stage(folder, "baseline.py", method, "--split", split)
    param = "evaluation.k"
    assert_one_line_error(result, param, "unseen items", "user ", "Set " + param + " to at most")
    assert not (folder / "data").exists() and not (folder / "metrics").exists()


@pytest.mark.slow
def test_diverging_training_stops_and_writes_nothing(split_folder, tmp_path):
    # Before issue 10 train.lr 1e10 exited 0 and saved a NaN model that every strategy then used.
    write_params(tmp_path, model=TINY_TRAIN["model"], train={**TINY_TRAIN["train"], "lr": 1e10})
    result = stage(tmp_path, "train.py", "--split", str(split_folder / "data" / "split"))
    assert_one_line_error(result, "diverged", "train.lr")
    assert not (tmp_path / "data" / "model").exists()
    assert not (tmp_path / "metrics" / "train").exists() and temporaries(tmp_path) == []


@pytest.mark.parametrize("script, args, words", [
    ("train.py", ["--split", "nowhere"], ["nowhere/meta.json", "dvc repro split"]),
    ("recommend.py", ["topk", "--model", "nowhere"], ["nowhere/config.json", "dvc repro train"]),
    ("recommend.py", ["topk", "--split", "nowhere"], ["nowhere/meta.json", "dvc repro split"]),
    ("baseline.py", ["popularity", "--split", "nowhere"], ["nowhere/meta.json", "dvc repro split"]),
    ("preprocess.py", ["--raw", "nowhere.parquet"], ["nowhere.parquet", "dvc repro download"]),
    ("split.py", ["--prepared", "nowhere"], ["nowhere", "dvc repro preprocess"]),
    ("bundle.py", ["--model", "nowhere"], ["nowhere/config.json", "dvc repro train"]),
    ("report.py", ["topk", "--split", "nowhere"], ["nowhere/test.parquet", "dvc repro split"]),
])
@pytest.mark.slow
def test_a_stage_run_before_its_inputs_exist_says_which_stage_to_run(tmp_path, script, args, words):
    write_params(tmp_path)
    if "--model" not in args and script == "recommend.py":
        (tmp_path / "data" / "model").mkdir(parents=True)
        (tmp_path / "data" / "model" / "config.json").write_text('{"n_positions": 128}')
    result = stage(tmp_path, script, *args)
    assert_one_line_error(result, *words)


@pytest.mark.slow
@pytest.mark.parametrize("method, producer", [("rra", "rra"), ("popularity", "popularity"),
                                              ("sasrec", "baseline@sasrec")])
def test_the_report_names_the_stage_of_a_missing_method(tmp_path, method, producer):
    for path in ("data/split/test.parquet", "data/split/train.parquet", "data/prepared/items.parquet",
                 "data/prepared/users.parquet", "data/raw/items.parquet"):  # present: only the method is missing
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    result = stage(tmp_path, "report.py", method)
    assert_one_line_error(result, f"data/recs/{method}.parquet", f"dvc repro {producer}")


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_during_training_is_one_line_and_keeps_the_previous_outputs(split_folder, tmp_path, signum, code, word):
    """Ctrl-C, and SIGTERM alike (before issue 23 it exited 143 without a word and left its
    temporary folders)."""
    split = str(split_folder / "data" / "split")
    write_params(tmp_path, **TINY_TRAIN)
    assert stage(tmp_path, "train.py", "--split", split).returncode == 0
    summary = (tmp_path / "metrics" / "train" / "metrics.json").read_text()
    weights = (tmp_path / "data" / "model" / "model.safetensors").read_bytes()

    # A run that would take very long, interrupted once its learning curves have begun.
    write_params(tmp_path, model=TINY_TRAIN["model"],
                 train={**TINY_TRAIN["train"], "max_epochs": 100_000, "patience": 100_000, "seed": 7})
    # SIGINT at its default, as at a terminal: a runner started in the background (`cmd &` in a
    # script) ignores SIGINT, and a child would inherit that and never see the Ctrl-C.
    process = subprocess.Popen([sys.executable, str(REPO / "stages" / "train.py"), "--split", split],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list((tmp_path / "metrics").glob(".train.*/train/plots/metrics/train/loss.tsv")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    time.sleep(1.0)  # several epochs in
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == f"{word}: the stage stopped and its previous outputs are left as they were"
    # The previous run's summary and model are intact, and no temporary folder is left.
    assert (tmp_path / "metrics" / "train" / "metrics.json").read_text() == summary
    assert (tmp_path / "data" / "model" / "model.safetensors").read_bytes() == weights
    assert temporaries(tmp_path) == []


@pytest.mark.slow
def test_summary_is_the_best_epoch_and_written_once_with_the_model(split_folder, tmp_path):
    write_params(tmp_path, **TINY_TRAIN)
    assert stage(tmp_path, "train.py", "--split", str(split_folder / "data" / "split")).returncode == 0
    summary = json.loads((tmp_path / "metrics" / "train" / "metrics.json").read_text())
    curve = pd.read_csv(tmp_path / "metrics" / "train" / "plots" / "metrics" / "val" / "ndcg@10.tsv", sep="\t")
    assert summary["val"]["ndcg@10"] == pytest.approx(curve["ndcg@10"].max())
    assert summary["epochs"] == len(curve) == 2
    assert temporaries(tmp_path) == []


@pytest.mark.slow
def test_duplicate_rows_are_reported(tmp_path):
    small_catalogue_file(tmp_path / "mine.csv")
    frame = pd.read_csv(tmp_path / "mine.csv")
    pd.concat([frame, frame.iloc[:4]]).to_csv(tmp_path / "mine.csv", index=False)
    for choice, kept in (("keep", 4), ("drop", 0)):
        write_params(tmp_path, data={"dataset": "mine.csv"},
                     preprocess={"min_item_users": 2, "min_user_items": 5, "duplicates": choice})
        assert stage(tmp_path, "download.py").returncode == 0
        result = stage(tmp_path, "preprocess.py")
        assert result.returncode == 0, result.stderr
        assert "4 row(s) repeat an earlier row" in result.stderr
        assert ("dropped" in result.stderr) == (choice == "drop")
        stats = json.loads((tmp_path / "metrics" / "preprocess.json").read_text())
        assert stats["duplicate_rows"] == 4
        assert stats["interactions"] == len(frame) + kept


# Every output option of every stage: (script, arguments, the option, its value, the path that
# is in the way, and whether a file or a folder is written there). Before issue 23 `--recs
# data/recs` replaced the whole folder (ten lists and a tracked .gitignore) by one parquet file.
OUTPUTS = [
    ("download.py", [], "--out", "data/raw/interactions.parquet", "data/raw/interactions.parquet", "file"),
    ("download.py", [], "--titles", "data/raw/items.parquet", "data/raw/items.parquet", "file"),
    ("preprocess.py", [], "--out", "data/prepared", "data/prepared", "folder"),
    ("preprocess.py", [], "--stats", "metrics/preprocess.json", "metrics/preprocess.json", "file"),
    ("split.py", [], "--out", "data/split", "data/split", "folder"),
    ("train.py", [], "--out", "data/model", "data/model", "folder"),
    ("train.py", [], "--live", "metrics/train", "metrics/train", "folder"),
    ("recommend.py", ["topk"], "--recs", "data/recs", "data/recs", "file"),
    ("recommend.py", ["rra"], "--metrics", "metrics", "metrics/rra.json", "file"),
    ("recommend.py", ["rra"], "--metrics", "metrics", "metrics/tuning/rra.csv", "file"),
    ("recommend.py", ["rra"], "--metrics", "metrics", "metrics/positions/rra.csv", "file"),
    ("recommend.py", ["rra"], "--metrics", "metrics", "metrics/validation/rra.json", "file"),
    ("baseline.py", ["bpr"], "--recs", "data/recs", "data/recs", "file"),
    ("baseline.py", ["sasrec"], "--metrics", "metrics", "metrics/sasrec_train", "folder"),
    ("baseline.py", ["popularity"], "--metrics", "metrics", "metrics/popularity.json", "file"),
    ("bundle.py", [], "--out", "data/recommender", "data/recommender", "folder"),
    ("report.py", ["topk"], "--metrics", "metrics", "metrics/report.md", "file"),
    ("report.py", ["topk"], "--metrics", "metrics", "metrics/positions.png", "file"),
]


@pytest.mark.slow
@pytest.mark.parametrize("script, args, option, value, target, kind", OUTPUTS,
                         ids=[f"{row[0][:-3]}-{row[4]}" for row in OUTPUTS])
def test_an_output_never_replaces_what_the_stage_did_not_write(tmp_path, script, args, option, value, target, kind):
    """A folder of the user's where the stage writes a file, or a folder holding files the stage
    does not write: one line before any work, and the folder untouched."""
    write_params(tmp_path)
    (tmp_path / target).mkdir(parents=True)
    (tmp_path / target / "mine.txt").write_text("keep me")
    result = stage(tmp_path, script, *args, option, value)
    what = "is a folder, but a file is written there" if kind == "file" else "holds mine.txt, which this command"
    assert_one_line_error(result, f"{option} {target} {what}")
    assert [p.name for p in (tmp_path / target).iterdir()] == ["mine.txt"]
    assert (tmp_path / target / "mine.txt").read_text() == "keep me"


@pytest.mark.slow
@pytest.mark.parametrize("script, option, path", [("preprocess.py", "--out", "data/prepared"),
                                                  ("train.py", "--out", "data/model")])
def test_a_folder_output_may_hold_its_own_previous_output(tmp_path, script, option, path):
    """Only its own names: then the stage goes on (here to its missing input)."""
    write_params(tmp_path)
    names = {"preprocess.py": ["interactions.parquet", "users.parquet"], "train.py": ["config.json"]}[script]
    for name in names:
        (tmp_path / path).mkdir(parents=True, exist_ok=True)
        (tmp_path / path / name).write_text("previous")
    result = stage(tmp_path, script, option, path)
    assert_one_line_error(result, "not found: run `dvc repro")


@pytest.mark.slow
def test_a_file_where_a_folder_output_goes_is_refused(tmp_path):
    write_params(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "split").write_text("a file of mine")
    assert_one_line_error(stage(tmp_path, "split.py"), "--out data/split is a file, but a folder is written there")
    assert (tmp_path / "data" / "split").read_text() == "a file of mine"


# --- a broken artefact is one line: which file, what is wrong, which stage writes it ---------

from test_recommender import pipeline, run_stage as run_in_process  # noqa: E402,F401 (a fixture)


def garbage(path: Path) -> None:
    path.write_bytes(b"not what it should be")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def table_without(column: str):
    def corrupt(path: Path) -> None:
        pd.read_parquet(path).drop(columns=column).to_parquet(path)
    return corrupt


def text(content: str):
    def corrupt(path: Path) -> None:
        path.write_text(content)
    return corrupt


# (artefact, how it breaks, the reader: a stage script with its arguments or "recommender", the
# words of the one-line error)
BROKEN = [
    ("data/raw/interactions.parquet", garbage, ["preprocess.py"], "is damaged", "dvc repro -f download"),
    ("data/prepared/interactions.parquet", truncate, ["split.py"], "is damaged", "dvc repro -f preprocess"),
    ("data/prepared/items.parquet", table_without("raw_item_id"), ["split.py"], "lacks column(s) raw_item_id",
     "dvc repro -f preprocess"),
    ("data/split/meta.json", text("{not json"), ["train.py"], "is not valid JSON", "dvc repro -f split"),
    ("data/split/meta.json", text("{}"), ["train.py"], "lacks key(s) num_users, num_items", "dvc repro -f split"),
    ("data/split/meta.json", text("[1, 2]"), ["train.py"], "holds a JSON list, not an object", "dvc repro -f split"),
    ("data/split/train.parquet", truncate, ["recommend.py", "topk"], "is damaged", "dvc repro -f split"),
    ("data/split/test.parquet", garbage, ["report.py", "topk"], "is damaged", "dvc repro -f split"),
    ("data/model/model.safetensors", truncate, ["recommend.py", "topk"], "holds a damaged model",
     "dvc repro -f train"),
    ("data/model/config.json", text("{"), ["recommend.py", "greedy"], "is not valid JSON", "dvc repro -f train"),
    ("data/recs/topk.parquet", garbage, ["report.py", "topk"], "is damaged", "dvc repro -f topk"),
    ("metrics/topk.json", text("{}"), ["report.py", "topk"], "lacks key(s) users", "dvc repro -f topk"),
    ("metrics/positions/topk.csv", text("a,b\n1,2\n"), ["report.py", "topk"], "lacks column(s) position",
     "dvc repro -f topk"),
    ("metrics/rra.json", text("nan?"), ["bundle.py"], "is not valid JSON", "dvc repro -f rra"),
    ("data/raw/items.parquet", table_without("title"), ["bundle.py"], "lacks column(s) title",
     "dvc repro -f download"),
    ("data/model/model.safetensors", garbage, ["bundle.py"], "holds a damaged model", "dvc repro -f train"),
    ("data/recommender/settings.json", text("{"), "recommender", "is not valid JSON", "dvc repro -f bundle"),
    ("data/recommender/settings.json", text("[]"), "recommender", "holds a JSON list", "dvc repro -f bundle"),
    ("data/recommender/settings.json", lambda p: p.write_text(p.read_text().replace('"temperature"', '"temprature"')),
     "recommender", "the settings of sampling are", "dvc repro -f bundle"),
    ("data/recommender/settings.json", lambda p: p.write_text(p.read_text().replace('"rra"', '"rra2"')),
     "recommender", "has no settings for rra and unknown strategies rra2", "dvc repro -f bundle"),
    ("data/recommender/items.parquet", table_without("title"), "recommender", "lacks column(s) title",
     "dvc repro -f bundle"),
    ("data/recommender/history.parquet", garbage, "recommender", "is damaged", "dvc repro -f bundle"),
    ("data/recommender/model/model.safetensors", truncate, "recommender", "holds a damaged model",
     "dvc repro -f bundle"),
]


@pytest.mark.parametrize("artefact, corrupt, reader, what, fix", BROKEN,
                         ids=[f"{row[0]}-{i}" for i, row in enumerate(BROKEN)])
def test_a_broken_artefact_is_one_line(pipeline, tmp_path, monkeypatch, capsys, artefact, corrupt, reader, what, fix):
    """Issue 23: 22 such cases printed a traceback (SafetensorError, ArrowInvalid, KeyError, ...)."""
    from genrec.recommender import Recommender
    folder = tmp_path / "copy"
    shutil.copytree(pipeline, folder)
    corrupt(folder / artefact)
    monkeypatch.chdir(folder)
    if reader == "recommender":
        with pytest.raises(ValueError) as error:
            Recommender.load("data/recommender", "cpu")
        message = f"error: {error.value}"
    else:
        with pytest.raises(SystemExit) as exit_:
            run_in_process(*reader)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        message = err.strip().splitlines()[-1]
    assert message.startswith(f"error: {artefact}") or message.startswith(f"error: {Path(artefact).parent}"), message
    assert what in message and fix in message, message


@pytest.mark.slow
def test_a_stage_under_dvc_ends_with_its_parent(split_folder, tmp_path):
    """SIGKILL to `dvc repro` once left its stage running on, writing data/model after DVC had
    gone. Under DVC (DVC_STAGE set) the stage asks the kernel for SIGTERM when its parent ends:
    it stops, removes its temporaries and leaves the previous outputs."""
    split = str(split_folder / "data" / "split")
    write_params(tmp_path, **TINY_TRAIN)
    assert stage(tmp_path, "train.py", "--split", split).returncode == 0
    weights = (tmp_path / "data" / "model" / "model.safetensors").read_bytes()
    write_params(tmp_path, model=TINY_TRAIN["model"],
                 train={**TINY_TRAIN["train"], "max_epochs": 100_000, "patience": 100_000, "seed": 7})
    # The parent stands in for DVC: it starts the stage, prints its pid and waits.
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen(sys.argv[1:]); print(p.pid, flush=True); "
                               "p.wait()", sys.executable, str(REPO / "stages" / "train.py"), "--split", split],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "DVC_STAGE": "train"})
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 120
    while not list((tmp_path / "metrics").glob(".train.*/train/plots/metrics/train/loss.tsv")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 60
    while Path(f"/proc/{child}").exists() and b"Z" not in Path(f"/proc/{child}/stat").read_bytes().split(b")")[1][:3]:
        assert time.monotonic() < deadline, "the stage outlived its parent"
        time.sleep(0.2)
    assert temporaries(tmp_path) == []
    assert (tmp_path / "data" / "model" / "model.safetensors").read_bytes() == weights


def test_a_full_disk_is_one_line_and_writes_nothing(pipeline, tmp_path, monkeypatch, capsys):
    """The train stage once printed 19 tracebacks over 118 lines for ENOSPC."""
    import errno
    folder = tmp_path / "copy"
    shutil.copytree(pipeline, folder)
    monkeypatch.chdir(folder)
    before = {path: path.read_bytes() for path in (folder / "data" / "split").iterdir()}

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(SystemExit) as exit_:
        run_in_process("split.py")
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the disk is full writing ") and err.count("\n") == 1, err
    assert "train.parquet; nothing was written: free some space and run the stage again" in err
    assert {path: path.read_bytes() for path in (folder / "data" / "split").iterdir()} == before
    assert temporaries(folder) == []
