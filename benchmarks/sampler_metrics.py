"""Do the engine's fast sampler and generate()'s draws give the same metrics, within noise?

On the pipeline's trained model (data/model) and test users (data/split), runs the
sampled strategies (params.yaml's generation settings) three ways for several seeds:
the Hugging Face generate() reference path, the engine with generate()'s own
torch.multinomial draws (``exact``: must equal the reference), and the engine's default
inverse-CDF sampler. Prints NDCG@10 per seed and the mean and spread over seeds.

    python benchmarks/sampler_metrics.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import torch

from genrec import engine, metrics, params, reference
from genrec.device import resolve_device
from genrec.model import load
from genrec.sequences import UserSequences
from genrec.strategies import STRATEGIES, read_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    config = read_params(params.load())
    device = resolve_device(config.device, "generation.device")
    model = load("data/model", device)
    meta = json.load(open("data/split/meta.json"))
    train = pd.read_parquet("data/split/train.parquet")
    test = pd.read_parquet("data/split/test.parquet")
    sequences = UserSequences.from_frame(train, meta["num_users"])
    users = np.sort(test["user_id"].unique())
    window = model.config.n_positions - config.horizon
    num_items = model.config.vocab_size - 1
    decoder = engine.Decoder(model)
    batches = [(torch.from_numpy(sequences.last_items(b, window, side="left")).to(device),
                sequences.seen_mask(b, num_items, device))
               for b in np.array_split(users, max(1, len(users) // args.batch))]

    def ndcg(recs: torch.Tensor) -> float:
        return metrics.evaluate(recs.numpy(), users, test, train["item_id"].nunique())[0][f"ndcg@{config.horizon}"]

    def engine_path(strategy: str, exact: bool) -> torch.Tensor:
        return torch.cat([STRATEGIES[strategy].batch(decoder, p, s, config, exact=exact)[0].cpu() for p, s in batches])

    def reference_path(strategy: str) -> torch.Tensor:
        return torch.cat([reference.generate(model, p, s, config.horizon, strategy=strategy,
                                             num_sequences=config.num_sequences, temperature=config.temperature,
                                             top_k=config.top_k).cpu() for p, s in batches])

    print(f"{len(users)} test users; temperature {config.temperature}, top_k {config.top_k}, "
          f"{config.num_sequences} sequences for rra/ra; NDCG@{config.horizon}")
    print(f"{'strategy':<10}{'seed':>6}{'generate()':>12}{'exact':>10}{'fast':>10}")
    for strategy in ("sampling", "rra", "ra"):
        rows = []
        for seed in range(args.seeds):
            results = []
            for run in (lambda: reference_path(strategy), lambda: engine_path(strategy, True),
                        lambda: engine_path(strategy, False)):
                torch.manual_seed(seed)
                results.append(run())
            assert torch.equal(results[0], results[1]), "the exact engine must equal generate()"
            rows.append([ndcg(r) for r in results])
            print(f"{strategy:<10}{seed:>6}" + "".join(f"{v:>10.4f}  " for v in rows[-1]))
        rows = np.array(rows)
        print(f"{strategy:<10}{'mean':>6}" + "".join(f"{m:>10.4f}  " for m in rows.mean(0))
              + f"   spread over seeds (max-min): {np.ptp(rows[:, 0]):.4f} / {np.ptp(rows[:, 2]):.4f}")


if __name__ == "__main__":
    main()
