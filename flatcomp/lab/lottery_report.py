"""Chapter 4, "Lottery tickets": IMP, the mask x optimizer tables, ticket transfer, where the
tickets prune, the pooler check, the tickets' flatness and the cost of masks, as tables, figures
and prose numbers. (The compound tickets' int8 table is chapter 6's
:func:`~flatcomp.lab.quantization_report.int8_table`; the coverage table is
:func:`~flatcomp.lab.coverage_report.coverage_table`.)"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from flatcomp.lab.paper import IMP_REWIND, MASK_X_OPTIMIZER, TRANSFER
from flatcomp.lab.reporting import (BOOK_WIDTH, OPTIMIZER_COLORS, OPTIMIZER_NAMES, SMALL,
                                    TASK_NAMES, check_one_environment, environment,
                                    label_task_panel, legend_below, one_environment,
                                    one_environment_per, pct, pm, task_block, task_of,
                                    task_panels, units_of, with_notes)
from flatcomp.metrics import recorded_score
from flatcomp.stats import mean_std


def _ticket_scores(tickets: list[dict]) -> dict[tuple, list[float]]:
    """The tickets' dev scores over seeds, by (task, sparsity, mask, optimizer)."""
    groups = defaultdict(list)
    for r in tickets:
        groups[(r["task"], round(r["sparsity"], 2), r["mask"], r["optimizer"])].append(
            recorded_score(r))
    return groups


def _one_environment_per_block(tickets: list[dict]) -> tuple[list[dict], list[str]]:
    """The tickets of each (task, sparsity) block of the mask x optimizer table, whose rows and
    columns are compared both ways, of one environment (:func:`one_environment_per`)."""
    return one_environment_per(
        tickets, lambda r: (r["task"], round(r["sparsity"], 2)),
        lambda key: f"{TASK_NAMES[key[0]]} at {100 * key[1]:.0f}% sparsity")


def mask_table(tickets: list[dict]) -> pd.DataFrame:
    """The paper's Table 2 layout: one row per (task, sparsity, mask), the dev score of Adam and
    of SAM fine-tuning under that mask, mean ± std over seeds, beside the paper's values. Each
    (task, sparsity) block is of one environment."""
    tickets, notes = _one_environment_per_block(tickets)
    groups = _ticket_scores(tickets)
    rows = defaultdict(dict)
    for (task, sparsity, mask, optimizer), scores in groups.items():
        row = rows[(TASK_NAMES[task], f"{100 * sparsity:.0f}%", f"{mask} mask")]
        row[f"{OPTIMIZER_NAMES[optimizer]} (ours)"] = pm(scores)
        paper = MASK_X_OPTIMIZER.get((task, sparsity), {}).get((mask, optimizer))
        row[f"{OPTIMIZER_NAMES[optimizer]} (paper)"] = (f"{paper[0]:.1f} ± {paper[1]:.1f}"
                                                        if paper else "-")
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("-")
    table.index.names = ["task", "sparsity", "mask"]
    return with_notes(table, notes)


def imp_table(rounds: list[dict], reference: dict[str, float]) -> pd.DataFrame:
    """Per task, IMP with rewinding: the dense model (round 0) and the ticket at the task's
    ``reference`` sparsity, Adam and SAM, beside the paper's tickets (BERT-base); each task's
    rounds of one environment."""
    rewound, notes = one_environment_per([r for r in rounds if r["rewind"]], task_of,
                                         task_block("IMP with rewinding"))
    score = {(r["task"], r["optimizer"], round(r["sparsity"], 2)): recorded_score(r)
             for r in rewound}
    rows = {}
    for task in dict.fromkeys(r["task"] for r in rounds):
        s, row = round(reference[task], 2), {"ticket sparsity": f"{100 * reference[task]:.0f}%"}
        for optimizer in ("adam", "sam"):
            name = OPTIMIZER_NAMES[optimizer]
            dense, ticket = score.get((task, optimizer, 0.0)), score.get((task, optimizer, s))
            row[f"{name} dense"] = pct(dense) if dense is not None else "-"
            row[f"{name} ticket"] = pct(ticket) if ticket is not None else "-"
        for optimizer, value in zip(("Adam", "SAM"), IMP_REWIND.get(task, (None, None))):
            row[f"{optimizer} ticket (paper)"] = f"{value:.1f}" if value is not None else "-"
        rows[TASK_NAMES[task]] = row
    return with_notes(pd.DataFrame.from_dict(rows, orient="index").rename_axis("task"), notes)


def imp_prose_numbers(rounds: list[dict]) -> dict[str, float]:
    """The IMP curves as numbers for a chapter's prose (myst-nb glue,
    :func:`~flatcomp.lab.reporting.glue_numbers`), in points, one seed per curve:
    ``imp_<task>_<optimizer>_<rewind|continue>_<sparsity %>`` for each round, and per task and
    chain kind ``imp_<task>_<kind>_sam_lead_low`` and ``..._high``, the smallest and largest
    SAM - Adam difference over the pruned rounds both optimizers have."""
    numbers = {}
    for r in rounds:
        kind = "rewind" if r["rewind"] else "continue"
        numbers[f"imp_{r['task']}_{r['optimizer']}_{kind}_{100 * r['sparsity']:.0f}"] = \
            100 * recorded_score(r)
    for task, kind in dict.fromkeys((r["task"], "rewind" if r["rewind"] else "continue")
                                    for r in rounds):
        leads = [numbers[f"imp_{task}_sam_{kind}_{s}"] - numbers[f"imp_{task}_adam_{kind}_{s}"]
                 for s in range(1, 100) if f"imp_{task}_sam_{kind}_{s}" in numbers
                 and f"imp_{task}_adam_{kind}_{s}" in numbers]
        if leads:
            numbers[f"imp_{task}_{kind}_sam_lead_low"] = min(leads)
            numbers[f"imp_{task}_{kind}_sam_lead_high"] = max(leads)
    return numbers


def seeded_imp_table(rounds: list[dict], reference: dict[str, float]) -> pd.DataFrame:
    """Per task, IMP over several seeds: Adam's and SAM's dense model (round 0) and ticket at the
    task's ``reference`` sparsity, mean ± std over seeds, and SAM's ticket minus Adam's paired by
    seed with its t interval and verdict, beside the paper's tickets; each task's rounds of one
    environment. A task shows once both optimizers have its ticket for one seed at least."""
    from flatcomp.stats import paired_difference, verdict

    rounds, notes = one_environment_per(rounds, task_of, task_block("IMP rounds"))
    rows = {}
    for task in dict.fromkeys(r["task"] for r in rounds):
        s = round(reference[task], 2)
        at = lambda o, sparsity: {r["seed"]: recorded_score(r) for r in rounds
                                  if (r["task"], r["optimizer"]) == (task, o)
                                  and round(r["sparsity"], 2) == sparsity}
        adam, sam = at("adam", s), at("sam", s)
        seeds = sorted(set(adam) & set(sam))
        if not seeds:
            continue
        row = {"ticket sparsity": f"{100 * s:.0f}%"}
        for o in ("adam", "sam"):
            for name, sparsity in (("dense", 0.0), ("ticket", s)):
                values = list(at(o, sparsity).values())
                row[f"{OPTIMIZER_NAMES[o]} {name}"] = pm(values) if values else "-"
        d = paired_difference([sam[k] for k in seeds], [adam[k] for k in seeds])
        row["SAM − Adam ticket"] = f"{100 * d.mean:+.1f}"
        row["95% CI"] = d.interval()
        row["paired seeds"] = len(seeds)
        row["verdict"] = verdict(d)
        for optimizer, value in zip(("Adam", "SAM"), IMP_REWIND.get(task, (None, None))):
            row[f"{optimizer} ticket (paper)"] = f"{value:.1f}" if value is not None else "-"
        rows[TASK_NAMES[task]] = row
    return with_notes(pd.DataFrame.from_dict(rows, orient="index").rename_axis("task"), notes)


def mask_effects(tickets: list[dict]) -> pd.DataFrame:
    """The two questions of the paper's Table 2, in points (mean difference ± its standard error
    over seeds, beside the paper's difference of means): does the SAM *mask* beat the Adam mask
    under a fixed optimizer, and does SAM *fine-tuning* beat Adam under a fixed mask? Each
    (task, sparsity) block is of one environment, as in :func:`mask_table`."""
    tickets, notes = _one_environment_per_block(tickets)
    groups = _ticket_scores(tickets)
    comparisons = [(f"SAM mask − Adam mask, {o} fine-tuning", ("sam", o), ("adam", o))
                   for o in ("adam", "sam")]
    comparisons += [(f"SAM − Adam fine-tuning, {m} mask", (m, "sam"), (m, "adam"))
                    for m in ("random", "adam", "sam")]
    rows = {}
    for task, sparsity in dict.fromkeys(key[:2] for key in groups):
        paper = MASK_X_OPTIMIZER.get((task, sparsity), {})
        for label, better, worse in comparisons:
            a, b = groups.get((task, sparsity, *better)), groups.get((task, sparsity, *worse))
            if not a or not b or min(len(a), len(b)) < 2:  # no error bar from one seed
                continue
            (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
            error = (sa ** 2 / len(a) + sb ** 2 / len(b)) ** 0.5
            rows[(TASK_NAMES[task], f"{100 * sparsity:.0f}%", label)] = {
                "ours": f"{100 * (ma - mb):+.1f} ± {100 * error:.1f}",
                "paper": (f"{paper[better][0] - paper[worse][0]:+.1f}"
                          if better in paper and worse in paper else "-")}
    index = pd.MultiIndex.from_tuples(list(rows), names=["task", "sparsity", "comparison (points)"])
    return with_notes(pd.DataFrame(list(rows.values()), index=index, columns=["ours", "paper"]),
                      notes)


# The four differences of the paper's transfer figures, in points: ("ticket", o) is the SAM
# ticket minus the Adam ticket under optimizer o (Figure 8), ("optimizer", m) SAM minus Adam
# fine-tuning on the m-found ticket (Figure 9). Each: (label, (mask, optimizer) - (mask, optimizer)).
TRANSFER_PANELS = {
    ("ticket", "adam"): ("SAM − Adam ticket, Adam fine-tuning", ("sam", "adam"), ("adam", "adam")),
    ("ticket", "sam"): ("SAM − Adam ticket, SAM fine-tuning", ("sam", "sam"), ("adam", "sam")),
    ("optimizer", "adam"): ("SAM − Adam fine-tuning, Adam ticket", ("adam", "sam"),
                            ("adam", "adam")),
    ("optimizer", "sam"): ("SAM − Adam fine-tuning, SAM ticket", ("sam", "sam"), ("sam", "adam")),
}


def transfer_differences(cells: list[dict]) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
    """Per panel of :data:`TRANSFER_PANELS`, the difference in points on each (source, target)
    pair where both runs are stored. ``cells`` are transfer records and, for the diagonal
    (source = target), ticket records; random masks are ignored. The runs of a pair must be of
    one environment (else ``ValueError``, naming them)."""
    found = [r for r in cells if r["mask"] in ("adam", "sam")]
    for (s, t), runs in _by_pair(found).items():
        check_one_environment(runs, f"the transfer {TASK_NAMES[s]} → {TASK_NAMES[t]}")
    score = {(r.get("source", r["task"]), r["task"], r["mask"], r["optimizer"]): recorded_score(r)
             for r in found}
    pairs = dict.fromkeys(key[:2] for key in score)
    return {panel: {(s, t): 100 * (score[(s, t, *better)] - score[(s, t, *worse)])
                    for s, t in pairs if (s, t, *better) in score and (s, t, *worse) in score}
            for panel, (_, better, worse) in TRANSFER_PANELS.items()}


def _by_pair(cells: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Transfer and ticket records by (source, target): a ticket record's source is its task."""
    pairs = defaultdict(list)
    for r in cells:
        pairs[(r.get("source", r["task"]), r["task"])].append(r)
    return pairs


def transfer_table(cells: list[dict]) -> pd.DataFrame:
    """Each measured (source, target) pair's four differences in points beside the paper's (its
    Figures 8 and 9, BERT-base), and their means over the pairs shown. Each pair is of one
    environment; the means are over the pairs of the commonest one (a note names the others)."""
    ours = transfer_differences(cells)
    pairs = list(dict.fromkeys(pair for diffs in ours.values() for pair in diffs))
    averaged, note = one_environment([r for r in cells if r["mask"] in ("adam", "sam")],
                                     "the means over pairs")
    kept = set(_by_pair(averaged))
    groups = {f"{TASK_NAMES[s]} → {TASK_NAMES[t]}": [(s, t)] for s, t in pairs}
    groups["mean"] = [pair for pair in pairs if pair in kept]
    rows = {}
    for label, chosen in groups.items():
        row = {}
        for panel, (name, _, _) in TRANSFER_PANELS.items():
            mine = [ours[panel][p] for p in chosen if p in ours[panel]]
            theirs = [TRANSFER[panel][p] for p in chosen if p in TRANSFER[panel]]
            row[(name, "ours")] = f"{statistics.fmean(mine):+.1f}" if mine else "-"
            row[(name, "paper")] = f"{statistics.fmean(theirs):+.1f}" if theirs else "-"
        rows[label] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return with_notes(table.rename_axis("source → target"), [note] if note else [])


def seeded_transfer_table(cells: list[dict]) -> pd.DataFrame:
    """Ticket transfer over several seeds: per (source, target) pair, the SAM ticket minus the
    Adam ticket under each fine-tuning optimizer (the paper's Figure 8), paired by seed, with its
    95% t interval and verdict (the paper's claim: SAM's ticket transfers better), beside the
    paper's cell. Each pair's runs are of one environment (else ``ValueError``)."""
    from flatcomp.stats import paired_difference, pairs_of, verdict

    found = [r for r in cells if r["mask"] in ("adam", "sam")]
    rows = {}
    for (s, t), runs in _by_pair(found).items():
        check_one_environment(runs, f"the transfer {TASK_NAMES[s]} → {TASK_NAMES[t]}")
        row = {}
        for o in ("adam", "sam"):
            name, better, worse = TRANSFER_PANELS["ticket", o]
            pairs = pairs_of(runs, lambda r: (r["mask"], r["optimizer"]), (better, worse),
                             lambda r: r["seed"])
            d = paired_difference([recorded_score(a) for a, _ in pairs],
                                  [recorded_score(b) for _, b in pairs]) if pairs else None
            row[(name, "ours")] = f"{100 * d.mean:+.1f}" if d else "-"
            row[(name, "95% CI")] = d.interval() if d else "-"
            row[(name, "seeds")] = len(pairs)
            row[(name, "verdict")] = verdict(d) if d else "-"
            paper = TRANSFER["ticket", o].get((s, t))
            row[(name, "paper")] = f"{paper:+.1f}" if paper is not None else "-"
        rows[f"{TASK_NAMES[s]} → {TASK_NAMES[t]}"] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    if rows:
        table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table.rename_axis("source → target")


def ticket_origin_table(records: list[dict]) -> pd.DataFrame:
    """Where the tickets of ticket or transfer records came from: the IMP round that pruned each,
    the device it trained on and its dev score there, beside the score stored for that round (the
    two differ where the ticket was remade on another machine)."""
    rows = {}
    for r in records:
        origin = r.get("ticket")
        if origin:
            stored = origin["stored_round_score"]
            rows[origin["imp_round"]] = {
                "trained on": origin["device"], "dev score": pct(origin["round_score"]),
                "stored record's score": pct(stored) if stored is not None else "-"}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("IMP round").sort_index()


def pooler_check_table(checks: list[dict], tickets: list[dict]) -> pd.DataFrame:
    """Each ticket of the pooler check beside the same ticket, seed and optimizer in the mask x
    optimizer table: the pooler weights the ticket keeps, and with that pooler and with a dense
    one the dev score (points) and the last epoch's training loss (a model that predicts one
    class for every row stays near ln 2 = 0.69 on a balanced pair task). A ticket that ran in
    another environment than its check is not shown beside it (a note says where each ran)."""
    found = {(r["task"], r["mask"], r["optimizer"], r["seed"]): r for r in tickets}
    apart = defaultdict(list)  # (check's environment, ticket's) -> the checks not compared

    def score_and_loss(r: dict | None) -> list[str]:
        if r is None:
            return ["-", "-"]
        return [pct(recorded_score(r)), f"{r['history'][-1]['train_loss']:.2f}"]

    rows = []
    for r in checks:
        ticket = found.get((r["task"], r["mask"], r["optimizer"], r["seed"]))
        if ticket is not None and None not in (environment(r), environment(ticket)) \
                and environment(r) != environment(ticket):
            apart[(environment(r), environment(ticket))].append(r)
            ticket = None
        rows.append([TASK_NAMES[r["task"]], OPTIMIZER_NAMES[r["mask"]],
                     OPTIMIZER_NAMES[r["optimizer"]], r["seed"],
                     f"{r['pooler_kept']:,} of {r['pooler_size']:,}",
                     *score_and_loss(ticket), *score_and_loss(r),
                     f"{100 * (recorded_score(r) - recorded_score(ticket)):+.1f}"
                     if ticket else "-"])
    columns = ["task", "mask", "fine-tuning", "seed", "pooler weights kept", "ticket",
               "ticket train loss", "dense pooler", "dense pooler train loss", "difference"]
    notes = [f"{units_of(rs)} ran in another environment than their tickets (the appendix "
             "says where each ran): the ticket columns and the difference are left empty."
             for rs in apart.values()]
    return with_notes(pd.DataFrame(rows, columns=columns).set_index(columns[:4]), notes)


def overhead_table(timings: list[dict]) -> pd.DataFrame:
    """Seconds per step without and with pruning masks (every interleaved repeat), and the
    overhead of the fastest masked repeat over the fastest dense one."""
    rows = [{"task": TASK_NAMES[r["task"]], "optimizer": OPTIMIZER_NAMES[r["optimizer"]],
             "sparsity": f"{100 * r['sparsity']:.0f}%", "steps timed": r["steps_timed"],
             "dense s/step": ", ".join(f"{t:.3f}" for t in r["seconds_per_step"]["dense"]),
             "masked s/step": ", ".join(f"{t:.3f}" for t in r["seconds_per_step"]["masked"]),
             "overhead": f"{100 * r['overhead']:+.1f}%"} for r in timings]
    return pd.DataFrame(rows).set_index(["task", "optimizer"])


def sharpness_correlation(records: list[dict]) -> pd.DataFrame:
    """Per task: Spearman's rank correlation between the sharpness of the tickets' subnetworks and
    their dev scores, over all tickets and over the found (Adam and SAM) ones only. Negative:
    flatter tickets score higher. Each task's tickets are of one environment."""
    records, notes = one_environment_per(records, task_of, task_block("ticket sharpness"))
    rows = {}
    for task in dict.fromkeys(r["task"] for r in records):
        mine = [r for r in records if r["task"] == task]
        found = [r for r in mine if r["mask"] != "random"]
        row = {}
        for label, group in (("all tickets", mine), ("Adam and SAM masks", found)):
            row[f"{label}: models"] = len(group)
            row[f"{label}: Spearman"] = _sharpness_spearman(group)
        rows[TASK_NAMES[task]] = row
    return with_notes(pd.DataFrame.from_dict(rows, orient="index").rename_axis("task"), notes)


def imp_sharpness_table(records: list[dict]) -> pd.DataFrame:
    """Per task, IMP's rounds with rewinding: at how many sparsities the SAM chain's subnetwork is
    the flatter of the two, at how many the flatter one scores higher, and Spearman's rank
    correlation between sharpness and dev score over every round of both chains (negative:
    flatter scores higher; sparsity moves both, so this one mixes its effect in), and each
    chain's median loss on the flatness rows (a model that has not fitted them can be flat).
    Each task's rounds are of one environment."""
    records, notes = one_environment_per(records, task_of, task_block("IMP round sharpness"))
    rows = {}
    for task in dict.fromkeys(r["task"] for r in records):
        mine = [r for r in records if r["task"] == task]
        pairs = [(a, s) for a in mine for s in mine if a["optimizer"] == "adam"
                 and s["optimizer"] == "sam" and a["round"] == s["round"]]
        flatter_sam = sum(s["sharpness"] < a["sharpness"] for a, s in pairs)
        decided = [(a, s) for a, s in pairs if recorded_score(s) != recorded_score(a)]
        flatter_wins = sum((s["sharpness"] < a["sharpness"]) == (recorded_score(s) > recorded_score(a))
                           for a, s in decided)
        losses = {o: [r["loss"] for r in mine if r["optimizer"] == o] for o in ("adam", "sam")}
        rows[TASK_NAMES[task]] = {
            "sparsities": len(pairs), "SAM's subnetwork flatter": f"{flatter_sam} of {len(pairs)}",
            "the flatter one scores higher": f"{flatter_wins} of {len(decided)}",
            "rounds": len(mine), "Spearman, all rounds": _sharpness_spearman(mine),
            "median training loss, Adam / SAM": " / ".join(
                f"{statistics.median(v):.2f}" if v else "-" for v in losses.values())}
    return with_notes(pd.DataFrame.from_dict(rows, orient="index").rename_axis("task"), notes)


def _sharpness_spearman(records: list[dict]) -> str:
    """Spearman's rank correlation between sharpness and dev score over ``records`` ("-" for
    fewer than three)."""
    from scipy.stats import spearmanr

    if len(records) < 3:
        return "-"
    rho = spearmanr([r["sharpness"] for r in records], [recorded_score(r) for r in records])
    return f"{rho.statistic:+.2f}"


def overlap_table(analyses: list[dict]) -> pd.DataFrame:
    """Per task, how much the Adam and SAM tickets agree: the fraction of prunable weights on
    which the two masks agree, and the Jaccard overlap of what they keep, each beside two
    independent random masks of the same densities."""
    rows = {TASK_NAMES[a["task"]]: {
        "sparsity": f"{100 * a['sparsity']:.0f}%",
        "agreement": f"{100 * a['overlap']['agreement']:.1f}%",
        "agreement by chance": f"{100 * a['overlap']['chance_agreement']:.1f}%",
        "Jaccard of kept weights": f"{a['overlap']['jaccard']:.3f}",
        "Jaccard by chance": f"{a['overlap']['chance_jaccard']:.3f}"} for a in analyses}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("task")


def layer_pruned(analyses: list[dict], layer: str, size: int) -> pd.DataFrame:
    """Per task, how much of one prunable matrix (``size`` weights) each ticket prunes, and how
    many of its weights it keeps."""
    rows = {}
    for a in analyses:
        row = {"ticket sparsity": f"{100 * a['sparsity']:.0f}%"}
        for optimizer in ("adam", "sam"):
            pruned = a["layers"][optimizer][layer]
            row[f"{OPTIMIZER_NAMES[optimizer]} ticket: pruned"] = f"{100 * pruned:.2f}%"
            row[f"{OPTIMIZER_NAMES[optimizer]} ticket: kept"] = round((1 - pruned) * size)
        rows[TASK_NAMES[a["task"]]] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("task")


# ---------------------------------------------------------------- figures

def _log_x(ax: plt.Axes) -> None:
    """A log x axis ticked at 1, 2 and 5 times the powers of ten, as plain numbers (matplotlib's
    own minor labels, such as 4×10⁻², overlap in a narrow panel)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(plt.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())


def imp_curves(rounds: list[dict], reference: dict[str, float],
               paper: dict[str, tuple[float, float]]) -> plt.Figure:
    """Dev score against sparsity along IMP, one panel per task: Adam and SAM (colour), with
    rewinding (solid) and without (dashed); a vertical line at the task's ``reference`` ticket
    sparsity, and the ``paper``'s (Adam, SAM) scores there as crosses."""
    tasks = list(dict.fromkeys(r["task"] for r in rounds))
    fig, axes = task_panels(tasks)
    for ax, task in zip(axes, tasks):
        for (optimizer, rewind) in dict.fromkeys((r["optimizer"], r["rewind"]) for r in rounds
                                                 if r["task"] == task):
            mine = sorted((r for r in rounds if (r["task"], r["optimizer"], r["rewind"])
                           == (task, optimizer, rewind)), key=lambda r: r["round"])
            ax.plot([100 * r["sparsity"] for r in mine],
                    [100 * recorded_score(r) for r in mine],
                    color=OPTIMIZER_COLORS[optimizer], linestyle="-" if rewind else "--",
                    marker="o", markersize=3,
                    label=f"{optimizer}, {'rewind' if rewind else 'continue'}")
        if task in reference:
            ax.axvline(100 * reference[task], color="gray", linestyle=":",
                       label="reference sparsity")
        if task in paper and task in reference:
            for optimizer, score in zip(("adam", "sam"), paper[task]):
                ax.scatter(100 * reference[task], score, marker="x", s=50,
                           color=OPTIMIZER_COLORS[optimizer], label=f"paper, {optimizer}")
        label_task_panel(ax, task, "sparsity of the prunable weights (%)")
    legend_below(fig, axes)
    return fig


def transfer_heatmaps(cells: list[dict]) -> plt.Figure:
    """The paper's Figures 8 and 9: source task (rows) by target task (columns), dev score in
    points. Top: SAM ticket minus Adam ticket, fine-tuned with Adam (left) and with SAM (right).
    Bottom: SAM fine-tuning minus Adam fine-tuning, on the Adam ticket and on the SAM ticket.
    ``cells`` are transfer and ticket records (the diagonal), with ``source`` or not."""
    differences = transfer_differences(cells)
    tasks = list(dict.fromkeys(t for diffs in differences.values() for pair in diffs
                               for t in pair))
    fig, axes = plt.subplots(2, 2, figsize=(BOOK_WIDTH, 6.2), layout="constrained")
    for ax, (panel, (title, _, _)) in zip(axes.flat, TRANSFER_PANELS.items()):
        grid = np.full((len(tasks), len(tasks)), np.nan)
        for (source, target), value in differences[panel].items():
            grid[tasks.index(source), tasks.index(target)] = value
        limit = max(1.0, np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
        image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit)
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):  # white on the darkest cells
                ax.text(j, i, f"{value:+.1f}", ha="center", va="center", fontsize=SMALL,
                        color="white" if abs(value) > 0.6 * limit else "black")
        names = [TASK_NAMES[t] for t in tasks]
        ax.set_xticks(range(len(tasks)), names, rotation=90)
        ax.set_yticks(range(len(tasks)), names)
        ax.tick_params(labelsize=SMALL)
        ax.set_xlabel("target task", fontsize=9)
        ax.set_ylabel("source task (ticket)", fontsize=9)
        ax.set_title(title.replace(", ", ",\n", 1), fontsize=9)
        fig.colorbar(image, ax=ax, label="points", shrink=0.8).ax.tick_params(labelsize=SMALL)
    return fig


MASK_MARKERS = {"random": "o", "adam": "s", "sam": "^"}


def ticket_sharpness(records: list[dict]) -> plt.Figure:
    """Each ticket's dev score against the sharpness of its subnetwork (log x), one panel per
    task: colour the optimizer that fine-tuned it, marker the mask (random, Adam's, SAM's)."""
    tasks = list(dict.fromkeys(r["task"] for r in records))
    fig, axes = task_panels(tasks)
    for ax, task in zip(axes, tasks):
        for mask, optimizer in dict.fromkeys((r["mask"], r["optimizer"]) for r in records):
            mine = [r for r in records if (r["task"], r["mask"], r["optimizer"])
                    == (task, mask, optimizer)]
            ax.scatter([r["sharpness"] for r in mine],
                       [100 * recorded_score(r) for r in mine],
                       marker=MASK_MARKERS[mask], color=OPTIMIZER_COLORS[optimizer], s=30,
                       label=f"{mask} mask, {optimizer}")
        _log_x(ax)
        label_task_panel(ax, task, f"sharpness of the subnetwork (rho = {records[0]['rho']:g})")
    legend_below(fig, axes)
    return fig


def imp_sharpness(records: list[dict]) -> plt.Figure:
    """Each IMP round's dev score against the sharpness of its subnetwork (log x), one panel per
    task: one path per optimizer, from the dense round to the sparsest, its sparsities labelled."""
    tasks = list(dict.fromkeys(r["task"] for r in records))
    fig, axes = task_panels(tasks)
    for ax, task in zip(axes, tasks):
        for optimizer in dict.fromkeys(r["optimizer"] for r in records):
            chain = sorted((r for r in records if (r["task"], r["optimizer"]) == (task, optimizer)),
                           key=lambda r: r["round"])
            x, y = [r["sharpness"] for r in chain], [100 * recorded_score(r) for r in chain]
            ax.plot(x, y, marker="o", markersize=4, color=OPTIMIZER_COLORS[optimizer],
                    label=f"{OPTIMIZER_NAMES[optimizer]} chain")
            for r, xi, yi in zip(chain, x, y):
                ax.annotate(f"{100 * r['sparsity']:.0f}%", (xi, yi), fontsize=SMALL,
                            xytext=(3, 3), textcoords="offset points")
        _log_x(ax)
        label_task_panel(ax, task, f"sharpness of the subnetwork (rho = {records[0]['rho']:g})")
    legend_below(fig, axes)
    return fig


_SUBLAYER_ORDER = ("query", "key", "value", "attention.output", "intermediate", "output")


def _model_order(name: str) -> tuple[int, int]:
    """Sort key of a prunable weight's name in forward order: encoder layer, then sublayer
    (stored results keep their keys sorted alphabetically); the pooler last."""
    layer = re.search(r"layer\.(\d+)\.", name)
    if layer is None:
        return (10 ** 6, 0)
    rest = name[layer.end():]
    return (int(layer.group(1)),
            next(i for i, part in enumerate(_SUBLAYER_ORDER) if part in rest))


def layer_sparsity(analysis: dict) -> plt.Figure:
    """Where each ticket prunes, and how much the two agree: per prunable layer (in model order),
    the fraction pruned by the Adam and by the SAM ticket (left), and the Jaccard overlap of what
    they keep beside that of two independent random masks of the same densities (right)."""
    names = sorted(analysis["layers"]["adam"], key=_model_order)
    short = [n.replace("bert.encoder.layer.", "L").replace(".weight", "")
             .replace("attention.self.", "").replace("attention.output.dense", "attn-out")
             .replace("intermediate.dense", "ffn-in").replace("output.dense", "ffn-out")
             .replace("bert.pooler.dense", "pooler") for n in names]
    x = np.arange(len(names))
    fig, axes = plt.subplots(2, 1, figsize=(BOOK_WIDTH, 6.4), sharex=True, layout="constrained")
    for optimizer in ("adam", "sam"):
        axes[0].plot(x, [100 * analysis["layers"][optimizer][n] for n in names], marker="o",
                     markersize=3, color=OPTIMIZER_COLORS[optimizer], label=f"{optimizer} ticket")
    axes[0].axhline(100 * analysis["sparsity"], color="gray", linestyle=":", label="overall")
    overlap = analysis["overlap"]["layers"]
    axes[1].plot(x, [overlap[n]["jaccard"] for n in names], marker="o", markersize=3,
                 color="tab:purple", label="Adam vs SAM ticket")
    axes[1].plot(x, [overlap[n]["chance_jaccard"] for n in names], color="gray",
                 linestyle="--", label="two random masks")
    axes[1].set_ylabel("Jaccard overlap of the kept weights", fontsize=9)
    axes[0].set_ylabel("pruned (%)", fontsize=9)
    axes[1].set_xticks(x, short, rotation=90)
    axes[1].set_xlabel("layer", fontsize=9)
    for ax in axes:
        ax.tick_params(labelsize=SMALL)
        ax.legend(fontsize=SMALL)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{TASK_NAMES[analysis['task']]} tickets at {100 * analysis['sparsity']:.0f}% "
                 "sparsity", fontsize=10)
    return fig
