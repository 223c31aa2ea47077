"""Chapter 1, "Setup and data": the profiles, the data cards, the learning-rate sweep, the bf16
check and the step times, as tables, figures and verdict lines. (Its Adam baselines are shown by
chapter 3's :func:`~flatcomp.lab.sam_report.finetune_table`.)"""

from __future__ import annotations

from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from flatcomp.lab.config import PROFILES, Profile
from flatcomp.lab.reporting import (BOOK_WIDTH, OPTIMIZER_COLORS, OPTIMIZER_NAMES, SMALL,
                                    TASK_NAMES, label_task_panel, legend_below, majority_class,
                                    pct, task_panels, with_notes)
from flatcomp.metrics import MAIN_METRIC

_PROFILE_FIELDS = ("model", "tasks", "seeds", "lr", "epochs", "max_length", "batch_size",
                   "train_size", "precision", "sam_rho", "weight_decay", "imp_rounds", "imp_rate",
                   "imp_rewind", "lottery")


def profiles_table(profiles: tuple[Profile, ...] = tuple(PROFILES.values())) -> pd.DataFrame:
    """The three profiles side by side. ``tasks`` (those of every analysis) is followed by every
    task fine-tuned and quantized (:meth:`~flatcomp.lab.config.Profile.dense_tasks`)."""
    rows = {}
    for f in _PROFILE_FIELDS:
        rows[f] = [_show(getattr(p, f)) for p in profiles]
        if f == "tasks":
            rows["fine-tuned tasks"] = [_show(p.dense_tasks()) for p in profiles]
    return with_notes(pd.DataFrame(rows, index=[p.name for p in profiles]).T)


def _show(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_show_nested(v)}" for k, v in value.items()) or "-"
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _show_nested(value) -> str:
    """A value inside a dict: a per-task dict with only a default shows as that default."""
    if isinstance(value, dict):
        return _show(value["default"]) if list(value) == ["default"] else f"({_show(value)})"
    return _show(value)


def data_cards_table(cards: list[dict]) -> pd.DataFrame:
    rows = []
    for c in cards:
        if not c["available"]:
            rows.append({"task": TASK_NAMES[c["task"]], "train": "-", "dev": "-",
                         "note": "not available here"})
            continue
        quantiles = c.get("length_quantiles", {})
        rows.append({
            "task": TASK_NAMES[c["task"]], "train": c["train_rows"], "dev": c["dev_rows"],
            "metric": c["metric"],
            "labels (train)": _balance(c.get("labels", {})),
            "median tokens": f"{quantiles['p50']:.0f}" if quantiles else "-",
            "90th pct": f"{quantiles['p90']:.0f}" if quantiles else "-",
            "truncated": pct(c["truncated_at_max_length"]) + "%"
                         if "truncated_at_max_length" in c else "-",
            "note": c.get("cut") or "official splits",
        })
    return with_notes(pd.DataFrame(rows).set_index("task"))


def _balance(labels: dict) -> str:
    if set(labels) == {"min", "mean", "max"}:
        return f"score {labels['min']:.0f}-{labels['max']:.0f}, mean {labels['mean']:.2f}"
    return " / ".join(f"{k} {100 * v:.0f}%" for k, v in labels.items())


def examples_table(cards: list[dict]) -> pd.DataFrame:
    rows = [{"task": TASK_NAMES[c["task"]], "text": " ‖ ".join(e["text"]), "label": e["label"]}
            for c in cards if c["available"] for e in c["examples"][:1]]
    return pd.DataFrame(rows).set_index("task")


def sweep_table(runs: list[dict]) -> pd.DataFrame:
    """One row per (task, lr), Adam and SAM side by side: best dev score and its epoch. Rows by
    task (in the order first seen) and rising rate; "-" where an optimizer was not run at a
    rate."""
    rows = defaultdict(dict)
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    for r in sorted(runs, key=lambda r: (tasks.index(r["task"]), r["lr"])):
        key = (TASK_NAMES[r["task"]], f"{r['lr']:g}")
        metric = MAIN_METRIC[r["task"]]
        rows[key][f"{r['optimizer']} best"] = pct(r["best_score"])
        rows[key][f"{r['optimizer']} epoch"] = f"{r['best_epoch']}/{r['epochs']}"
        rows[key][f"{r['optimizer']} first epoch"] = pct(r["history"][0][metric])
        rows[key]["metric"] = metric
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("-")
    table.index.names = ["task", "lr"]
    return table


def sweep_verdict(runs: list[dict], cards: list[dict], profile: Profile,
                  margin: float = 0.05) -> str:
    """One Markdown line per task: the best run of each optimizer, whether it clearly beat the
    majority class (by ``margin``), the standard error of an accuracy on that dev set, and the
    learning rate the profile uses (or that the profile dropped the task)."""
    majority = majority_class(cards)
    dev_rows = {c["task"]: c["dev_rows"] for c in cards if c["available"]}
    lines = []
    for task in dict.fromkeys(r["task"] for r in runs):
        parts = []
        for optimizer in ("adam", "sam"):
            mine = [r for r in runs if r["task"] == task and r["optimizer"] == optimizer]
            if not mine:
                continue
            best = max(mine, key=lambda r: r["best_score"])
            learned = task not in majority or best["best_score"] >= majority[task] + margin
            parts.append(f"{OPTIMIZER_NAMES[optimizer]} best {pct(best['best_score'])} at lr "
                         f"{best['lr']:g}, epoch {best['best_epoch']} of {best['epochs']}"
                         + ("" if learned else " (**not clearly above the majority class**)"))
        base = ""
        if task in majority:
            p = majority[task]
            base = (f" (majority class {pct(p)}; {dev_rows[task]} dev rows, so one standard error"
                    f" of an accuracy near it is {pct((p * (1 - p) / dev_rows[task]) ** 0.5)} "
                    "points)")
        use = (f"The `{profile.name}` profile uses lr {profile.lr_for(task):g}."
               if task in profile.dense_tasks()
               else f"The `{profile.name}` profile drops {TASK_NAMES[task]}.")
        lines.append(f"* **{TASK_NAMES[task]}**{base}: {'; '.join(parts)}. {use}")
    return "\n".join(lines)


def step_time_table(timings: list[dict]) -> pd.DataFrame:
    """Seconds per training step of Adam and SAM, timed on the same batches."""
    rows = [{"task": TASK_NAMES[t["task"]], "batch": t["batch_size"],
             "mean padded length": f"{t['mean_padded_length']:.0f}",
             "Adam s / step": f"{t['seconds_per_step']['adam']:.2f}",
             "SAM s / step": f"{t['seconds_per_step']['sam']:.2f}",
             "SAM / Adam": f"{t['sam_over_adam']:.2f}",
             "threads": t["threads"], "device": t["device"]} for t in timings]
    return pd.DataFrame(rows).set_index("task")


def precision_table(runs: list[dict]) -> pd.DataFrame:
    """Best dev score and epoch, and the training loss per epoch, of the same fine-tune in each
    precision. (No step times: these runs shared the CPU; see the ``step_time`` experiment.)"""
    rows = [{"precision": r["precision"], "task": TASK_NAMES[r["task"]],
             "best dev score": pct(r["best_score"]), "best epoch": r["best_epoch"],
             "train loss per epoch": ", ".join(f"{h['train_loss']:.3f}" for h in r["history"])}
            for r in runs]
    return pd.DataFrame(rows).set_index("precision")


# ---------------------------------------------------------------- figures

def length_histograms(cards: list[dict], max_length: int) -> plt.Figure:
    """Token lengths of each task's training rows, with the profile's truncation length."""
    cards = [c for c in cards if c["available"] and "length_histogram" in c]
    cols = 3
    fig, axes = plt.subplots(-(-len(cards) // cols), cols, figsize=(BOOK_WIDTH, 2 * -(-len(cards) // cols)),
                             sharex=True, squeeze=False)
    for ax, card in zip(axes.flat, cards):
        edges = np.asarray(card["length_bins"])
        counts = np.asarray(card["length_histogram"])
        ax.bar(edges[:-1], counts / counts.sum(), width=np.diff(edges), align="edge",
               color="tab:gray")
        ax.axvline(max_length, color="tab:red", linestyle="--", label=f"max length {max_length}")
        ax.set_title(f"{TASK_NAMES[card['task']]} ({card['train_rows']:,} rows)", fontsize=9)
        ax.set_xlim(0, 256)
    for ax in axes.flat[len(cards):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("tokens per example", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of rows", fontsize=9)
    for ax in axes.flat:
        ax.tick_params(labelsize=SMALL)
    axes.flat[0].legend(fontsize=SMALL)
    fig.tight_layout()
    return fig


def sweep_curves(runs: list[dict]) -> plt.Figure:
    """Dev score after each epoch, per task, for every optimizer and learning rate tried."""
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    fig, axes = task_panels(tasks)
    lrs = sorted({r["lr"] for r in runs})
    styles = dict(zip(lrs, ["-", "--", ":", "-."]))
    for ax, task in zip(axes, tasks):
        metric = MAIN_METRIC[task]
        for r in (r for r in runs if r["task"] == task):
            epochs = [h["epoch"] for h in r["history"]]
            ax.plot(epochs, [100 * h[metric] for h in r["history"]], marker="o", markersize=3,
                    linestyle=styles[r["lr"]], color=OPTIMIZER_COLORS[r["optimizer"]],
                    label=f"{r['optimizer']}, lr {r['lr']:g}")
        label_task_panel(ax, task, "epoch")
    legend_below(fig, axes)
    return fig
