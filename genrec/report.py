"""The comparison report: one table of strategies × metrics, and the per-position figure."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on the machines that run the pipeline
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from genrec.baselines import NAMES as BASELINES  # noqa: E402

def table(metrics_dir: Path, names: list[str]) -> pd.DataFrame:
    rows = {name: json.loads((metrics_dir / f"{name}.json").read_text()) for name in names}
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")
    return frame.drop(columns=["users"], errors="ignore")


def markdown(frame: pd.DataFrame) -> str:
    header = "| method | " + " | ".join(frame.columns) + " |"
    rule = "|---|" + "---:|" * len(frame.columns)
    lines = [header, rule]
    for name, row in frame.iterrows():
        best = [frame[c].max() == row[c] for c in frame.columns]
        cells = [f"**{v:.4f}**" if b else f"{v:.4f}" for v, b in zip(row, best)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(metrics_dir: Path, names: list[str], path: Path) -> None:
    curves = {name: pd.read_csv(metrics_dir / "positions" / f"{name}.csv") for name in names}
    panels = [("hit_rate_at_p", "HR@10 against the p-th future item"),
              ("ndcg_at_p", "NDCG@10 against the p-th future item"),
              ("ndcg_first_p", "NDCG@10 against the first p items")]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.2))
    for ax, (column, title) in zip(axes, panels):
        for name, curve in curves.items():
            dashed = name in BASELINES  # the comparison models, apart from the generation strategies
            ax.plot(curve["position"], curve[column], marker="o", markersize=3, label=name,
                    linestyle="--" if dashed else "-")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("position p in the held-out future")
        ax.set_xticks(range(1, len(next(iter(curves.values()))) + 1))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
