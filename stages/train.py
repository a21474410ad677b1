"""Stage `train`: GPT-2 next-item training with early stopping; dvclive learning curves."""

import argparse
import json

import pandas as pd
import torch
from dvclive import Live

from genrec import params
from genrec.errors import stage_main
from genrec.io import atomic_paths, require_input
from genrec.model import ModelParams, build, resolve_device
from genrec.progress import Progress
from genrec.sequences import UserSequences
from genrec.training import TrainParams, train


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="data/split")
    parser.add_argument("--out", default="data/model")
    parser.add_argument("--live", default="metrics/train")
    args = parser.parse_args()

    config = params.load()
    model_params = params.section(config, "model", ModelParams)
    train_params = params.section(config, "train", TrainParams)
    device = resolve_device(train_params.device, "train.device")

    meta = json.loads(open(require_input(f"{args.split}/meta.json", "split")).read())
    sequences = UserSequences.from_frame(pd.read_parquet(f"{args.split}/train.parquet"), meta["num_users"])
    first = pd.read_parquet(f"{args.split}/validation.parquet").query("position == 0").sort_values("user_id")
    torch.manual_seed(train_params.seed)  # the initial weights come from train.seed too
    model = build(meta["num_items"], model_params)

    # The model and the learning curves are written to temporaries and moved into place together
    # at the end: an interrupted or failed run leaves the previous set, never a partial summary.
    # The progress total is max_epochs; early stopping usually ends the run sooner.
    with atomic_paths(args.out, args.live) as (out, live_dir), \
            Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live, \
            Progress(train_params.max_epochs, "train GPT-2", "epochs") as bar:
        def log(epoch) -> None:
            live.log_metric("train/loss", epoch.loss)
            live.log_metric("val/ndcg@10", epoch.ndcg)
            live.log_metric("val/hr@10", epoch.hit_rate)
            live.log_metric("epoch_seconds", round(epoch.seconds, 3))
            live.next_step()
            bar.update(loss=epoch.loss, **{"val ndcg@10": epoch.ndcg}, seconds=round(epoch.seconds, 1))

        result = train(model, sequences, first["user_id"].to_numpy(), first["item_id"].to_numpy(),
                       train_params, device, on_epoch=log)
        # The summary is the best epoch, not the last one: it is the model the stage outputs.
        live.summary = {
            "best_epoch": result.best.epoch,
            "epochs": len(result.history),
            "train": {"loss": result.best.loss},
            "val": {"ndcg@10": result.best.ndcg, "hr@10": result.best.hit_rate},
        }
        live.make_summary()
        model.load_state_dict(result.best_state)
        model.save_pretrained(out)  # safetensors weights + config.json
    print(f"best epoch {result.best.epoch} of {len(result.history)}: validation NDCG@10 "
          f"{result.best.ndcg:.4f}, HR@10 {result.best.hit_rate:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
