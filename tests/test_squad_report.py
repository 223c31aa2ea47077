"""The SQuAD chapter's report: the worked example reads its labels back, comparisons pair seeds
and questions, tables and verdicts say what is missing."""

import pytest

from flatcomp.lab import squad_report as sr
from flatcomp.lab.config import SMALL, SMOKE
from flatcomp.lab.qa_features import CLS_INDEX


def quant(optimizer, seed, fp32, int8, cut="split by article"):
    """A squad_quant record with per-question F1 (fractions)."""
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"task": "squad", "optimizer": optimizer, "seed": seed, "data_cut": cut,
            "scores": {"fp32": mean(fp32), "int8": mean(int8)},
            "int8_drop": mean(fp32) - mean(int8),
            "f1_per_question": {"fp32": fp32, "int8": int8}}


def imp(optimizer, k, score, seed=0):
    return {"task": "squad", "optimizer": optimizer, "seed": seed, "round": k,
            "sparsity": 0.1 * k + 1e-5, "best_score": score, "rewind": True}


@pytest.mark.parametrize("profile", [SMOKE, SMALL], ids=["smoke", "small"])
def test_the_worked_example_spans_windows_and_reads_every_label_back(profile):
    example, windows = sr.example_windows(profile)
    table = sr.windows_table(example, windows)
    assert len(table) == len(windows) > 1
    answered = [w for w in range(len(windows)) if windows.start_positions[w] != CLS_INDEX]
    assert answered and len(answered) < len(windows)  # some windows lack the answer
    for w, (_, row) in enumerate(table.iterrows()):
        if w in answered:
            assert row["label read back"] in example.answers  # a gold answer, exactly
        else:
            assert row["label"].startswith("CLS") and row["label read back"] == ""
        assert max(len(ids) for ids in windows.input_ids) <= profile.squad_max_length


def test_int8_difference_pairs_seeds_and_the_first_pairs_questions():
    records = [quant("adam", 0, [1.0, 0.5, 0.0], [0.5, 0.5, 0.0]),
               quant("sam", 0, [1.0, 0.5, 0.0], [1.0, 0.2, 0.0]),
               quant("swa", 0, [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])]  # not an arm
    seeds, questions = sr.int8_difference(records)
    assert seeds.pairs == 1 and seeds.half_width is None
    assert seeds.mean == pytest.approx(0.5 / 3 - 0.3 / 3)
    assert questions.pairs == 3  # per question: drops (0.5, 0, 0) - (0, 0.3, 0)
    assert questions.mean == pytest.approx((0.5 - 0.3) / 3) and questions.half_width > 0
    dense_seeds, dense_questions = sr.dense_difference(records)
    assert dense_seeds.mean == 0.0 and dense_questions.pairs == 3


def test_models_scored_on_different_cuts_are_not_compared():
    records = [quant("adam", 0, [1.0], [0.5]), quant("sam", 0, [1.0], [1.0], cut="another")]
    with pytest.raises(ValueError, match="different data cuts"):
        sr.int8_difference(records)


def test_without_a_pair_the_verdicts_say_what_is_not_measured():
    assert sr.int8_difference([quant("adam", 0, [1.0], [0.5])]) is None
    assert "int8 drop is not measured yet" in sr.int8_verdict([quant("adam", 0, [1.0], [0.5])])
    text = sr.imp_verdict([imp("adam", 4, 0.5)], [], 0.4)
    assert text.startswith("IMP at 40% ") and "not measured yet" in text


def test_the_int8_verdict_uses_the_question_interval_with_one_seed():
    fp32 = [1.0, 0.8, 0.6, 0.4] * 25
    records = [quant("adam", 0, fp32, [x - 0.1 for x in fp32[:50]] + fp32[50:]),
               quant("sam", 0, fp32, fp32)]
    text = sr.int8_verdict(records)
    assert "over the 100 dev questions" in text and "**reproduced**" in text


def test_imp_rows_and_verdict_compare_the_rounds_with_the_paper_at_40_percent():
    rounds = [imp(o, k, s) for o, scores in (("adam", (0.6, 0.58, 0.5)), ("sam", (0.62, 0.6,
              0.55))) for k, s in zip((0, 2, 4), scores)]
    table = sr.imp_rows(rounds)
    assert list(table.index) == ["0.0", "20.0", "40.0"]
    assert table.loc["40.0", "SAM − Adam"] == "+5.0"
    assert table.loc["40.0", "paper Adam → SAM"] == "86.9 → 87.8"
    assert table.loc["0.0", "paper Adam → SAM"] == "-"
    text = sr.imp_verdict(rounds, [], 0.4)
    assert "SAM − Adam: +5.0 points (1 pair, no interval)" in text
    fig = sr.imp_curve(rounds)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and len(ax.lines) == 4


def test_the_results_table_puts_int8_beside_the_paper():
    finetune = {"task": "squad", "optimizer": "sam", "seed": 0, "best_epoch": 2, "epochs": 2,
                "history": [{"epoch": 1, "f1": 0.5, "exact_match": 0.4},
                            {"epoch": 2, "f1": 0.6, "exact_match": 0.45}]}
    table = sr.results_table([finetune], [quant("sam", 0, [0.7, 0.5], [0.6, 0.5])])
    row = table.loc["SAM", 0]
    assert (row["best epoch"], row["F1"], row["EM"]) == ("2 of 2", "60.0", "45.0")
    assert (row["F1 fp32 (CPU)"], row["F1 int8"], row["int8 drop"]) == ("60.0", "55.0", "5.0")
    assert row["paper int8 drop"] == "4.28"


def test_prose_numbers_are_the_first_seeds_and_the_question_intervals():
    finetunes = [{"optimizer": o, "seed": 0, "best_epoch": 1,
                  "history": [{"epoch": 1, "f1": f1, "exact_match": 0.5}]}
                 for o, f1 in (("adam", 0.6), ("sam", 0.65))]
    fp32 = [1.0, 0.8, 0.6, 0.4] * 5
    records = [quant("adam", 0, fp32, [x - 0.1 for x in fp32]), quant("sam", 0, fp32, fp32),
               quant("adam", 1, fp32, fp32)]
    numbers = sr.prose_numbers(finetunes, records)
    assert numbers["sam_f1"] == pytest.approx(65.0) and numbers["adam_em"] == 50.0
    assert numbers["adam_drop"] == pytest.approx(10.0) and numbers["sam_drop"] == 0.0
    assert "int8_diff" not in numbers  # every question differs by the same 10 points
    assert "dense_diff" not in numbers  # no spread either


def test_int8_changes_count_the_questions_int8_lowers_and_raises():
    table = sr.int8_changes_table([quant("adam", 0, [1.0, 0.5, 0.0, 0.2], [0.0, 0.5, 0.4, 0.1])])
    row = table.loc["Adam", 0]
    assert (row["lower in int8"], row["higher"], row["same"]) == (2, 1, 1)
    assert row["mean F1 lost where lower"] == "55.0"  # (1.0 + 0.1) / 2


def test_the_bit_sweep_gets_its_models_fp32_score():
    bits = [{"task": "squad", "optimizer": o, "seed": 0, "scores": {"8 bit": 0.5}}
            for o in ("adam", "sam")]
    merged = sr.with_fp32(bits, [quant("adam", 0, [0.6], [0.5])])
    assert [(r["optimizer"], r["scores"]) for r in merged] == [("adam", {"8 bit": 0.5,
                                                                         "fp32": 0.6})]
