"""Figures not yet drawn by a chapter, on hand-made results (the chapters exercise the rest)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from flatcomp import plots  # noqa: E402


def test_imp_curves_draw_one_line_per_optimizer_and_schedule():
    rounds = [{"task": "mrpc", "optimizer": o, "rewind": w, "round": k, "sparsity": k / 10,
               "best_score": 0.8 - k / 100} for o in ("adam", "sam") for w in (True, False)
               for k in range(3)]
    fig = plots.imp_curves(rounds, reference={"mrpc": 0.5}, paper={"mrpc": (81.5, 83.6)})
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(curves) == 4
    assert list(curves[0].get_xdata()) == [0.0, 10.0, 20.0]
    assert ax.get_xlabel().startswith("sparsity") and ax.get_ylabel() == "dev accuracy (%)"
