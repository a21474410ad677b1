"""Small generated data shared by the model tests, running a stage as dvc.yaml does, and the
params of the repository's params.yaml."""

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from genrec import params
from genrec.sequences import UserSequences

REPO = Path(__file__).resolve().parents[1]


def section_models() -> dict[str, type[params.Section]]:
    """Every section of params.yaml and the model that reads it. Imported when asked: the
    models' modules bring in torch, transformers and implicit."""
    from genrec.baselines import bert4rec, bpr, sasrec
    from genrec.datasets import DataParams
    from genrec.metrics import EvaluationParams
    from genrec.model import ModelParams
    from genrec.preprocess import PreprocessParams
    from genrec.search import SearchParams
    from genrec.split import SplitParams
    from genrec.strategies import GenerationParams
    from genrec.training import TrainParams

    return {"data": DataParams, "preprocess": PreprocessParams, "split": SplitParams,
            "evaluation": EvaluationParams, "model": ModelParams, "train": TrainParams,
            "generation": GenerationParams, "bpr": bpr.Params, "sasrec": sasrec.Params, "bert4rec": bert4rec.Params,
            "search": SearchParams}


@functools.cache
def _repository_params() -> dict:
    return params.load(REPO / "params.yaml")


def section_values(name: str, **overrides) -> dict:
    """Section ``name`` of the repository's params.yaml (a fresh copy), with ``overrides``. The
    generation section gets the horizon its stages give it, evaluation.k."""
    values = copy.deepcopy(_repository_params()[name])
    if name == "generation":
        values["horizon"] = _repository_params()["evaluation"]["k"]
    return {**values, **overrides}


def defaults(name: str, **overrides) -> params.Section:
    """The model of section ``name`` as the repository's params.yaml sets it, with ``overrides``,
    read as a stage reads it: a bad override is the stage's one-line ``UserError``."""
    return params.section({name: section_values(name, **overrides)}, name, section_models()[name])


def run_stage(stage: str, *args: str, cwd: Path, env: dict | None = None,
              timeout: int = 120) -> subprocess.CompletedProcess:
    """Run stage module ``stages.<stage>`` as dvc.yaml does (``python -m``) in the folder ``cwd``,
    with this checkout's ``stages`` and ``genrec`` first on the path, as in the workspace DVC runs in."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def tool_env() -> dict[str, str]:
    """This environment with its tools (dvc, genrec) first on PATH and a git identity."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def run_command(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command (dvc, git, python) in ``cwd`` with ``tool_env``; fail the test with its
    output unless it succeeds."""
    result = subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def cyclic_walks(num_users: int, num_items: int, seed: int = 0) -> tuple[UserSequences, np.ndarray]:
    """Every user walks the cycle 1 -> 2 -> ... -> num_items -> 1 from a random start, 8 to 24
    steps (some longer than a 16-item window). Returns the walks and each user's next item,
    never seen before by that user: a pattern a sequence model can learn."""
    rng = np.random.default_rng(seed)
    rows, targets = [], []
    for user in range(num_users):
        start, length = int(rng.integers(0, num_items)), int(rng.integers(8, 25))
        walk = (start + np.arange(length + 1)) % num_items + 1
        rows += [(user, int(item)) for item in walk[:-1]]
        targets.append(int(walk[-1]))
    sequences = UserSequences.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]), num_users)
    return sequences, np.array(targets)
