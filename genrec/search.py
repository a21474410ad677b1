"""Searching a trained model's params or a sampled strategy's settings with Optuna (docs/method.md
§6c): ``genrec search gpt2``.

The ranges, the number of trials and the storage come from the ``search`` section of
params.yaml. A study lives in storage (Optuna's journal file by default, any SQLAlchemy URL for
workers on several machines), so a stopped search resumes where it stopped and any number of
workers, here or elsewhere, add their trials to one study. A trial is the pipeline's own code
with the study's values put into params.yaml's: ``fit`` and its early stopping for a model, whose
per-epoch validation NDCG@10 feeds the pruner; ``tuning.tune`` on the validation users for a
strategy. When the study holds its trials, the winner is written into params.yaml, with a
comment naming the study and its value, so that ``dvc repro`` trains it; a search stopped
before that leaves params.yaml as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import importlib
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from pydantic import Field
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from genrec import params as genrec_params
from genrec.errors import Terminated, UserError
from genrec.io import atomic_path
from genrec.params import AtLeast0, AtLeast1, Section

TABLES = Path("metrics/search")  # trials.csv, curves.csv, importances.csv of a URL storage's studies
TRAINED = {"gpt2": ("model", "train"), "sasrec": ("sasrec",), "bert4rec": ("bert4rec",), "bpr": ("bpr",)}
SAMPLED = ("sampling", "rra", "ra")
TARGETS = (*TRAINED, *SAMPLED)
# Keys that change how fast a trial runs, never its result: neither searched nor part of what a
# study must keep. A model's batch_size is its optimiser's; generation's only splits the users.
SPEED = {"device", "processes"}
SPEED_OF = {"generation": {"device", "processes", "batch_size"}, "bpr": {"device"}}  # bpr.num_threads: its arithmetic
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


class TargetParams(Section):
    trials: AtLeast1  # pruned trials count; failed ones do not
    space: dict[str, Any]  # section.key: [choices] or {low, high, log, step}
    fixed: dict[str, Any]  # section.key: value, set for every trial and written with the winner


class SearchParams(Section):
    """The ``search`` section: its own keys, and each target's search (``TargetParams``)."""

    storage: str  # a journal file (a path) or a SQLAlchemy URL (sqlite:///..., postgresql://...)
    seed: int  # the TPE sampler's; worker i of a run draws from seed + i
    pruner: Literal["median", "none"]
    startup_trials: AtLeast0  # trials the pruner lets finish before it compares
    warmup_epochs: AtLeast0  # epochs every trial trains before it may be pruned
    within: Annotated[float, Field(ge=0)]  # a trained model's quicker trial this close to the best wins (winner)
    gpt2: TargetParams
    sasrec: TargetParams
    bert4rec: TargetParams
    bpr: TargetParams
    sampling: TargetParams
    rra: TargetParams
    ra: TargetParams


@dataclass(frozen=True)
class Plan:
    """One target's search as params.yaml declares it."""

    target: str
    study: str
    settings: SearchParams
    trials: int
    space: dict[str, BaseDistribution]
    fixed: dict[str, Any]


def plan(values: dict, target: str, study: str | None = None, trials: int | None = None) -> Plan:
    """The search of ``target`` declared in params.yaml ``values``, every range checked against the
    params it sets (a bad one is a one-line ``UserError`` naming the key)."""
    raw = values.get("search")
    if not isinstance(raw, dict):
        raise UserError("params.yaml: section 'search' is missing or not a mapping")
    # Each target's own keys first, for messages that name them (search.gpt2.trials), then the rest.
    for name in TARGETS:
        if name not in raw:
            raise UserError(f"params.yaml: search.{name} is missing: give its trials, space and fixed keys")
        genrec_params.section({f"search.{name}": raw[name]}, f"search.{name}", TargetParams)
    settings = genrec_params.section({"search": raw}, "search", SearchParams)
    declared = getattr(settings, target)
    label = f"search.{target}"
    known = searchable(target, values)
    space = {key: distribution(f"{label}.space.{key}", key, spec, known) for key, spec in declared.space.items()}
    if not space:
        raise UserError(f"params.yaml: {label}.space is empty: give at least one param to search")
    for key, value in declared.fixed.items():
        check_key(f"{label}.fixed.{key}", key, known)
        if key in space:
            raise UserError(f"params.yaml: {label}.fixed.{key} is searched too (in {label}.space): keep one of them")
        check_value(f"{label}.fixed.{key}", target, values, {key: value})
    for key, dist in space.items():
        for value in bounds(dist):
            check_value(f"{label}.space.{key}", target, values, {**declared.fixed, key: value})
    return Plan(target, study or target, settings, trials or declared.trials, space, dict(declared.fixed))


def searchable(target: str, values: dict) -> dict[str, Any]:
    """``section.key`` -> its params.yaml value, for every param a trial of ``target`` may set."""
    if target in SAMPLED:
        from genrec.strategies import STRATEGIES
        generation = values.get("generation") or {}
        return {f"generation.{key}": generation.get(key) for key in STRATEGIES[target].tuned}
    known = {}
    for name, cls in section_classes(target).items():
        section = values.get(name) or {}
        known.update({f"{name}.{key}": section.get(key) for key in cls.model_fields
                      if key not in SPEED_OF.get(name, SPEED)})
    return known


def check_key(label: str, key: str, known: dict) -> None:
    if key not in known:
        raise UserError(f"params.yaml: {label}: no such param for this search; it may set "
                        f"{', '.join(sorted(known))}")


def distribution(label: str, key: str, spec: Any, known: dict) -> BaseDistribution:
    """A space entry as an Optuna distribution: a list is a choice, a mapping a range."""
    check_key(label, key, known)
    if isinstance(spec, list):
        if not spec:
            raise UserError(f"params.yaml: {label} is a choice with no values: give at least one, or drop the key")
        if not all(isinstance(value, (bool, int, float, str)) for value in spec) or len(set(spec)) < len(spec):
            raise UserError(f"params.yaml: {label} must list distinct numbers or strings, got {spec}")
        return CategoricalDistribution(spec)
    if not isinstance(spec, dict):
        raise UserError(f"params.yaml: {label} must be a list of choices or a range {{low, high, log, step}}, "
                        f"got {spec!r}")
    unknown = sorted(set(spec) - {"low", "high", "log", "step"})
    if unknown or not {"low", "high"} <= set(spec):
        raise UserError(f"params.yaml: {label} is a range of low, high and optionally log and step, got keys "
                        f"{', '.join(map(str, spec))}")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    numbers = [low, high] + ([step] if step is not None else [])
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in numbers) \
            or not isinstance(log, bool):
        raise UserError(f"params.yaml: {label}: low, high and step must be numbers and log true or false, got {spec}")
    if low > high:
        raise UserError(f"params.yaml: {label}: low ({low}) is above high ({high}): swap them")
    if log and low <= 0:
        raise UserError(f"params.yaml: {label}: a log range needs low above 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise UserError(f"params.yaml: {label}: step must be above 0, and a log range has none, got {spec}")
    if isinstance(known[key], int) and not isinstance(known[key], bool) and all(isinstance(x, int) for x in numbers):
        return IntDistribution(low, high, log=log, step=step or 1)
    return FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))


def bounds(dist: BaseDistribution) -> list:
    """The values that check a distribution against its param: every choice, or both ends."""
    return list(dist.choices) if isinstance(dist, CategoricalDistribution) else [dist.low, dist.high]


def check_value(label: str, target: str, values: dict, assignment: dict[str, Any]) -> None:
    try:
        configure(target, assign(values, target, assignment))
    except UserError as error:
        raise UserError(f"params.yaml: {label}: {str(error).removeprefix('params.yaml: ')}") from None


def section_classes(target: str) -> dict[str, type[Section]]:
    if target == "gpt2":
        from genrec.model import ModelParams
        from genrec.training import TrainParams
        return {"model": ModelParams, "train": TrainParams}
    return {target: importlib.import_module(f"genrec.baselines.{target}").Params}


def assign(values: dict, target: str, assignment: dict[str, Any]) -> dict:
    """A copy of params.yaml ``values`` with ``assignment`` (``section.key`` -> value) in place: a
    model's keys in their sections, a strategy's under ``generation.searched.<strategy>``, which
    replaces its grid (``strategies.read_params``)."""
    values = copy.deepcopy(values)
    for name, value in assignment.items():
        section, key = name.split(".", 1)
        if target in SAMPLED:
            searched = values.setdefault("generation", {}).get("searched") or {}
            values["generation"]["searched"] = searched
            searched[target] = {**(searched.get(target) or {}), key: value}
        else:
            values.setdefault(section, {})[key] = value
    return values


def configure(target: str, values: dict) -> dict[str, Section]:
    """The sections a trial of ``target`` reads from params.yaml ``values``, checked as its stage checks them."""
    if target in SAMPLED:
        from genrec.strategies import read_params
        return {"generation": read_params(values, target)}
    return {name: genrec_params.section(values, name, cls) for name, cls in section_classes(target).items()}


# --- the objective ------------------------------------------------------------------------------

@contextlib.contextmanager
def shielded():
    """SIGINT and SIGTERM held back while the storage is written, so that a stop never lands in
    the middle of a write; a signal that came meanwhile is delivered at the end."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Skipped(Exception):
    """A trial whose values the params checks refuse, or whose training diverged: a failed trial that counts."""


class Surplus(Exception):
    """A trial asked for when the study already had its trials (another worker was quicker)."""


def suggest(trial: optuna.Trial, space: dict[str, BaseDistribution]) -> dict[str, Any]:
    out = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            out[key] = trial.suggest_categorical(key, dist.choices)
        elif isinstance(dist, IntDistribution):
            out[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            out[key] = trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return out


class Objective:
    """What one trial of a plan runs, on data loaded once per worker."""

    def __init__(self, plan: Plan, values: dict, split_path: Path, model_path: Path, device_name: str | None):
        from genrec.device import resolve_device
        from genrec.sequences import Split
        from genrec.training import Data

        self.plan, self.values = plan, values
        base = configure(plan.target, assign(values, plan.target, plan.fixed))
        first = next(iter(base.values()))
        self.device = resolve_device(device_name or getattr(first, "device", "auto"), "--device")
        self.split = Split.load(split_path)
        self.data = Data.from_split(self.split)
        self.model = None
        if plan.target in SAMPLED:
            from genrec import model as gpt2
            self.model = gpt2.load(model_path, self.device)
        self.identity = identity(plan, values, split_path, model_path if plan.target in SAMPLED else None)

    def __call__(self, trial: optuna.Trial) -> float:
        counted = [t for t in trial.study.get_trials(deepcopy=False)
                   if t.number < trial.number and (t.state in COUNTED or t.state == TrialState.RUNNING
                                                   or t.user_attrs.get("skipped"))]
        if len(counted) >= self.plan.trials:
            raise Surplus
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        assignment = {**self.plan.fixed, **suggest(trial, self.plan.space)}
        try:
            config = configure(self.plan.target, assign(self.values, self.plan.target, assignment))
        except UserError as error:
            raise Skipped(str(error).removeprefix("params.yaml: ")) from None
        start = time.perf_counter()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # a stop may land in training
        try:
            value = self.run(trial, config)
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
        return value

    def run(self, trial: optuna.Trial, config: dict[str, Section]) -> float:
        if self.plan.target in SAMPLED:
            return self.strategy_value(trial, config["generation"])
        best = [-math.inf, 0]

        def on_epoch(result) -> None:
            with shielded():  # the storage written whole, or not at all
                if result.ndcg > best[0]:
                    best[:] = [result.ndcg, result.epoch]
                    trial.set_user_attr("best_epoch", result.epoch)
                trial.set_user_attr("epochs", result.epoch)
                trial.report(result.ndcg, result.epoch)
            if result.epoch > self.plan.settings.warmup_epochs and trial.should_prune():
                raise optuna.TrialPruned(f"validation NDCG@10 {result.ndcg:.4f} at epoch {result.epoch}")

        try:
            if self.plan.target == "gpt2":
                from genrec import model as gpt2
                _, result = gpt2.fit(self.data, config["model"], config["train"], self.device, on_epoch=on_epoch)
            else:
                module = importlib.import_module(f"genrec.baselines.{self.plan.target}")
                _, result = module.fit(self.data, config[self.plan.target], self.device, on_epoch)
        except UserError as error:  # diverged: these values fail, the search goes on
            raise Skipped(str(error)) from None
        return result.best.ndcg

    def strategy_value(self, trial: optuna.Trial, config) -> float:
        from genrec import metrics
        from genrec.tuning import tune
        split = self.split
        catalogue = metrics.Catalogue.from_train(split.train)
        _, table, _ = tune(self.plan.target, self.model, split.sequences, split.validation_users, split.validation,
                           catalogue, config, show_progress=False)
        return float(table[f"ndcg@{config.horizon}"].iloc[0])


def identity(plan: Plan, values: dict, split_path: Path, model_path: Path | None) -> dict[str, Any]:
    """What a study's trials share and a resumed search must keep: the target, the space, the
    params a trial does not set (speed keys aside) and the data (and, for a strategy, the model)."""
    base = configure(plan.target, assign(values, plan.target, plan.fixed))
    kept = {}
    for name, section in base.items():
        for key, value in section.model_dump().items():
            label = f"{name}.{key}"
            if label not in plan.space and key not in SPEED_OF.get(name, SPEED) and key != "searched":
                kept[label] = value
    for name in ("data", "preprocess", "split", "evaluation"):
        kept.update({f"{name}.{key}": value for key, value in (values.get(name) or {}).items()})
    files = {"split": folder_digest(split_path)}
    if model_path is not None:
        files["model"] = folder_digest(model_path)
    return {"target": plan.target, "space": {key: optuna.distributions.distribution_to_json(dist)
                                             for key, dist in plan.space.items()},
            "params": json.loads(json.dumps(kept, default=str)), "files": files}


def folder_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(Path(path).rglob("*")):
        if file.is_file():
            digest.update(str(file.relative_to(path)).encode())
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def differences(stored: dict, current: dict) -> str | None:
    """The first way the study's identity differs from this search's, in words."""
    if stored.get("target") != current["target"]:
        return f"it searches {stored.get('target')}, not {current['target']}"
    if stored.get("space") != current["space"]:
        keys = sorted(set(stored.get("space", {})) ^ set(current["space"])) or \
            sorted(k for k in current["space"] if stored["space"][k] != current["space"][k])
        return f"it searched another space (search.{current['target']}.space: {', '.join(keys)})"
    for key in sorted(set(stored.get("params", {})) | set(current["params"])):
        old, new = stored.get("params", {}).get(key), current["params"].get(key)
        if old != new:
            return f"its trials ran with {key} {old}, params.yaml now says {new}"
    for key, digest in current["files"].items():
        if stored.get("files", {}).get(key) != digest:
            return f"its trials ran on another {'data split' if key == 'split' else 'trained model'}"
    return None


# --- storage and study --------------------------------------------------------------------------

def open_storage(url: str) -> optuna.storages.BaseStorage:
    """A journal file for a path, an RDB for a URL (heartbeats, so that a worker that dies on
    another machine has its trial failed by the next worker); one line if it cannot be opened."""
    try:
        if "://" in url:
            with warnings.catch_warnings():  # heartbeats are marked experimental; they are what we want here
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=300)
        from optuna.storages.journal import JournalFileBackend
        path = Path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except Exception as error:  # SQLAlchemy, the driver and the file system each raise their own kinds
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise UserError(f"search storage {url} cannot be opened ({reason}): give search.storage (or --storage) "
                        "a writable file path or a SQLAlchemy URL such as sqlite:///metrics/search/studies.db") \
            from None


def open_study(plan: Plan, storage, identity_: dict, values: dict, worker: int) -> optuna.Study:
    settings = plan.settings
    pruner = optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials) \
        if settings.pruner == "median" else optuna.pruners.NopPruner()
    with shielded():
        study = optuna.create_study(storage=storage, study_name=plan.study, direction="maximize", pruner=pruner,
                                    load_if_exists=True)
    # A resumed search must not draw again the random startup points of the run before it: the
    # seed moves on with the trials the study holds (the same history, the same draws).
    study.sampler = optuna.samplers.TPESampler(seed=settings.seed + worker + 1000 * len(study.trials))
    with shielded():
        stored = study.user_attrs.get("identity")
        if stored is None and not study.trials:
            study.set_user_attr("identity", identity_)
            stored = identity_
    if stored is None:
        raise UserError(f"study {plan.study} in {settings.storage} has trials but no record of what it searches: "
                        "give another --study")
    problem = differences(stored, identity_)
    if problem:
        raise UserError(f"study {plan.study} in {settings.storage} does not fit this search: {problem}. Give another "
                        f"--study, or put params.yaml back as the study had it")
    if worker == 0:
        enqueue_start_point(study, plan, values)
    return study


def enqueue_start_point(study: optuna.Study, plan: Plan, values: dict) -> None:
    """params.yaml's own values as the next trial, until the study holds them (a stopped first
    trial is tried again): the study measures what its winner would replace."""
    default = start_point(plan, values)
    held = (*COUNTED, TrialState.RUNNING, TrialState.WAITING)
    if default and not any(t.user_attrs.get("origin") == "params.yaml" and t.state in held
                           for t in study.get_trials(deepcopy=False)):
        with shielded():
            study.enqueue_trial(default, user_attrs={"origin": "params.yaml"})


def start_point(plan: Plan, values: dict) -> dict[str, Any] | None:
    """params.yaml's values of the searched params, when the space holds them all."""
    known = searchable(plan.target, values)
    point = {key: known[key] for key in plan.space}
    for key, dist in plan.space.items():
        value = point[key]
        if isinstance(dist, CategoricalDistribution):
            if value not in dist.choices:
                return None
        elif not isinstance(value, (int, float)) or not dist.low <= value <= dist.high:
            return None
    return point


def fail_dead(study: optuna.Study) -> None:
    """Mark failed the running trials of workers on this machine that are gone (killed with
    SIGKILL, or the machine restarted): they would never finish."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", "")
        name, _, pid = worker.rpartition(":")
        if name == host and pid.isdigit() and not alive(int(pid)):
            with shielded():
                study._storage.set_trial_user_attr(trial._trial_id, "stopped", "its worker was gone")
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    if isinstance(study._storage, optuna.storages.RDBStorage):  # heartbeats: a worker gone on any machine
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def counted(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in COUNTED or t.user_attrs.get("skipped"))


# --- one worker ---------------------------------------------------------------------------------

def work(study: optuna.Study, objective: Objective, log: Callable[[str], None]) -> None:
    """Run trials until the study holds the plan's number (this worker's and every other's)."""
    total = objective.plan.trials
    while counted(study) + len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))) < total:
        done = {}

        def record(study: optuna.Study, trial: FrozenTrial) -> None:
            done["trial"] = trial

        with shielded():  # signals reach a trial only while it trains (Objective.__call__)
            study.optimize(lambda trial: tagged(objective, trial), n_trials=1, catch=(Skipped, Surplus),
                           callbacks=[record], gc_after_trial=True)
        deliver_pending()
        trial = done.get("trial")
        if trial is None or trial.user_attrs.get("surplus"):
            return
        log(describe(trial, study, total))


def tagged(objective: Objective, trial: optuna.Trial) -> float:
    """The objective, with the reason of a skipped or surplus trial kept on it."""
    try:
        return objective(trial)
    except Skipped as error:
        trial.set_user_attr("skipped", str(error))
        raise
    except Surplus:
        trial.set_user_attr("surplus", True)
        raise
    except KeyboardInterrupt as error:
        trial.set_user_attr("stopped", "terminated" if isinstance(error, Terminated) else "interrupted")
        raise


def deliver_pending() -> None:
    """A SIGINT or SIGTERM held back while Optuna wrote the storage, delivered now."""
    if signal.sigpending() & {signal.SIGINT, signal.SIGTERM}:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def describe(trial: FrozenTrial, study: optuna.Study, total: int) -> str:
    values = ", ".join(f"{key.split('.', 1)[1]} {value:.3g}" if isinstance(value, float) else
                       f"{key.split('.', 1)[1]} {value}" for key, value in trial.params.items())
    seconds = trial.user_attrs.get("seconds", 0)
    if trial.state == TrialState.COMPLETE:
        what = f"{trial.value:.4f}"
    elif trial.state == TrialState.PRUNED:
        what = f"pruned at epoch {trial.user_attrs.get('epochs')}"
    else:
        what = f"failed ({trial.user_attrs.get('skipped', 'error')})"
    try:
        best = f"; best {study.best_value:.4f} (#{study.best_trial.number})"
    except ValueError:
        best = ""
    return f"trial {trial.number} [{counted(study)}/{total}] {values}: {what} in {seconds:.0f} s{best}"


# --- the tables ---------------------------------------------------------------------------------

def tables(storage) -> dict[str, pd.DataFrame]:
    """Every study of ``storage`` as three tables: its trials (values, params, seconds, the
    best so far), the validation curve of each trial, and the params' importances."""
    trials, curves, importances = [], [], []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        best = -math.inf
        for trial in study.get_trials(deepcopy=False):
            if trial.state == TrialState.COMPLETE:
                best = max(best, trial.value)
            reported = trial.intermediate_values
            trials.append({"method": summary.study_name, "number": trial.number, "state": trial.state.name.lower(),
                           "value": trial.value, "best": best if math.isfinite(best) else None,
                           "best_reported": max(reported.values()) if reported else trial.value,
                           "seconds": trial.user_attrs.get("seconds"), "epochs": trial.user_attrs.get("epochs"),
                           "best_epoch": trial.user_attrs.get("best_epoch"),
                           "origin": trial.user_attrs.get("origin", "tpe"),
                           "note": trial.user_attrs.get("skipped") or trial.user_attrs.get("stopped") or "",
                           **{f"param.{key}": value for key, value in trial.params.items()}})
            curves += [{"method": f"{summary.study_name} #{trial.number}", "study": summary.study_name,
                        "number": trial.number, "epoch": epoch, "val_ndcg@10": value}
                       for epoch, value in sorted(reported.items())]
        if sum(t.state == TrialState.COMPLETE for t in study.trials) >= 2:
            with contextlib.suppress(Exception):  # too few distinct values for the evaluator
                found = optuna.importance.get_param_importances(study)
                importances += [{"method": summary.study_name, "param": key, "importance": round(value, 4)}
                                for key, value in found.items()]
    columns = dict.fromkeys(key for row in trials for key in row)
    whole = [key for key in columns if all(isinstance(row[key], int) and not isinstance(row[key], bool)
                                           for row in trials if row.get(key) is not None)]
    trials = pd.DataFrame(trials, columns=list(columns))
    for column in whole:  # 64, not 64.0, beside another study's empty cells
        trials[column] = trials[column].astype("Int64")
    return {"trials": trials, "curves": pd.DataFrame(curves),
            "importances": pd.DataFrame(importances, columns=["method", "param", "importance"])}


def tables_folder(url: str) -> Path:
    """Where a storage's tables go: beside its journal file, or ``TABLES`` for a database."""
    return TABLES if "://" in url else Path(url).parent


def write_tables(storage, folder: Path) -> None:
    for name, table in tables(storage).items():
        with atomic_path(folder / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False)


# --- the winner ---------------------------------------------------------------------------------

QUICKER = 0.75  # a setting near the best wins only if its trial took at most this share of the best's time
SAVING = 10.0  # and at least this many seconds less: a second or two is timing noise, for any model


def winner(study: optuna.Study, within: float) -> FrozenTrial:
    """The best complete trial; or, where trials within ``within`` of its value took at most
    ``QUICKER`` of its time and ``SAVING`` seconds less, the best of those: a slower setting that
    the seeds' spread cannot tell from a quicker one does not slow every later run. A few
    seconds' difference, as between two learning rates of one size, is noise and changes nothing."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        raise UserError(f"study {study.study_name} has no complete trial: every trial was pruned or failed; "
                        "run more trials (--trials) or widen search.startup_trials")
    best = max(complete, key=lambda t: (t.value, -t.number))
    limit = min(QUICKER * best.user_attrs.get("seconds", math.inf), best.user_attrs.get("seconds", math.inf) - SAVING)
    quicker = [t for t in complete if t.value >= best.value - within and t.user_attrs.get("seconds", math.inf) <= limit]
    return max(quicker, key=lambda t: (t.value, -t.number)) if quicker else best


def apply(path: Path, plan: Plan, study: optuna.Study, chosen: FrozenTrial) -> list[str]:
    """Write the chosen trial's values (and the fixed ones) into params.yaml, keeping its layout
    and comments; each written key's comment names the study. Returns the lines it changed."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    document = yaml.load(path.read_text())
    best = study.best_trial
    note = f"search {study.study_name} trial {chosen.number}: {chosen.value:.4f}"
    if best.number != chosen.number:
        note += f" in {chosen.user_attrs.get('seconds', 0):.0f} s (best {best.value:.4f}, trial {best.number}, " \
                f"{best.user_attrs.get('seconds', 0):.0f} s)"
    assignment = {**plan.fixed, **chosen.params}
    changed = []
    for name, value in assignment.items():
        section, key = name.split(".", 1)
        if plan.target in SAMPLED:
            generation = document["generation"]
            if not isinstance(generation.get("searched"), CommentedMap):
                generation["searched"] = CommentedMap()
            if not isinstance(generation["searched"].get(plan.target), CommentedMap):
                generation["searched"][plan.target] = CommentedMap()
            mapping = generation["searched"][plan.target]
            mapping.fa.set_block_style()  # {} was flow style: one key a line, as the rest of the file
        else:
            mapping = document[section]
        mapping[key] = value
        set_comment(mapping, key, note)
        changed.append(f"{name}: {value}")
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            yaml.dump(document, f)
    return changed


COMMENT_COLUMN = 26  # where params.yaml's end-of-line comments start
NOTE = re.compile(r"^search \S+ trial \d+: [^;]*(; |$)")  # a note of an earlier search, replaced


def set_comment(mapping, key: str, note: str) -> None:
    """Start ``key``'s end-of-line comment with ``note``, in place of an earlier search's note;
    the comment's own words, and the blank lines and comments after the line (which ruamel
    keeps in the same token), stay. A key without a comment gets one at ``COMMENT_COLUMN``."""
    token = mapping.ca.items.get(key, [None, None, None, None])[2]
    text, newline, rest = token.value.partition("\n") if token is not None else ("", "\n", "")
    words = NOTE.sub("", text.strip().removeprefix("#").strip())
    value = f"# {note}{'; ' + words if words else ''}{newline}{rest}"
    column = token.column if token is not None and text.strip() else COMMENT_COLUMN
    mapping.yaml_add_eol_comment(value, key, column=column)


# --- the command --------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=TARGETS, help="what to search: a trained model or a sampled strategy")
    parser.add_argument("--study", help="the study's name in the storage (default: the target's name)")
    parser.add_argument("--trials", type=int, help="trials the study holds when done (default: search.<target>.trials)")
    parser.add_argument("--storage", help="a journal file or a SQLAlchemy URL (default: search.storage)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default: 1)")
    parser.add_argument("--device", help="auto, cpu or cuda (default: the target's own device param)")
    parser.add_argument("--split", type=Path, default=Path("data/split"))
    parser.add_argument("--model", type=Path, default=Path("data/model"), help="a strategy's trained GPT-2")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--no-apply", action="store_true", help="leave params.yaml as it is")
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)


STOPPED = ("the search stopped: its running trial is marked failed, the study keeps every other and params.yaml is "
           "as it was; the same command goes on where it stopped")


def run(args: argparse.Namespace) -> str:
    """Search until the study holds its trials, then write the winner; what to print."""
    try:
        return search(args)
    except KeyboardInterrupt as interruption:
        interruption.message = STOPPED  # what genrec.cli.guarded says
        raise


def search(args: argparse.Namespace) -> str:
    if args.workers < 1 or (args.trials is not None and args.trials < 1):
        raise UserError("--workers and --trials must be at least 1")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our one line per trial; a stop is one line too
    values = genrec_params.load(args.params)
    the_plan = plan(values, args.target, args.study, args.trials)
    if args.storage:
        the_plan = Plan(**{**the_plan.__dict__, "settings": the_plan.settings.model_copy(
            update={"storage": args.storage})})
    storage = open_storage(the_plan.settings.storage)
    objective = Objective(the_plan, values, args.split, args.model, args.device)
    study = open_study(the_plan, storage, objective.identity, values, args.worker_index)
    fail_dead(study)
    children = spawn(args) if args.worker_index == 0 else []
    threads = os.cpu_count() or 1
    import torch
    torch.set_num_threads(max(1, threads // args.workers))
    log = (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        work(study, objective, log)
        failed = [child.wait() for child in children]
    except BaseException:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait()
        raise
    finally:
        if args.worker_index == 0:
            with shielded():
                write_tables(storage, tables_folder(the_plan.settings.storage))
    if args.worker_index:
        return ""
    if any(failed):
        raise UserError(f"{sum(map(bool, failed))} of the {len(children)} other workers failed (their messages are "
                        "above); run the search again to finish the study")
    if counted(study) < the_plan.trials:  # another machine's worker still runs
        return f"study {the_plan.study}: {counted(study)} of {the_plan.trials} trials so far; params.yaml unchanged"
    # A strategy's settings here cost about the same (num_sequences is fixed): its best trial wins.
    chosen = winner(study, the_plan.settings.within if the_plan.target in TRAINED else 0.0)
    summary = (f"study {the_plan.study}: {the_plan.trials} trials, best validation NDCG@10 {study.best_value:.4f} "
               f"(trial {study.best_trial.number}); chosen trial {chosen.number} ({chosen.value:.4f}, "
               f"{chosen.user_attrs.get('seconds', 0):.0f} s)")
    if args.no_apply:
        return summary + "; params.yaml unchanged (--no-apply)"
    changed = apply(args.params, the_plan, study, chosen)
    return summary + f" -> {args.params}: " + ", ".join(changed)


def spawn(args: argparse.Namespace) -> list[subprocess.Popen]:
    """The other ``--workers - 1`` workers: this command again, each with its own index (its
    own sampler seed), writing its trials to the same study."""
    command = [sys.executable, "-m", "genrec.search"]
    passed = [args.target, "--split", str(args.split), "--model", str(args.model), "--params", str(args.params),
              "--study", args.study or args.target, *(["--trials", str(args.trials)] if args.trials else []),
              *(["--storage", args.storage] if args.storage else []),
              *(["--device", args.device] if args.device else []),
              "--workers", str(args.workers)]
    return [subprocess.Popen([*command, *passed, "--worker-index", str(index)]) for index in range(1, args.workers)]


def main(argv: list[str] | None = None) -> None:
    """``python -m genrec.search`` (``genrec search`` calls ``run``)."""
    from genrec.cli import guarded
    parser = argparse.ArgumentParser(prog="genrec search")
    add_arguments(parser)
    guarded(lambda: run(parser.parse_args(argv)), STOPPED)


if __name__ == "__main__":
    main()
