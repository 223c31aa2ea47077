"""Chapter 8, "Efficiency and scale": the bench of step and inference times, the cheaper SAM
variants against Adam and SAM, and what the paper profile's plan costs, as tables and verdict
lines."""

from __future__ import annotations

import statistics
from collections import defaultdict

import pandas as pd

from flatcomp.lab.config import Profile
from flatcomp.lab.reporting import (OPTIMIZER_NAMES, TASK_NAMES, majority_class,
                                    one_environment_per, pm, pm_sig, task_block, task_of,
                                    with_notes)


def bench_table(bench: list[dict]) -> pd.DataFrame:
    """Seconds per training step of every optimizer, timed on the same batches, against Adam's,
    and with 50% masks against without (Adam and SAM)."""
    rows = []
    for b in bench:
        for o, seconds in b["seconds_per_step"].items():
            masked = b["masked_over_dense"].get(o)
            rows.append({"task": TASK_NAMES[b["task"]], "optimizer": OPTIMIZER_NAMES[o],
                         "s / step": f"{seconds:.3f}", "/ Adam": f"{b['over_adam'][o]:.2f}",
                         "masked / dense": "-" if masked is None else f"{masked:.2f}"})
    return pd.DataFrame(rows).set_index(["task", "optimizer"])


def inference_table(bench: list[dict]) -> pd.DataFrame:
    """int8 against fp32 latency at batch 1 and 32 (full-length rows, the CPU)."""
    rows = [{"task": TASK_NAMES[b["task"]], "batch": int(size), "int8 / fp32 latency":
             f"{ratio:.2f}"} for b in bench for size, ratio in b["int8_over_fp32"].items()]
    return pd.DataFrame(rows).set_index(["task", "batch"])


def variants_table(runs: list[dict], bench: list[dict]) -> pd.DataFrame:
    """Per task and optimizer, mean ± std over seeds: dev score, int8 drop, the score with 4-bit
    weights and after one-shot pruning to 50 and 70%, sharpness; and the step time against
    Adam's from the bench. One environment per task."""
    runs, notes = one_environment_per(runs, task_of, task_block("the variants"))
    over_adam = {o: r for b in bench for o, r in b["over_adam"].items()}
    groups = defaultdict(list)
    for r in runs:
        groups[r["task"], r["optimizer"]].append(r)
    rows = []
    for (task, optimizer), rs in groups.items():
        rows.append({"task": TASK_NAMES[task], "optimizer": OPTIMIZER_NAMES[optimizer],
                     "seeds": len(rs),
                     "step / Adam": f"{over_adam[optimizer]:.2f}" if optimizer in over_adam
                     else "-",
                     "dev": pm([r["fp32"] for r in rs]),
                     "int8 drop": pm([r["int8_drop"] for r in rs]),
                     "4 bit": pm([r["bits"]["4"] for r in rs]),
                     "pruned 50%": pm([r["one_shot"]["0.5"] for r in rs]),
                     "pruned 70%": pm([r["one_shot"]["0.7"] for r in rs]),
                     "sharpness": pm_sig([r["sharpness"] for r in rs])})
    columns = ["task", "optimizer", "seeds", "step / Adam", "dev", "int8 drop", "4 bit",
               "pruned 50%", "pruned 70%", "sharpness"]
    table = pd.DataFrame(rows, columns=columns).set_index(["task", "optimizer"])
    return with_notes(table, notes)


def variant_differences(runs: list[dict], base: str) -> pd.DataFrame:
    """Each variant minus ``base`` (Adam or SAM) on the same task and seed, in points: dev score,
    int8 drop, 4-bit score, score after one-shot pruning to 70%; mean over the paired seeds."""
    runs, notes = one_environment_per(runs, task_of, task_block("the variants"))
    by = {(r["task"], r["optimizer"], r["seed"]): r for r in runs}
    measures = {"dev": lambda r: r["fp32"], "int8 drop": lambda r: r["int8_drop"],
                "4 bit": lambda r: r["bits"]["4"], "pruned 70%": lambda r: r["one_shot"]["0.7"]}
    rows = []
    for task, optimizer in dict.fromkeys((r["task"], r["optimizer"]) for r in runs):
        pairs = [(by[task, optimizer, s], by[task, base, s]) for (t, o, s) in by
                 if t == task and o == optimizer and (task, base, s) in by]
        if optimizer == base or not pairs:
            continue
        row = {"task": TASK_NAMES[task], "optimizer": OPTIMIZER_NAMES[optimizer],
               "paired seeds": len(pairs)}
        for name, value in measures.items():
            row[name] = f"{100 * statistics.fmean(value(a) - value(b) for a, b in pairs):+.1f}"
        rows.append(row)
    columns = ["task", "optimizer", "paired seeds", *measures]
    table = pd.DataFrame(rows, columns=columns).set_index(["task", "optimizer"])
    return with_notes(table, notes)


def plan_cost_table(profile: Profile, seconds_per_step: float) -> pd.DataFrame:
    """What every unit of a profile's plan costs in training steps (the experiments' cost
    models, each model counted once: :func:`~flatcomp.lab.experiments.core.work_steps`), and in
    GPU-hours at ``seconds_per_step``. It imports the experiment registry when called, not at
    import."""
    from flatcomp.lab.experiments import CHAPTERS, experiment_profile
    from flatcomp.lab.experiments.core import work_steps

    rows = []
    for chapter in CHAPTERS:
        for exp in chapter.EXPERIMENTS:
            at = experiment_profile(profile, exp.name)
            units = exp.units(at)
            steps = sum(work_steps(exp, at, u) for u in units)
            rows.append({"chapter": exp.chapter, "experiment": exp.name, "units": len(units),
                         "training steps": f"{steps:,.0f}",
                         "GPU-hours": f"{steps * seconds_per_step / 3600:,.1f}"})
    return pd.DataFrame(rows).set_index(["chapter", "experiment"])


def variants_verdict(runs: list[dict], bench: list[dict], cards: list[dict],
                     score_gap: float = 0.005, cost_goal: float = 1.3) -> str:
    """Which variants meet the goal, per task with both arms stored: a step at most
    ``cost_goal`` times Adam's, and within ``score_gap`` of SAM's dev score, int8 drop and score
    after one-shot pruning to 70% (each the mean over the seeds stored). A variant whose every
    seed scores the majority class is said to have learned nothing (``cards``: the data cards)."""
    if not bench:
        return "The bench is not stored yet, so no variant's cost is known."
    over_adam = {o: r for b in bench for o, r in b["over_adam"].items()}
    majority = majority_class(cards)
    runs, _ = one_environment_per(runs, task_of, task_block("the variants"))
    mean = defaultdict(list)
    for r in runs:
        mean[r["task"], r["optimizer"]].append(r)
    measures = {"dev score": (lambda r: r["fp32"], 1), "int8 drop": (lambda r: r["int8_drop"], -1),
                "70% one-shot score": (lambda r: r["one_shot"]["0.7"], 1)}
    lines = []
    for task in dict.fromkeys(r["task"] for r in runs):
        if (task, "sam") not in mean:
            lines.append(f"* {TASK_NAMES[task]}: SAM's model is not stored yet.")
            continue
        for optimizer in (o for (t, o) in mean if t == task and o not in ("adam", "sam")):
            short = [name for name, (value, sign) in measures.items()
                     if sign * (statistics.fmean(map(value, mean[task, optimizer])) -
                                statistics.fmean(map(value, mean[task, "sam"]))) < -score_gap]
            cost = over_adam.get(optimizer, float("nan"))
            cheap = cost <= cost_goal
            verdict = ("meets the goal" if cheap and not short else
                       "is not cheap enough" if not cheap and not short else
                       f"falls short of SAM in {', '.join(short)}")
            if all(abs(r["fp32"] - majority.get(task, -1)) < 1e-9 for r in mean[task, optimizer]):
                verdict += " (it predicts the majority class: it did not learn the task)"
            lines.append(f"* {TASK_NAMES[task]}, {OPTIMIZER_NAMES[optimizer]} "
                         f"({len(mean[task, optimizer])} seed(s), step {cost:.2f}x Adam's): "
                         f"{verdict}.")
    return "\n".join(lines) or "No variant is stored yet."


def bench_findings(bench: list[dict]) -> str:
    """The bench's ratios as sentences, for a chapter's findings."""
    if not bench:
        return "* The bench is not stored yet (`python -m flatcomp bench`)."
    b = bench[0]
    over, masked, int8 = b["over_adam"], b["masked_over_dense"], b["int8_over_fp32"]
    variants = ", ".join(f"{OPTIMIZER_NAMES[o]} {over[o]:.2f}x" for o in over
                         if o not in ("adam", "sam"))
    return (f"* A SAM step took {over['sam']:.2f}x an Adam step on this machine (its two passes "
            f"alone would make it 2x); the variants: {variants}.\n"
            f"* A step under 50% masks took {masked['adam']:.2f}x a dense one with Adam and "
            f"{masked['sam']:.2f}x with SAM.\n"
            f"* int8 inference took {int8['1']:.2f}x fp32's time at batch 1 and "
            f"{int8['32']:.2f}x at batch 32.")
