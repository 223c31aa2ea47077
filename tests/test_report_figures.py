"""Figures not yet drawn by a chapter, on hand-made results (the chapters exercise the rest)."""

from __future__ import annotations

import matplotlib
import numpy as np

matplotlib.use("Agg")

from flatcomp.lab import lottery_report, reporting  # noqa: E402


def test_imp_curves_draw_one_line_per_optimizer_and_schedule():
    rounds = [{"task": "mrpc", "optimizer": o, "rewind": w, "round": k, "sparsity": k / 10,
               "best_score": 0.8 - k / 100} for o in ("adam", "sam") for w in (True, False)
               for k in range(3)]
    fig = lottery_report.imp_curves(rounds, reference={"mrpc": 0.5}, paper={"mrpc": (81.5, 83.6)})
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(curves) == 4
    assert list(curves[0].get_xdata()) == [0.0, 10.0, 20.0]
    assert ax.get_xlabel().startswith("sparsity") and ax.get_ylabel() == "dev accuracy (%)"


def test_transfer_heatmaps_show_the_differences_the_paper_draws():
    cells = [{"source": s, "task": t, "mask": m, "optimizer": o,
              "best_score": 0.7 + (0.02 if m == "sam" else 0) + (0.01 if o == "sam" else 0)}
             for s in ("mrpc", "sst2") for t in ("mrpc", "sst2") if s != t
             for m in ("adam", "sam") for o in ("adam", "sam")]
    cells += [{"task": t, "mask": m, "optimizer": o, "best_score": 0.8} for t in ("mrpc", "sst2")
              for m in ("adam", "sam") for o in ("adam", "sam")]   # the diagonal: tickets
    fig = lottery_report.transfer_heatmaps(cells)
    top_left, bottom_left = fig.axes[0], fig.axes[2]   # the colour bars come after the panels
    texts = sorted(t.get_text() for t in top_left.texts)
    assert texts == ["+0.0", "+0.0", "+2.0", "+2.0"]          # SAM ticket: +2 points off-diagonal
    assert sorted(t.get_text() for t in bottom_left.texts) == ["+0.0", "+0.0", "+1.0", "+1.0"]


def test_layer_sparsity_draws_each_ticket_and_the_overlap_against_chance():
    """Layers in forward order, whatever order the stored (key-sorted) results hold them in."""
    layers = {f"bert.encoder.layer.{i}.{part}.weight": 0.4 for i in (10, 2) for part in
              ("attention.output.dense", "attention.self.key", "attention.self.query",
               "intermediate.dense", "output.dense")}
    layers["bert.pooler.dense.weight"] = 0.6
    analysis = {"task": "mrpc", "sparsity": 0.5, "layers": {"adam": layers, "sam": layers},
                "overlap": {"layers": {n: {"jaccard": 0.7, "chance_jaccard": 0.33}
                                       for n in layers}}}
    fig = lottery_report.layer_sparsity(analysis)
    forward = ["query", "key", "attn-out", "ffn-in", "ffn-out"]
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == \
        [f"L2.{p}" for p in forward] + [f"L10.{p}" for p in forward] + ["pooler"]
    assert len(fig.axes[1].get_lines()) == 2


def test_ticket_sharpness_draws_one_series_per_mask_and_optimizer():
    records = [{"task": "mrpc", "mask": m, "optimizer": o, "sharpness": 0.1 + i, "rho": 0.05,
                "best_score": 0.8} for i, (m, o) in enumerate(
                    [(m, o) for m in ("random", "adam", "sam") for o in ("adam", "sam")])]
    fig = lottery_report.ticket_sharpness(records)
    assert len(fig.axes[0].collections) == 6 and fig.axes[0].get_xscale() == "log"


def test_imp_sharpness_draws_one_path_per_chain_with_its_sparsities():
    records = [{"task": "rte", "optimizer": o, "round": k, "sparsity": k / 10,
                "sharpness": 0.1 * (k + 1), "rho": 0.05, "best_score": 0.6}
               for o in ("adam", "sam") for k in (2, 0, 1)]
    ax = lottery_report.imp_sharpness(records).axes[0]
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [3, 3]
    assert np.allclose(ax.get_lines()[0].get_xdata(), [0.1, 0.2, 0.3])  # in round order
    assert [t.get_text() for t in ax.texts[:3]] == ["0%", "10%", "20%"]


def test_task_panels_wrap_after_two_tasks_at_the_book_width():
    tasks = ("mrpc", "sst2", "rte", "stsb", "cola")
    rounds = [{"task": t, "optimizer": "adam", "rewind": True, "round": k, "sparsity": k / 10,
               "best_score": 0.8} for t in tasks for k in range(2)]
    fig = lottery_report.imp_curves(rounds, reference={}, paper={})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["MRPC", "SST-2", "RTE", "STS-B", "CoLA"]
    assert len(fig.axes) == 6 and fig.get_size_inches()[0] == reporting.BOOK_WIDTH
    assert len(fig.legends) == 1  # one legend below the panels
