"""Stage `train`: GPT-2 next-item training with early stopping; dvclive learning curves.

With ``train.processes`` above 1 the stage starts itself again under ``torchrun`` with that
many data-parallel processes (genrec.distributed); rank 0 validates, logs and writes the model."""

from genrec import distributed
from genrec import model as gpt2
from genrec import params
from genrec.curves import CURVES, LearningCurves
from genrec.device import keep_freed_memory, resolve_device
from genrec.errors import stage_main
from genrec.io import atomic_paths, check_output, stage_arguments
from genrec.model import MODEL, ModelParams
from genrec.sequences import Split
from genrec.training import Data, TrainParams


@stage_main
def main() -> None:
    parser = stage_arguments(__doc__, split="data/split", out="data/model", live="metrics/train")
    args = parser.parse_args()
    check_output(args.out, "--out", MODEL)
    check_output(args.live, "--live", CURVES)
    keep_freed_memory()

    config = params.load()
    model_params = params.section(config, "model", ModelParams)
    train_params = params.section(config, "train", TrainParams)
    device = resolve_device(train_params.device, "train.device")
    distributed.relaunch("stages.train", train_params.processes, device, "train.processes")
    data = Data.from_split(Split.load(args.split))
    group = distributed.start(device)
    try:
        if not group.main:  # trains its share of each epoch; rank 0 writes
            gpt2.fit(data, model_params, train_params, group.device, group=group)
            return
        # The model and the learning curves are written to temporaries and moved into place together
        # at the end: an interrupted or failed run leaves the previous set, never a partial summary.
        # The progress total is max_epochs; early stopping usually ends the run sooner.
        with atomic_paths(args.out, args.live) as (out, live_dir), \
                LearningCurves(live_dir, train_params.max_epochs, "train GPT-2") as curves:
            model, result = gpt2.fit(data, model_params, train_params, group.device, on_epoch=curves.log, group=group)
            curves.summarize(result)
            gpt2.save(model, out)
    finally:
        distributed.stop()
    processes = f" on {group.world} processes" if group.world > 1 else ""
    print(f"best epoch {result.best.epoch} of {len(result.history)}{processes}: validation NDCG@10 "
          f"{result.best.ndcg:.4f}, HR@10 {result.best.hit_rate:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
