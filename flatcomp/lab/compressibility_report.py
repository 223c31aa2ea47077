"""The chapter "Does flatness predict compressibility?": its tables and figure.

Each model that records how flat it is and how it breaks (the tuned protocol's models and the rho
sweep's, :mod:`flatcomp.lab.experiments.tuned` and :mod:`flatcomp.lab.experiments.compressibility`)
is one point. For each flatness measure and each kind of damage the chapter gives Kendall's tau
over the models (Kendall, 1938) with a percentile bootstrap interval over models, the same within
each optimizer and within each task, and Spearman's partial correlation once the dev score and
the training loss are accounted for (the ranks of both variables regressed on the ranks of those
two, then the residuals correlated). The hypothesis "flatter models lose less" is a positive
correlation between sharpness and damage, judged by the book's rule
(:func:`flatcomp.stats.verdict`).
"""

from __future__ import annotations

import copy

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
import numpy as np
import pandas as pd
import torch
from scipy import stats as scipy_stats

from flatcomp.lab.reporting import (BOOK_WIDTH, OPTIMIZER_COLORS, OPTIMIZER_NAMES, SMALL,
                                    TASK_NAMES, with_notes)
from flatcomp.stats import PairedDifference, verdict

# Below this many models, a bootstrap over models draws so few distinct points that its interval
# says nothing (at 3 concordant models it is +1 to +1): the chapter and the claims page wait.
MIN_MODELS = 10
FLATNESS = {"sharpness": "sharpness", "adaptive_sharpness": "adaptive sharpness",
            "top_eigenvalue": "top eigenvalue", "trace": "Hessian trace"}
# the one cell fixed before any model was trained (the claims page's row); the others are leads
PRIMARY = ("sharpness", "int8")
DAMAGE = {"int8": "int8 drop", "int8 per channel": "int8 per channel drop", "4 bit": "4-bit drop",
          "pruned 0.5": "50% pruning drop", "low rank 0.25": "quarter-rank drop"}


def model_points(records: list[dict]) -> pd.DataFrame:
    """One row per model: where it came from, its dev score and final training loss, its
    flatness measures and the points (x 100) each kind of compression costs it."""
    rows = []
    for r in records:
        c, f = r["compression"], r["flatness"]
        fp32 = c["scores"]["fp32"]
        damage = {"int8": fp32 - c["scores"]["int8"],
                  "int8 per channel": fp32 - c["scores"]["int8 per channel"],
                  "4 bit": fp32 - c["scores"]["4 bit"],
                  "pruned 0.5": fp32 - c["pruned"]["0.5"],
                  "low rank 0.25": fp32 - c["low_rank"]["0.25"]}
        rows.append({"model": r.get("environment", {}).get("unit", "?"),
                     "task": TASK_NAMES.get(r["task"], r["task"]),
                     "optimizer": OPTIMIZER_NAMES.get(r["optimizer"], r["optimizer"]),
                     "rho": r.get("rho"), "dev score": 100 * fp32,
                     "train loss": r["history"][-1]["train_loss"],
                     **{k: f[k] for k in FLATNESS}, **{k: 100 * v for k, v in damage.items()}})
    return pd.DataFrame(rows)


def kendall_with_interval(x: np.ndarray, y: np.ndarray, resamples: int = 1000,
                          seed: int = 0) -> PairedDifference:
    """Kendall's tau of ``x`` and ``y`` with the 95% percentile interval of a bootstrap over
    the points (seeded), as a :class:`~flatcomp.stats.PairedDifference` whose pairs are the
    points, so that :func:`~flatcomp.stats.verdict` can judge it."""
    tau = float(scipy_stats.kendalltau(x, y).statistic)
    rng = np.random.default_rng(seed)
    rows = np.stack([rng.integers(0, len(x), len(x)) for _ in range(resamples)])
    draws = kendall_tau_b(x[rows], y[rows])
    draws = draws[~np.isnan(draws)]
    low, high = np.quantile(draws, [0.025, 0.975]) if len(draws) else (np.nan, np.nan)
    return PairedDifference(tau, None, len(x), 0.95, float(np.std(draws, ddof=1)) if len(draws) > 1
                            else None, (float(low), float(high)))


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row of ``x`` with the same row of ``y`` (shape: rows x points),
    all rows at once: over the pairs of points, sum sign(dx) sign(dy) / sqrt(pairs untied in x)
    / sqrt(pairs untied in y) (Kendall, 1945), the same floating-point steps as
    ``scipy.stats.kendalltau``; NaN where a row is constant or holds a NaN."""
    first, second = np.triu_indices(x.shape[1], 1)
    sign_x = np.sign(x[:, first] - x[:, second])
    sign_y = np.sign(y[:, first] - y[:, second])
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = ((sign_x * sign_y).sum(axis=1) / np.sqrt(np.abs(sign_x).sum(axis=1))
               / np.sqrt(np.abs(sign_y).sum(axis=1)))
    return np.clip(tau, -1.0, 1.0)


def tau_within_groups(x: np.ndarray, y: np.ndarray, groups: np.ndarray,
                      smallest: int = 3) -> float:
    """Kendall's tau counting only pairs of points in the same group: each group's tau weighted
    by its number of pairs, n(n-1)/2 (groups of fewer than ``smallest`` points left out; NaN if
    none is left). A difference between the groups (tasks, say) cannot make it."""
    taus, weights = [], []
    for g in pd.unique(groups):
        mine = groups == g
        n = int(mine.sum())
        tau = scipy_stats.kendalltau(x[mine], y[mine]).statistic if n >= smallest else np.nan
        if not np.isnan(tau):
            taus.append(tau)
            weights.append(n * (n - 1) / 2)
    return float(np.average(taus, weights=weights)) if taus else np.nan


def partial_spearman(x: np.ndarray, y: np.ndarray, covariates: np.ndarray) -> float:
    """Spearman's correlation of ``x`` and ``y`` after the ranks of both are regressed on the
    ranks of ``covariates`` (columns) and replaced by the residuals."""
    def residual(v: np.ndarray) -> np.ndarray:
        design = np.column_stack([np.ones(len(v))] +
                                 [scipy_stats.rankdata(c) for c in covariates.T])
        ranks = scipy_stats.rankdata(v)
        coef, *_ = np.linalg.lstsq(design, ranks, rcond=None)
        return ranks - design @ coef
    return float(np.corrcoef(residual(x), residual(y))[0, 1])


def correlation_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per flatness measure and kind of damage: Kendall's tau over all models with its bootstrap
    interval and the verdict on "flatter models lose less" (a positive tau), tau within each
    optimizer, tau within task (:func:`tau_within_groups`), and the partial Spearman correlation
    given the dev score and the training loss. At least :data:`MIN_MODELS` models."""
    if len(points) < MIN_MODELS:
        raise ValueError(f"{len(points)} models: a correlation over models needs at least "
                         f"{MIN_MODELS} (store more `tuned` or `rho_sweep` units first)")
    rows = []
    for f, f_name in FLATNESS.items():
        for d, d_name in DAMAGE.items():
            x, y = points[f].to_numpy(float), points[d].to_numpy(float)
            tau = kendall_with_interval(x, y)
            row = {"flatness": f_name, "damage": d_name, "models": len(x),
                   "Kendall tau": f"{tau.mean:+.2f}", "95% CI": tau.interval(scale=1),
                   "verdict": verdict(tau, scale=1, unit="(tau)")}
            for optimizer, group in points.groupby("optimizer"):
                within = scipy_stats.kendalltau(group[f], group[d]).statistic \
                    if len(group) > 2 else np.nan
                row[f"tau, {optimizer} only"] = _signed(within)
            row["tau within task"] = _signed(tau_within_groups(x, y, points["task"].to_numpy()))
            covariates = points[["dev score", "train loss"]].to_numpy(float)
            row["partial (score, loss)"] = f"{partial_spearman(x, y, covariates):+.2f}" \
                if len(x) > 4 else "-"
            rows.append(row)
    cells = len(FLATNESS) * len(DAMAGE)
    note = (f"The test is the cell {FLATNESS[PRIMARY[0]]} against {DAMAGE[PRIMARY[1]]}, fixed "
            f"before any model was trained (the claims page's row). The other {cells - 1} cells "
            f"are leads: at 95%, about one in twenty reaches a verdict by chance.")
    counts = points["task"].value_counts(sort=False)
    tasks = ", ".join(t for t, n in counts.items() if n >= 3) or "none yet"
    by_task = (f"Tau within task counts only pairs of models of one task ({tasks}: a task with "
               f"fewer than 3 models is left out), so that no difference between tasks makes it.")
    return with_notes(pd.DataFrame(rows).set_index(["flatness", "damage"]), [note, by_task])


def _signed(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:+.2f}"


def correlation_summary(table: pd.DataFrame) -> str:
    """A sentence on :func:`correlation_table`: its primary cell's tau, interval, verdict and tau
    within task, and which of the other cells reach a verdict, with their tau within each
    optimizer and within task."""
    primary = (FLATNESS[PRIMARY[0]], DAMAGE[PRIMARY[1]])
    first = table.loc[primary]
    text = (f"Over {first['models']} models, the test, {primary[0]} against {primary[1]}, gives "
            f"tau {first['Kendall tau']} ({first['95% CI']}): {first['verdict']}; within task, "
            f"{first['tau within task']}.")
    within = [c for c in table.columns if c.startswith("tau, ")] + ["tau within task"]
    decided = [(cell, row) for cell, row in table.iterrows()
               if cell != primary and not row["verdict"].startswith("inconclusive")]
    if not decided:
        return text + f" None of the other {len(table) - 1} cells reaches a verdict."
    label = lambda c: c.removeprefix("tau, ").removeprefix("tau ")  # noqa: E731
    leads = "; ".join(
        f"{d} against {f}, tau {row['Kendall tau']} ({row['95% CI']}, {row['verdict']}; "
        + ", ".join(f"{label(c)} {row[c]}" for c in within) + ")"
        for (f, d), row in decided)
    reach = "reaches" if len(decided) == 1 else "reach"
    return text + f" Of the other {len(table) - 1} cells, {len(decided)} {reach} a verdict: " \
        f"{leads}."


def flatness_damage_scatter(points: pd.DataFrame) -> plt.Figure:
    """Each kind of damage (rows) against each flatness measure (columns, log scale), one point
    per model, coloured by optimizer (a triangle for the rho sweep's models), with Kendall's tau
    over all models above each panel."""
    colors = {OPTIMIZER_NAMES[k]: c for k, c in OPTIMIZER_COLORS.items()}
    fig, axes = plt.subplots(len(DAMAGE), len(FLATNESS), figsize=(BOOK_WIDTH, 9.0),
                             sharex="col", sharey="row", layout="constrained")
    swept = points["rho"].notna()
    for row, (d, d_name) in zip(axes, DAMAGE.items()):
        for ax, (f, f_name) in zip(row, FLATNESS.items()):
            for optimizer, group in points.groupby("optimizer"):
                mine = group["rho"].notna()
                for marker, part in (("o", group[~mine]), ("^", group[mine])):
                    ax.scatter(part[f], part[d], s=14, marker=marker, alpha=0.8,
                               color=colors.get(optimizer, "tab:gray"))
            tau = scipy_stats.kendalltau(points[f], points[d]).statistic
            ax.set_title(f"tau {tau:+.2f}", fontsize=SMALL, pad=2)
            if (points[f] > 0).all():  # measures that span decades; linear if any is not positive
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(subs=(1, 3)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.tick_params(labelsize=SMALL)
            ax.grid(alpha=0.3)
        row[0].set_ylabel(f"{d_name}\n(points)", fontsize=SMALL)
    for ax, f_name in zip(axes[-1], FLATNESS.values()):
        ax.set_xlabel(f_name, fontsize=SMALL)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=o) for o, c in colors.items()
               if o in set(points["optimizer"])]
    if swept.any():
        handles.append(plt.Line2D([], [], marker="^", ls="", color="tab:gray", label="rho sweep"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=SMALL)
    return fig


def low_rank_table(records: list[dict]) -> pd.DataFrame:
    """SAM against Adam at equal rank (the tuned protocol's models, paired by task and seed):
    per task, the points each loses to truncating every encoder Linear to a half and a quarter of
    its rank, Adam's loss minus SAM's with its t interval and the verdict on "SAM's models lose
    less", and the effective rank of the [CLS] features, SAM's minus Adam's."""
    from flatcomp.stats import paired_difference, pairs_of

    rows = []
    for task in dict.fromkeys(r["task"] for r in records):
        pairs = pairs_of([r for r in records if r["task"] == task], lambda r: r["optimizer"],
                         ("adam", "sam"), lambda r: r["seed"])
        if not pairs:
            continue
        row = {"task": TASK_NAMES.get(task, task), "pairs": len(pairs)}
        for fraction in ("0.5", "0.25"):
            lost = [[100 * (r["compression"]["scores"]["fp32"] -
                            r["compression"]["low_rank"][fraction]) for r in pair]
                    for pair in pairs]
            d = paired_difference([a for a, _ in lost], [s for _, s in lost])
            row[f"rank {fraction}: Adam − SAM loss"] = f"{d.mean:+.1f}"
            row[f"rank {fraction}: 95% CI"] = d.interval(scale=1)
            row[f"rank {fraction}: verdict"] = verdict(d, scale=1)
        ranks = [(a["compression"].get("cls_effective_rank"), s["compression"].get(
            "cls_effective_rank")) for a, s in pairs]
        known = [(a, s) for a, s in ranks if a is not None and s is not None]
        row["[CLS] effective rank, SAM − Adam"] = \
            f"{np.mean([s - a for a, s in known]):+.1f}" if known else "-"
        rows.append(row)
    return with_notes(pd.DataFrame(rows).set_index("task") if rows else pd.DataFrame())


# ---------------------------------------------------------------- the reparameterisation trap

def rescaled_copy(model: torch.nn.Module, qk: float, vo: float,
                  every_head: bool) -> torch.nn.Module:
    """A copy of a Hugging Face BERT whose heads are rescaled
    (:func:`flatcomp.rescaling.rescale_attention_head`, Q/K by ``qk``, V/O by ``vo``): every
    head of each layer (a per-matrix rescaling) or its first head only (a per-head one). The
    logits do not change."""
    from flatcomp.rescaling import encoder_layers, rescale_attention_head

    other = copy.deepcopy(model)
    heads = range(other.config.num_attention_heads) if every_head else range(1)
    for layer in range(len(encoder_layers(other))):
        for head in heads:
            rescale_attention_head(other, layer, head, qk=qk, vo=vo)
    return other


def trap_measures(model: torch.nn.Module, batch: dict, rho: float = 0.05,
                  sparsity: float = 0.5) -> dict:
    """What :func:`rescaling_trap` compares, for one model on one fixed batch."""
    from flatcomp import flatness
    from flatcomp.lab.train import apply_masks
    from flatcomp.pruning import magnitude_masks, prunable_weights
    from flatcomp.quantization import quantize_dynamic_int8

    model = model.eval()
    loss_fn = flatness.batch_loss_fn([batch])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    masks = magnitude_masks(prunable_weights(model, preset="encoder"), sparsity)
    pruned = copy.deepcopy(model)
    apply_masks(pruned, masks)
    with torch.no_grad():
        logits = model(**inputs).logits
        int8 = {p: quantize_dynamic_int8(model, per_channel=p)(**inputs).logits
                for p in (False, True)}
        pruned_loss = float(loss_fn(pruned))
    return {"logits": logits, "int8": int8, "masks": masks, "pruned loss": pruned_loss,
            "sharpness": flatness.sharpness(model, loss_fn, rho=rho, steps=3)["sharpness"],
            "adaptive": flatness.adaptive_sharpness(model, loss_fn, rho=0.5, steps=3)["sharpness"],
            "eigenvalue": flatness.hessian_top_eigenvalue(model, loss_fn, iters=10)["eigenvalue"]}


def rescaling_trap(model: torch.nn.Module, batch: dict, scale: float = 16.0,
                   sparsity: float = 0.5) -> pd.DataFrame:
    """What moves when the heads of ``model`` are rescaled in ways that leave its function
    unchanged (:func:`rescaled_copy`): Q/K of every head (per matrix), Q/K of one head per layer
    (per head), and V/O of one head per layer. Rows: the largest logit change, L2 and adaptive
    sharpness, the top Hessian eigenvalue, the share of a global magnitude mask that stays, the
    loss after one-shot pruning, and the int8 logits per tensor and per channel. A power of two
    keeps the rescaling exact in floating point."""
    base = trap_measures(model, batch, sparsity=sparsity)
    maps = {f"Q/K x{scale:g}, every head": (scale, 1.0, True),
            f"Q/K x{scale:g}, one head": (scale, 1.0, False),
            f"V/O x{scale:g}, one head": (1.0, scale, False)}
    columns = {name: trap_measures(rescaled_copy(model, qk, vo, every), batch, sparsity=sparsity)
               for name, (qk, vo, every) in maps.items()}

    def change(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().max())

    def mask_kept(m: dict) -> float:
        same = sum(int((base["masks"][n] == m["masks"][n]).sum()) for n in base["masks"])
        return same / sum(mask.numel() for mask in base["masks"].values())
    rows = {"largest logit change (fp32)": (0.0, lambda m: change(base["logits"], m["logits"])),
            "L2 sharpness": (base["sharpness"], lambda m: m["sharpness"]),
            "adaptive sharpness": (base["adaptive"], lambda m: m["adaptive"]),
            "top Hessian eigenvalue": (base["eigenvalue"], lambda m: m["eigenvalue"]),
            f"magnitude mask at {100 * sparsity:.0f}%, entries kept": (1.0, mask_kept),
            f"loss after one-shot pruning at {100 * sparsity:.0f}%":
                (base["pruned loss"], lambda m: m["pruned loss"]),
            "largest int8 logit change, per tensor":
                (0.0, lambda m: change(base["int8"][False], m["int8"][False])),
            "largest int8 logit change, per channel":
                (0.0, lambda m: change(base["int8"][True], m["int8"][True]))}
    table = {}
    for name, (before, after) in rows.items():
        row = {"as trained": f"{before:.2g}"}
        for column, measured in columns.items():
            value = after(measured)
            moved = not np.isclose(before, value, rtol=1e-3, atol=1e-6)
            row[column] = f"{value:.2g}" + (" (moves)" if moved else "")
        table[name] = row
    return with_notes(pd.DataFrame.from_dict(table, orient="index").rename_axis("measure"))
