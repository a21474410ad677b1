"""Timing and peak memory for the benchmark scripts (imported from benchmarks/)."""

from __future__ import annotations

import threading
import time

import psutil
import torch


def timed(run, device) -> tuple[float, float]:
    """Seconds and peak memory in MB of ``run()``: CUDA's peak allocation, or on the CPU the
    peak resident memory of the whole process while it ran (sampled every 2 ms)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        run()
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**20
    process = psutil.Process()
    base = process.memory_info().rss
    peak, done = [base], threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return seconds, max(peak[0], process.memory_info().rss) / 2**20
