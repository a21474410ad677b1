"""The download, preprocess and split stage scripts, run as the pipeline runs them."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import run_stage as run_stage_module

pytestmark = pytest.mark.slow  # stages run as processes


REPO = Path(__file__).resolve().parents[1]
STAGES = REPO / "stages"

PARAMS = {
    "data": {"dataset": None, "columns": {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp"}},  # the dataset set per test
    "preprocess": {"min_item_users": 2, "min_user_items": 5, "duplicates": "keep"},
    "split": {"method": "leave_last_n", "n": 3, "quantile": 0.9, "validation_fraction": 0.5, "seed": 42},
}


def make_csv(path: Path, users: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        items = rng.choice(np.arange(100, 140), size=int(rng.integers(6, 15)), replace=False)
        for k, item in enumerate(items):
            rows.append((f"u{user}", int(item), 1_600_000_000 + 3600 * k + int(rng.integers(0, 60)), "x"))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "note"])
    frame.to_csv(path, index=False)
    return frame


def write_params(folder: Path, **sections) -> None:
    data = json.loads(json.dumps(PARAMS))
    for name, values in sections.items():
        if values is None:
            data.pop(name)
        else:
            data[name] = {**data.get(name, {}), **values}
    (folder / "params.yaml").write_text(yaml.safe_dump(data))


def run_stage(folder: Path, stage: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENREC_CACHE_DIR": str(folder / ".cache"), **env_vars}
    return run_stage_module(stage, cwd=folder, env=env)


def assert_user_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    assert "\n\n" not in message  # one paragraph
    for word in words:
        assert word in message, message


def leftovers(folder: Path) -> list[str]:
    """Everything under ``folder`` (an output's parent), temp siblings included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline")
    make_csv(folder / "mine.csv")
    write_params(folder, data={"dataset": str(folder / "mine.csv")})
    for stage in ("download", "preprocess", "split"):
        result = run_stage(folder, stage)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    return folder


def test_download_output(pipeline):
    raw = pd.read_parquet(pipeline / "data/raw/interactions.parquet")
    source = pd.read_csv(pipeline / "mine.csv")
    assert list(raw.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert raw["user_id"].tolist() == source["user_id"].tolist()
    assert raw["item_id"].tolist() == source["item_id"].tolist()
    assert raw["timestamp"].tolist() == source["timestamp"].tolist()
    assert raw["rating"].isna().all()
    assert leftovers(pipeline / "data/raw") == ["interactions.parquet", "items.parquet"]
    titles = pd.read_parquet(pipeline / "data/raw/items.parquet")  # a user's file has no titles
    assert list(titles.columns) == ["raw_item_id", "title"] and titles.empty


def test_preprocess_output(pipeline):
    prepared = pipeline / "data/prepared"
    assert sorted(p.name for p in prepared.iterdir()) == ["interactions.parquet", "items.parquet", "users.parquet"]
    interactions = pd.read_parquet(prepared / "interactions.parquet")
    users = pd.read_parquet(prepared / "users.parquet")
    items = pd.read_parquet(prepared / "items.parquet")
    assert users["user_id"].tolist() == list(range(len(users)))
    assert users["raw_user_id"].tolist() == sorted(users["raw_user_id"])
    assert items["item_id"].tolist() == list(range(1, len(items) + 1))
    assert set(interactions["user_id"]) == set(users["user_id"])
    assert set(interactions["item_id"]) == set(items["item_id"])
    assert interactions.groupby("user_id")["item_id"].nunique().min() >= 5
    stats = json.loads((pipeline / "metrics/preprocess.json").read_text())
    assert stats["interactions"] == len(interactions)
    assert stats["users"] == len(users)
    assert stats["items"] == len(items)
    assert sorted(p.name for p in (pipeline / "data").iterdir()) == ["prepared", "raw", "split"]


def test_split_output(pipeline):
    out = pipeline / "data/split"
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test.parquet", "train.parquet", "validation.parquet"]
    interactions = pd.read_parquet(pipeline / "data/prepared/interactions.parquet")
    train = pd.read_parquet(out / "train.parquet")
    validation = pd.read_parquet(out / "validation.parquet")
    test = pd.read_parquet(out / "test.parquet")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["method"] == "leave_last_n"
    assert meta["num_items"] == len(pd.read_parquet(pipeline / "data/prepared/items.parquet"))
    assert meta["train_interactions"] == len(train)
    assert meta["validation_users"] == validation["user_id"].nunique()
    assert meta["test_users"] == test["user_id"].nunique()
    assert not set(validation["user_id"]) & set(test["user_id"])
    assert len(train) + len(validation) + len(test) == len(interactions)  # every user has > n
    assert (pd.concat([validation, test]).groupby("user_id").size() == 3).all()


# --- errors -----------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path) -> Path:
    make_csv(tmp_path / "mine.csv")
    return tmp_path


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"dataset": "foo"}, ["data.dataset", "foo"]),
        ({"dataset": "missing.csv"}, ["missing.csv", "does not exist"]),
        ({"dataset": "mine.csv", "extra": 1}, ["data.extra"]),
        ({"dataset": 5}, ["data.dataset"]),
    ],
)
def test_download_bad_params(folder, data, words):
    write_params(folder, data=data)
    assert_user_error(run_stage(folder, "download"), *words)
    assert not (folder / "data/raw/interactions.parquet").exists()
    assert leftovers(folder / "data/raw") == []


def test_download_bad_file(folder):
    (folder / "bad.csv").write_text("user_id,item_id,timestamp\n1,2,2024-01-01\n1,3,yesterday\n")
    write_params(folder, data={"dataset": "bad.csv"})
    assert_user_error(run_stage(folder, "download"), "yesterday")
    assert leftovers(folder / "data/raw") == []


def test_download_without_params_file(folder):
    assert_user_error(run_stage(folder, "download"), "params.yaml")
    assert leftovers(folder / "data") == []


def test_download_failure_keeps_previous_output(folder):
    write_params(folder, data={"dataset": "mine.csv"})
    assert run_stage(folder, "download").returncode == 0
    before = (folder / "data/raw/interactions.parquet").read_bytes()
    write_params(folder, data={"dataset": "ml-5m"})
    assert_user_error(run_stage(folder, "download"), "ml-5m")
    assert (folder / "data/raw/interactions.parquet").read_bytes() == before
    assert leftovers(folder / "data/raw") == ["interactions.parquet", "items.parquet"]


@pytest.mark.parametrize(
    ("preprocess", "words"),
    [
        ({"min_user_items": 0}, ["preprocess.min_user_items"]),
        ({"min_item_users": "5"}, ["preprocess.min_item_users"]),
        ({"max_user_items": 5}, ["preprocess.max_user_items"]),
        ({"min_user_items": 1000}, ["no users", "preprocess.min_user_items"]),
    ],
)
def test_preprocess_errors(pipeline, folder, preprocess, words):
    shutil.copytree(pipeline / "data/raw", folder / "data/raw")
    write_params(folder, data={"dataset": "mine.csv"}, preprocess=preprocess)
    assert_user_error(run_stage(folder, "preprocess"), *words)
    assert leftovers(folder / "data") == ["raw", "raw/interactions.parquet", "raw/items.parquet"]  # no prepared, no temp
    assert not (folder / "metrics/preprocess.json").exists()
    assert leftovers(folder / "metrics") == []


@pytest.mark.parametrize(
    ("split", "words"),
    [
        ({"quantile": 1.5}, ["split.quantile"]),
        ({"method": "foo"}, ["split.method", "foo"]),
        ({"n": 0}, ["split.n"]),
        ({"validation_fraction": 0}, ["split.validation_fraction"]),
        ({"n": 100}, ["at least 2"]),
    ],
)
def test_split_errors(pipeline, folder, split, words):
    shutil.copytree(pipeline / "data/prepared", folder / "data/prepared")
    write_params(folder, data={"dataset": "mine.csv"}, split=split)
    assert_user_error(run_stage(folder, "split"), *words)
    assert sorted(p.name for p in (folder / "data").iterdir()) == ["prepared"]  # no split, no temp


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_download_ml_1m_checksum_mismatch(folder):
    # The stage checks the real ml-1m md5, which a small look-alike zip cannot match.
    www = folder / "www"
    www.mkdir()
    with zipfile.ZipFile(www / "ml-1m.zip", "w") as archive:
        archive.writestr("ml-1m/ratings.dat", "1::1193::5::978300760\n")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        write_params(folder, data={"dataset": "ml-1m"})
        result = run_stage(folder, "download", GENREC_GROUPLENS_URL=f"http://127.0.0.1:{httpd.server_address[1]}",
                           no_proxy="127.0.0.1", http_proxy="", HTTP_PROXY="")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().split("\n")[-1]  # after the progress bar
    assert message.startswith("error: checksum mismatch"), result.stderr
    assert leftovers(folder / ".cache") == []
    assert leftovers(folder / "data") == []


def test_a_file_with_its_own_column_names_through_the_stage(tmp_path, pipeline):
    """data.columns: the same file with the columns user, item and time gives the same raw table."""
    frame = pd.read_csv(pipeline / "mine.csv").rename(columns={"user_id": "user", "item_id": "item",
                                                               "timestamp": "time"})
    frame.to_csv(tmp_path / "mine.csv", index=False)
    write_params(tmp_path, data={"dataset": "mine.csv",
                                 "columns": {"user_id": "user", "item_id": "item", "timestamp": "time"}})
    result = run_stage(tmp_path, "download")
    assert result.returncode == 0, result.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "data/raw/interactions.parquet"),
                                  pd.read_parquet(pipeline / "data/raw/interactions.parquet"))
