"""The CoFi chapter's tables and verdict on hand-made records (no training)."""
import matplotlib

matplotlib.use("Agg")

import pytest

from flatcomp.lab import cofi_report


def record(optimizer, seed, score, teacher, target=0.95, reached=True):
    latency = [{"model": m, "batch_size": b, "mean_s": t, **({"speedup": 0.2 / t} if m == "compact" else {})}
               for b in (1, 32) for m, t in (("dense", 0.2), ("compact", 0.05))]
    return {"task": "sst2", "target_sparsity": target, "seed": seed, "optimizer": optimizer,
            "dev_score": score, "teacher": {"dev_score_cpu_fp32": teacher},
            "realised_sparsity": target, "expected_sparsity": target if reached else 0.8,
            "reached_target": reached, "params": {"dense": 22_700_000, "compact": 12_000_000},
            "encoder_params": {"dense": 10_000_000, "compact": 0 if target == 1.0 else 500_000},
            "latency": latency,
            "kept": {"heads": [12, 3, 0], "ffn": [100, 0, 0], "hidden": 300,
                     "layers_removed": [2], "of": {"heads": 12, "ffn": 1536, "hidden": 384}},
            "history": [{"phase": "prune", "step": 10, "dev_score": score}],
            "trace": [{"step": s, "target": target * s / 10, "expected_sparsity": 0.1 * s}
                      for s in range(1, 11)]}


RECORDS = [record("adam", 0, 0.80, 0.86), record("sam", 0, 0.82, 0.87),
           record("adam", 1, 0.81, 0.86), record("sam", 1, 0.834, 0.875)]


def test_pairs_match_task_target_and_seed():
    extra = record("adam", 2, 0.7, 0.8)  # no SAM partner: not a pair
    pairs = cofi_report.pairs(RECORDS + [extra])
    assert [(a["seed"], s["seed"]) for a, s in pairs] == [(0, 0), (1, 1)]
    assert all(a["optimizer"] == "adam" and s["optimizer"] == "sam" for a, s in pairs)


def test_the_student_difference_is_sam_minus_adam_over_pairs():
    d = cofi_report.student_difference(RECORDS)
    assert d.mean == pytest.approx(0.022) and d.pairs == 2


def test_a_target_without_pairs_is_an_error():
    with pytest.raises(ValueError, match="no Adam/SAM pair"):
        cofi_report.student_difference(RECORDS, target=0.5)


def test_results_table_shows_both_teachers_the_difference_and_the_paper():
    row = cofi_report.results_table(RECORDS).loc[("SST-2", "95%")]
    assert row["student of the Adam teacher"] == "80.5 ± 0.7"
    assert row["student of the SAM teacher"] == "82.7 ± 1.0"
    assert row["student SAM − Adam"] == "+2.2 ± 2.5 points (95% CI, 2 pairs)"
    assert row["paper (Adam / SAM teacher)"] == "90.2 / 91.3"
    assert row["expected on target"] == "4/4" and row["realised sparsity"] == "95.0"


def test_prose_numbers_are_the_tables_means_in_points():
    numbers = cofi_report.prose_numbers(RECORDS)
    assert numbers["cofi_sst295_adam_student"] == pytest.approx(80.5)
    assert numbers["cofi_sst295_sam_teacher"] == pytest.approx(87.25)
    assert numbers["cofi_sst295_difference"] == pytest.approx(2.2)
    assert numbers["cofi_sst295_teacher_difference"] == pytest.approx(1.25)
    assert numbers["cofi_sst295_realised"] == pytest.approx(95.0)
    assert numbers["cofi_sst295_speedup_b32"] == pytest.approx(4.0)


def test_speed_table_averages_speedups_measured_within_records():
    row = cofi_report.speed_table(RECORDS).loc[("SST-2", "95%")]
    assert row["speed-up, batch 32"] == "4.0×"
    assert row["encoder matrices kept"] == "5.0%"


def test_verdict_names_students_that_missed_their_target():
    text = cofi_report.verdict(RECORDS[:3] + [record("sam", 1, 0.83, 0.875, reached=False)])
    assert "SAM teacher seed 1 (expected sparsity 80.0%)" in text
    assert "students +2.0" in text and "their teachers +1.3" in text
    assert "keep no weight" not in text
    assert "keep no weight of the encoder" in cofi_report.verdict(
        [record("adam", 0, 0.5, 0.86, target=1.0), record("sam", 0, 0.5, 0.87, target=1.0)])


def test_figures_draw_every_panel():
    assert len(cofi_report.sparsity_traces(RECORDS).axes) == 2  # sparsity and dev score
    assert len(cofi_report.accuracy_vs_speed(RECORDS).axes) == 2
    assert len(cofi_report.kept_structure(RECORDS, "sst2").axes) == 2
    with pytest.raises(ValueError, match="stored tasks"):
        cofi_report.kept_structure(RECORDS, "qnli")
