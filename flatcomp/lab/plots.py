"""The book's figures: stored results in, a matplotlib Figure out (labelled axes, a legend)."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np

from flatcomp.lab.tables import (FLATNESS_MEASURES, OPTIMIZER_NAMES, TASK_NAMES, TRANSFER_PANELS,
                                 transfer_differences)
from flatcomp.metrics import MAIN_METRIC, recorded_score

OPTIMIZER_COLORS = {"adam": "tab:blue", "sam": "tab:orange", "swa": "tab:green"}

# The book's text column is 676 CSS px wide in a 1280 px window, and the notebooks draw at 100 dpi:
# a figure at most BOOK_WIDTH inches wide is shown at its own size, so that its smallest text,
# SMALL points, reads as SMALL points (tests/test_figures.py checks every figure of the book).
BOOK_WIDTH = 6.7
SMALL = 8


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


def _task_panels(tasks: list[str], height: float = 2.8,
                 per_row: int = 2) -> tuple[plt.Figure, np.ndarray]:
    """One panel per task, ``per_row`` to a row (unused panels of the last row hidden), laid out
    by matplotlib's constrained layout so that a legend fits below them (:func:`_legend_below`)."""
    columns, rows = min(per_row, len(tasks)), -(-len(tasks) // per_row)
    fig, axes = plt.subplots(rows, columns, figsize=(BOOK_WIDTH, height * rows + 0.6),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    return fig, axes.flat[:len(tasks)]


def _label_task_panel(ax: plt.Axes, task: str, xlabel: str) -> None:
    """Title, axis labels (the task's dev metric in percent) and grid of a task panel."""
    ax.set_title(TASK_NAMES[task], fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(f"dev {MAIN_METRIC[task]} (%)", fontsize=9)
    ax.tick_params(labelsize=SMALL)
    ax.grid(alpha=0.3)


def _log_x(ax: plt.Axes) -> None:
    """A log x axis ticked at 1, 2 and 5 times the powers of ten, as plain numbers (matplotlib's
    own minor labels, such as 4×10⁻², overlap in a narrow panel)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(plt.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())


def _legend_below(fig: plt.Figure, axes, title: str | None = None) -> None:
    """One legend for every panel, below them all: each label once, in the order first drawn."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncol=min(3, len(handles)), fontsize=SMALL, title=title, title_fontsize=SMALL,
               frameon=False)


def sweep_curves(runs: list[dict]) -> plt.Figure:
    """Dev score after each epoch, per task, for every optimizer and learning rate tried."""
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    fig, axes = _task_panels(tasks)
    lrs = sorted({r["lr"] for r in runs})
    styles = dict(zip(lrs, ["-", "--", ":", "-."]))
    for ax, task in zip(axes, tasks):
        metric = MAIN_METRIC[task]
        for r in (r for r in runs if r["task"] == task):
            epochs = [h["epoch"] for h in r["history"]]
            ax.plot(epochs, [100 * h[metric] for h in r["history"]], marker="o", markersize=3,
                    linestyle=styles[r["lr"]], color=OPTIMIZER_COLORS[r["optimizer"]],
                    label=f"{r['optimizer']}, lr {r['lr']:g}")
        _label_task_panel(ax, task, "epoch")
    _legend_below(fig, axes)
    return fig


def epoch_curves(runs: list[dict]) -> plt.Figure:
    """Dev score after each epoch of every fine-tune, per task: one line per seed, coloured by
    optimizer, so a reader sees whether each has plateaued."""
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    fig, axes = _task_panels(tasks)
    for ax, task in zip(axes, tasks):
        metric = MAIN_METRIC[task]
        for r in (r for r in runs if r["task"] == task):
            ax.plot([h["epoch"] for h in r["history"]], [100 * h[metric] for h in r["history"]],
                    color=OPTIMIZER_COLORS[r["optimizer"]], marker="o", markersize=3, alpha=0.8,
                    label=r["optimizer"] if r["seed"] == min(x["seed"] for x in runs) else None)
        _label_task_panel(ax, task, "epoch")
    _legend_below(fig, axes, title="one line per seed")
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
    _legend_below(fig, axes[:1])
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


def imp_curves(rounds: list[dict], reference: dict[str, float],
               paper: dict[str, tuple[float, float]]) -> plt.Figure:
    """Dev score against sparsity along IMP, one panel per task: Adam and SAM (colour), with
    rewinding (solid) and without (dashed); a vertical line at the task's ``reference`` ticket
    sparsity, and the ``paper``'s (Adam, SAM) scores there as crosses."""
    tasks = list(dict.fromkeys(r["task"] for r in rounds))
    fig, axes = _task_panels(tasks)
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
        _label_task_panel(ax, task, "sparsity of the prunable weights (%)")
    _legend_below(fig, axes)
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
    fig, axes = _task_panels(tasks)
    for ax, task in zip(axes, tasks):
        for mask, optimizer in dict.fromkeys((r["mask"], r["optimizer"]) for r in records):
            mine = [r for r in records if (r["task"], r["mask"], r["optimizer"])
                    == (task, mask, optimizer)]
            ax.scatter([r["sharpness"] for r in mine],
                       [100 * recorded_score(r) for r in mine],
                       marker=MASK_MARKERS[mask], color=OPTIMIZER_COLORS[optimizer], s=30,
                       label=f"{mask} mask, {optimizer}")
        _log_x(ax)
        _label_task_panel(ax, task, f"sharpness of the subnetwork (rho = {records[0]['rho']:g})")
    _legend_below(fig, axes)
    return fig


def imp_sharpness(records: list[dict]) -> plt.Figure:
    """Each IMP round's dev score against the sharpness of its subnetwork (log x), one panel per
    task: one path per optimizer, from the dense round to the sparsest, its sparsities labelled."""
    tasks = list(dict.fromkeys(r["task"] for r in records))
    fig, axes = _task_panels(tasks)
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
        _label_task_panel(ax, task, f"sharpness of the subnetwork (rho = {records[0]['rho']:g})")
    _legend_below(fig, axes)
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


# Chapter 2: the two-parameter toy of flatcomp.toy (one sharp, one flat minimum).

MINIMUM_COLORS = {"sharp": "tab:red", "flat": "tab:green", "neither": "tab:gray"}


def _toy_contours(ax: plt.Axes, landscape: tuple[np.ndarray, ...], minima: dict) -> object:
    """Filled loss contours on log-spaced levels, with both minima marked."""
    from matplotlib.colors import LogNorm

    x, y, z = landscape
    levels = np.geomspace(0.01, 100, 17)
    filled = ax.contourf(x, y, np.clip(z, levels[0], levels[-1]), levels=levels, norm=LogNorm(),
                         cmap="Blues_r", alpha=0.9)
    ax.contour(x, y, z, levels=levels, colors="white", linewidths=0.4, alpha=0.6)
    for name, m in minima.items():
        ax.plot(*np.asarray(m), marker="*", markersize=16, color=MINIMUM_COLORS[name],
                markeredgecolor="black", linestyle="none", label=f"{name} minimum", zorder=5)
    ax.set_xlabel("weight $w_1$")
    ax.set_ylabel("weight $w_2$")
    ax.set_aspect("equal")
    return filled


def toy_landscape(landscape: tuple[np.ndarray, ...], minima: dict,
                  sections: dict[str, tuple[np.ndarray, np.ndarray]]) -> plt.Figure:
    """Left: the toy loss over the plane. Right: the loss across the valley through each minimum."""
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(BOOK_WIDTH, 7.6), gridspec_kw={"height_ratios": [1.3, 1]})
    filled = _toy_contours(ax, landscape, minima)
    fig.colorbar(filled, ax=ax, label="loss $L(w)$", ticks=[0.01, 0.1, 1, 10, 100], format="%g")
    ax.legend(loc="upper right", fontsize=9, framealpha=0.9)
    ax.set_title("the toy loss (log colour scale)")
    for name, (d, values) in sections.items():
        bx.plot(d, values, color=MINIMUM_COLORS[name], linewidth=2,
                label=f"through the {name} minimum")
    bx.set_ylim(-0.05, 2.0)
    bx.set_xlabel("distance across the valley, $w_2 - w_2^*$")
    bx.set_ylabel("loss $L(w)$")
    bx.set_title("a cut across the valley at each minimum")
    bx.legend(loc="upper center", fontsize=9)
    bx.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def toy_trajectories(landscape: tuple[np.ndarray, ...], minima: dict,
                     paths: dict[str, list[np.ndarray]]) -> plt.Figure:
    """One panel per optimizer: its paths over the loss contours, from the same starts."""
    fig, axes = plt.subplots(1, len(paths), figsize=(BOOK_WIDTH, 0.8 * BOOK_WIDTH / len(paths) + 0.9),
                             squeeze=False, layout="constrained")
    colors = plt.cm.Dark2(np.arange(8))
    for ax, (title, runs) in zip(axes[0], paths.items()):
        _toy_contours(ax, landscape, minima)
        for i, path in enumerate(runs):
            ax.plot(path[:, 0], path[:, 1], color=colors[i], linewidth=1.2, marker=".",
                    markersize=2.5)
            ax.plot(*path[0], marker="o", markersize=8, color=colors[i], markeredgecolor="black",
                    linestyle="none", label="start" if i == 0 else None)
            ax.plot(*path[-1], marker="s", markersize=15, fillstyle="none", color=colors[i],
                    markeredgewidth=2, linestyle="none", label="end" if i == 0 else None, zorder=6)
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=SMALL)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=SMALL, frameon=False)
    return fig


def toy_basins(maps: dict[str, tuple[np.ndarray, np.ndarray]], minima: dict) -> plt.Figure:
    """One panel per optimizer: each grid start coloured by the minimum it ends in."""
    fig, axes = plt.subplots(1, len(maps), figsize=(BOOK_WIDTH, 0.75 * BOOK_WIDTH / len(maps) + 1.1),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, (title, (starts, where)) in zip(axes[0], maps.items()):
        for name in ("sharp", "flat", "neither"):
            chosen = where == name
            label = f"ends at {name} minimum" if name != "neither" else "ends elsewhere"
            if chosen.any():
                ax.scatter(starts[chosen, 0], starts[chosen, 1], s=14, color=MINIMUM_COLORS[name],
                           label=label)
        for name, m in minima.items():
            ax.plot(*np.asarray(m), marker="*", markersize=15, color=MINIMUM_COLORS[name],
                    markeredgecolor="black", linestyle="none")
        ax.set_title(f"{title}:\n{int((where == 'flat').sum())} of {len(where)} end flat",
                     fontsize=9)
        ax.tick_params(labelsize=SMALL)
        ax.set_xlabel("start $w_1$")
        ax.set_aspect("equal")
    axes[0, 0].set_ylabel("start $w_2$")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9, frameon=False,
               markerscale=2)
    return fig


def _plain_log_axes(ax: plt.Axes, xticks) -> None:
    """Log-log axes with the x ticks at the values tried, written as plain numbers."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(list(xticks), [f"{x:g}" for x in xticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())


def toy_noise(tests: dict) -> plt.Figure:
    """Mean loss increase under Gaussian weight noise against sigma: 1/2 sigma^2 tr(H) (lines)
    and the Monte Carlo mean (markers), for each minimum."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, df in tests.items():
        color = MINIMUM_COLORS[name]
        ax.plot(df.index, df["predicted"], color=color, linestyle="--",
                label=rf"{name}: predicted $\sigma^2\,\mathrm{{tr}}\,H\,/\,2$")
        ax.errorbar(df.index, df["measured"], yerr=2 * df["stderr"], color=color, marker="o",
                    linestyle="none", capsize=3, label=f"{name}: measured (± 2 s.e.)")
    return _finish_toy(fig, ax, df.index, r"noise scale $\sigma$ (weight units)",
                       r"mean loss increase $E[\Delta L]$")


def toy_quantization(tests: dict) -> plt.Figure:
    """Loss increase after rounding the weights to a grid of step Delta, for each minimum: the
    grid through 0 (crosses), random grid offsets (circles) and 1/2 (Delta^2/12) tr(H) (lines)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, df in tests.items():
        color = MINIMUM_COLORS[name]
        ax.plot(df.index, df["predicted, random grid"], color=color, linestyle="--",
                label=rf"{name}: predicted $\Delta^2\,\mathrm{{tr}}\,H\,/\,24$")
        ax.plot(df.index, df["increase, random grid"], color=color, marker="o",
                linestyle="none", label=f"{name}: mean over random grids")
        ax.plot(df.index, df["increase"], color=color, marker="x", markersize=9,
                linestyle="none", label=f"{name}: the grid through 0")
    return _finish_toy(fig, ax, df.index, r"grid step $\Delta$ (weight units)",
                       r"loss increase $\Delta L$")


def _finish_toy(fig: plt.Figure, ax: plt.Axes, steps, xlabel: str, ylabel: str) -> plt.Figure:
    """Log axes with plain tick labels at ``steps``, labels, legend and grid."""
    _plain_log_axes(ax, steps)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
