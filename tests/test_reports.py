"""The report modules' tables and verdict lines, on hand-made results."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from flatcomp.lab import (coverage_report, data_report, lottery_report, quantization_report,
                          reporting, sam_report)


def _run(task, optimizer, lr, score, epoch=2):
    return {"task": task, "optimizer": optimizer, "lr": lr, "best_score": score,
            "best_epoch": epoch, "epochs": 3, "seed": 0,
            "history": [{"accuracy": score, "train_loss": 0.5}]}


CARDS = [{"task": "mrpc", "available": True, "dev_rows": 400,
          "dev_labels": {"0": 0.3, "1": 0.7}},
         {"task": "rte", "available": True, "dev_rows": 100,
          "dev_labels": {"0": 0.5, "1": 0.5}}]


def test_majority_class_is_the_commonest_dev_label():
    assert reporting.majority_class(CARDS) == {"mrpc": 0.7, "rte": 0.5}


def test_sweep_verdict_flags_a_task_not_learned_and_says_it_is_dropped(smoke):
    profile = smoke.with_overrides(tasks=("mrpc",))
    runs = [_run("mrpc", "adam", 5e-5, 0.82), _run("mrpc", "sam", 5e-5, 0.80),
            _run("rte", "adam", 1e-4, 0.53), _run("rte", "adam", 2e-5, 0.52)]
    mrpc, rte = data_report.sweep_verdict(runs, CARDS, profile).splitlines()
    assert "not clearly" not in mrpc and "uses lr" in mrpc
    assert "Adam best 53.0 at lr 0.0001" in rte and "not clearly above" in rte
    assert "drops RTE" in rte
    assert "standard error of an accuracy near it is 5.0 points" in rte  # sqrt(.25 / 100)


def test_the_tuned_grid_shows_a_task_once_both_optimizers_have_every_rate():
    grid = [_run("mrpc", o, lr, 0.8 + lr, epoch=3) for o in ("adam", "sam") for lr in (0.01, 0.02)]
    grid += [_run("sst2", o, 0.01, 0.9) for o in ("adam", "sam")] + [_run("sst2", "adam", 0.02, 0.9)]
    table = sam_report.tuned_grid_table(grid, rates=(0.01, 0.02))
    assert list(table.index) == [("MRPC", "Adam"), ("MRPC", "SAM")]
    assert table.loc[("MRPC", "SAM"), "lr 0.02"] == "82.0 (epoch 3 of 3)"
    assert table.loc[("MRPC", "Adam"), "best rate"] == "0.02"
    grid.append(_run("sst2", "sam", 0.02, 0.95))
    assert table.shape[0] + 2 == sam_report.tuned_grid_table(grid, rates=(0.01, 0.02)).shape[0]


def test_finetune_table_reports_mean_and_sample_std_over_seeds():
    runs = [_run("mrpc", "adam", 5e-5, s) for s in (0.80, 0.82, 0.84)]
    row = sam_report.finetune_table(runs, CARDS).loc[("MRPC", "adam")]
    assert row["ours"] == "82.0 ± 2.0" and row["seeds"] == 3
    assert row["majority class"] == "70.0"


def test_optimizer_differences_pair_seeds_and_give_the_verdict():
    runs = ([{**_run("mrpc", "adam", 5e-5, s), "seed": i} for i, s in enumerate((0.80, 0.82, 0.84))]
            + [{**_run("mrpc", "sam", 5e-5, s), "seed": i}
               for i, s in enumerate((0.785, 0.81, 0.82))])
    row = sam_report.optimizer_differences(runs).loc[("MRPC", "SAM − Adam")]
    # differences -1.5, -1.0, -2.0 points: mean -1.5, sd 0.5, t(0.975, 2) 4.30 -> +-1.24
    assert row["difference (points)"] == "-1.5" and row["paired seeds"] == 3
    assert row["95% CI"] == "-2.7 to -0.3" and row["verdict"] == "contradicted"


def test_int8_differences_are_the_base_drop_minus_the_optimizers_paired_by_seed():
    def q(optimizer, seed, fp32, int8):
        return {"task": "mrpc", "optimizer": optimizer, "seed": seed,
                "scores": {"fp32": fp32, "int8": int8}}

    quant = [q("adam", 0, 0.82, 0.79), q("adam", 1, 0.80, 0.78), q("sam", 0, 0.81, 0.80),
             q("sam", 1, 0.80, 0.796), q("sam", 2, 0.9, 0.1)]  # seed 2 has no Adam partner
    row = quantization_report.int8_differences(quant).loc[("MRPC", "Adam − SAM")]
    assert row["paired seeds"] == 2 and row["difference (points)"] == "+1.8"  # (2 + 1.6) / 2
    assert row["verdict"] == "no verdict (2 pairs; the rule needs 3)"


def test_flatness_verdict_counts_seeds_where_sam_is_flatter():
    def rec(optimizer, seed, value):
        return {"task": "mrpc", "optimizer": optimizer, "seed": seed, "sharpness": value,
                "top_eigenvalue": value, "trace": value}

    flat = [rec("adam", 0, 2.0), rec("adam", 1, 2.0), rec("sam", 0, 1.0), rec("sam", 1, 3.0)]
    line = sam_report.flatness_verdict(flat)
    assert "sharpness: lower on 1 of 2 seeds, mean ratio 1.00" in line


def test_cuts_markdown_lists_every_cut_whole(smoke):
    text = coverage_report.cuts_markdown(smoke)
    assert text.count("\n* **") == len(smoke.cuts) - 1
    assert all(why in text for why in smoke.cuts.values())
    assert "paper's settings" in coverage_report.cuts_markdown(smoke.with_overrides(cuts={}))


def test_mask_table_puts_ours_beside_the_papers_table_2():
    runs = [{"task": "mrpc", "sparsity": 0.5, "mask": m, "optimizer": o, "best_score": score}
            for m, o, score in (("sam", "adam", 0.80), ("sam", "adam", 0.82),
                                ("random", "sam", 0.70))]
    table = lottery_report.mask_table(runs)
    assert table.loc[("MRPC", "50%", "sam mask"), "Adam (ours)"] == "81.0 ± 1.4"
    assert table.loc[("MRPC", "50%", "sam mask"), "Adam (paper)"] == "85.3 ± 1.3"
    assert table.loc[("MRPC", "50%", "random mask"), "SAM (paper)"] == "70.1 ± 0.2"


def test_cuts_markdown_can_show_only_some_cuts(smoke):
    text = coverage_report.cuts_markdown(smoke, only=("lottery", "no such cut"))
    assert text.startswith("* **lottery**:") and text.count("* **") == 1


def test_imp_table_reads_the_dense_round_and_the_ticket_at_the_reference_sparsity():
    rounds = [{"task": "mrpc", "optimizer": o, "rewind": True, "round": k, "sparsity": k / 10,
               "best_score": base - k / 100} for o, base in (("adam", 0.80), ("sam", 0.82))
              for k in range(6)]
    rounds.append({**rounds[5], "rewind": False, "best_score": 0.1})  # not a rewound ticket
    row = lottery_report.imp_table(rounds, {"mrpc": 0.5}).loc["MRPC"]
    assert (row["Adam dense"], row["Adam ticket"]) == ("80.0", "75.0")
    assert (row["SAM dense"], row["SAM ticket"]) == ("82.0", "77.0")
    assert (row["Adam ticket (paper)"], row["SAM ticket (paper)"]) == ("81.5", "83.6")


def test_imp_prose_numbers_name_every_round_and_the_range_of_sams_lead():
    rounds = [{"task": "sst2", "optimizer": o, "rewind": True, "round": k, "sparsity": k / 10,
               "best_score": 0.80 + (0.01 * k if o == "sam" else 0)}
              for o in ("adam", "sam") for k in range(4)]
    rounds.append({**rounds[1], "rewind": False, "best_score": 0.5})  # no SAM partner
    numbers = lottery_report.imp_prose_numbers(rounds)
    assert numbers["imp_sst2_sam_rewind_30"] == pytest.approx(83.0)
    assert numbers["imp_sst2_adam_continue_10"] == pytest.approx(50.0)
    assert (numbers["imp_sst2_rewind_sam_lead_low"], numbers["imp_sst2_rewind_sam_lead_high"]) \
        == (pytest.approx(1.0), pytest.approx(3.0))  # rounds 1-3; the dense round 0 is left out
    assert "imp_sst2_continue_sam_lead_low" not in numbers


def test_seeded_imp_table_pairs_the_tickets_by_seed():
    rounds = [{"task": "mrpc", "optimizer": o, "rewind": True, "seed": seed, "round": k,
               "sparsity": k / 10, "best_score": base - k / 100 + gain * seed}
              for o, base, gain in (("adam", 0.80, 0.0), ("sam", 0.82, 0.001))
              for seed in range(3) for k in (0, 5)]
    row = lottery_report.seeded_imp_table(rounds, {"mrpc": 0.5}).loc["MRPC"]
    assert row["Adam ticket"] == "75.0 ± 0.0" and row["paired seeds"] == 3
    assert row["SAM − Adam ticket"] == "+2.1" and row["verdict"] == "reproduced"
    assert row["SAM ticket (paper)"] == "83.6"
    # a task whose SAM chains have not reached the ticket yet waits
    adam_only = [r for r in rounds if r["optimizer"] == "adam"]
    assert lottery_report.seeded_imp_table(adam_only, {"mrpc": 0.5}).empty


def test_mask_effects_are_differences_of_means_with_their_standard_error():
    scores = {("adam", "adam"): (0.80, 0.82), ("sam", "adam"): (0.84, 0.86),
              ("adam", "sam"): (0.80, 0.80), ("sam", "sam"): (0.81, 0.81)}
    tickets = [{"task": "mrpc", "sparsity": 0.5, "mask": m, "optimizer": o, "best_score": s}
               for (m, o), ss in scores.items() for s in ss]
    table = lottery_report.mask_effects(tickets)
    mask_effect = table.loc[("MRPC", "50%", "SAM mask − Adam mask, adam fine-tuning")]
    # (85 - 81) points; std of each pair is sqrt(2) points: error sqrt(2/2 + 2/2) = 1.4
    assert mask_effect["ours"] == "+4.0 ± 1.4" and mask_effect["paper"] == "+1.1"
    assert table.loc[("MRPC", "50%", "SAM − Adam fine-tuning, sam mask")]["ours"] == "-4.0 ± 1.0"
    assert ("MRPC", "50%", "SAM − Adam fine-tuning, random mask") not in table.index  # no data
    one_seed = lottery_report.mask_effects(tickets[::2])  # no error bar from one seed: no rows
    assert one_seed.empty and list(one_seed.index.names) == list(table.index.names)


def test_overhead_table_shows_every_repeat_and_the_fastest_ratio():
    timing = {"task": "mrpc", "optimizer": "adam", "sparsity": 0.5, "steps_timed": 10,
              "seconds_per_step": {"dense": [0.5, 0.6], "masked": [0.52, 0.7]},
              "overhead": 0.52 / 0.5 - 1}
    row = lottery_report.overhead_table([timing]).loc[("MRPC", "Adam")]
    assert row["dense s/step"] == "0.500, 0.600" and row["overhead"] == "+4.0%"


def test_sharpness_correlation_is_negative_when_flatter_tickets_score_higher():
    records = [{"task": "mrpc", "mask": m, "optimizer": "adam", "sharpness": s, "best_score": b}
               for m, s, b in (("random", 0.9, 0.70), ("adam", 0.5, 0.80), ("adam", 0.4, 0.82),
                               ("sam", 0.2, 0.84), ("sam", 0.3, 0.83))]
    row = lottery_report.sharpness_correlation(records).loc["MRPC"]
    assert row["all tickets: Spearman"] == "-1.00" and row["all tickets: models"] == 5
    assert row["Adam and SAM masks: Spearman"] == "-1.00" and row["Adam and SAM masks: models"] == 4


def test_imp_sharpness_table_counts_the_sparsities_where_the_flatter_chain_wins():
    # (round, Adam sharpness, Adam score, SAM sharpness, SAM score)
    chains = ((0, 0.5, 0.80, 0.2, 0.82), (1, 0.6, 0.80, 0.3, 0.79), (2, 0.4, 0.75, 0.5, 0.75))
    records = [{"task": "mrpc", "optimizer": o, "round": k, "sharpness": sh, "best_score": b,
                "loss": 0.1 * k + (o == "sam")}
               for k, a, ab, s, sb in chains for o, sh, b in (("adam", a, ab), ("sam", s, sb))]
    row = lottery_report.imp_sharpness_table(records).loc["MRPC"]
    assert row["SAM's subnetwork flatter"] == "2 of 3"
    assert row["the flatter one scores higher"] == "1 of 2"  # round 2 is a tie in score
    assert row["rounds"] == 6 and row["median training loss, Adam / SAM"] == "0.10 / 1.10"


def test_imp_sharpness_table_shows_a_chain_whose_partner_is_not_stored_yet():
    records = [{"task": "sst2", "optimizer": "adam", "round": k, "sharpness": 0.1 * k,
                "best_score": 0.8, "loss": 0.2} for k in range(2)]
    row = lottery_report.imp_sharpness_table(records).loc["SST-2"]
    assert row["sparsities"] == 0 and row["Spearman, all rounds"] == "-"
    assert row["median training loss, Adam / SAM"] == "0.20 / -"


def test_pm_names_a_single_seed_instead_of_a_zero_spread():
    assert reporting.pm([0.8, 0.82]) == "81.0 ± 1.4"
    assert reporting.pm([0.861]) == "86.1 (1 seed)"


def test_a_collapsed_regression_counts_as_no_correlation():
    runs = [{"task": "stsb", "sparsity": 0.5, "mask": "adam", "optimizer": "sam",
             "best_score": s} for s in (0.7, float("-inf"))]
    assert lottery_report.mask_table(runs).loc[("STS-B", "50%", "adam mask"), "SAM (ours)"] \
        == "35.0 ± 49.5"


def test_mask_table_marks_a_cell_without_runs_and_effects_need_two_seeds():
    runs = [{"task": "sst2", "sparsity": 0.6, "mask": m, "optimizer": o, "best_score": s}
            for m, o, ss in (("adam", "adam", (0.85, 0.84)), ("sam", "adam", (0.86,)),
                             ("adam", "sam", (0.84, 0.85)))
            for s in ss]
    table = lottery_report.mask_table(runs)
    assert table.loc[("SST-2", "60%", "sam mask"), "SAM (ours)"] == "-"
    effects = lottery_report.mask_effects(runs)
    assert list(effects.index.get_level_values(2)) == ["SAM − Adam fine-tuning, adam mask"]


def _analysis(task, pooler_adam, pooler_sam):
    return {"task": task, "sparsity": 0.5,
            "layers": {"adam": {"pooler": pooler_adam}, "sam": {"pooler": pooler_sam}},
            "overlap": {"agreement": 0.98, "chance_agreement": 0.5, "jaccard": 0.97,
                        "chance_jaccard": 1 / 3}}


def test_overlap_table_sets_agreement_beside_chance():
    row = lottery_report.overlap_table([_analysis("rte", 1.0, 1.0)]).loc["RTE"]
    assert (row["agreement"], row["agreement by chance"]) == ("98.0%", "50.0%")
    assert (row["Jaccard of kept weights"], row["Jaccard by chance"]) == ("0.970", "0.333")


def test_layer_pruned_counts_the_weights_each_ticket_keeps():
    row = lottery_report.layer_pruned([_analysis("rte", 0.9975, 1.0)], "pooler", 400).loc["RTE"]
    assert (row["Adam ticket: pruned"], row["Adam ticket: kept"]) == ("99.75%", 1)
    assert (row["SAM ticket: pruned"], row["SAM ticket: kept"]) == ("100.00%", 0)


def test_coverage_table_counts_stored_units_and_complete_tasks(smoke):
    from flatcomp.lab.experiments import load_or_run

    load_or_run(smoke, "imp", task=["mrpc"], optimizer=["adam"], rewind=[True], progress=False)
    table = coverage_report.coverage_table(smoke, ("imp", "transfer"))
    rounds = smoke.imp_rounds + 1
    assert table.loc["imp", "stored"] == rounds
    assert table.loc["imp", "planned"] == 2 * 2 * len(smoke.imp_rewind) * rounds
    assert table.loc["imp", "complete for"] == "-"
    assert (table.loc["transfer", "stored"], table.loc["transfer", "complete for"]) == (0, "-")


def test_transfer_table_sets_each_pair_and_the_mean_beside_the_paper():
    """MRPC -> RTE and RTE -> MRPC, the SAM ticket 2 (resp. 4) points ahead under both optimizers
    and SAM fine-tuning 1 point ahead: ours beside the paper's cells of the same pairs."""
    cells = [{"source": s, "task": t, "mask": m, "optimizer": o,
              "best_score": 0.6 + (gain if m == "sam" else 0) + (0.01 if o == "sam" else 0)}
             for s, t, gain in (("mrpc", "rte", 0.02), ("rte", "mrpc", 0.04))
             for m in ("adam", "sam") for o in ("adam", "sam")]
    table = lottery_report.transfer_table(cells)
    ticket = "SAM − Adam ticket, SAM fine-tuning"
    assert list(table.index) == ["MRPC → RTE", "RTE → MRPC", "mean"]
    assert list(table[(ticket, "ours")]) == ["+2.0", "+4.0", "+3.0"]
    assert list(table[(ticket, "paper")]) == ["+1.8", "+3.9", "+2.9"]   # poster Figure 8
    assert set(table[("SAM − Adam fine-tuning, Adam ticket", "ours")]) == {"+1.0"}


def test_seeded_transfer_pairs_the_tickets_by_seed_with_an_interval_and_a_verdict():
    """MRPC -> RTE over three seeds, the SAM ticket 3, 4 and 5 points ahead under SAM fine-tuning
    (level under Adam); seed 2 lacks its Adam-ticket run under Adam, so that panel pairs two."""
    cells = [{"source": "mrpc", "task": "rte", "mask": m, "optimizer": o, "seed": k,
              "best_score": 0.6 + (0.03 + 0.01 * k if (m, o) == ("sam", "sam") else 0)}
             for m in ("adam", "sam") for o in ("adam", "sam") for k in range(3)]
    cells = [c for c in cells if (c["mask"], c["optimizer"], c["seed"]) != ("adam", "adam", 2)]
    table = lottery_report.seeded_transfer_table(cells)
    under_sam, under_adam = ("SAM − Adam ticket, SAM fine-tuning",
                             "SAM − Adam ticket, Adam fine-tuning")
    row = table.loc["MRPC → RTE"]
    assert (row[(under_sam, "ours")], row[(under_sam, "seeds")]) == ("+4.0", 3)
    assert row[(under_sam, "95% CI")] == "+1.5 to +6.5" and row[(under_sam, "verdict")] == \
        "reproduced"
    assert row[(under_sam, "paper")] == "+1.8"  # poster Figure 8
    assert (row[(under_adam, "ours")], row[(under_adam, "seeds")]) == ("+0.0", 2)
    assert row[(under_adam, "verdict")] == "no verdict (2 pairs; the rule needs 3)"


def test_the_transcribed_transfer_grids_agree_with_the_posters_averages():
    """Row means of Figure 8 and column means of Figure 9 as printed beside the grids (the
    grids' entries are rounded to 0.1, so their means may differ by up to 0.1)."""
    from statistics import fmean

    from flatcomp.lab.paper import TRANSFER, TRANSFER_TASKS as T

    printed = {("ticket", "sam"): [0.6, 1.4, 0.7, 0.6, 0.2, 1.6, -0.4, -0.1],
               ("ticket", "adam"): [0.3, -0.3, -0.1, 0.2, 0.2, 1.3, 0.4, 0.0]}
    for panel, averages in printed.items():
        for source, average in zip(T, averages):
            assert abs(fmean(TRANSFER[panel][source, t] for t in T) - average) <= 0.1
    printed = {("optimizer", "sam"): [0.3, 0.1, 0.4, -0.3, -1.8, -2.7, 0.9, 0.5],
               ("optimizer", "adam"): [0.1, 0.0, 0.0, -0.5, -2.5, -2.8, 1.1, -0.8]}
    for panel, averages in printed.items():
        for target, average in zip(T, averages):
            assert abs(fmean(TRANSFER[panel][s, target] for s in T) - average) <= 0.1


def test_ticket_origin_table_sets_a_remade_rounds_score_beside_the_stored_one():
    origin = {"imp_round": "rte-sam-rewind-seed0-round5", "device": "cpu", "round_score": 0.5271,
              "stored_round_score": 0.5307}
    records = [{"task": t, "ticket": origin} for t in ("mrpc", "stsb")] + [{"task": "rte"}]
    table = lottery_report.ticket_origin_table(records)
    assert list(table.index) == ["rte-sam-rewind-seed0-round5"]
    assert table.iloc[0].tolist() == ["cpu", "52.7", "53.1"]


def test_pooler_check_table_sets_the_dense_pooler_beside_the_same_ticket():
    """RTE's SAM ticket keeps no pooler weight and sits at the majority class with a chance-level
    training loss; with its pooler dense it fits. A check without its ticket shows dashes."""
    ticket = {"task": "rte", "mask": "sam", "optimizer": "adam", "seed": 0, "best_score": 0.527,
              "history": [{"train_loss": 0.7}, {"train_loss": 0.693}]}
    checks = [{**ticket, "best_score": 0.581, "history": [{"train_loss": 0.321}],
               "pooler_kept": 0, "pooler_size": 147456},
              {**ticket, "seed": 1, "best_score": float("-inf"), "pooler_kept": 12,
               "pooler_size": 147456}]
    table = lottery_report.pooler_check_table(checks, [ticket])
    assert table.loc[("RTE", "SAM", "Adam", 0)].tolist() == \
        ["0 of 147,456", "52.7", "0.69", "58.1", "0.32", "+5.4"]
    assert table.loc[("RTE", "SAM", "Adam", 1)].tolist() == \
        ["12 of 147,456", "-", "-", "0.0", "0.69", "-"]
    assert lottery_report.pooler_check_table([], [ticket]).empty


# ---------------------------------------------------------------- one environment per comparison

GPU = {"device": "cuda: NVIDIA H200", "precision": "bf16", "weights": "fp16-rounded copy"}
CPU = {"device": "cpu: Intel(R) Xeon(R) Processor", "precision": "bf16",
       "weights": "sha256 53aa51172d14"}


def _ticket(mask, optimizer, seed, score, where, task="sst2"):
    unit = f"{task}-{mask}-mask-{optimizer}-seed{seed}"
    return {"task": task, "sparsity": 0.6, "mask": mask, "optimizer": optimizer, "seed": seed,
            "best_score": score, "environment": {"unit": unit, **where}}


def test_check_one_environment_names_the_records_and_where_they_ran():
    runs = [_ticket("adam", "sam", 0, 0.8, GPU, "mrpc"), _ticket("sam", "sam", 1, 0.8, CPU, "mrpc")]
    reporting.check_one_environment(runs[:1], "one run")  # one environment: no error
    with pytest.raises(ValueError) as info:
        reporting.check_one_environment(runs, "adam-mask vs sam-mask on mrpc")
    message = str(info.value)
    assert message.startswith("adam-mask vs sam-mask on mrpc mixes environments")
    assert ("mrpc-adam-mask-sam-seed0 ran on cuda: NVIDIA H200 (bf16, weights fp16-rounded copy)"
            in message)
    assert ("mrpc-sam-mask-sam-seed1 ran on cpu: Intel(R) Xeon(R) Processor (bf16, weights "
            "sha256 53aa51172d14)" in message)


def test_hand_made_results_without_an_environment_are_not_checked():
    runs = [_run("mrpc", "adam", 5e-5, 0.8), _ticket("sam", "sam", 1, 0.8, CPU)]
    reporting.check_one_environment(runs, "mixed")
    assert reporting.one_environment(runs, "mixed") == (runs, None)


def _sst2_block():
    """SST-2's block as stored: everything on the GPU but the SAM mask's seeds 1 and 2."""
    return [_ticket(m, o, s, 0.80 + 0.01 * s, CPU if m == "sam" and s else GPU)
            for m in ("adam", "sam") for o in ("adam", "sam") for s in (0, 1, 2)]


def test_mask_tables_keep_each_block_in_its_commonest_environment_and_say_so():
    tickets = _sst2_block()
    table = lottery_report.mask_table(tickets)
    assert isinstance(table, reporting.NotedTable)
    assert table.loc[("SST-2", "60%", "sam mask"), "SAM (ours)"] == "80.0 (1 seed)"
    assert table.loc[("SST-2", "60%", "adam mask"), "SAM (ours)"] == "81.0 ± 1.0"
    assert "SST-2 at 60% sparsity: only the 8 runs of one environment" in table.note
    assert "sst2-sam-mask-sam-seed1, sst2-sam-mask-sam-seed2 (the appendix" in table.note
    assert "H200" not in table.note and "Intel" not in table.note  # machines: the appendix's
    assert "Note: SST-2 at 60% sparsity" in table._repr_html_()
    assert "Note: SST-2" in repr(table.drop(columns="SAM (paper)"))  # the note stays
    effects = lottery_report.mask_effects(tickets)
    assert [label for *_, label in effects.index] == ["SAM − Adam fine-tuning, adam mask"]
    assert effects.note == table.note


def test_tables_of_one_environment_have_no_note():
    tickets = [t for t in _sst2_block() if t["environment"]["device"].startswith("cuda")]
    table = lottery_report.mask_table(tickets)
    assert table.note is None and "Note:" not in table._repr_html_() + repr(table)


def test_transfer_means_are_over_the_commonest_environment_only():
    def cell(source, task, mask, optimizer, score, where):
        return {**_ticket(mask, optimizer, 0, score, where, task),
                **({"source": source} if source != task else {})}

    grid = [cell(s, t, m, o, score, GPU if s == t else CPU)
            for s, t, score in (("mrpc", "rte", 0.6), ("rte", "mrpc", 0.7), ("rte", "rte", 0.5))
            for m in ("adam", "sam") for o in ("adam", "sam")]
    grid[-1]["best_score"] = 0.9  # SAM ticket under SAM on RTE's own: +40 points on the diagonal
    table = lottery_report.transfer_table(grid)
    name = "SAM − Adam ticket, SAM fine-tuning"
    assert table.loc["RTE → RTE", (name, "ours")] == "+40.0"
    assert table.loc["mean", (name, "ours")] == "+0.0"  # the two CPU pairs
    assert "the means over pairs: only the 8 runs of one environment" in table.note
    assert "rte-adam-mask-adam-seed0" in table.note
    grid[0]["environment"] = {**grid[0]["environment"], **GPU}  # one pair mixes: refused
    with pytest.raises(ValueError, match="the transfer MRPC → RTE mixes environments"):
        lottery_report.transfer_table(grid)


def test_pooler_check_is_not_set_beside_a_ticket_from_another_environment():
    ticket = {**_ticket("sam", "sam", 0, 0.53, GPU, "rte"),
              "history": [{"train_loss": 0.69}]}
    check = {**_ticket("sam", "sam", 0, 0.60, CPU, "rte"), "pooler_kept": 0,
             "pooler_size": 147456, "history": [{"train_loss": 0.3}]}
    check["environment"]["unit"] = "rte-sam-mask-dense-pooler-sam-seed0"
    table = lottery_report.pooler_check_table([check], [ticket])
    row = table.iloc[0]
    assert (row["ticket"], row["difference"], row["dense pooler"]) == ("-", "-", "60.0")
    assert table.note.startswith("rte-sam-mask-dense-pooler-sam-seed0 ran in another "
                                 "environment than their tickets")
    same = lottery_report.pooler_check_table([check],
                                             [{**ticket, "environment": check["environment"]}])
    assert same.iloc[0]["difference"] == "+7.0" and same.note is None


def test_optimizer_differences_drop_the_minority_environment_of_a_task():
    def run(optimizer, score, where, seed):
        return {**_run("mrpc", optimizer, 5e-5, score), "seed": seed,
                "environment": {"unit": f"mrpc-{optimizer}-seed{seed}", **where}}

    runs = [run("adam", 0.80, CPU, 0), run("adam", 0.84, CPU, 1), run("sam", 0.83, CPU, 0),
            run("sam", 0.85, CPU, 1), run("sam", 0.99, GPU, 2)]
    table = sam_report.optimizer_differences(runs)
    row = table.loc[("MRPC", "SAM − Adam")]  # seeds 0 and 1: +3 and +1 points
    assert row["difference (points)"] == "+2.0" and row["paired seeds"] == 2
    assert "as made in another: mrpc-sam-seed2 (" in table.note


def test_provenance_table_groups_records_by_experiment_and_environment(smoke):
    from flatcomp.lab.results import ResultsStore

    store = ResultsStore(smoke)
    store.save("data_cards", "cola", {"task": "cola"}, seed=None, seconds=3600.0)
    store.save("data_cards", "rte", {"task": "rte"}, seed=None, seconds=1800.0)
    table = coverage_report.provenance_table(smoke)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["records"] == 2 and row["wall hours"] == "1.50" and row["commits"] == 1
    experiment, device = table.index[0]
    assert experiment == "data_cards"
    if device.startswith("cpu"):  # the vector instructions its kernels used, as recorded
        assert device.endswith(f" ({torch.backends.cpu.get_cpu_capability()})")


def test_speed_numbers_are_the_int8_size_share_and_speed_ups_per_batch_size():
    timings = [{"batch_size": b, "precision": p, "size_bytes": size,
                **({"speedup": up} if p == "int8" else {})}
               for b, up in ((1, 1.5), (32, 1.7)) for p, size in (("fp32", 90e6), ("int8", 60e6))]
    numbers = quantization_report.speed_numbers([{"timings": timings}])
    assert numbers == {"int8_size_percent": pytest.approx(66.67, abs=0.01),
                       "int8_speedup_b1": 1.5, "int8_speedup_b32": 1.7}


def test_the_profiles_table_shows_each_cell_whole():
    table = data_report.profiles_table()
    lottery = table.loc["lottery", "small"]
    assert len(lottery) > 50 and "; transfer_tasks: " in lottery  # one "; " between settings
    assert lottery in table._repr_html_()  # not cut at 50 characters
    assert table.loc["tasks", "small"] == "mrpc"  # the analyses; every task fine-tuned below
    assert table.loc["fine-tuned tasks", "small"].startswith("mrpc, sst2, rte, mnli")


def test_waiting_markdown_lists_each_experiment_with_missing_units_once(tmp_path, monkeypatch):
    from flatcomp.lab.config import get_profile

    monkeypatch.setenv("FLATCOMP_RESULTS", str(tmp_path))
    smoke = get_profile("smoke")
    text = coverage_report.waiting_markdown(smoke, experiments=("tuned_lr", "rho_sweep"))
    assert text.count("| `tuned_lr` |") == 1 and "| `rho_sweep` |" in text
    assert text.splitlines()[0].startswith("| not stored yet |")
    assert "python -m flatcomp plan --profile smoke --experiment tuned_lr" in text
    assert coverage_report.waiting_markdown(smoke, chapter="no such chapter") == ""
    assert "| all |" in text  # smoke plans every unit
    scoped = smoke.with_overrides(plan_scope={"tuned_lr": {"optimizer": ("adam",)}})
    rows = coverage_report.waiting_markdown(scoped,
                                            experiments=("tuned_lr", "rho_sweep")).splitlines()
    assert "| 2 of the 4 |" in rows[2] and "| no: left for `paper` |" in rows[3]


def test_the_sweep_table_keeps_a_task_together_and_shows_no_nan():
    def run(task, optimizer, lr):
        return {"task": task, "optimizer": optimizer, "lr": lr, "best_score": 0.8, "best_epoch": 2,
                "epochs": 3, "history": [{"accuracy": 0.7, "f1": 0.8, "pearson": 0.5}]}

    runs = [run("mrpc", "adam", 1e-4), run("rte", "adam", 5e-5), run("mrpc", "adam", 5e-5),
            run("mrpc", "sam", 5e-5)]
    table = data_report.sweep_table(runs)
    assert list(table.index) == [("MRPC", "5e-05"), ("MRPC", "0.0001"), ("RTE", "5e-05")]
    assert not table.isna().any().any() and table.loc[("RTE", "5e-05"), "sam best"] == "-"
