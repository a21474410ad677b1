"""Small generated data shared by the model tests, and running a stage as dvc.yaml does."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from genrec.sequences import UserSequences

REPO = Path(__file__).resolve().parents[1]


def run_stage(stage: str, *args: str, cwd: Path, env: dict | None = None,
              timeout: int = 120) -> subprocess.CompletedProcess:
    """Run stage module ``stages.<stage>`` as dvc.yaml does (``python -m``) in the folder ``cwd``,
    with this checkout's ``stages`` and ``genrec`` first on the path, as in the workspace DVC runs in."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_command(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command (dvc, git, python) in ``cwd`` with this environment's tools first on PATH
    and a git identity; fail the test with its output unless it succeeds."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
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
