"""Benchmark the data stages (docs/method.md §2 preprocess, §3 split) on an ML-20M-sized table.

Generates a synthetic raw interactions table in memory (seeded numpy, a few seconds),
then times ``genrec.preprocess.preprocess`` and ``genrec.split.split`` (leave_last_n and
global_time), each in a fresh child process (multiprocessing 'spawn'), and reports
wall seconds and the peak resident memory of that process during the step.

Peak memory: the child loads its input from .npy files, builds the DataFrame, then
resets the kernel's RSS high-water mark (``echo 5 > /proc/self/clear_refs``) just before
the step and reads ``VmHWM`` from ``/proc/self/status`` right after it, so the figure
is the true peak of the step (input + interpreter + the step's working memory), not
polluted by loading. A psutil polling thread (every 5 ms) runs as a cross-check and as
the fallback where clear_refs is not available.

Usage:
    .venv/bin/python benchmarks/bench_data.py             # full size: 20M rows
    .venv/bin/python benchmarks/bench_data.py --rows 1000000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FULL_ROWS = 20_000_000
FULL_USERS = 138_000
FULL_ITEMS = 27_000
MIN_USER_LENGTH = 20
MAX_USER_LENGTH = 9_254  # ML-20M's longest user
GOAL_SECONDS = 120.0
GOAL_BYTES = 4 * 1024**3
COLUMNS = ("user_id", "item_id", "rating", "timestamp")


# ----------------------------------------------------------------------------- generation

def user_lengths(rng: np.random.Generator, n_users: int, n_rows: int) -> np.ndarray:
    """Heavy-tailed per-user lengths (lognormal, median ~80 before scaling), each in
    [MIN_USER_LENGTH, MAX_USER_LENGTH], summing exactly to ``n_rows``."""
    if n_users * MIN_USER_LENGTH > n_rows:
        raise SystemExit(f"{n_users} users x {MIN_USER_LENGTH} > {n_rows} rows; lower --users")
    hi = max(MAX_USER_LENGTH, -(-n_rows // n_users))
    raw = rng.lognormal(mean=np.log(80.0), sigma=1.05, size=n_users)
    # The clipped, scaled sum is monotone in the scale: bisect for the right one.
    lo_s, hi_s = 1e-6, 1e6
    for _ in range(100):
        mid = (lo_s * hi_s) ** 0.5
        if np.clip(raw * mid, MIN_USER_LENGTH, hi).sum() < n_rows:
            lo_s = mid
        else:
            hi_s = mid
    lengths = np.floor(np.clip(raw * lo_s, MIN_USER_LENGTH, hi)).astype(np.int64)
    short = n_rows - int(lengths.sum())  # >= 0: floor of a sum below n_rows
    while short > 0:  # hand out the remainder, one row per user, to users under the cap
        room = np.flatnonzero(lengths < hi)
        pick = rng.choice(room, size=min(short, len(room)), replace=False)
        lengths[pick] += 1
        short = n_rows - int(lengths.sum())
    return lengths


def generate(n_rows: int, n_users: int, n_items: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = user_lengths(rng, n_users, n_rows)
    starts = np.cumsum(lengths) - lengths

    # Raw ids as in a real file: users 1..~U with a few gaps, items sparse in 1..~5N.
    user_raw = np.sort(rng.choice(int(n_users * 1.01) + 1, size=n_users, replace=False)) + 1
    item_raw = np.sort(rng.choice(n_items * 5, size=n_items, replace=False)) + 1
    user_of_row = np.repeat(np.arange(n_users), lengths)

    # Zipf-like item popularity, P(rank r) ~ (r + 440)^-2.5, drawn by the inverse CDF of
    # its continuous version (at 20M rows: top item ~68k rows, ~3/4 of the items with 5+
    # users, as in ML-20M); ranks go to item ids at random. Rows are iid in the item (and
    # rating), so these columns need no shuffling below.
    a, k = 2.5, 440.0
    b = 1.0 - a
    u = rng.random(n_rows)
    u *= (n_items + k) ** b - k ** b
    u += k ** b
    np.power(u, 1.0 / b, out=u)
    u -= k
    rank = u.astype(np.int64)
    del u
    np.clip(rank, 0, n_items - 1, out=rank)
    item_id = item_raw[rng.permutation(n_items)][rank]
    del rank

    # Timestamps increasing within user with ties: per-user start in 1995..2015, then
    # gaps that are 0 (same second) 25% of the time, minutes usually, days sometimes.
    gaps = rng.exponential(300.0, size=n_rows)
    gaps[rng.random(n_rows) < 0.02] *= 2_000.0
    gaps[rng.random(n_rows) < 0.25] = 0.0
    steps = gaps.astype(np.int64)
    del gaps
    steps[starts] = 0
    np.cumsum(steps, out=steps)
    first = rng.integers(789_000_000, 1_420_000_000, size=n_users)
    timestamp = steps - np.repeat(steps[starts] - first, lengths)
    del steps

    # Ratings 0.5..5.0 with ML-like frequencies (in percent), via a 100-entry table.
    percent = [1, 3, 2, 7, 5, 20, 15, 27, 8, 12]
    table = np.repeat(np.arange(1, 11, dtype=np.float32) / 2, percent)
    rating = table[rng.integers(0, 100, size=n_rows, dtype=np.int32)]

    # Shuffled row order, like a file not sorted by user and time.
    order = rng.permutation(n_rows)
    return {
        "user_id": user_raw[user_of_row[order]],
        "item_id": item_id,
        "rating": rating,
        "timestamp": timestamp[order],
    }


# ----------------------------------------------------------------------------- memory

def _rss_hwm_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class RssPoller(threading.Thread):
    def __init__(self, interval: float = 0.005):
        super().__init__(daemon=True)
        import psutil
        self.proc = psutil.Process()
        self.interval = interval
        self.peak = self.proc.memory_info().rss
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return self.peak


# ----------------------------------------------------------------------------- child steps

def _load_frame(folder: Path, columns):
    import pandas as pd
    arrays = {c: np.load(folder / f"{c}.npy") for c in columns}
    frame = pd.DataFrame(arrays, copy=False)
    del arrays
    return frame


def _child(step: str, workdir: str, conn) -> None:
    try:
        import gc

        import pandas as pd  # noqa: F401  (imported before the baseline)

        from genrec import params
        from genrec.preprocess import PreprocessParams, preprocess, statistics
        from genrec.split import SplitParams, split

        work = Path(workdir)
        config = params.load(ROOT / "params.yaml")
        if step == "preprocess":
            frame = _load_frame(work / "raw", COLUMNS)
            run = lambda: preprocess(frame, params.section(config, "preprocess", PreprocessParams))  # noqa: E731
        else:
            frame = _load_frame(work / "prepared", ("user_id", "item_id", "timestamp", "rating"))
            method = step.split(":", 1)[1]
            settings = params.section(config, "split", SplitParams).model_copy(update={"method": method})
            run = lambda: split(frame, settings)  # noqa: E731
        gc.collect()

        baseline = _status_bytes("VmRSS")
        exact = _rss_hwm_reset()
        poller = RssPoller()
        poller.start()
        t0 = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - t0
        polled = poller.stop()
        hwm = _status_bytes("VmHWM") if exact else None

        info = {"seconds": seconds, "baseline": baseline, "peak": hwm if hwm is not None else polled,
                "polled": polled, "exact": exact and hwm is not None}
        if step == "preprocess":
            t1 = time.perf_counter()
            info["stats"] = statistics(result.interactions)
            info["stats_seconds"] = time.perf_counter() - t1
            out = work / "prepared"
            out.mkdir(exist_ok=True)
            for c in ("user_id", "item_id", "timestamp", "rating"):
                np.save(out / f"{c}.npy", result.interactions[c].to_numpy())
            info["kept_users"] = len(result.users)
            info["kept_items"] = len(result.items)
        else:
            info["rows"] = {"train": len(result.train), "validation": len(result.validation),
                            "test": len(result.test)}
            info["excluded_users"] = result.excluded_users
        conn.send(("ok", info))
    except BaseException as error:  # report anything, including MemoryError
        import traceback
        conn.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_step(step: str, workdir: Path) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(step, str(workdir), child))
    proc.start()
    child.close()
    try:
        status, payload = parent.recv()
    except EOFError:
        proc.join()
        raise SystemExit(f"step {step}: child died (exit code {proc.exitcode}; killed for memory?)")
    proc.join()
    if status != "ok":
        raise SystemExit(f"step {step} failed:\n{payload}")
    return payload


# ----------------------------------------------------------------------------- main

def gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024**3:6.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=FULL_ROWS, help="raw interactions (default 20,000,000)")
    parser.add_argument("--users", type=int, default=None, help="default: 138,000 scaled with --rows")
    parser.add_argument("--items", type=int, default=None, help="default: 27,000 scaled with sqrt(--rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed)")
    args = parser.parse_args()

    scale = args.rows / FULL_ROWS
    n_users = args.users or max(2, round(FULL_USERS * scale))
    n_items = args.items or max(100, round(FULL_ITEMS * scale ** 0.5))

    print(f"genrec data benchmark: {args.rows:,} rows, {n_users:,} users, {n_items:,} items, "
          f"seed {args.seed}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}, numpy {np.__version__}")

    t0 = time.perf_counter()
    raw = generate(args.rows, n_users, n_items, args.seed)
    gen_seconds = time.perf_counter() - t0
    nbytes = sum(a.nbytes for a in raw.values())
    print(f"generated in {gen_seconds:.2f} s ({nbytes / 1024**2:,.0f} MiB in memory); "
          f"distinct users {len(np.unique(raw['user_id'])):,}, items {len(np.unique(raw['item_id'])):,}")

    tmp = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        (tmp / "raw").mkdir(parents=True, exist_ok=True)
        for c, a in raw.items():
            np.save(tmp / "raw" / f"{c}.npy", a)
        del raw

        results = {}
        for step in ("preprocess", "split:leave_last_n", "split:global_time"):
            print(f"running {step} ...", flush=True)
            results[step] = info = run_step(step, tmp)
            print(f"  {info['seconds']:.2f} s, peak RSS {gib(info['peak']).strip()} "
                  f"(input+interpreter before the step {gib(info['baseline']).strip()}; "
                  f"polled peak {gib(info['polled']).strip()})", flush=True)
            if step == "preprocess":
                print(f"  statistics() in {info['stats_seconds']:.2f} s:")
                for k, v in info["stats"].items():
                    print(f"    {k:20s} {v:,}" if isinstance(v, int) else f"    {k:20s} {v}")
            else:
                print(f"  rows {info['rows']}, excluded users {info['excluded_users']:,}")
    finally:
        if not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)

    pre = results["preprocess"]
    print()
    print(f"{'step':24s} {'seconds':>9s} {'peak RSS':>11s} {'step growth':>12s}")
    print("-" * 60)
    print(f"{'generate (not timed in goal)':24s} {gen_seconds:9.2f}")
    for step, info in results.items():
        growth = None if info["baseline"] is None else info["peak"] - info["baseline"]
        print(f"{step:24s} {info['seconds']:9.2f} {gib(info['peak']):>11s} {gib(growth):>12s}")
    print("-" * 60)
    verdicts = []
    for method in ("leave_last_n", "global_time"):
        sp = results[f"split:{method}"]
        total = pre["seconds"] + sp["seconds"]
        peak = max(pre["peak"], sp["peak"])
        ok = total < GOAL_SECONDS and peak < GOAL_BYTES
        verdicts.append(ok)
        print(f"{'preprocess + ' + method:30s} {total:7.2f} s, peak {gib(peak).strip()}: "
              f"{'OK' if ok else 'over'}")
    exact = all(info["exact"] for info in results.values())
    print(f"(peak = VmHWM {'after reset via /proc/self/clear_refs' if exact else 'or polled RSS'}, "
          "whole child process incl. its input)")
    met = all(verdicts)
    print(f"GOAL (preprocess + split < {GOAL_SECONDS:.0f} s and < {GOAL_BYTES / 1024**3:.0f} GiB peak, "
          f"{os.cpu_count()} CPUs, {args.rows:,} rows): {'MET' if met else 'NOT MET'}")
    if args.rows != FULL_ROWS:
        print(f"note: scaled run ({args.rows:,} rows); the goal is defined for {FULL_ROWS:,} rows")


if __name__ == "__main__":
    main()
