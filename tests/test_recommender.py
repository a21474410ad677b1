"""genrec.bundle, genrec.recommender and the `genrec recommend` command, on a tiny pipeline run
in a temporary folder (the real stage scripts, in this process) with a tiny GPT-2."""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from genrec import bundle, cli
from genrec.errors import UserError
from genrec.recommender import Recommender, UnknownItemsWarning
from genrec.strategies import recommend
from genrec.strategies import STRATEGIES
from test_pipeline import generated_interactions

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {
    "data": {"dataset": "interactions.csv", "columns": {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp"}},
    "preprocess": {"min_item_users": 5, "min_user_items": 20, "duplicates": "keep"},
    "split": {"method": "leave_last_n", "n": 5, "quantile": 0.9, "validation_fraction": 0.5, "seed": 42},
    "model": {"n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 2, "dropout": 0.1,
              "activation_function": "gelu_pytorch_tanh"},
    "train": {"lr": 0.01, "batch_size": 16, "max_epochs": 2, "patience": 2, "seed": 42, "device": "cpu",
              "processes": 1, "precision": "fp32", "step": "auto", "dropout_masks": "torch"},
    "evaluation": {"k": 5},
    "generation": {"num_beams": 2, "temperature": 0.5, "top_k": 0, "num_sequences": 3, "seed": 42,
                   "batch_size": 4, "device": "cpu", "processes": 1},
}


def run_stage(script: str, *args: str) -> None:
    """A stage script as `dvc repro` runs it, in this process (no second torch import)."""
    argv = sys.argv
    sys.argv = [script, *args]
    try:
        runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")
    finally:
        sys.argv = argv


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """download ... train, the six strategy stages and the bundle stage on generated data."""
    folder = tmp_path_factory.mktemp("recommender")
    generated_interactions().to_csv(folder / "interactions.csv", index=False)
    (folder / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        run_stage("download.py")
        # A user's file has no titles; give every item but the first one a title, as MovieLens has.
        raw = pd.read_parquet("data/raw/interactions.parquet")["item_id"].drop_duplicates().sort_values()
        pd.DataFrame({"raw_item_id": raw[1:], "title": [f"Film {i}" for i in raw[1:]]}
                     ).to_parquet("data/raw/items.parquet", index=False)
        for script in ("preprocess.py", "split.py", "train.py"):
            run_stage(script)
        for strategy in STRATEGIES:
            run_stage("recommend.py", strategy)
        run_stage("bundle.py")
    return folder


@pytest.fixture(scope="module")
def recommender(pipeline) -> Recommender:
    return Recommender.load(pipeline / "data/recommender", device="cpu")


def raw_ids(pipeline: Path) -> tuple[dict, dict]:
    users = pd.read_parquet(pipeline / "data/prepared/users.parquet")
    items = pd.read_parquet(pipeline / "data/prepared/items.parquet")
    return dict(zip(users["user_id"], users["raw_user_id"])), dict(zip(items["item_id"], items["raw_item_id"]))


def training_history(pipeline: Path, user: int) -> list[int]:
    """A test user's training sequence in raw item ids, oldest first."""
    train = pd.read_parquet(pipeline / "data/split/train.parquet")
    items = raw_ids(pipeline)[1]
    return [int(items[i]) for i in train.loc[train["user_id"] == user, "item_id"]]


# --- the bundle ------------------------------------------------------------------------------

def test_bundle_holds_everything_to_recommend(pipeline, tmp_path, monkeypatch):
    folder = pipeline / "data/recommender"
    assert sorted(p.name for p in folder.iterdir()) == [
        "history.parquet", "items.parquet", "model", "settings.json", "users.parquet"]
    settings = json.loads((folder / "settings.json").read_text())["strategies"]
    assert settings == {
        "topk": {"horizon": 5}, "greedy": {"horizon": 5}, "beam": {"horizon": 5, "num_beams": 2},
        "sampling": {"horizon": 5, "temperature": 0.5, "top_k": 0, "seed": 42},
        "rra": {"horizon": 5, "temperature": 0.5, "top_k": 0, "num_sequences": 3, "seed": 42},
        "ra": {"horizon": 5, "temperature": 0.5, "top_k": 0, "num_sequences": 3, "seed": 42}}
    items = pd.read_parquet(folder / "items.parquet")
    prepared = pd.read_parquet(pipeline / "data/prepared/items.parquet")
    assert items[["item_id", "raw_item_id"]].equals(prepared[["item_id", "raw_item_id"]])
    first = int(pd.read_parquet(pipeline / "data/raw/interactions.parquet")["item_id"].min())
    titled = items[items["raw_item_id"] != first]
    assert (titled["title"] == "Film " + titled["raw_item_id"].astype(str)).all()
    assert items.loc[items["raw_item_id"] == first, "title"].isna().all()
    # Self-contained: a copy elsewhere loads and recommends, with no data/ or params.yaml near it.
    shutil.copytree(folder, tmp_path / "copy")
    monkeypatch.chdir(tmp_path)
    assert len(Recommender.load(tmp_path / "copy", device="cpu").recommend([first + 1], "greedy")) == 5


def test_settings_take_the_chosen_values():
    generation = {"horizon": 10, "num_beams": 2, "temperature": 0.5, "top_k": 0, "num_sequences": 30, "seed": 42}
    chosen = {"rra": {"temperature": 0.3, "top_k": 20, "num_sequences": 20}, "beam": {"num_beams": 3}}
    settings = bundle.strategy_settings(generation, chosen)
    assert settings["rra"] == {"horizon": 10, "temperature": 0.3, "top_k": 20, "num_sequences": 20, "seed": 42}
    assert settings["beam"] == {"horizon": 10, "num_beams": 3}
    assert settings["ra"] == {"horizon": 10, "temperature": 0.5, "top_k": 0, "num_sequences": 30, "seed": 42}


def test_a_grid_needs_a_chosen_value():
    generation = {"horizon": 10, "num_beams": 2, "temperature": [0.3, 0.5], "top_k": 0, "num_sequences": 30,
                  "seed": 42}
    with pytest.raises(UserError, match=r"generation\.temperature is a grid .*metrics/sampling\.json"):
        bundle.strategy_settings(generation, {})
    chosen = {s: {"temperature": 0.3} for s in ("sampling", "rra", "ra")}
    assert bundle.strategy_settings(generation, chosen)["ra"]["temperature"] == 0.3
    with pytest.raises(UserError, match=r"generation\.temperature"):  # a chosen value is checked too
        bundle.strategy_settings(generation, {**chosen, "rra": {"temperature": 0}})


# --- the same items as the pipeline ----------------------------------------------------------

@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_test_users_items_are_the_pipelines(pipeline, recommender, strategy):
    users, items = raw_ids(pipeline)
    recs = pd.read_parquet(pipeline / f"data/recs/{strategy}.parquet").sort_values(["user_id", "rank"])
    test_users = recs["user_id"].unique()
    assert len(test_users) >= 10
    for user in test_users:
        expected = [items[i] for i in recs.loc[recs["user_id"] == user, "item_id"]]
        got = recommender.recommend_user(users[user], strategy)
        assert got["raw_item_id"].tolist() == expected, user
        assert got["rank"].tolist() == [1, 2, 3, 4, 5]
        assert got["score"].notna().all() == (strategy in ("topk", "rra", "ra"))
        assert not set(got["raw_item_id"]) & set(training_history(pipeline, user))  # nothing seen


@pytest.mark.parametrize("strategy", ["beam", "rra"])
def test_the_command_gives_the_pipelines_items(pipeline, capsys, strategy):
    users, items = raw_ids(pipeline)
    recs = pd.read_parquet(pipeline / f"data/recs/{strategy}.parquet").sort_values(["user_id", "rank"])
    user = recs["user_id"].iloc[-1]
    cli.main(["recommend", "--model", str(pipeline / "data/recommender"), "--user", str(users[user]),
              "--strategy", strategy, "--json", "--device", "cpu"])
    out = json.loads(capsys.readouterr().out)
    assert [r["raw_item_id"] for r in out["recommendations"]] == [
        items[i] for i in recs.loc[recs["user_id"] == user, "item_id"]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_history_is_prompted_like_a_users(pipeline, recommender, strategy):
    """A dataset user's training history given by hand gets that user's list (deterministic
    strategies; the sampled ones draw another stream) and never one of its own items."""
    users, _ = raw_ids(pipeline)
    recs = pd.read_parquet(pipeline / "data/recs/greedy.parquet")
    for user in recs["user_id"].unique()[:5]:
        history = training_history(pipeline, user)
        got = recommender.recommend(history, strategy)
        assert not set(got["raw_item_id"]) & set(history)
        assert got["raw_item_id"].nunique() == 5
        if strategy in ("topk", "greedy", "beam"):
            pd.testing.assert_frame_equal(got, recommender.recommend_user(users[user], strategy))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_k_cuts_the_list_and_the_horizon_makes_it(recommender, strategy):
    """Issue 24: -k 5 once set the generation horizon, so RRA's top 5 were not the first 5 of
    its top 10. k is the list's length now; the horizon is a setting of its own."""
    history = [5, 6, 7, 8]
    full = recommender.recommend(history, strategy)  # the pipeline's horizon: 5 here
    assert len(full) == 5
    top3 = recommender.recommend(history, strategy, k=3)
    pd.testing.assert_frame_equal(top3, full.head(3))
    longer = recommender.recommend(history, strategy, horizon=8)
    assert len(longer) == 8 and longer["raw_item_id"].is_unique
    with pytest.raises(ValueError, match=r"k \(6\) is more than the 5 items the strategy generates \(its horizon\): "
                                         r"ask for at most 5, or generate more \(horizon=6, --horizon 6\)"):
        recommender.recommend(history, strategy, k=6)


def test_settings_change_the_list(recommender):
    history = [5, 6, 7, 8]
    base = recommender.recommend(history, "rra", horizon=8)
    other = [recommender.recommend(history, "rra", horizon=8, seed=seed)["raw_item_id"].tolist() for seed in range(5)]
    assert any(o != base["raw_item_id"].tolist() for o in other)  # the seed moves the sampled list
    assert recommender.recommend(history, "rra", horizon=8)["raw_item_id"].tolist() == base["raw_item_id"].tolist()


def test_one_history_runs_on_one_thread_and_leaves_the_callers_setting(recommender, monkeypatch):
    """Issue 24: from Python one history took 2.2 s on a loaded 2-core machine with every
    thread, 20 ms with one; only the command set it."""
    seen = []
    monkeypatch.setattr("genrec.recommender.recommend",
                        lambda *args, **kwargs: seen.append(torch.get_num_threads()) or recommend(*args, **kwargs))
    session = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        recommender.recommend([5, 6, 7], "greedy")
        recommender.recommend_many(pd.DataFrame({"user": ["a", "b"], "item": [5, 6]}), "greedy")
        assert seen == [1, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(session)  # the tests after this one keep conftest's one thread


# --- the command's outputs -------------------------------------------------------------------

def command(pipeline: Path, *args: str) -> list[str]:
    return ["recommend", "--model", str(pipeline / "data/recommender"), "--device", "cpu", *args]


def test_table(pipeline, recommender, capsys):
    cli.main(command(pipeline, "--history", "5,6,7", "--strategy", "rra", "-k", "3"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "item", "title", "score"]
    expected = recommender.recommend([5, 6, 7], "rra", k=3)
    for line, (_, row) in zip(lines[1:], expected.iterrows(), strict=True):
        assert line.split()[:2] == [str(row["rank"]), str(row["raw_item_id"])]
        assert f"{row['score']:.4f}" in line and (pd.isna(row["title"]) or row["title"] in line)
    cli.main(command(pipeline, "--history", "5,6,7", "--strategy", "greedy"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "item", "title"] and len(lines) == 6  # greedy has no score


def test_json(pipeline, recommender, capsys):
    cli.main(command(pipeline, "--history", "5,6,7", "--strategy", "ra", "--temperature", "0.7", "--json"))
    out = json.loads(capsys.readouterr().out)
    assert out["strategy"] == "ra"
    assert out["settings"] == {"horizon": 5, "temperature": 0.7, "top_k": 0, "num_sequences": 3, "seed": 42}
    expected = recommender.recommend([5, 6, 7], "ra", temperature=0.7)
    got = out["recommendations"]
    assert [sorted(r) for r in got] == [["rank", "raw_item_id", "score", "title"]] * 5
    assert [(r["rank"], r["raw_item_id"], r["title"]) for r in got] == [
        (r.rank, r.raw_item_id, None if pd.isna(r.title) else r.title) for r in expected.itertuples()]
    assert [r["score"] for r in got] == pytest.approx(expected["score"].tolist())


def test_unknown_ids_are_skipped_with_a_warning(pipeline, recommender, capsys):
    cli.main(command(pipeline, "--history", "5,99999,6,abc,7", "--strategy", "topk", "--json"))
    captured = capsys.readouterr()
    assert captured.err.strip() == ("warning: 2 unknown item id(s) skipped (99999, abc): "
                                    "not in the model's catalogue")
    expected = recommender.recommend([5, 6, 7], "topk")
    assert [r["raw_item_id"] for r in json.loads(captured.out)["recommendations"]] == expected["raw_item_id"].tolist()
    with pytest.warns(UnknownItemsWarning, match="1 unknown"):
        recommender.recommend([5, 123456], "topk")


def test_input_file(pipeline, recommender, tmp_path, capsys):
    histories = {"a": [5, 6, 7], "b": [20, 21, 99999], "c": [5, 6, 7]}
    rows = [(user, item) for user, items in histories.items() for item in items]
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(tmp_path / "in.csv", index=False)
    cli.main(command(pipeline, "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"),
                     "--strategy", "rra"))
    assert "1 unknown item id(s) skipped (99999)" in capsys.readouterr().err
    out = pd.read_csv(tmp_path / "out.csv", dtype={"user": str})
    assert list(out.columns) == ["user", "rank", "raw_item_id", "title", "score"]
    for user, items in histories.items():
        got = out[out["user"] == user]
        alone = recommender.recommend([i for i in items if i != 99999], "rra")
        assert got["raw_item_id"].tolist() == alone["raw_item_id"].tolist(), user  # batched = alone
        np.testing.assert_allclose(got["score"], alone["score"], rtol=1e-6)


# --- errors: one line, exit code 2, no output -----------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--history", "99999,abc"], "no item id the model knows"),
    (["--history", ","], "the history's item id at position 1 is empty"),
    (["--user", "nobody"], "unknown user 'nobody'"),
    (["--history", "5", "--strategy", "nucleus"], "invalid choice: 'nucleus'"),
    (["--history", "5", "--strategy", "rra", "--temperature", "0"], "setting temperature must be between"),
    (["--history", "5", "--strategy", "rra", "--temperature", "warm"], "--temperature"),
    (["--history", "5", "-k", "0"], "-k"),
    (["--history", "5", "-k", "16"], "k (16) is more than the 5 items the strategy generates"),
    (["--history", "5", "--horizon", "16"], "setting horizon (16) must be smaller than the model's window"),
    (["--history", "5", "--strategy", "beam", "--temperature", "0.3"], "beam has no setting temperature"),
    (["--history", "5", "--user", "1000"], "not allowed with"),
    ([], "one of the arguments --history --user --input is required"),
    (["--history", "5", "--output", "x.csv"], "--output goes with --input"),
    (["--input", "missing.csv"], "missing.csv does not exist"),
])
def test_errors(pipeline, tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(command(pipeline, *args))
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert words in captured.err
    assert list(tmp_path.iterdir()) == []


def test_error_in_an_input_file_names_it(pipeline, tmp_path, capsys):
    (tmp_path / "in.csv").write_text("user,movie\na,5\n")
    with pytest.raises(SystemExit):
        cli.main(command(pipeline, "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")))
    assert "lacks column(s) item" in capsys.readouterr().err
    (tmp_path / "in.csv").write_text("user,item\n")
    with pytest.raises(SystemExit):
        cli.main(command(pipeline, "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")))
    assert f"--input {tmp_path / 'in.csv'} has a header but no rows" in capsys.readouterr().err
    (tmp_path / "in.csv").write_text("user,item\na,5\nb,99999\n")
    with pytest.raises(SystemExit):
        cli.main(command(pipeline, "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")))
    assert "user b's history has no item id the model knows" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["recommend", "--model", str(tmp_path / "nothing"), "--history", "5"])
    assert "run `dvc repro bundle` first" in capsys.readouterr().err


def test_output_never_replaces_a_folder(tmp_path, capsys):
    """Before issue 23 `--output some_dir` replaced the folder and everything in it by one CSV."""
    (tmp_path / "in.csv").write_text("user,item\na,5\n")
    (tmp_path / "some_dir").mkdir()
    (tmp_path / "some_dir" / "out.csv").write_text("keep me")
    with pytest.raises(SystemExit) as exit_:  # refused before the recommender is even loaded
        cli.main(["recommend", "--model", str(tmp_path / "nothing"), "--input", str(tmp_path / "in.csv"),
                  "--output", str(tmp_path / "some_dir")])
    assert exit_.value.code == 2
    assert f"--output {tmp_path / 'some_dir'} is a folder, but a file is written there" in capsys.readouterr().err
    assert (tmp_path / "some_dir" / "out.csv").read_text() == "keep me"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_lists_hold_only_unseen_distinct_real_items_or_say_why(recommender, strategy):
    """Issue 23: a history covering almost the catalogue once gave seen items (topk, rra), one
    item five times (greedy, beam, sampling) and, for ra, an error blaming the model's weights."""
    every = recommender.items["raw_item_id"].tolist()
    history = every[:-12]  # 12 unseen items: a full list of 10 fits
    recs = recommender.recommend(history, strategy, horizon=10)
    assert len(recs) == 10 and recs["raw_item_id"].is_unique
    assert set(recs["raw_item_id"]) == set(recs["raw_item_id"]) & set(every[-12:])
    with pytest.raises(UserError, match=rf"the history has seen {len(every) - 5} of the {len(every)} items, leaving "
                                        r"5 unseen: fewer than the 10 the strategy generates \(its horizon\); generate "
                                        r"at most 5 \(horizon=5, --horizon 5\)"):
        recommender.recommend(every[:-5], strategy, horizon=10)
    recs = recommender.recommend(every[:-5], strategy, horizon=5)
    assert sorted(recs["raw_item_id"]) == sorted(every[-5:])


# --- the Python API checks its arguments as the command does ---------------------------------

@pytest.mark.parametrize("history, words", [
    ("50,172", "the history is the string '50,172', not a list"),  # once read character by character
    (50, "the history is an int (50), not a list"),  # once a TypeError
    ([5, float("nan"), 6], "the history's item id at position 2 is missing (nan)"),  # once hid its items
    ([5, None], "the history's item id at position 2 is missing (None)"),
    ([5, " "], "the history's item id at position 2 is empty"),
    ([5, (6, 7)], "the history's item id at position 2 is a tuple ((6, 7)); raw item ids are whole numbers"),
    ([5, 6.5], "the history's item id at position 2 is a float (6.5)"),
    ([], "the history is empty"),
])
def test_a_malformed_history_is_one_line(recommender, history, words):
    with pytest.raises(ValueError) as error:
        recommender.recommend(history, "topk")
    assert words in str(error.value) and "\n" not in str(error.value)


def test_recommend_many_takes_a_frame(recommender):
    with pytest.raises(ValueError, match="the histories are a list: give a pandas DataFrame with columns user and item"):
        recommender.recommend_many([(1, 50)], "topk")  # once an AttributeError
    frame = pd.DataFrame({"user": ["a", "a", "b"], "item": [5, None, 6]})
    with pytest.raises(ValueError, match="user a's history's item id at position 2 is missing"):
        recommender.recommend_many(frame, "topk")


@pytest.mark.parametrize("flag, history", [("50,,172", ["50", "", "172"]), (" , ", ["", ""])])
def test_the_command_and_the_api_give_one_message(pipeline, recommender, capsys, flag, history):
    with pytest.raises(ValueError) as api:
        recommender.recommend(history, "topk")
    with pytest.raises(SystemExit):
        cli.main(command(pipeline, "--history", flag))
    assert capsys.readouterr().err == f"error: {api.value}\n"


def test_items_are_found_by_title(pipeline, capsys):
    folder = str(pipeline / "data/recommender")
    cli.main(["items", "--search", "FILM 1", "--model", folder])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["item", "title"] and len(lines) > 2
    assert all("film" in line.lower() and "1" in line.split(None, 1)[1] for line in lines[1:])  # every word
    with pytest.raises(SystemExit):
        cli.main(["items", "--search", "no such title", "--model", folder])
    assert "error: no title holds 'no such title'" in capsys.readouterr().err


def test_the_folder_is_found_from_any_folder_of_the_repository(pipeline, monkeypatch, capsys, tmp_path):
    (pipeline / "dvc.yaml").touch()
    inner = pipeline / "some" / "folder"
    inner.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(inner)
    cli.main(["recommend", "--history", "5,6,7", "--strategy", "topk", "--device", "cpu"])
    assert capsys.readouterr().out.splitlines()[0].split()[:2] == ["rank", "item"]
    monkeypatch.chdir(tmp_path)  # outside any repository: the path tried is named
    with pytest.raises(SystemExit):
        cli.main(["recommend", "--history", "5"])
    assert f"no recommender folder at {tmp_path / 'data/recommender'}" in capsys.readouterr().err


def test_json_scores_have_float32_digits(pipeline, capsys):
    cli.main(command(pipeline, "--history", "5,6,7", "--strategy", "rra", "--json"))
    scores = [r["score"] for r in json.loads(capsys.readouterr().out)["recommendations"]]
    assert all(len(repr(score)) <= 10 for score in scores), scores  # 9.999999, not 9.999999046325684
