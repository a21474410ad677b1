"""dvc.yaml itself: every stage depends on its script and on exactly the project modules the
script imports, directly or through other project modules, so that no code change goes
unnoticed and none reruns a stage it does not concern; and each plotted file has one plot
definition. The stages are read as DVC resolves them (``foreach`` expanded)."""

from __future__ import annotations

import ast
import re
import json
from pathlib import Path

import pytest
import yaml
from dvc.parsing import DataResolver
from dvc.repo import Repo

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())
with Repo(str(ROOT)) as _repo:
    STAGES = DataResolver(_repo, _repo.root_dir, PIPELINE).resolve()["stages"]
TRAINED_BASELINES = ("bpr", "sasrec", "bert4rec")


def module_file(name: str) -> Path | None:
    for candidate in (ROOT / (name.replace(".", "/") + ".py"), ROOT / name.replace(".", "/") / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def project_imports(path: Path, seen: set[Path] | None = None) -> set[Path]:
    """The project files ``path`` imports, followed through the project's own modules."""
    seen = set() if seen is None else seen
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args \
                and isinstance(node.args[0], ast.JoinedStr):  # importlib.import_module(f"genrec.baselines.{name}")
            names = ["genrec.baselines"]
        for name in names:
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # a package's __init__ runs before its modules
                found = module_file(".".join(parts[:depth]))
                if found and found.is_relative_to(ROOT / "genrec") and found not in seen:
                    seen.add(found)
                    project_imports(found, seen)
    return seen


def script_of(cmd: str) -> tuple[Path, list[str]]:
    match = re.search(r"python (?:-m (stages)\.(\w+)|(stages)/(\w+)\.py)\s*(\S*)", " ".join(cmd.split()))
    assert match, cmd
    name = match.group(2) or match.group(4)
    return ROOT / "stages" / f"{name}.py", [match.group(5)]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_deps_are_the_imports(stage):
    script, (argument,) = script_of(STAGES[stage]["cmd"])
    deps = {ROOT / dep for dep in STAGES[stage].get("deps", [])}
    assert script in deps
    needed = project_imports(script)
    if script.name == "baseline.py":  # only the named baseline's module is imported
        others = {ROOT / "genrec/baselines" / f"{name}.py" for name in ("popularity", "bpr", "sasrec", "bert4rec")}
        mine = ROOT / "genrec/baselines" / f"{argument}.py"
        needed = (needed - others) | {mine} | project_imports(mine)
    missing = sorted(str(path.relative_to(ROOT)) for path in needed - deps)
    assert not missing, f"stage {stage} imports {missing} but dvc.yaml does not list them as deps"
    # And no more: a module the stage does not import must not rerun it (a GPT-2 edit reruns no baseline).
    code = {dep for dep in deps if dep.suffix == ".py"}
    extra = sorted(str(path.relative_to(ROOT)) for path in code - needed - {script})
    assert not extra, f"stage {stage} lists {extra} as deps but does not import them"


def test_each_kind_of_stage_is_written_once():
    """The trained baselines are one foreach; the stage names follow from it."""
    assert PIPELINE["stages"]["baseline"]["foreach"] == list(TRAINED_BASELINES)
    assert {f"baseline@{name}" for name in TRAINED_BASELINES} | {"popularity"} <= set(STAGES)
    for name in TRAINED_BASELINES:
        stage = STAGES[f"baseline@{name}"]
        assert stage["params"] == ["evaluation.k", name] and f"genrec/baselines/{name}.py" in stage["deps"]
        assert f"metrics/{name}_train/metrics.json" in [next(iter(entry)) for entry in stage["metrics"]]


def test_the_baseline_stage_names_in_messages_are_dvc_yaml_s():
    from genrec.baselines import NAMES
    from genrec.report import BASELINE_STAGES
    assert set(BASELINE_STAGES) == set(NAMES)
    for name, stage in BASELINE_STAGES.items():
        assert f"data/recs/{name}.parquet" in STAGES[stage]["outs"], stage


def test_no_baseline_depends_on_the_gpt2_code():
    for name in ("popularity", *(f"baseline@{name}" for name in TRAINED_BASELINES)):
        deps = set(STAGES[name]["deps"])
        assert not deps & {"genrec/model.py", "genrec/engine.py", "genrec/strategies.py"}, name


def test_each_plotted_file_has_one_definition():
    """No near-duplicate plots: a file is drawn by stage-level plots or by top-level
    definitions, never by both, and the per-position curves use the template that gives
    every method its own colour."""
    stage_level = [next(iter(entry)) if isinstance(entry, dict) else entry
                   for stage in STAGES.values() for entry in stage.get("plots", [])]
    top_level = {name: definition for entry in PIPELINE["plots"] for name, definition in entry.items()}
    files = [path for definition in top_level.values() for path in definition["y"]]
    assert len(stage_level) == len(set(stage_level))
    assert not set(stage_level) & set(files)
    search = {"search_history", "search_curves", "search_importances"}  # genrec search's tables
    assert set(top_level) == {"ndcg_first_p", "ndcg_at_p", "hit_rate_at_p", "validation_ndcg", "training_loss",
                              "epoch_seconds", "coverage_first_p", "entropy_first_p", "novelty_at_p"} | search
    assert all(definition["template"] == "methods" and definition["title"] for name, definition in top_level.items()
               if name not in search - {"search_history"})
    assert top_level["search_curves"]["template"] == "trials" and top_level["search_importances"]["template"] == "bars"
    template = (ROOT / ".dvc/plots/methods.json").read_text()
    assert '"color": {"field": "method"' in template and '"scheme": "tableau10"' in template  # ten distinct hues
    # Issue 24: the tuning grids once drew from y 0, stacked on one x once a temperature was fixed,
    # and the learning curves were a chart per file with raw paths for titles (four epoch_seconds).
    assert sorted(stage_level) == [f"metrics/tuning/{name}.csv" for name in ("beam", "ra", "rra", "sampling")]
    for stage in STAGES.values():
        for entry in stage.get("plots", []):
            (definition,) = entry.values()
            assert definition["x"] == "setting" and definition["template"] == "grid" and definition["title"]
    grid = json.loads((ROOT / ".dvc/plots/grid.json").read_text())
    assert grid["encoding"]["y"]["scale"] == {"zero": False} and grid["encoding"]["x"]["type"] == "nominal"


def test_each_sampled_strategy_depends_on_its_own_search_winner():
    """`genrec search rra` writes generation.searched.rra, which replaces rra's grid: the rra
    stage reruns when it changes, and no other stage does."""
    from genrec.search import SAMPLED
    for name, stage in STAGES.items():
        declared = [key for key in stage.get("params", []) if isinstance(key, str) and key.startswith("generation.searched")]
        assert declared == ([f"generation.searched.{name}"] if name in SAMPLED else []), name
