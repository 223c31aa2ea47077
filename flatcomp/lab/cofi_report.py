"""The CoFi chapter's tables, figures and verdict: stored ``cofi`` records in, DataFrames, Figures
and a sentence out.

A record is one student (:mod:`flatcomp.lab.experiments.cofi_runs`): a task, a target sparsity, a
seed and the teacher's optimizer. An Adam and a SAM record of the same task, target and seed are a
*pair*: the same student initialisation, batches and gate noise, another teacher. Scores are the
CPU's fp32 dev scores of the compact student and of its teacher.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from flatcomp.lab.paper import COFI_95
from flatcomp.lab.reporting import (BOOK_WIDTH, SMALL, TASK_NAMES, one_environment_per, pct, pm,
                                    with_notes)
from flatcomp.metrics import MAIN_METRIC
from flatcomp.stats import PairedDifference, paired_difference, verdict as verdict_of

TEACHERS = {"adam": "Adam teacher", "sam": "SAM teacher"}
COLORS = {"adam": "tab:blue", "sam": "tab:orange"}


def _one_environment(records: list[dict]) -> tuple[list[dict], list[str]]:
    return one_environment_per(records, lambda r: r["task"],
                               lambda task: f"CoFi students, {TASK_NAMES[task]}")


def _cells(records: list[dict]) -> dict[tuple[str, float], dict[str, list[dict]]]:
    """(task, target) -> teacher optimizer -> records in seed order, in the records' order."""
    cells: dict = defaultdict(lambda: defaultdict(list))
    for r in sorted(records, key=lambda r: r["seed"]):
        cells[r["task"], r["target_sparsity"]][r["optimizer"]].append(r)
    return cells


def pairs(records: list[dict]) -> list[tuple[dict, dict]]:
    """(Adam-teacher record, SAM-teacher record) of every task, target and seed that has both."""
    by = {(r["task"], r["target_sparsity"], r["seed"], r["optimizer"]): r for r in records}
    return [(by[t, s, seed, "adam"], by[t, s, seed, "sam"])
            for (t, s, seed, o) in sorted(by) if o == "adam" and (t, s, seed, "sam") in by]


def student_difference(records: list[dict], target: float | None = None) -> PairedDifference:
    """SAM-teacher student minus Adam-teacher student, over the pairs (at ``target`` only)."""
    chosen = [(a, s) for a, s in pairs(records)
              if target is None or a["target_sparsity"] == target]
    if not chosen:
        raise ValueError(f"no Adam/SAM pair of CoFi students at target {target}: run both "
                         "teachers' units of one task, target and seed")
    return paired_difference([s["dev_score"] for _, s in chosen],
                             [a["dev_score"] for a, _ in chosen])


def _target(x: float) -> str:
    return f"{100 * x:.0f}%"


def results_table(records: list[dict]) -> pd.DataFrame:
    """Per task and target: the teachers' and the students' dev scores (mean ± std over seeds),
    the paired SAM - Adam difference of the students, how many students' expected sparsity was
    within 1 point of the target, the mean realised sparsity of the compact models (what the
    deterministic gates keep), and the paper's 95% numbers (BERT-base)."""
    records, notes = _one_environment(records)
    rows = []
    for (task, target), by in sorted(_cells(records).items()):
        cell = [r for rs in by.values() for r in rs]
        row = {"task": TASK_NAMES[task], "target": _target(target)}
        for o, name in TEACHERS.items():
            rs = by.get(o, [])
            row[name] = pm([r["teacher"]["dev_score_cpu_fp32"] for r in rs]) if rs else "-"
            row[f"student of the {name}"] = pm([r["dev_score"] for r in rs]) if rs else "-"
        row["student SAM − Adam"] = student_difference(cell).describe() if pairs(cell) else "-"
        row["expected on target"] = f"{sum(r['reached_target'] for r in cell)}/{len(cell)}"
        row["realised sparsity"] = pct(statistics.fmean(r["realised_sparsity"] for r in cell))
        paper = COFI_95.get(task) if target == 0.95 else None
        row["paper (Adam / SAM teacher)"] = f"{paper[0]} / {paper[1]}" if paper else "-"
        rows.append(row)
    return with_notes(pd.DataFrame(rows).set_index(["task", "target"]), notes)


def _latency(record: dict, model: str, batch_size: int) -> dict:
    return next(row for row in record["latency"]
                if row["model"] == model and row["batch_size"] == batch_size)


def speed_table(records: list[dict]) -> pd.DataFrame:
    """Per task and target, over its students: the encoder matrices and all parameters kept,
    seconds per forward pass of the dense and the compact model, and the speed-up, at batch 1
    and 32 (each speed-up measured within one record, then averaged)."""
    records, notes = _one_environment(records)
    rows = []
    for (task, target), by in sorted(_cells(records).items()):
        cell = [r for rs in by.values() for r in rs]
        mean = statistics.fmean
        row = {"task": TASK_NAMES[task], "target": _target(target), "students": len(cell),
               "encoder matrices kept": f"{pct(mean(1 - r['realised_sparsity'] for r in cell))}%",
               "parameters (M), dense → compact":
                   f"{cell[0]['params']['dense'] / 1e6:.1f} → "
                   f"{mean(r['params']['compact'] for r in cell) / 1e6:.1f}"}
        for b in sorted({row["batch_size"] for r in cell for row in r["latency"]}):
            dense = mean(_latency(r, "dense", b)["mean_s"] for r in cell)
            small = mean(_latency(r, "compact", b)["mean_s"] for r in cell)
            row[f"ms, batch {b}, dense → compact"] = f"{1e3 * dense:.1f} → {1e3 * small:.1f}"
            row[f"speed-up, batch {b}"] = f"{mean(_latency(r, 'compact', b)['speedup'] for r in cell):.1f}×"
        rows.append(row)
    return with_notes(pd.DataFrame(rows).set_index(["task", "target"]), notes)


def prose_numbers(records: list[dict]) -> dict[str, float]:
    """The numbers of the chapter's prose (myst-nb glue,
    :func:`flatcomp.lab.reporting.glue_numbers`), means over seeds per task and target, named
    ``cofi_<task><target %>_<what>``: the teachers' and the students' dev scores in points
    (``adam_teacher``, ``sam_student``...), the students' paired difference (``difference``),
    SAM's teacher minus Adam's (``teacher_difference``), the realised sparsity in percent and the
    speed-up of the compact model at each batch size timed (``speedup_b1``...)."""
    records, _ = _one_environment(records)
    numbers = {}
    for (task, target), by in sorted(_cells(records).items()):
        name = f"cofi_{task}{100 * target:.0f}"
        cell = [r for rs in by.values() for r in rs]
        for o, rs in by.items():
            numbers[f"{name}_{o}_teacher"] = 100 * statistics.fmean(
                r["teacher"]["dev_score_cpu_fp32"] for r in rs)
            numbers[f"{name}_{o}_student"] = 100 * statistics.fmean(r["dev_score"] for r in rs)
        if pairs(cell):
            numbers[f"{name}_difference"] = 100 * student_difference(cell).mean
        if {"adam", "sam"} <= set(by):
            numbers[f"{name}_teacher_difference"] = (numbers[f"{name}_sam_teacher"]
                                                     - numbers[f"{name}_adam_teacher"])
        numbers[f"{name}_realised"] = 100 * statistics.fmean(r["realised_sparsity"] for r in cell)
        for b in sorted({row["batch_size"] for r in cell for row in r["latency"]}):
            numbers[f"{name}_speedup_b{b}"] = statistics.fmean(
                _latency(r, "compact", b)["speedup"] for r in cell)
    return numbers


def _per_layer(values: list[int]) -> str:
    return " ".join(str(v) for v in values)


def structure_table(records: list[dict]) -> pd.DataFrame:
    """What each student keeps: heads and FFN dimensions per layer (first layer first), the
    hidden width, and the layers removed whole (attention and FFN both gone)."""
    rows = []
    for r in sorted(records, key=lambda r: (r["task"], -r["target_sparsity"], r["seed"],
                                            r["optimizer"])):
        of = r["kept"]["of"]
        rows.append({"task": TASK_NAMES[r["task"]], "target": _target(r["target_sparsity"]),
                     "seed": r["seed"], "teacher": TEACHERS[r["optimizer"]],
                     f"heads per layer (of {of['heads']})": _per_layer(r["kept"]["heads"]),
                     f"FFN dims per layer (of {of['ffn']})": _per_layer(r["kept"]["ffn"]),
                     f"hidden (of {of['hidden']})": r["kept"]["hidden"],
                     "layers removed": _per_layer(r["kept"]["layers_removed"]) or "none"})
    return pd.DataFrame(rows).set_index(["task", "target", "seed", "teacher"])


def verdict(records: list[dict]) -> str:
    """C5 in a few sentences: per target, the SAM - Adam difference of the students with the
    verdict rule of :func:`flatcomp.stats.verdict` (the paper: SAM's is better), beside that of
    the teachers and the paper's 95% differences; says which students missed their target."""
    records, _ = _one_environment(records)
    paper = ", ".join(f"{TASK_NAMES[t]} {s - a:+.1f}" for t, (a, s) in COFI_95.items())
    lines = [f"The paper's SAM − Adam teacher differences at 95% (BERT-base): {paper} points."]
    for target in sorted({a["target_sparsity"] for a, _ in pairs(records)}, reverse=True):
        chosen = [(a, s) for a, s in pairs(records) if a["target_sparsity"] == target]
        d = student_difference(records, target)
        teachers = paired_difference([s["teacher"]["dev_score_cpu_fp32"] for _, s in chosen],
                                     [a["teacher"]["dev_score_cpu_fp32"] for a, _ in chosen])
        tasks = ", ".join(sorted({TASK_NAMES[a["task"]] for a, _ in chosen}))
        lines.append(f"At {_target(target)} ({tasks}): students {d.describe()}: "
                     f"**{verdict_of(d)}**; their teachers {teachers.describe()}.")
    missed = [f"{TASK_NAMES[r['task']]} {_target(r['target_sparsity'])} "
              f"{TEACHERS[r['optimizer']]} seed {r['seed']} "
              f"(expected sparsity {pct(r['expected_sparsity'])}%)"
              for r in records if not r["reached_target"]]
    if missed:
        lines.append("Students that ended more than a point from their target: "
                     + "; ".join(missed) + ".")
    empty = [f"{TASK_NAMES[r['task']]} {_target(r['target_sparsity'])} "
             f"{TEACHERS[r['optimizer']]} seed {r['seed']}"
             for r in records if r["encoder_params"]["compact"] == 0]
    if empty:
        lines.append("Compact students that keep no weight of the encoder, so that every input "
                     "gets the same prediction: " + "; ".join(empty) + ".")
    return " ".join(lines)


# ---------------------------------------------------------------- figures

def _panels(n: int, per_row: int = 1, height: float = 3.2) -> tuple[plt.Figure, list[plt.Axes]]:
    rows, columns = -(-n // per_row), min(n, per_row)
    fig, axes = plt.subplots(rows, columns, figsize=(BOOK_WIDTH, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def sparsity_traces(records: list[dict], seed: int | None = None) -> plt.Figure:
    """Expected sparsity through pruning against the warmed-up target, and the gated model's dev
    score at each candidate (right axis), one panel per task and target (``seed``: the first
    stored one), both teachers."""
    seed = min(r["seed"] for r in records) if seed is None else seed
    cells = sorted({(r["task"], r["target_sparsity"]) for r in records if r["seed"] == seed},
                   key=lambda c: (c[0], -c[1]))
    fig, axes = _panels(len(cells))
    for ax, (task, target) in zip(axes, cells):
        dev = ax.twinx()
        for r in records:
            if (r["task"], r["target_sparsity"], r["seed"]) != (task, target, seed):
                continue
            steps = [row["step"] for row in r["trace"]]
            ax.plot(steps, [100 * row["expected_sparsity"] for row in r["trace"]],
                    color=COLORS[r["optimizer"]], label=f"expected, {TEACHERS[r['optimizer']]}")
            target_line = [100 * row["target"] for row in r["trace"]]
            scored = [h for h in r["history"] if h["phase"] == "prune"]
            dev.plot([h["step"] for h in scored], [100 * h["dev_score"] for h in scored],
                     color=COLORS[r["optimizer"]], linestyle=":", marker="o", markersize=3,
                     label=f"dev score, {TEACHERS[r['optimizer']]}")
        ax.plot(steps, target_line, color="black", linestyle="--", label="target t")
        ax.set_title(f"{TASK_NAMES[task]}, target {_target(target)}, seed {seed}", fontsize=10)
        ax.set_xlabel("pruning step", fontsize=9)
        ax.set_ylabel("expected sparsity of the\nencoder matrices (%)", fontsize=9)
        dev.set_ylabel(f"gated model's dev\n{MAIN_METRIC[task]} (%, dotted)", fontsize=9)
        for axis in (ax, dev):
            axis.tick_params(labelsize=SMALL)
        ax.set_ylim(0, 100)
        dev.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=SMALL, loc="lower right")
    fig.tight_layout()
    return fig


def accuracy_vs_speed(records: list[dict], batch_size: int = 32) -> plt.Figure:
    """Each student's dev score against its measured speed-up over the dense model (left) and its
    parameter count (right), with the teachers at speed-up 1 and full size; one row per task."""
    tasks = sorted({r["task"] for r in records})
    fig, axes = plt.subplots(len(tasks), 2, figsize=(BOOK_WIDTH, 3.4 * len(tasks)), squeeze=False,
                             sharey="row", layout="constrained")
    for (left, right), task in zip(axes, tasks):
        rs = [r for r in records if r["task"] == task]
        for o, name in TEACHERS.items():
            mine = [r for r in rs if r["optimizer"] == o]
            if not mine:
                continue
            scores = [100 * r["dev_score"] for r in mine]
            left.scatter([_latency(r, "compact", batch_size)["speedup"] for r in mine], scores,
                         color=COLORS[o], label=f"students of the {name}")
            right.scatter([r["params"]["compact"] / 1e6 for r in mine], scores, color=COLORS[o],
                          label=f"students of the {name}")
            teacher = 100 * statistics.fmean(r["teacher"]["dev_score_cpu_fp32"] for r in mine)
            left.scatter([1.0], [teacher], color=COLORS[o], marker="*", s=150,
                         label=f"{name} (dense)")
            right.scatter([mine[0]["params"]["dense"] / 1e6], [teacher], color=COLORS[o],
                          marker="*", s=150, label=f"{name} (dense)")
        for r in rs:
            left.annotate(_target(r["target_sparsity"]),
                          (_latency(r, "compact", batch_size)["speedup"], 100 * r["dev_score"]),
                          fontsize=SMALL, xytext=(3, 3), textcoords="offset points")
        left.set_xscale("log")
        left.set_xlabel(f"speed-up over the dense model\n(CPU, batch {batch_size}, log scale)",
                        fontsize=9)
        right.set_xlabel("parameters\n(millions, embeddings included)", fontsize=9)
        left.set_ylabel(f"{TASK_NAMES[task]} dev {MAIN_METRIC[task]} (%)", fontsize=9)
        for ax in (left, right):
            ax.tick_params(labelsize=SMALL)
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=SMALL, frameon=False)
    return fig


def kept_structure(records: list[dict], task: str, seed: int | None = None) -> plt.Figure:
    """Heads (left) and FFN dimensions (right) kept per layer, Adam vs SAM teacher side by side,
    one row per target sparsity."""
    rs = [r for r in records if r["task"] == task]
    if not rs:
        raise ValueError(f"no CoFi record of task {task!r}; stored tasks: "
                         f"{sorted({r['task'] for r in records})}")
    seed = min(r["seed"] for r in rs) if seed is None else seed
    targets = sorted({r["target_sparsity"] for r in rs if r["seed"] == seed}, reverse=True)
    fig, axes = plt.subplots(len(targets), 2, figsize=(BOOK_WIDTH, 2.2 * len(targets) + 0.4),
                             squeeze=False, sharex=True)
    width = 0.4
    for (left, right), target in zip(axes, targets):
        for i, (o, name) in enumerate(TEACHERS.items()):
            r = next((r for r in rs if (r["target_sparsity"], r["seed"], r["optimizer"])
                      == (target, seed, o)), None)
            if r is None:
                continue
            layers = np.arange(len(r["kept"]["heads"])) + 1
            left.bar(layers + (i - 0.5) * width, r["kept"]["heads"], width, color=COLORS[o],
                     label=name)
            right.bar(layers + (i - 0.5) * width, r["kept"]["ffn"], width, color=COLORS[o],
                      label=name)
            of = r["kept"]["of"]
        left.set_ylim(0, of["heads"])
        right.set_ylim(0, of["ffn"])
        left.set_ylabel(f"{_target(target)}: heads", fontsize=9)
        right.set_ylabel(f"{_target(target)}: FFN dims", fontsize=9)
        for ax in (left, right):
            ax.tick_params(labelsize=SMALL)
        left.legend(fontsize=SMALL)
    for ax in axes[-1]:
        ax.set_xlabel("layer")
        ax.set_xticks(layers)
    axes[0][0].set_title(f"{TASK_NAMES[task]}, seed {seed}:\nheads kept per layer", fontsize=9)
    axes[0][1].set_title("FFN intermediate dimensions\nkept per layer", fontsize=9)
    fig.tight_layout()
    return fig
