"""Generation speed: the engine against the Hugging Face generate() reference path.

In one run, on the same model and the same users, times `greedy`, `beam` (3 beams),
`rra` (20 sequences) and `ra` (30 sequences) through both paths, at ml-100k's and at
ML-1M's catalogue size, and prints users per second, the ratio and peak memory. With
`--profile`, prints where the engine's time goes for `rra`.

    python benchmarks/bench_generation.py [--users 128] [--device auto] [--profile]

The model is a random GPT-2 of the paper's size (speed does not depend on the weights);
every user has a full 118-item history (the 128-position window less the 10 generated).
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch

from genrec import engine, reference
from genrec import params as genrec_params
from genrec.device import resolve_device
from genrec.model import ModelParams, build
from genrec.sequences import UserSequences
from genrec.strategies import STRATEGIES, GenerationParams, auto_batch_size
from measure import timed

CASES = [("greedy", {}), ("beam", {"num_beams": 3}), ("rra", {"num_sequences": 20}), ("ra", {"num_sequences": 30})]
HORIZON = 10
MODEL = genrec_params.section(genrec_params.load(Path(__file__).resolve().parents[1] / "params.yaml"), "model",
                             ModelParams)  # the repository's model size


def histories(users: int, items: int, length: int, seed: int = 0) -> UserSequences:
    rng = np.random.default_rng(seed)
    # Distinct items per user, as after preprocessing.
    flat = np.concatenate([rng.choice(np.arange(1, items + 1), length, replace=False) for _ in range(users)])
    return UserSequences(indptr=np.arange(users + 1) * length, items=flat)


def batches(sequences: UserSequences, batch_size: int, window: int, num_items: int, device):
    users = np.arange(sequences.num_users)
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        prompts = torch.from_numpy(sequences.last_items(batch, window, side="left")).to(device)
        yield prompts, sequences.seen_mask(batch, num_items, device)


def bench_catalogue(num_items: int, users: int, reference_users: int, device, profile: bool) -> list[dict]:
    torch.manual_seed(0)
    model = build(num_items, MODEL).to(device).eval()
    window = model.config.n_positions - HORIZON
    sequences = histories(users, num_items, window)
    rows = []
    for strategy, extra in CASES:
        params = GenerationParams(horizon=HORIZON, top_k=50, temperature=0.5, batch_size=0, **extra)
        batch_size = auto_batch_size(strategy, params, num_items, window, model.config.n_embd,
                                     model.config.n_layer, device)
        decoder = engine.Decoder(model)

        outputs: dict[str, list[torch.Tensor]] = {"engine": [], "reference": []}

        def run_engine() -> None:
            outputs["engine"] = [STRATEGIES[strategy].batch(decoder, prompts, seen, params)[0].cpu()
                                 for prompts, seen in batches(sequences, batch_size, window, num_items, device)]

        subset = UserSequences(sequences.indptr[: reference_users + 1], sequences.items)

        def run_reference() -> None:
            outputs["reference"] = [
                reference.generate(model, prompts, seen, HORIZON, strategy=strategy, num_beams=params.num_beams,
                                   num_sequences=params.num_sequences, temperature=params.temperature,
                                   top_k=params.top_k).cpu()
                for prompts, seen in batches(subset, 16, window, num_items, device)]

        run_engine()  # warm-up (allocator, kernels)
        engine_s, engine_mb = timed(run_engine, device)
        reference_s, reference_mb = timed(run_reference, device)
        same = None
        if strategy in ("greedy", "beam"):  # deterministic: the two paths must agree item for item
            differ = (torch.cat(outputs["engine"])[:reference_users] != torch.cat(outputs["reference"])).any(dim=1)
            same = f"{int(differ.sum())} of {reference_users} differ"
        rows.append({"same": same,
            "catalogue": num_items, "strategy": strategy + (f" ({extra and list(extra.values())[0]})" if extra else ""),
            "reference_ups": reference_users / reference_s, "engine_ups": users / engine_s,
            "reference_mb": reference_mb, "engine_mb": engine_mb, "batch": batch_size,
        })
        if profile and strategy == "rra":
            with torch.profiler.profile() as prof:
                run_engine()
            print(f"\nProfile of the engine, rra, {num_items} items:")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=256, help="users for the engine")
    parser.add_argument("--reference-users", type=int, default=32, help="users for the slow reference path")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device, "--device")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); torch {torch.__version__}; generate() in batches of 16 users; "
          f"top_k 50, temperature 0.5; {HORIZON} items per user")
    rows = []
    for num_items in (1349, 3416):  # ml-100k's and ML-1M's catalogues
        rows += bench_catalogue(num_items, args.users, args.reference_users, device, args.profile)
    print(f"\n| items | strategy | generate() users/s | engine users/s | speed-up | generate() peak MB | engine peak MB | engine batch | users whose items differ |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['catalogue']} | {r['strategy']} | {r['reference_ups']:.1f} | {r['engine_ups']:.1f} | "
              f"{r['engine_ups'] / r['reference_ups']:.1f}x | {r['reference_mb']:.0f} | {r['engine_mb']:.0f} | {r['batch']} | "
              f"{r['same'] or 'n/a (sampled)'} |")


if __name__ == "__main__":
    main()
