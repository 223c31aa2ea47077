"""Chapter 6, "Quantization": int8 against fp32, the bit sweep, the rounding theory and the int8
model's size and speed, as tables, figures and prose numbers. Chapter 4 shows its compound
tickets with :func:`int8_table`, and chapter 7 its SQuAD bit sweep with :func:`bit_sweep`."""

from __future__ import annotations

import statistics
from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from flatcomp.lab.paper import INT8_DROP
from flatcomp.lab.reporting import (BOOK_WIDTH, OPTIMIZER_COLORS, OPTIMIZER_NAMES, SMALL,
                                    TASK_NAMES, by_task_and_optimizer, one_environment,
                                    one_environment_per, paired_rows, paired_table, pm, pm_sig,
                                    task_block, task_of, with_notes)
from flatcomp.metrics import MAIN_METRIC


def int8_differences(quant: list[dict], base: str = "adam") -> pd.DataFrame:
    """Per task and optimizer: ``base``'s dynamic int8 drop minus its own on the same seed, with
    the verdict for the paper's claim that flat models lose less (:func:`paired_rows`); each
    task's models of one environment."""
    quant, notes = one_environment_per(quant, task_of, task_block("quantized models"))
    values = {(r["task"], r["optimizer"], r["seed"]): r["scores"]["fp32"] - r["scores"]["int8"]
              for r in quant}
    return paired_table(paired_rows(values, base, base_first=True), notes)


def int8_table(quant: list[dict]) -> pd.DataFrame:
    """Dev score in fp32 and after dynamic int8 (per tensor and per channel), and the drop in
    points, mean ± std over seeds, beside the paper's BERT-base drop where it reports one; each
    task's models of one environment."""
    quant, notes = one_environment_per(quant, task_of, task_block("quantized models"))
    rows = []
    for (task, optimizer), rs in by_task_and_optimizer(quant).items():
        scores = [r["scores"] for r in rs]
        paper = INT8_DROP.get(task)
        column = {"adam": 0, "sam": 1}.get(optimizer)
        rows.append({"task": TASK_NAMES[task], "optimizer": OPTIMIZER_NAMES[optimizer],
                     "seeds": len(scores),
                     "fp32": pm([s["fp32"] for s in scores]),
                     "int8": pm([s["int8"] for s in scores]),
                     "drop": pm([s["fp32"] - s["int8"] for s in scores]),
                     "drop, int8 per channel": pm([s["fp32"] - s["int8 per channel"]
                                                   for s in scores]),
                     "paper drop (BERT-base)": f"{paper[column]:.2f}"
                     if paper and column is not None else "-"})
    return with_notes(pd.DataFrame(rows).set_index(["task", "optimizer"]), notes)


def speed_table(speed: list[dict]) -> pd.DataFrame:
    """Size on disk, seconds per forward pass and the int8 speed-up, per batch size."""
    rows = [{"batch": t["batch_size"], "precision": t["precision"],
             "length": t["seq_len"], "threads": t["threads"],
             "size (MB)": f"{t['size_bytes'] / 1e6:.1f}",
             "ms per batch": f"{1000 * t['mean_s']:.1f} ± {1000 * t['std_s']:.1f}",
             "speed-up": f"{t['speedup']:.2f}x" if "speedup" in t else "-"}
            for r in speed for t in r["timings"]]
    return pd.DataFrame(rows).set_index(["batch", "precision"])


def speed_numbers(speed: list[dict]) -> dict[str, float]:
    """The int8 model's size as a percentage of the fp32 one's (``int8_size_percent``) and its
    speed-up at each batch size (``int8_speedup_b1``...), means over the records, for a chapter's
    prose (myst-nb glue, :func:`~flatcomp.lab.reporting.glue_numbers`)."""
    timings = [t for r in speed for t in r["timings"]]
    size = lambda precision: statistics.fmean(t["size_bytes"] for t in timings
                                              if t["precision"] == precision)
    numbers = {"int8_size_percent": 100 * size("int8") / size("fp32")} if timings else {}
    for b in sorted({t["batch_size"] for t in timings if "speedup" in t}):
        numbers[f"int8_speedup_b{b}"] = statistics.fmean(
            t["speedup"] for t in timings if t["batch_size"] == b and "speedup" in t)
    return numbers


def theory_table(theory: list[dict]) -> pd.DataFrame:
    """Predicted and measured loss increase after rounding the weights to k bits, mean ± std over
    seeds, per optimizer, grid (per tensor or per channel) and bit width; and on how many seeds
    the prediction came out negative (a noisy Hessian-diagonal estimate). The table pools every
    task: its records are of one environment."""
    theory, note = one_environment(theory, "the rounding theory")
    groups = defaultdict(list)
    for r in theory:
        for row in r["increase"]:
            grid = "per channel" if row["per_channel"] else "per tensor"
            groups[(grid, row["bits"], OPTIMIZER_NAMES[r["optimizer"]])].append(row)
    table = pd.DataFrame.from_dict(
        {key: {"predicted": pm_sig([r["predicted"] for r in rows]),
               "measured": pm_sig([r["measured"] for r in rows]),
               "negative predictions": sum(r["predicted"] < 0 for r in rows)}
         for key, rows in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2]))},
        orient="index")
    table.index.names = ["grid", "bits", "optimizer"]
    return with_notes(table, [note] if note else [])


# ---------------------------------------------------------------- figures

def bit_sweep(quant: list[dict], bits: tuple[int, ...]) -> plt.Figure:
    """Dev score against weight bits (fake quantization of every Linear weight), per tensor and
    per channel, mean and min-max band over seeds per optimizer; fp32 plotted at 32 bits."""
    tasks = list(dict.fromkeys(r["task"] for r in quant))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(BOOK_WIDTH, 2.8 * len(tasks)), squeeze=False,
                             sharey="row")
    xs = [*sorted(bits), 32]
    for row, task in zip(axes, tasks):
        metric = MAIN_METRIC[task]
        for ax, per_channel in zip(row, (False, True)):
            for optimizer in dict.fromkeys(r["optimizer"] for r in quant):
                mine = [r["scores"] for r in quant if (r["task"], r["optimizer"]) == (task, optimizer)]
                keys = [f"{b} bit{' per channel' if per_channel else ''}" for b in sorted(bits)]
                values = 100 * np.array([[s[k] for k in keys] + [s["fp32"]] for s in mine])
                ax.plot(xs, values.mean(0), marker="o", color=OPTIMIZER_COLORS[optimizer],
                        label=f"{optimizer} ({len(mine)} seeds)")
                ax.fill_between(xs, values.min(0), values.max(0), alpha=0.15,
                                color=OPTIMIZER_COLORS[optimizer])
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [*map(str, sorted(bits)), "fp32"])
            ax.set_xlabel("bits per weight", fontsize=9)
            ax.set_ylabel(f"dev {metric} (%)", fontsize=9)
            ax.set_title(f"{TASK_NAMES[task]}, {'per channel' if per_channel else 'per tensor'}",
                         fontsize=10)
            ax.tick_params(labelsize=SMALL)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=SMALL)
    fig.tight_layout()
    return fig


def predicted_vs_measured(theory: list[dict]) -> plt.Figure:
    """Measured loss increase after k-bit rounding against the second-order prediction, one
    point per model and setting (log-log; the diagonal is a perfect prediction). Settings whose
    prediction is not positive cannot be drawn on a log axis: their count is in the title."""
    fig, ax = plt.subplots(figsize=(BOOK_WIDTH, 4.8))
    markers = {False: "o", True: "s"}
    points, hidden = [], 0
    for r in theory:
        for row in r["increase"]:
            x, y = row["predicted"], row["measured"]
            if x <= 0:
                hidden += 1
                continue
            ax.scatter(x, max(y, 1e-6), color=OPTIMIZER_COLORS[r["optimizer"]],
                       marker=markers[row["per_channel"]], s=18, alpha=0.7)
            ax.annotate(str(row["bits"]), (x, max(y, 1e-6)), fontsize=SMALL, alpha=0.6,
                        xytext=(3, 2), textcoords="offset points")
            points.append((x, max(y, 1e-6)))
    low = min(min(p) for p in points) / 2
    high = max(max(p) for p in points) * 2
    ax.plot([low, high], [low, high], color="gray", linestyle="--", label="measured = predicted")
    for optimizer in dict.fromkeys(r["optimizer"] for r in theory):
        ax.scatter([], [], color=OPTIMIZER_COLORS[optimizer], label=optimizer)
    for per_channel, marker in markers.items():
        ax.scatter([], [], color="gray", marker=marker,
                   label="per channel" if per_channel else "per tensor")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted loss increase, ½ Σ H_ii Δ_i² / 12")
    ax.set_ylabel("measured loss increase (floored at 1e-6)")
    if hidden:
        ax.set_title(f"{hidden} settings with a negative prediction not shown", fontsize=9)
    ax.legend(fontsize=SMALL)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
