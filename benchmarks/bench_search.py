"""How fast `genrec search` goes: seconds per trial of each model, trials per hour with one and
two workers on one machine, and what a 50-trial GPT-2 search costs at ML-1M's size, pruned and not.

    python benchmarks/bench_search.py studies [--storage metrics/search/studies.journal]
    python benchmarks/bench_search.py workers [--trials 4] [--epochs 5]
    python benchmarks/bench_search.py scale [--scale 0.044] [--study gpt2]

- studies: every study of a storage (the committed search by default), read back: trials
  complete and pruned, the mean seconds of each kind, and the study's wall time and trials per
  hour as it ran (its workers and threads are the run's own: docs/performance.md says which).
- workers: four GPT-2 trials (params.yaml's point and the TPE draws after it, every trial
  ``--epochs`` epochs: no early stop, no pruning, so both runs do the same arithmetic) in a
  scratch study on the pipeline's split (data/split), once with one worker on every core and
  once with two workers of half the cores each; prints seconds, trials per hour and the ratio.
- scale: one GPT-2 epoch at params.yaml's size, timed on data/split and on a synthetic dataset
  of ``--scale`` x ML-20M's users and interactions (0.044: ML-1M's 6,040 users and about
  880,000 interactions; ``bench_pipeline.dataset``) through the pipeline's own preprocess and
  split, in one process, on one thread as each worker of the committed search; the ratio
  scales the committed study's trials (``--study``) to that size: pruned as they ran, and
  unpruned (each pruned trial run on to the mean epochs of the complete ones).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def studies(storage_url: str) -> None:
    import optuna
    from optuna.trial import TrialState

    from genrec.search import open_storage
    storage = open_storage(storage_url)
    print(f"{'study':10} {'complete':>8} {'pruned':>6} {'failed':>6} {'running':>7} {'s/complete':>10} {'s/pruned':>8} "
          f"{'s/trial':>7} {'wall min':>8} {'trials/h':>8}")
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        complete = [t.user_attrs.get("seconds", 0) for t in done if t.state == TrialState.COMPLETE]
        pruned = [t.user_attrs.get("seconds", 0) for t in done if t.state == TrialState.PRUNED]
        finished = [t for t in trials if t.datetime_complete]
        wall = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()
        mean = (lambda xs: sum(xs) / len(xs) if xs else float("nan"))
        failed = sum(t.state == TrialState.FAIL for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        print(f"{summary.study_name:10} {len(complete):8d} {len(pruned):6d} {failed:6d} {running:7d} "
              f"{mean(complete):10.1f} {mean(pruned):8.1f} {mean(complete + pruned):7.1f} {wall / 60:8.1f} "
              f"{len(done) / wall * 3600:8.1f}")


def workers(trials: int, epochs: int) -> None:
    """One worker on every core against two on half the cores each, the same trials."""
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    values["train"].update(max_epochs=epochs, patience=epochs)  # every trial the same number of epochs
    values["search"].update(pruner="none")
    with tempfile.TemporaryDirectory() as folder:
        params = Path(folder) / "params.yaml"
        params.write_text(yaml.safe_dump(values, sort_keys=False))
        seconds = {}
        for count in (1, 2):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "genrec.search", "gpt2", "--study", f"workers-{count}", "--trials",
                            str(trials), "--workers", str(count), "--storage", str(Path(folder) / "bench.journal"),
                            "--params", str(params), "--no-apply", "--split", str(ROOT / "data" / "split")],
                           cwd=ROOT, check=True, stderr=subprocess.DEVNULL)
            seconds[count] = time.perf_counter() - start
            print(f"{count} worker(s), {os.cpu_count() // count} thread(s) each: {trials} trials of {epochs} epochs "
                  f"in {seconds[count]:.0f} s, {trials / seconds[count] * 3600:.0f} trials/hour", flush=True)
    print(f"two workers / one: {seconds[1] / seconds[2]:.2f}x the trials per hour")


def epoch_seconds(split_path: Path, epochs: int = 2) -> float:
    """Seconds of one GPT-2 epoch (training and validation) at params.yaml's size, the last of ``epochs``."""
    from genrec import model as gpt2
    from genrec import params
    from genrec.model import ModelParams
    from genrec.sequences import Split
    from genrec.training import Data, TrainParams
    import torch

    torch.set_num_threads(1)  # as each of the committed search's two workers trained
    values = params.load(ROOT / "params.yaml")
    model_params = params.section(values, "model", ModelParams)
    train = params.section(values, "train", TrainParams).model_copy(update={"max_epochs": epochs, "patience": epochs})
    data = Data.from_split(Split.load(split_path))
    _, result = gpt2.fit(data, model_params, train, torch.device("cpu"))
    return result.history[-1].seconds


def scale(factor: float, study_name: str, storage_url: str) -> None:
    import optuna
    from optuna.trial import TrialState

    from bench_pipeline import dataset
    from genrec.search import open_storage

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        rows, users = dataset(factor, folder / "mine.parquet")
        values = yaml.safe_load((ROOT / "params.yaml").read_text())
        values["data"]["dataset"] = "mine.parquet"
        (folder / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        for stage in ("download", "preprocess", "split"):
            subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=folder, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
        small = epoch_seconds(ROOT / "data" / "split")
        large = epoch_seconds(folder / "data" / "split")
    ratio = large / small
    print(f"one GPT-2 epoch at params.yaml's size: {small:.1f} s on data/split, {large:.1f} s at {factor} x ML-20M "
          f"({users:,} users, {rows:,} rows): {ratio:.1f}x")
    trials = [t for t in optuna.load_study(study_name=study_name, storage=open_storage(storage_url)).trials
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    mean_epochs = sum(t.user_attrs["epochs"] for t in complete) / len(complete)
    pruned = sum(t.user_attrs["seconds"] for t in trials)
    unpruned = sum(t.user_attrs["seconds"] if t.state == TrialState.COMPLETE else
                   t.user_attrs["seconds"] / t.user_attrs["epochs"] * mean_epochs for t in trials)
    print(f"study {study_name} ({len(trials)} trials, {len(trials) - len(complete)} pruned; trial seconds as it ran): "
          f"{pruned / 3600:.2f} h of trials here, {unpruned / 3600:.2f} h unpruned (pruned trials run on to "
          f"{mean_epochs:.0f} epochs, the complete ones' mean)")
    print(f"at {factor} x ML-20M: {pruned * ratio / 3600:.1f} h pruned, {unpruned * ratio / 3600:.1f} h unpruned "
          f"(trial-hours: divide by the workers that share the machine's cores as the study's did)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    read = commands.add_parser("studies")
    read.add_argument("--storage", default=str(ROOT / "metrics" / "search" / "studies.journal"))
    run = commands.add_parser("workers")
    run.add_argument("--trials", type=int, default=4)
    run.add_argument("--epochs", type=int, default=5)
    big = commands.add_parser("scale")
    big.add_argument("--scale", type=float, default=0.044)
    big.add_argument("--study", default="gpt2")
    big.add_argument("--storage", default=str(ROOT / "metrics" / "search" / "studies.journal"))
    args = parser.parse_args()
    from bench_pipeline import machine
    print(machine())
    if args.command == "studies":
        studies(args.storage)
    elif args.command == "workers":
        workers(args.trials, args.epochs)
    else:
        scale(args.scale, args.study, args.storage)


if __name__ == "__main__":
    main()
