"""Chapter 2, "Flat minima": the figures of the two-parameter toy of :mod:`flatcomp.toy` (one sharp,
one flat minimum)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from flatcomp.lab.reporting import BOOK_WIDTH, SMALL

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
