"""The flatness-and-compressibility chapter: its across-model statistics, the rescaling trap, and
the rho sweep's units."""

import numpy as np
import pandas as pd
import pytest
import torch

from flatcomp.lab import compressibility_report as report
from flatcomp.lab.config import get_profile


def _record(optimizer, seed, sharp, drop, score=0.8, loss=0.3):
    scores = {"fp32": score, "int8": score - drop, "int8 per channel": score - drop / 2,
              "4 bit": score - 2 * drop}
    return {"task": "mrpc", "optimizer": optimizer, "seed": seed,
            "history": [{"train_loss": loss}],
            "compression": {"scores": scores, "pruned": {"0.5": score - 3 * drop},
                            "low_rank": {"0.25": score - drop}},
            "flatness": {"sharpness": sharp, "adaptive_sharpness": sharp / 2,
                         "top_eigenvalue": 10 * sharp, "trace": 100 * sharp},
            "environment": {"unit": f"mrpc-{optimizer}-seed{seed}"}}


def _sam_flatter_and_losing_less():
    return [_record(o, s, 0.1 * (1 + s) + (0.5 if o == "adam" else 0), 0.01 * (1 + s)
                    + (0.05 if o == "adam" else 0)) for o in ("adam", "sam") for s in range(5)]


def test_model_points_turn_records_into_damage_in_points():
    points = report.model_points([_record("sam", 0, 0.1, 0.02)])
    row = points.iloc[0]
    assert row["int8"] == pytest.approx(2.0) and row["pruned 0.5"] == pytest.approx(6.0)
    assert row["optimizer"] == "SAM" and row["sharpness"] == 0.1 and row["model"] == "mrpc-sam-seed0"


def test_sharper_models_that_lose_more_reproduce_the_hypothesis():
    records = _sam_flatter_and_losing_less()
    table = report.correlation_table(report.model_points(records))
    row = table.loc[("sharpness", "int8 drop")]
    assert row["Kendall tau"] == "+1.00" and row["verdict"].startswith("reproduced")
    assert row["models"] == 10 and row["tau, SAM only"] == "+1.00"
    with pytest.raises(ValueError, match="9 models: a correlation over models needs at least 10"):
        report.correlation_table(report.model_points(records[1:]))


def test_kendall_interval_is_seeded_and_unrelated_points_are_inconclusive():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30), rng.normal(size=30)
    a, b = report.kendall_with_interval(x, y), report.kendall_with_interval(x, y)
    assert a.bounds == b.bounds and a.bounds[0] < a.mean < a.bounds[1]
    assert not a.excludes_zero


def test_tau_b_of_all_rows_at_once_is_scipys_to_the_bit():
    """Ties, a constant row and a NaN: the same value (or NaN) as scipy, row by row."""
    from scipy import stats

    rng = np.random.default_rng(1)
    x = np.vstack([rng.integers(0, 4, (30, 9)).astype(float), rng.normal(size=(30, 9))])
    y = np.vstack([rng.normal(size=(30, 9)), rng.integers(0, 3, (30, 9)).astype(float)])
    x[0, 3], y[1] = np.nan, 2.0
    fast = report.kendall_tau_b(x, y)
    slow = np.array([stats.kendalltau(a, b).statistic for a, b in zip(x, y)])
    assert np.isnan(fast[:2]).all() and np.isnan(slow[:2]).all()
    assert np.array_equal(fast[2:], slow[2:])


def test_tau_within_task_sees_no_trend_that_only_the_tasks_make():
    # each task: sharpness and damage run opposite ways; the second task is sharper and loses more
    x = np.array([1.0, 2, 3, 4, 11, 12, 13, 14])
    y = np.array([4.0, 3, 2, 1, 14, 13, 12, 11])
    tasks = np.array(["a"] * 4 + ["b"] * 4)
    assert report.kendall_with_interval(x, y).mean > 0  # pooled: the tasks make it positive
    assert report.tau_within_groups(x, y, tasks) == pytest.approx(-1.0)
    # a task of 2 points is left out, and nothing is left if no task has 3
    assert report.tau_within_groups(x[2:], y[2:], tasks[2:]) == pytest.approx(-1.0)
    assert np.isnan(report.tau_within_groups(x[:2], y[:2], tasks[:2]))


def test_partial_correlation_removes_a_shared_cause():
    rng = np.random.default_rng(1)
    cause = rng.normal(size=200)
    x, y = cause + 0.1 * rng.normal(size=200), cause + 0.1 * rng.normal(size=200)
    assert np.corrcoef(x, y)[0, 1] > 0.9
    assert abs(report.partial_spearman(x, y, cause[:, None])) < 0.3


@pytest.mark.slow
def test_the_rescaling_trap_keeps_the_function_and_adaptive_sharpness():
    from flatcomp.lab.data import batches
    from flatcomp.lab.experiments import encoded_task
    from flatcomp.lab.models import load_model

    tiny = get_profile("smoke").with_overrides(precision="fp32")
    train, _, _ = encoded_task(tiny, "mrpc", train_rows=16)
    table = report.rescaling_trap(load_model(tiny, "mrpc", 0), next(batches(train, 16)))
    assert not table.loc["largest logit change (fp32)"].str.contains("moves").any()
    assert not table.loc["adaptive sharpness"].str.contains("moves").any()
    assert table.loc["magnitude mask at 50%, entries kept"].str.contains("moves").sum() == 3
    # per tensor survives rescaling whole matrices only; per channel one head's Q/K too
    assert list(table.loc["largest int8 logit change, per tensor"].str.contains("moves")) == \
        [False, False, True, True]
    assert list(table.loc["largest int8 logit change, per channel"].str.contains("moves")) == \
        [False, False, False, True]


def test_the_rho_sweep_has_adam_at_zero_and_a_unit_per_radius_and_seed():
    from flatcomp.lab.experiments import planned_units, unit_id

    units = planned_units(get_profile("small"), "rho_sweep")
    assert len(units) == 18 and {u["rho"] for u in units} == {0.0, 0.01, 0.02, 0.05, 0.1, 0.2}
    assert unit_id(units[1]) == "mrpc-rho0.01-seed0"
    assert planned_units(get_profile("paper"), "rho_sweep") == []


def test_the_hypothesis_has_its_own_claims_row_marked_as_ours():
    from flatcomp.lab import claims

    records = [_record(o, s, 0.1 * (1 + s) + (0.5 if o == "adam" else 0),
                       0.01 * (1 + s) + (0.05 if o == "adam" else 0))
               for o in ("adam", "sam") for s in range(5)]
    store = claims.Stored(get_profile("small"), lambda e: records if e == "tuned" else [])
    (row,), _ = claims.flatness_predicts(store)
    assert row["claim"].startswith("C8 (ours)") and row["paper"] == "not tested"
    assert row["ours"] == "+1.00" and row["pairs"] == 10 and row["verdict"].startswith("reproduced")
    (waiting,), _ = claims.flatness_predicts(claims.Stored(get_profile("small"), lambda e: []))
    assert waiting["pairs"] == 0 and "--experiment tuned" in waiting["note"]
    few = claims.Stored(get_profile("small"), lambda e: records[:3] if e == "tuned" else [])
    (waiting,), _ = claims.flatness_predicts(few)
    assert waiting["pairs"] == 0 and "--experiment rho_sweep" in waiting["note"]


def test_sam_against_adam_at_equal_rank_pairs_by_seed():
    records = [_record(o, s, 0.1, 0.02 if o == "adam" else 0.01) for o in ("adam", "sam")
               for s in range(3)]
    for r in records:
        r["compression"]["low_rank"]["0.5"] = r["compression"]["scores"]["fp32"] - 0.01
        r["compression"]["cls_effective_rank"] = 10.0 if r["optimizer"] == "adam" else 8.0
    table = report.low_rank_table(records)
    row = table.loc["MRPC"]
    assert row["pairs"] == 3 and row["rank 0.25: Adam − SAM loss"] == "+1.0"
    assert row["rank 0.5: Adam − SAM loss"] == "+0.0"
    assert row["[CLS] effective rank, SAM − Adam"] == "-2.0"


def test_the_summary_names_the_test_and_the_leads_that_reach_a_verdict():
    table = report.correlation_table(report.model_points(_sam_flatter_and_losing_less()))
    assert "fixed before any model was trained" in table.note
    text = report.correlation_summary(table)
    assert text.startswith("Over 10 models, the test, sharpness against int8 drop, gives tau +1.00")
    assert "; within task, +1.00." in text and "19 cells, 19 reach a verdict" in text
    assert "SAM only +1.00, within task +1.00)" in text
    assert "Tau within task counts only pairs of models of one task (MRPC: " in table.note
    undecided = table.copy()
    undecided["verdict"] = "inconclusive (this design detects differences of about 1 (tau))"
    assert report.correlation_summary(undecided).endswith(
        "None of the other 19 cells reaches a verdict.")


def test_the_scatter_has_a_panel_per_measure_and_damage_with_its_tau():
    points = report.model_points(_sam_flatter_and_losing_less())
    fig = report.flatness_damage_scatter(points)
    axes = fig.axes
    assert len(axes) == len(report.FLATNESS) * len(report.DAMAGE)
    assert axes[0].get_title() == "tau +1.00" and axes[0].get_xscale() == "log"
    assert sum(len(c.get_offsets()) for c in axes[0].collections) == 10
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["Adam", "SAM"]
