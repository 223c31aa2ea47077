"""The book's figures: stored results in, a matplotlib Figure out (labelled axes, a legend)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from flatcomp.metrics import MAIN_METRIC
from flatcomp.tables import TASK_NAMES

OPTIMIZER_COLORS = {"adam": "tab:blue", "sam": "tab:orange", "swa": "tab:green"}


def length_histograms(cards: list[dict], max_length: int) -> plt.Figure:
    """Token lengths of each task's training rows, with the profile's truncation length."""
    cards = [c for c in cards if c["available"] and "length_histogram" in c]
    cols = 3
    fig, axes = plt.subplots(-(-len(cards) // cols), cols, figsize=(11, 2.4 * -(-len(cards) // cols)),
                             sharex=True, squeeze=False)
    for ax, card in zip(axes.flat, cards):
        edges = np.asarray(card["length_bins"])
        counts = np.asarray(card["length_histogram"])
        ax.bar(edges[:-1], counts / counts.sum(), width=np.diff(edges), align="edge",
               color="tab:gray")
        ax.axvline(max_length, color="tab:red", linestyle="--", label=f"max length {max_length}")
        ax.set_title(f"{TASK_NAMES[card['task']]} ({card['train_rows']:,} rows)", fontsize=10)
        ax.set_xlim(0, 256)
    for ax in axes.flat[len(cards):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("tokens per example")
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of rows")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def sweep_curves(runs: list[dict]) -> plt.Figure:
    """Dev score after each epoch, per task, for every optimizer and learning rate tried."""
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.6), squeeze=False)
    lrs = sorted({r["lr"] for r in runs})
    styles = dict(zip(lrs, ["-", "--", ":", "-."]))
    for ax, task in zip(axes[0], tasks):
        metric = MAIN_METRIC[task]
        for r in (r for r in runs if r["task"] == task):
            epochs = [h["epoch"] for h in r["history"]]
            ax.plot(epochs, [100 * h[metric] for h in r["history"]], marker="o", markersize=3,
                    linestyle=styles[r["lr"]], color=OPTIMIZER_COLORS[r["optimizer"]],
                    label=f"{r['optimizer']}, lr {r['lr']:g}")
        ax.set_title(TASK_NAMES[task])
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"dev {metric} (%)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
