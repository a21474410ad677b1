"""genrec.io: a stage's command line, its input checks and its atomic outputs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from genrec.errors import UserError
from genrec.io import atomic_path, atomic_paths, require_input, stage_arguments


def test_stage_arguments_are_paths_with_dvc_yaml_s_defaults():
    parser = stage_arguments("doc", split="data/split", recs=None)
    parser.add_argument("name")
    args = parser.parse_args(["topk"])
    assert (args.name, args.split, args.recs) == ("topk", Path("data/split"), None)
    args = parser.parse_args(["topk", "--recs", "elsewhere/topk.parquet", "--split", "s"])
    assert (args.split, args.recs) == (Path("s"), Path("elsewhere/topk.parquet"))
    assert parser.description == "doc"


def test_require_input_names_the_stage_to_run(tmp_path):
    (tmp_path / "there.json").write_text("{}")
    assert require_input(tmp_path / "there.json", "train") == str(tmp_path / "there.json")
    with pytest.raises(UserError, match=r"missing\.json not found: run `dvc repro baseline@sasrec` first"):
        require_input(tmp_path / "missing.json", "baseline@sasrec")


def test_atomic_outputs_appear_only_on_success(tmp_path):
    target = tmp_path / "out" / "table.csv"
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("half way")
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []  # no temporary left either
    target.write_text("previous")
    with atomic_paths(target, tmp_path / "out" / "folder") as (table, folder):
        table.write_text("new")
        folder.mkdir()
        (folder / "inside.txt").write_text("x")
    assert target.read_text() == "new" and (tmp_path / "out" / "folder" / "inside.txt").read_text() == "x"
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["folder", "table.csv"]
    # A failure while writing a set leaves the previous set whole.
    with pytest.raises(KeyboardInterrupt):
        with atomic_paths(target, tmp_path / "out" / "folder") as (table, folder):
            table.write_text("newer")
            raise KeyboardInterrupt
    assert target.read_text() == "new" and (tmp_path / "out" / "folder" / "inside.txt").exists()
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["folder", "table.csv"]


def test_check_output(tmp_path):
    from genrec.io import check_output
    (tmp_path / "file.csv").write_text("x")
    (tmp_path / "folder").mkdir()
    check_output(tmp_path / "new.csv", "--out")  # nothing there: fine
    check_output(tmp_path / "file.csv", "--out")  # a file where a file goes: replaced
    with pytest.raises(UserError, match=r"--out .*folder is a folder, but a file is written there"):
        check_output(tmp_path / "folder", "--out")
    with pytest.raises(UserError, match=r"--out .*file.csv is a file, but a folder is written there"):
        check_output(tmp_path / "file.csv", "--out", ["a.parquet"])
    (tmp_path / "folder" / "a.parquet").write_text("previous")
    check_output(tmp_path / "folder", "--out", ["a.parquet", "b.parquet"])  # its own previous output
    (tmp_path / "folder" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds notes.txt, which this command does not write, and the folder is "
                                        r"replaced whole: give a new or empty folder"):
        check_output(tmp_path / "folder", "--out", ["a.parquet", "b.parquet"])
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UserError, match="exists and is not a regular file"):
        check_output(tmp_path / "pipe", "--out")


def test_atomic_path_replaces_a_folder_only_by_its_own_kind_of_folder(tmp_path):
    """The last guard, after the work: a folder holding an entry the new output does not have
    is never deleted, nor replaced by a file."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.parquet").write_text("previous")
    with atomic_path(target) as tmp:  # the same names: the previous output, replaced
        tmp.mkdir()
        (tmp / "a.parquet").write_text("new")
    assert (target / "a.parquet").read_text() == "new"
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="holds mine.txt"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "a.parquet").write_text("newer")
    with pytest.raises(UserError, match="is a folder, but a file is written there"):
        with atomic_path(target) as tmp:
            tmp.write_text("a file")
    assert sorted(p.name for p in target.iterdir()) == ["a.parquet", "mine.txt"]
    assert (target / "a.parquet").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_temporaries_of_a_killed_run_are_removed_by_the_next(tmp_path):
    """A run killed with SIGKILL cannot clean up; its temporary folder names its process, so
    the next run on the same output removes it, and leaves a live run's alone."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".model.{dead.pid}.abcd1234"
    live = tmp_path / f".model.{os.getpid()}.efgh5678"
    other = tmp_path / ".model.backup"  # not ours: no process id
    for folder in (stale, live, other):
        (folder / "model").mkdir(parents=True)
    with atomic_path(tmp_path / "model") as tmp:
        tmp.mkdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "model"])


def test_an_interruption_under_dvc_says_how_to_restore(monkeypatch):
    from genrec.errors import interrupted_message
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert interrupted_message(False) == "interrupted: the stage stopped and its previous outputs are left as they were"
    monkeypatch.setenv("DVC_STAGE", "rra")  # DVC removed the outputs before running the stage
    assert interrupted_message(True) == ("terminated: the stage stopped. DVC had removed its previous outputs before "
                                         "running it; `make restore` brings back the last committed ones")
