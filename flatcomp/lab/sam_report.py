"""Chapter 3, "SAM fine-tuning": the fine-tunes of Adam, SAM and SWA, the tuned protocol's grid,
their flatness and their cost, as tables, figures and verdict lines. Chapter 1 shows its Adam
baselines with :func:`finetune_table` too."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from flatcomp.lab.paper import FULL_BERT_BASE
from flatcomp.lab.reporting import (BOOK_WIDTH, OPTIMIZER_COLORS, OPTIMIZER_NAMES, SMALL,
                                    TASK_NAMES, by_task_and_optimizer, label_task_panel,
                                    legend_below, majority_class, one_environment_per,
                                    paired_rows, paired_table, pct, pm, pm_sig, task_block,
                                    task_of, task_panels, with_notes)
from flatcomp.metrics import MAIN_METRIC
from flatcomp.stats import mean_std

FLATNESS_MEASURES = {"sharpness": "sharpness (loss rise, rho = 0.05)",
                     "top_eigenvalue": "top Hessian eigenvalue", "trace": "Hessian trace"}


def finetune_table(runs: list[dict], cards: list[dict]) -> pd.DataFrame:
    """Mean ± std over seeds of the best dev score, per task and optimizer, beside the majority
    class of the dev set and the paper's full BERT-base score. Each task's runs are of one
    environment (:func:`one_environment_per`)."""
    runs, notes = one_environment_per(runs, task_of, task_block("fine-tunes"))
    majority = majority_class(cards)
    rows = []
    for (task, optimizer), rs in by_task_and_optimizer(runs).items():
        rows.append({"task": TASK_NAMES[task], "optimizer": optimizer,
                     "metric": MAIN_METRIC[task], "seeds": len(rs),
                     "ours": pm([r["best_score"] for r in rs]),
                     "best epochs": ", ".join(str(r["best_epoch"]) for r in rs),
                     "majority class": pct(majority[task]) if task in majority else "-",
                     "paper (BERT-base, Adam)": f"{FULL_BERT_BASE[task]:.1f}"})
    return with_notes(pd.DataFrame(rows).set_index(["task", "optimizer"]), notes)


def tuned_grid_table(grid: list[dict], rates: Sequence[float]) -> pd.DataFrame:
    """The tuned protocol's learning-rate grid (experiment ``tuned_lr``): per task and optimizer,
    each rate's best dev score with the epoch it came at out of the budget, and the rate that
    wins (the one every seed of ``tuned`` then trains at). A task shows once both optimizers
    have every one of ``rates`` (the grid's). Each task's runs are of one environment
    (:func:`one_environment_per`)."""
    grid, notes = one_environment_per(grid, task_of, task_block("grid runs"))
    wanted = {(optimizer, lr) for optimizer in ("adam", "sam") for lr in rates}
    whole = {task for task in {r["task"] for r in grid}
             if wanted <= {(r["optimizer"], r["lr"]) for r in grid if r["task"] == task}}
    grid = [r for r in grid if r["task"] in whole]
    rows = {}
    for r in sorted(grid, key=lambda r: r["lr"]):
        row = rows.setdefault((TASK_NAMES[r["task"]], OPTIMIZER_NAMES[r["optimizer"]]), {})
        row[f"lr {r['lr']:g}"] = (f"{100 * r['best_score']:.1f} (epoch {r['best_epoch']} of "
                                 f"{r['epochs']})")
    for (task, optimizer), row in rows.items():
        best = max((r for r in grid if TASK_NAMES[r["task"]] == task
                    and OPTIMIZER_NAMES[r["optimizer"]] == optimizer),
                   key=lambda r: r["best_score"])
        row["best rate"] = f"{best['lr']:g}"
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["task", "optimizer"]) \
        if rows else table.index
    return with_notes(table, notes)


def flatness_table(flat: list[dict]) -> pd.DataFrame:
    """Training loss on the measured rows, sharpness, top Hessian eigenvalue and Hessian trace:
    mean ± std over seeds per task and optimizer, each task's of one environment."""
    flat, notes = one_environment_per(flat, task_of, task_block("flatness"))
    rows = {(TASK_NAMES[task], optimizer): {"seeds": len(rs), "rows measured": rs[0]["rows"],
                  "train loss": pm_sig([r["loss"] for r in rs]),
                  "sharpness": pm_sig([r["sharpness"] for r in rs]),
                  "top eigenvalue": pm_sig([r["top_eigenvalue"] for r in rs]),
                  "power iterations": ", ".join(str(r["eigen_iterations"]) for r in rs),
                  "trace": pm_sig([r["trace"] for r in rs]),
                  "trace std error": pm_sig([r["trace_std_error"] for r in rs])}
            for (task, optimizer), rs in by_task_and_optimizer(flat).items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["task", "optimizer"]
    return with_notes(table, notes)


def flatness_verdict(flat: list[dict], a: str = "sam", b: str = "adam") -> str:
    """Per task and measure: on how many seeds ``a``'s model is flatter than ``b``'s (same seed),
    and the ratio of their means, each task within one environment. Markdown bullets."""
    flat, notes = one_environment_per(flat, task_of, task_block("flatness"))
    lines = []
    for task in dict.fromkeys(r["task"] for r in flat):
        by_seed = {(r["optimizer"], r["seed"]): r for r in flat if r["task"] == task}
        seeds = sorted(s for o, s in by_seed if o == a and (b, s) in by_seed)
        if not seeds:
            continue
        parts = []
        for key, label in FLATNESS_MEASURES.items():
            wins = sum(by_seed[(a, s)][key] < by_seed[(b, s)][key] for s in seeds)
            ratio = (mean_std([by_seed[(a, s)][key] for s in seeds])[0]
                     / mean_std([by_seed[(b, s)][key] for s in seeds])[0])
            parts.append(f"{label.split(' (')[0]}: lower on {wins} of {len(seeds)} seeds, "
                         f"mean ratio {ratio:.2f}")
        lines.append(f"* **{TASK_NAMES[task]}**, {OPTIMIZER_NAMES[a]} against "
                     f"{OPTIMIZER_NAMES[b]}: " + "; ".join(parts) + ".")
    return "\n".join(lines + [f"\n*Note: {note}*" for note in notes])


def cost_table(timings: list[dict], runs: list[dict]) -> pd.DataFrame:
    """SAM's seconds per step over Adam's (timed together on the same batches), and the mean wall
    time of a whole fine-tune per task and optimizer (runs that may have shared the CPU), each
    task's of one environment."""
    runs, notes = one_environment_per(runs, task_of, task_block("fine-tunes"))
    ratio = {t["task"]: t["sam_over_adam"] for t in timings}
    rows = [{"task": TASK_NAMES[task], "optimizer": OPTIMIZER_NAMES[optimizer],
             "steps": rs[0]["steps"],
             "minutes per fine-tune": pm_sig([r["wall_seconds"] / 60 for r in rs]),
             "SAM / Adam s per step (timed together)": f"{ratio[task]:.2f}"
             if task in ratio and optimizer == "sam" else "-"}
            for (task, optimizer), rs in by_task_and_optimizer(runs).items()]
    return with_notes(pd.DataFrame(rows).set_index(["task", "optimizer"]), notes)


def optimizer_differences(runs: list[dict], base: str = "adam") -> pd.DataFrame:
    """Per task and optimizer: its best dev score minus ``base``'s on the same seed (the same
    head initialisation and data order), with the verdict for the paper's claim that it beats
    ``base`` (:func:`paired_rows`); each task's runs of one environment."""
    runs, notes = one_environment_per(runs, task_of, task_block("fine-tunes"))
    values = {(r["task"], r["optimizer"], r["seed"]): r["best_score"] for r in runs}
    return paired_table(paired_rows(values, base), notes)


# ---------------------------------------------------------------- figures

def epoch_curves(runs: list[dict]) -> plt.Figure:
    """Dev score after each epoch of every fine-tune, per task: one line per seed, coloured by
    optimizer, so a reader sees whether each has plateaued."""
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    fig, axes = task_panels(tasks)
    for ax, task in zip(axes, tasks):
        metric = MAIN_METRIC[task]
        for r in (r for r in runs if r["task"] == task):
            ax.plot([h["epoch"] for h in r["history"]], [100 * h[metric] for h in r["history"]],
                    color=OPTIMIZER_COLORS[r["optimizer"]], marker="o", markersize=3, alpha=0.8,
                    label=r["optimizer"] if r["seed"] == min(x["seed"] for x in runs) else None)
        label_task_panel(ax, task, "epoch")
    legend_below(fig, axes, title="one line per seed")
    return fig


def flatness_points(flat: list[dict]) -> plt.Figure:
    """Each flatness measure per task and optimizer: a dot per seed, a dash at the mean (log y:
    the measures span orders of magnitude, so no bars, whose base would be arbitrary)."""
    tasks = list(dict.fromkeys(r["task"] for r in flat))
    optimizers = list(dict.fromkeys(r["optimizer"] for r in flat))
    fig, axes = plt.subplots(1, len(FLATNESS_MEASURES), figsize=(BOOK_WIDTH, 3),
                             layout="constrained")
    width = 0.8 / len(optimizers)
    for ax, (key, label) in zip(axes, FLATNESS_MEASURES.items()):
        for j, optimizer in enumerate(optimizers):
            for i, task in enumerate(tasks):
                values = [r[key] for r in flat if (r["task"], r["optimizer"]) == (task, optimizer)]
                x = i + (j - (len(optimizers) - 1) / 2) * width
                ax.hlines(np.mean(values), x - width / 3, x + width / 3, linewidth=2.5,
                          color=OPTIMIZER_COLORS[optimizer], label=optimizer if i == 0 else None)
                ax.scatter([x] * len(values), values, color=OPTIMIZER_COLORS[optimizer], s=14,
                           alpha=0.7, zorder=3)
        ax.set_xticks(range(len(tasks)), [TASK_NAMES[t] for t in tasks], rotation=90)
        ax.set_xlim(-0.6, len(tasks) - 0.4)
        ax.set_yscale("log")
        ax.set_ylabel(label, fontsize=9)
        ax.tick_params(labelsize=SMALL)
        ax.grid(alpha=0.3, axis="y")
    legend_below(fig, axes[:1])
    fig.suptitle("lower is flatter; one dot per seed, a dash at the mean", fontsize=10)
    return fig


def loss_landscapes(lands: list[dict]) -> plt.Figure:
    """Left: training loss along one filter-normalised random direction, per optimizer.
    Right: the loss on a plane of two such directions, one panel per optimizer, with shared
    contour levels (so the same colour is the same loss in every panel)."""
    fig = plt.figure(figsize=(BOOK_WIDTH, 6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.1])
    axes = [top.subplots()] + list(np.atleast_1d(bottom.subplots(1, len(lands))))
    for land in lands:
        axes[0].plot(land["alphas"], land["line"], color=OPTIMIZER_COLORS[land["optimizer"]],
                     marker="o", markersize=3,
                     label=f"{land['optimizer']} ({TASK_NAMES[land['task']]})")
    axes[0].set_xlabel("step along the direction (in units of the weights' norm)")
    axes[0].set_ylabel("training loss")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=SMALL)
    axes[0].grid(alpha=0.3)
    levels = np.geomspace(min(np.min(l["plane"]) for l in lands),
                          max(np.max(l["plane"]) for l in lands), 12)
    for ax, land in zip(axes[1:], lands):
        grid = np.asarray(land["grid"])
        filled = ax.contourf(grid, grid, np.asarray(land["plane"]).T, levels=levels,
                             cmap="viridis", norm=plt.matplotlib.colors.LogNorm())
        ax.plot(0, 0, marker="x", color="white")
        ax.set_title(f"{land['optimizer']}, {TASK_NAMES[land['task']]}, seed {land['seed']}",
                     fontsize=9)
        ax.set_xlabel("direction 1")
    axes[1].set_ylabel("direction 2")
    bottom.colorbar(filled, ax=axes[1:], label="training loss", format="%.2f")
    for ax in axes:
        ax.tick_params(labelsize=SMALL)
    return fig
