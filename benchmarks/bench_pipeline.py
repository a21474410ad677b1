"""The whole pipeline at a chosen size: the real `dvc repro`, timed and measured stage by stage.

    python benchmarks/bench_pipeline.py --scale S [--epochs E] [--set KEY=VALUE ...]
                                        [--targets STAGE ...] [--keep DIR]

Writes a synthetic dataset with ML-20M's shape at scale S as a user data file (scale 1.0:
138,000 users, 20 million interactions over 19,220 raw items, of which about 18,345 keep 5 or
more users, as ML-20M's 18,345; heavy-tailed user lengths, Zipf-like items, repeats allowed,
``bench_data.generate``; users and interactions scale with S, the raw catalogue does not), copies this
checkout's pipeline into a temporary git + DVC repository, points ``data.dataset`` at the
file and runs `dvc repro` there (only ``--targets`` and what they need, when given). With
``--epochs E`` every trained model (GPT-2, SASRec, BERT4Rec, BPR) stops after at most E
epochs; ``--set generation.temperature=0.5`` and the like change any other param.

Each stage's command runs under a meter (this script with ``--meter``) that records its wall
seconds, the peak resident memory of its largest process (``getrusage`` of its children) and,
on CUDA, the peak GPU memory of its processes (NVML, sampled every 0.2 s; it includes the
CUDA context). One row per stage is printed as it finishes; the script exits non-zero, with
the end of DVC's log, if a stage fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

# 19,220 raw items with bench_data's popularity leave about 18,345 with 5 or more users at
# 20 million rows, ML-20M's catalogue after the same filter (fewer at smaller scales).
ML_20M = {"rows": 20_000_000, "users": 138_000, "items": 19_220}
TRAINED = ("train", "sasrec", "bert4rec")  # params sections with max_epochs (BPR: see capped)


def dataset(scale: float, path: Path, seed: int = 0) -> tuple[int, int]:
    """The synthetic table at ``scale`` (users and interactions scale; the catalogue does not)
    as a Parquet user file; returns (rows, users)."""
    from bench_data import generate

    users = max(10, round(ML_20M["users"] * scale))
    rows = max(users * 20, round(ML_20M["rows"] * scale))
    pd.DataFrame(generate(rows, users, ML_20M["items"], seed)).to_parquet(path, index=False)
    return rows, users


def capped(params: dict, epochs: int) -> None:
    """Every trained model at most ``epochs`` epochs. BPR's max_epochs must be a multiple of its
    eval_every, so it validates every gcd(epochs, eval_every) epochs."""
    for section in TRAINED:
        params[section]["max_epochs"] = epochs
    params["bpr"]["eval_every"] = math.gcd(epochs, params["bpr"]["eval_every"])
    params["bpr"]["max_epochs"] = epochs


def override(params: dict, assignment: str) -> None:
    """``section.key=value`` (value read as YAML), as `dvc exp run -S` takes it."""
    key, _, value = assignment.partition("=")
    section, _, name = key.partition(".")
    if section not in params or not name or not _:
        raise SystemExit(f"--set {assignment}: give section.key=value with a section of params.yaml")
    params[section][name] = yaml.safe_load(value)


def metered(dvc_yaml: dict, log: Path) -> dict:
    """dvc.yaml with every stage's command run under this script's meter."""
    def wrap(name: str, cmd: str) -> str:
        return f"{sys.executable} {Path(__file__).resolve()} --meter {name} --log {log} -- {cmd}"

    for name, stage in dvc_yaml["stages"].items():
        if "foreach" in stage:
            stage["do"]["cmd"] = wrap(f"{name}@${{item}}", stage["do"]["cmd"])
        else:
            stage["cmd"] = wrap(name, stage["cmd"])
    return dvc_yaml


def gpu_sampler(pid: int, peak: list[int], done: threading.Event) -> None:
    """Largest GPU memory in use by ``pid`` and its descendants, sampled until ``done``."""
    try:
        import psutil
        import pynvml
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no NVIDIA driver: a CPU machine
        return
    while not done.wait(0.2):
        try:
            tree = {pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))}
        except psutil.Error:
            continue
        used = sum(p.usedGpuMemory or 0 for h in handles for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)
                   if p.pid in tree)
        peak[0] = max(peak[0], used)


def meter(name: str, log: Path, command: list[str]) -> int:
    """Run one stage's command; append its seconds and peaks to ``log``; return its exit code."""
    start = time.perf_counter()
    child = subprocess.Popen(command)
    peak_gpu, done = [0], threading.Event()
    sampler = threading.Thread(target=gpu_sampler, args=(child.pid, peak_gpu, done), daemon=True)
    sampler.start()
    code = child.wait()
    done.set()
    sampler.join()
    row = {"stage": name, "seconds": time.perf_counter() - start, "code": code,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9,
           "peak_gpu_gb": peak_gpu[0] / 1e9}
    with open(log, "a") as out:
        out.write(json.dumps(row) + "\n")
    return code


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "CPU") \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    import psutil
    text = f"{model}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"
    import torch
    if torch.cuda.is_available():
        text += f"; {torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return text


def row_text(row: dict) -> str:
    gpu = f"{row['peak_gpu_gb']:>10.2f}" if row["peak_gpu_gb"] else f"{'—':>10}"
    state = "" if row["code"] == 0 else f"  FAILED (exit {row['code']})"
    return f"{row['stage']:<20}{row['seconds']:>10.1f}{row['peak_rss_gb']:>10.2f}{gpu}{state}"


def repository(folder: Path, data: Path, args: argparse.Namespace, log: Path) -> None:
    """This checkout's pipeline (its files as they are now, committed or not) in a new git + DVC
    repository at ``folder``, reading ``data``; no data, metrics or dvc.lock: every stage runs."""
    # Tracked files and new ones git does not ignore: the working tree a user would commit.
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        # metrics/untuned.json is an input of the report (the run before the search), not an output.
        if source.is_file() and (not name.startswith(("metrics/", "data/")) or name == "metrics/untuned.json") \
                and name != "dvc.lock":
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["dataset"] = str(data)
    if args.epochs:
        capped(params, args.epochs)
    for assignment in args.set:
        override(params, assignment)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (folder / "dvc.yaml").write_text(yaml.safe_dump(metered(dvc_yaml, log), sort_keys=False, width=10_000))
    # .dvc/config came with the tracked files (analytics off), as in a clone: no `dvc init`.
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "benchmark"]):
        subprocess.run(command, cwd=folder, env=environment(), check=True, capture_output=True)


def environment() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def run(args: argparse.Namespace, folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    repo, data, log = folder / "repo", folder / "interactions.parquet", folder / "stages.jsonl"
    if repo.exists():
        raise SystemExit(f"{repo} exists: give --keep a new folder")
    repo.mkdir()
    print(f"machine: {machine()}", flush=True)
    start = time.perf_counter()
    rows, users = dataset(args.scale, data)
    print(f"synthetic data at scale {args.scale:g}: {users:,} users, {rows:,} interactions over "
          f"{ML_20M['items']:,} raw items -> {data} ({time.perf_counter() - start:.0f} s)", flush=True)
    repository(repo, data, args, log)
    settings = [f"--epochs {args.epochs}"] if args.epochs else []
    print(" ".join(["dvc repro", *args.targets, "in", str(repo), *settings, *(f"--set {s}" for s in args.set)]))
    print(f"{'stage':<20}{'seconds':>10}{'peak RSS GB':>12}{'peak GPU GB':>12}", flush=True)
    with open(folder / "repro.log", "w") as output:
        start = time.perf_counter()
        dvc = subprocess.Popen(["dvc", "repro", *args.targets], cwd=repo, env=environment(), stdout=output,
                               stderr=subprocess.STDOUT)
        shown = 0
        while dvc.poll() is None or shown < _lines(log):
            time.sleep(1)
            for row in _rows(log)[shown:]:
                print(row_text(row), flush=True)
                shown += 1
        seconds = time.perf_counter() - start
    rows = _rows(log)
    print(f"{'dvc repro':<20}{seconds:>10.1f}{max((r['peak_rss_gb'] for r in rows), default=0):>10.2f}"
          f"  (stages {sum(r['seconds'] for r in rows):.0f} s, DVC's own work the rest)")
    if dvc.returncode != 0:
        tail = (folder / "repro.log").read_text().splitlines()[-30:]
        print("dvc repro failed; the end of its log:\n" + "\n".join(tail), file=sys.stderr)
    return dvc.returncode


def _rows(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _lines(log: Path) -> int:
    return len(_rows(log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.05, help="1.0: ML-20M's 138,000 users")
    parser.add_argument("--epochs", type=int, help="at most this many epochs for every trained model")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other param")
    parser.add_argument("--targets", nargs="*", default=[], metavar="STAGE", help="these stages and what they need")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--meter", help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.meter:
        sys.exit(meter(args.meter, args.log, args.command[1:] if args.command[:1] == ["--"] else args.command))
    if args.epochs is not None and args.epochs < 1:
        raise SystemExit("--epochs must be at least 1")
    if args.keep:
        sys.exit(run(args, args.keep))
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder:
        sys.exit(run(args, Path(folder)))


if __name__ == "__main__":
    main()
