"""genrec.io: a stage's command line, its input checks and its atomic outputs."""

from __future__ import annotations

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
