"""Learning curves of a trained model: one way for every training stage (GPT-2 and the
trained baselines) to log an epoch to dvclive and to the progress display, and to write
the summary of the best epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dvclive import Live

from genrec.progress import Progress
from genrec.training import EpochResult, TrainResult


CURVES = ("metrics.json", "plots")  # what the folder holds


class LearningCurves:
    """``with LearningCurves(folder, max_epochs, label) as curves``: pass ``curves.log`` as a
    training's ``on_epoch``, then ``curves.summarize(result)``. The folder holds dvclive's
    ``metrics.json`` (the best epoch) and ``plots/metrics/`` (one value per validated epoch,
    at step = epochs trained)."""

    def __init__(self, folder: str | Path, max_epochs: int, label: str):
        self.live = Live(str(folder), dvcyaml=False, save_dvc_exp=False)
        self.bar = Progress(max_epochs, label, "epochs")

    def log(self, epoch: EpochResult) -> None:
        self.live.step = epoch.epoch  # BPR validates every bpr.eval_every epochs: the x axis is epochs
        for key, value in epoch.train.items():
            self.live.log_metric(f"train/{key}", value)
        self.live.log_metric("val/ndcg@10", epoch.ndcg)
        self.live.log_metric("val/hr@10", epoch.hit_rate)
        self.live.log_metric("epoch_seconds", round(epoch.seconds, 3))
        self.live.next_step()
        self.bar.update(epoch.epoch - self.bar.done, **epoch.train, **{"val ndcg@10": epoch.ndcg},
                        seconds=f"{epoch.seconds:.1f}")

    def summarize(self, result: TrainResult) -> None:
        """The summary is the best epoch, not the last one: its weights are the stage's model."""
        self.live.summary = {
            "best_epoch": result.best.epoch,
            "epochs": result.history[-1].epoch,
            "train": result.best.train,
            "val": {"ndcg@10": result.best.ndcg, "hr@10": result.best.hit_rate},
        }
        self.live.make_summary()

    def __enter__(self) -> LearningCurves:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()
        self.live.end()
