"""The claims page on hand-made records (no training): pairs, verdicts, environments, gaps."""
import matplotlib

matplotlib.use("Agg")

import pytest

from flatcomp import stats
from flatcomp.lab import claims
from flatcomp.lab.config import get_profile

SMALL = get_profile("small")
CPU = {"device": "cpu: a laptop", "precision": "fp32", "weights": "sha256 aaaa"}
GPU = {"device": "cuda: a GPU", "precision": "bf16", "weights": "fp16-rounded copy"}


def finetune(task, optimizer, seed, score, where=CPU):
    return {"task": task, "optimizer": optimizer, "seed": seed, "best_score": score,
            "environment": {"unit": f"{task}-{optimizer}-seed{seed}", **where}}


def stored(profile=SMALL, planned=None, **records):
    return claims.Stored(profile, lambda experiment: records.get(experiment, []), planned)


def rows(claim, store):
    found, _ = claim(store)
    return {row["task"]: row for row in found}


def test_pairs_are_formed_by_task_and_seed_only():
    runs = [finetune("mrpc", "adam", 0, 0.80), finetune("mrpc", "adam", 1, 0.81),
            finetune("mrpc", "sam", 1, 0.84), finetune("mrpc", "sam", 2, 0.90),
            finetune("rte", "adam", 2, 0.60), finetune("mrpc", "swa", 1, 0.99)]
    pairs = stats.pairs_of(runs, lambda r: r["optimizer"], ("sam", "adam"),
                           lambda r: (r["task"], r["seed"]))
    assert [(s["seed"], a["seed"], s["task"], a["task"]) for s, a in pairs] == \
        [(1, 1, "mrpc", "mrpc")]
    row = rows(claims.full_model, stored(finetune=runs))["MRPC"]
    assert row["pairs"] == 1 and row["ours"] == "+3.0" and row["95% CI"] == "-"
    assert row["verdict"] == "no verdict (one pair; the rule needs 3)"


@pytest.mark.parametrize("gain, word", [(0.02, "reproduced"), (-0.02, "contradicted")])
def test_the_verdict_follows_the_sign_of_an_interval_that_excludes_zero(gain, word):
    runs = [finetune("mrpc", "adam", s, 0.80 + 0.01 * s) for s in range(3)]
    runs += [finetune("mrpc", "sam", s, 0.80 + 0.01 * s + gain + 0.001 * s) for s in range(3)]
    row = rows(claims.full_model, stored(finetune=runs))["MRPC"]
    assert row["verdict"] == word and row["pairs"] == 3


def test_an_interval_across_zero_is_inconclusive_with_the_detectable_effect():
    runs = [finetune("mrpc", "adam", s, 0.80) for s in range(3)]
    runs += [finetune("mrpc", "sam", s, 0.80 + d) for s, d in enumerate((0.02, -0.02, 0.01))]
    row = rows(claims.full_model, stored(finetune=runs))["MRPC"]
    assert row["verdict"].startswith("inconclusive (this design detects differences of about")


def test_tasks_are_pooled_when_more_than_one_has_pairs():
    runs = [finetune(t, o, s, 0.7 + (0.01 * s if o == "sam" else 0))
            for t in ("mrpc", "rte") for o in ("adam", "sam") for s in range(2)]
    found = rows(claims.full_model, stored(finetune=runs))
    assert list(found) == ["MRPC", "RTE", "pooled (2 tasks)"]
    assert found["pooled (2 tasks)"]["pairs"] == 4
    assert found["pooled (2 tasks)"]["ours"] == "+0.5"


def test_int8_compares_adams_drop_with_sams():
    def quant(optimizer, seed, drop):
        return {"task": "rte", "optimizer": optimizer, "seed": seed,
                "scores": {"fp32": 0.7, "int8": 0.7 - drop}}
    records = [quant("adam", s, 0.03) for s in range(2)] + [quant("sam", s, 0.01) for s in range(2)]
    row = rows(claims.int8, stored(quantization=records))["RTE"]
    assert row["ours"] == "+2.0" and row["paper"] == "+8.7"


def test_imp_compares_the_rewound_tickets_at_the_reference_sparsity():
    def imp(optimizer, sparsity, score, rewind=True):
        return {"task": "mrpc", "optimizer": optimizer, "seed": 0, "sparsity": sparsity,
                "rewind": rewind, "best_score": score}
    records = [imp("adam", 0.5, 0.80), imp("sam", 0.5, 0.83), imp("adam", 0.4, 0.1),
               imp("sam", 0.4, 0.9), imp("adam", 0.5, 0.5, rewind=False)]
    row = rows(claims.imp_tickets, stored(imp=records))["MRPC"]
    assert row["pairs"] == 1 and row["ours"] == "+3.0" and row["paper"] == "+2.1"


def test_cofi_pairs_the_students_of_both_teachers_at_95_percent():
    def student(optimizer, seed, score, target=0.95):
        return {"task": "sst2", "optimizer": optimizer, "seed": seed, "target_sparsity": target,
                "dev_score": score}
    records = [student("adam", 0, 0.80), student("sam", 0, 0.82), student("adam", 1, 0.81),
               student("sam", 1, 0.83), student("sam", 0, 0.99, target=0.7)]
    row = rows(claims.cofi, stored(cofi=records))["SST-2"]
    assert row["pairs"] == 2 and row["ours"] == "+2.0" and row["paper"] == "+1.1"


def test_a_claim_without_records_waits_under_the_table_with_the_plan_command():
    table = claims.claims_table(SMALL, stored())
    assert table.empty
    assert "C5 CoFi 95%: SAM − Adam teacher: run `python -m flatcomp plan --profile small " \
        "--experiment cofi`" in table.note
    assert "C7 SQuAD int8 drop: Adam − SAM: run `python -m flatcomp plan --profile small " \
        "--experiment squad_quant`" in table.note
    cofi = rows(claims.cofi, stored())["all"]  # the claim's own row still says what is missing
    assert cofi["verdict"] == "not yet measured" and cofi["paper"].endswith("(mean of 4)")
    squad = rows(claims.squad_int8, stored())["all"]
    assert squad["paper"] == "+4.8"
    assert rows(claims.squad_imp, stored())["all"]["paper"] == "+0.9"


def test_squad_int8_pairs_seeds_and_notes_the_difference_over_questions():
    def quant(optimizer, seed, fp32, int8):
        return {"task": "squad", "optimizer": optimizer, "seed": seed, "data_cut": "split",
                "int8_drop": sum(fp32) / 2 - sum(int8) / 2, "scores": {},
                "f1_per_question": {"fp32": fp32, "int8": int8}}
    records = [quant("adam", 0, [1.0, 0.5], [0.5, 0.5]), quant("sam", 0, [1.0, 0.5], [1.0, 0.3])]
    row = rows(claims.squad_int8, stored(squad_quant=records))["SQuAD"]
    assert row["pairs"] == 1 and row["ours"] == "+15.0"  # 25.0 - 10.0 points
    assert row["verdict"] == "no verdict (one pair; the rule needs 3)"
    assert row["note"].startswith("over the 2 dev questions of seed 0: +15.0 (")


def test_only_one_arm_stored_and_every_planned_unit_stored_says_it_is_not_in_the_plan():
    runs = [finetune("rte", "adam", s, 0.6) for s in range(3)]
    row = rows(claims.full_model, stored(finetune=runs, planned=lambda e: 3))["RTE"]
    assert row["verdict"] == "not yet measured"
    assert row["note"] == "not in the small plan (all its finetune units are stored)"
    row = rows(claims.full_model, stored(finetune=runs, planned=lambda e: 6))["RTE"]
    assert row["note"].startswith("run `python -m flatcomp plan")


def test_mixed_environments_are_not_paired_and_the_row_says_so():
    runs = [finetune("mrpc", o, s, 0.8 + (0.02 + 0.001 * s if o == "sam" else 0.0))
            for o in ("adam", "sam") for s in range(3)]
    runs.append(finetune("mrpc", "adam", 3, 0.5, where=GPU))  # its SAM partner ran on the CPU
    runs.append(finetune("mrpc", "sam", 3, 0.9))
    found, notes = claims.full_model(stored(finetune=runs))
    assert found[0]["pairs"] == 3 and found[0]["verdict"] == "reproduced"
    assert found[0]["note"] == "2 runs from another environment left out"
    assert len(notes) == 1 and "another environment: mrpc-adam-seed3, mrpc-sam-seed3 (" in notes[0]


def test_pairs_of_different_environments_sit_side_by_side_each_of_one():
    runs = [finetune("mrpc", o, s, 0.8 + (0.02 + 0.001 * s if o == "sam" else 0.0),
                     where=GPU if s == 2 else CPU) for o in ("adam", "sam") for s in range(3)]
    found, notes = claims.full_model(stored(finetune=runs))
    assert found[0]["pairs"] == 3 and found[0]["note"] == "" and not notes


def test_a_pair_across_environments_is_not_measured_and_says_what_was_left_out():
    runs = [finetune("mrpc", "adam", 0, 0.8, where=GPU), finetune("mrpc", "sam", 1, 0.8),
            finetune("mrpc", "sam", 0, 0.8)]
    row = rows(claims.full_model, stored(finetune=runs))["MRPC"]
    assert row["verdict"] == "not yet measured" and "2 runs from another environment" in row["note"]


def test_the_html_links_each_chapter_and_shows_the_notes():
    runs = [finetune("mrpc", o, s, 0.8) for o in ("adam", "sam") for s in range(2)]
    runs += [finetune("mrpc", "sam", 2, 0.8, where=GPU), finetune("mrpc", "adam", 2, 0.8)]
    out = claims.claims_table(SMALL, stored(finetune=runs))._repr_html_()
    assert '<a href="03_sam_finetuning.html">3 SAM fine-tuning</a>' in out
    assert "<code>python -m flatcomp plan --profile small --experiment imp</code>" in out
    assert "Note: C1 full model" in out


def with_rows(record, predictions, labels):
    return {**record, "dev_predictions": predictions, "dev_labels": labels}


def test_records_with_their_dev_predictions_are_bootstrapped_over_seeds_and_rows():
    labels = [i % 2 for i in range(200)]
    wrong = lambda k: [1 - y if i < k else y for i, y in enumerate(labels)]  # first k rows wrong
    runs = [with_rows(finetune("rte", "adam", s, 1 - k / 200), wrong(k), labels)
            for s, k in enumerate((40, 44, 42))]
    runs += [with_rows(finetune("rte", "sam", s, 1 - k / 200), wrong(k), labels)
             for s, k in enumerate((30, 35, 31))]
    row = rows(claims.full_model, stored(finetune=runs))["RTE"]
    assert row["CI over"] == "seeds and dev rows (bootstrap)" and row["pairs"] == 3
    assert row["ours"] == "+5.0"
    assert row["verdict"] == "reproduced"  # SAM is right on every row Adam is, and on more
    # one record without its rows: the t interval over seeds
    runs[0] = finetune("rte", "adam", 0, 0.8)
    assert rows(claims.full_model, stored(finetune=runs))["RTE"]["CI over"] == "seeds (t)"


def test_int8_drops_are_bootstrapped_over_rows_when_the_records_keep_them():
    labels = [i % 2 for i in range(100)]
    wrong = lambda k: [1 - y if i < k else y for i, y in enumerate(labels)]

    def quantized(optimizer, seed, lost):
        return {"task": "sst2", "optimizer": optimizer, "seed": seed,
                "scores": {"fp32": 0.9, "int8": 0.9 - lost / 100},
                "dev_predictions": {"fp32": wrong(10), "int8": wrong(10 + lost)},
                "dev_labels": labels,
                "environment": {"unit": f"sst2-{optimizer}-seed{seed}", **CPU}}
    quant = [quantized("adam", s, 6 + s) for s in range(3)] + \
        [quantized("sam", s, 1) for s in range(3)]
    row = rows(claims.int8, stored(quantization=quant))["SST-2"]
    assert row["CI over"] == "seeds and dev rows (bootstrap)" and row["ours"] == "+6.0"
    # two pairs: the t interval (a bootstrap over two seeds is narrower than their spread)
    two = [q for q in quant if q["seed"] < 2]
    assert rows(claims.int8, stored(quantization=two))["SST-2"]["CI over"] == "seeds (t)"


def test_prose_numbers_name_each_measured_row():
    runs = [finetune(t, o, s, 0.7 + (0.01 * s + 0.01 if o == "sam" else 0))
            for t in ("mrpc", "sst2") for o in ("adam", "sam") for s in range(2)]
    runs.append(finetune("rte", "adam", 0, 0.6))  # no pair: not measured, no number
    numbers = claims.prose_numbers(claims.claims_table(SMALL, stored(finetune=runs),
                                                       only=(claims.full_model,)), "c1")
    assert numbers["c1_sst2"] == 1.5 and numbers["c1_sst2_pairs"] == 2
    assert numbers["c1_sst2_low"] < 1.5 < numbers["c1_sst2_high"]
    assert numbers["c1_pooled2tasks_pairs"] == 4 and not any("rte" in k for k in numbers)


def test_a_pooled_row_pools_the_pairs_of_every_environment():
    runs = [finetune(t, o, s, 0.7) for t in ("mrpc", "sst2") for o in ("adam", "sam")
            for s in range(2)]
    runs += [finetune("rte", o, 0, 0.6, where=GPU) for o in ("adam", "sam")]
    found = rows(claims.full_model, stored(finetune=runs))
    assert "pooled (3 tasks)" in found and found["pooled (3 tasks)"]["pairs"] == 5
    assert found["RTE"]["pairs"] == 1  # a pair of one environment, whichever it is
    lone = [r for r in runs if r["task"] == "rte"]
    assert not any(k.startswith("pooled") for k in rows(claims.full_model, stored(finetune=lone)))


def test_the_pooler_free_lottery_has_its_own_rows_and_none_at_paper():
    def imp(optimizer, seed, score):
        return {"task": "mrpc", "optimizer": optimizer, "seed": seed, "sparsity": 0.5,
                "rewind": True, "best_score": score}
    records = [imp("adam", s, 0.80) for s in range(3)] + [imp("sam", s, 0.82 + s / 100)
                                                          for s in range(3)]
    row = rows(claims.imp_tickets_pooler_dense, stored(imp_encoder=records))["MRPC"]
    assert row["claim"] == "C2 IMP ticket, pooler dense: SAM − Adam"
    assert row["pairs"] == 3 and row["ours"] == "+3.0" and row["verdict"].startswith("reproduced")
    assert rows(claims.imp_tickets, stored(imp_encoder=records))["all"]["pairs"] == 0
    missing = rows(claims.transfer_pooler_dense, stored())["all"]
    assert "--experiment transfer_encoder" in missing["note"]
    assert claims.masks_pooler_dense(stored(get_profile("paper"), tickets_encoder=records)) == \
        ([], [])  # BERT-base's pooler was trained: the paper profile has no pooler-free lottery


def _ticket(mask, optimizer, seed, score):
    return {"task": "mrpc", "sparsity": 0.6, "mask": mask, "optimizer": optimizer, "seed": seed,
            "best_score": score,
            "environment": {"unit": f"mrpc-{mask}-mask-{optimizer}-seed{seed}", **CPU}}


def test_masks_pair_over_chains_not_over_the_fine_tuning_seeds_of_one_mask():
    records = [_ticket(m, o, s, 0.8 + (0.01 * s + 0.02 if m == "sam" else 0.0))
               for m in ("adam", "sam") for o in ("adam", "sam") for s in range(3)]
    # the paper's protocol: every seed fine-tunes the first seed's chain, one mask per arm
    row = rows(claims.masks, stored(tickets=records))["MRPC"]
    assert row["pairs"] == 2 and row["CI over"] == claims.CHAINS  # one per fine-tuning optimizer
    assert row["ours"] == "+3.0" and row["verdict"].startswith("no verdict")
    # the pooler-free tickets: seed s fine-tunes the seed-s chain, so seeds are chains
    row = rows(claims.masks_pooler_dense, stored(tickets_encoder=records))["MRPC"]
    assert row["pairs"] == 6 and row["verdict"].startswith("reproduced")


def test_the_paper_number_of_a_row_is_read_from_its_cell():
    assert claims.paper_number("+5.0") == 0.05
    assert claims.paper_number("-1.2 (mean of 3)") == -0.012
    assert claims.paper_number("SAM ahead on 5 of 8 tasks") is None
    assert claims.paper_number("not reported") is None


def test_the_tuned_protocol_has_its_own_c1_and_c6_rows_and_none_at_paper():
    labels = [i % 2 for i in range(100)]
    wrong = lambda k: [1 - y if i < k else y for i, y in enumerate(labels)]  # noqa: E731

    def tuned(optimizer, seed, fp32_wrong, int8_wrong):
        record = finetune("mrpc", optimizer, seed, 1 - fp32_wrong / 100)
        return {**record, "dev_predictions": wrong(fp32_wrong), "dev_labels": labels,
                "compression": {"scores": {"fp32": 1 - fp32_wrong / 100,
                                           "int8": 1 - int8_wrong / 100},
                                "dev_predictions": {"fp32": wrong(fp32_wrong),
                                                    "int8": wrong(int8_wrong)},
                                "dev_labels": labels}}
    records = [tuned("adam", s, 20, 26 + s) for s in range(3)] + \
        [tuned("sam", s, 18, 19) for s in range(3)]
    c1 = rows(claims.full_model_tuned, stored(tuned=records))["MRPC"]
    assert c1["claim"] == "C1 full model, tuned rates: SAM − Adam"
    assert c1["pairs"] == 3 and c1["ours"] == "+2.0"
    c6 = rows(claims.int8_tuned, stored(tuned=records))["MRPC"]
    assert c6["pairs"] == 3 and c6["ours"] == "+6.0"  # Adam drops 6, 7, 8; SAM 1
    assert c6["CI over"] == "seeds and dev rows (bootstrap)"
    paper = get_profile("paper")
    assert claims.full_model_tuned(stored(paper, tuned=records)) == ([], [])
    assert claims.int8_tuned(stored(paper, tuned=records)) == ([], [])


def test_the_claims_table_lists_rows_with_pairs_and_one_waiting_line_per_claim():
    runs = [finetune("mrpc", o, s, 0.8) for o in ("adam", "sam") for s in range(3)]
    table = claims.claims_table(SMALL, stored(finetune=runs),
                                only=(claims.full_model, claims.imp_tickets, claims.masks))
    assert list(table.index.get_level_values("claim")) == ["C1 full model: SAM − Adam"]
    assert table.note.count("C2 IMP ticket: SAM − Adam: run `python -m flatcomp plan") == 1
    assert "C3 mask: SAM − Adam mask: run" in table.note
    assert "<code>python -m flatcomp plan --profile small --experiment imp</code>" in \
        table._repr_html_()
