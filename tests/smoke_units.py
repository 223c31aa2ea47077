"""The smoke pass's checks of what the experiments store (``make test-smoke``): every unit here
was trained by the smoke plan (and the SQuAD chapter's Colab run) into ``FLATCOMP_RESULTS`` just
before, so these tests read the records and checkpoints instead of training their units again, as
the unit tests did (about 4 CPU-minutes). Nothing here stores a unit: the plan must have stored
each one asked for.

Run it with ``--noconftest``, beside ``smoke_chapters.py``.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from flatcomp.lab.config import SMOKE
from flatcomp.lab.experiments import (EXPERIMENTS, QUANT_BITS, experiment_profile, load_or_run,
                                      select, ticket_sparsity, unit_id)
from flatcomp.lab.results import ResultsStore, read_record


@pytest.fixture(autouse=True)
def _smoke_env():
    assert os.environ.get("FLATCOMP_PROFILE") == "smoke" and os.environ.get("FLATCOMP_RESULTS"), \
        "run with FLATCOMP_PROFILE=smoke and FLATCOMP_RESULTS at the smoke plan's results"


def stored(experiment: str, profile=SMOKE, **wanted) -> list[dict]:
    """The selected units of ``experiment``, every one of which the smoke plan must have stored."""
    units = select(EXPERIMENTS[experiment].units(experiment_profile(profile, experiment)),
                   **wanted)
    records = load_or_run(profile, experiment, missing="skip", **wanted)
    assert units and len(records) == len(units), \
        f"the smoke plan stored {len(records)} of the {len(units)} {experiment} units {wanted}"
    return records


def provenance(experiment: str, unit: str) -> dict:
    store = ResultsStore(experiment_profile(SMOKE, experiment))
    return read_record(store.path(experiment, unit))["provenance"]


# ---------------------------------------------------------------- full models

def test_flatness_unit_measures_a_finetuned_model():
    """Finite sharpness (>= 0), eigenvalue and trace of a cached fine-tune."""
    [r] = stored("flatness", task=["mrpc"], optimizer=["adam"], seed=[0])
    assert r["sharpness"] >= 0 and math.isfinite(r["top_eigenvalue"])
    assert math.isfinite(r["trace"]) and r["trace_samples"] == 2


def test_landscape_unit_is_a_line_and_a_plane_through_the_trained_weights():
    """The centre of the line and of the plane is the model itself: the same loss at a = b = 0."""
    [r] = stored("landscape", task=["mrpc"], optimizer=["sam"])
    assert r["alphas"] == [-1.0, -0.5, 0.0, 0.5, 1.0] and r["grid"] == [-1.0, 0.0, 1.0]
    assert len(r["line"]) == 5 and [len(row) for row in r["plane"]] == [3, 3, 3]
    assert r["line"][2] == pytest.approx(r["plane"][1][1], rel=1e-6)
    assert min(r["line"]) < max(r["line"])  # the random direction moves the loss


def test_the_longer_budget_trains_the_first_task_longer_for_both_optimizers():
    from flatcomp.lab.config import PAPER, SMALL

    assert EXPERIMENTS["budget"].units(PAPER) == []  # the paper's own 10 epochs
    assert EXPERIMENTS["budget"].units(SMALL) == []  # the tuned protocol trains 10 epochs
    for r in stored("budget", seed=[0]):
        assert r["epochs"] == 4 > SMOKE.epochs_for("mrpc") and len(r["history"]) == 4


# ---------------------------------------------------------------- quantization

def test_quantization_unit_scores_every_bit_width():
    from flatcomp.metrics import glue_metrics, main_score

    [r] = stored("quantization", task=["mrpc"], optimizer=["adam"], seed=[0])
    assert {"fp32", "int8", "int8 per channel"} <= set(r["scores"])
    assert all(f"{b} bit" in r["scores"] and f"{b} bit per channel" in r["scores"]
               for b in QUANT_BITS)
    assert r["int8_drop"] == r["scores"]["fp32"] - r["scores"]["int8"]
    assert r["size_bytes"]["int8"] < r["size_bytes"]["fp32"]
    # every dev row's prediction in fp32 and int8, which score as the record says
    for kind in ("fp32", "int8"):
        predictions = r["dev_predictions"][kind]
        assert len(predictions) == len(r["dev_labels"])
        assert main_score("mrpc", glue_metrics("mrpc", predictions, r["dev_labels"])) == \
            r["scores"][kind]
    [tuned] = stored("finetune", task=["mrpc"], optimizer=["adam"], seed=[0])
    assert tuned["dev_labels"] == r["dev_labels"] and len(tuned["dev_predictions"]) == \
        len(r["dev_labels"])


def test_quant_theory_predicts_a_larger_increase_for_fewer_bits():
    """The prediction (1/2 sum H_ii Delta_i^2 / 12) grows as Delta grows, by 4x per bit removed."""
    [r] = stored("quant_theory", task=["mrpc"], optimizer=["adam"], seed=[0])
    per_tensor = {row["bits"]: row for row in r["increase"] if not row["per_channel"]}
    assert sorted(per_tensor) == sorted(QUANT_BITS)
    assert per_tensor[6]["predicted"] == pytest.approx(per_tensor[8]["predicted"]
                                                       * (127 / 31) ** 2, rel=1e-4)
    assert all(math.isfinite(row["measured"]) for row in r["increase"])


def test_quant_speed_times_both_precisions_at_two_batch_sizes():
    [r] = stored("quant_speed")
    assert {(t["precision"], t["batch_size"]) for t in r["timings"]} == {
        (p, b) for p in ("fp32", "int8") for b in (1, 32)}
    int8 = [t for t in r["timings"] if t["precision"] == "int8"]
    assert all(t["size_bytes"] > 0 and t["speedup"] > 0 for t in int8)


# ---------------------------------------------------------------- lottery tickets

def test_lottery_experiments_run_at_the_profiles_lottery_schedule():
    """IMP trains at ``profile.for_lottery()`` (smoke: 1 epoch) and records that config."""
    assert SMOKE.for_lottery().epochs == {"default": 1} != SMOKE.epochs
    assert SMOKE.for_lottery().for_lottery() == SMOKE.for_lottery()
    [r] = stored("imp", task=["mrpc"], optimizer=["adam"], rewind=[True], round=[0])
    assert r["epochs"] == 1 and len(r["history"]) == 1
    store = ResultsStore(SMOKE.for_lottery())
    record = read_record(store.path("imp", "mrpc-adam-rewind-seed0-round0"))
    assert record["provenance"]["config"]["epochs"] == {"default": 1}


def test_tickets_train_at_the_ticket_sparsity_from_the_imp_masks():
    """A SAM mask comes from SAM's IMP run; a random one keeps the Adam mask's per-layer counts;
    both hold the same sparsity while training."""
    sparsity = ticket_sparsity(SMOKE, "mrpc")
    assert sparsity == pytest.approx(0.2)  # capped at the smoke profile's 2 IMP rounds
    sam, random = stored("tickets", task=["mrpc"], mask=["sam", "random"], optimizer=["adam"],
                         seed=[0])
    imp = ResultsStore(SMOKE.for_lottery()).units("imp")
    assert "mrpc-sam-rewind-seed0-round1" in imp and "mrpc-adam-rewind-seed0-round1" in imp
    for r in (sam, random):
        assert r["sparsity"] == pytest.approx(sparsity, abs=1e-4)
    assert unit_id({"task": "mrpc", "mask": "sam", "optimizer": "adam", "seed": 0}) == \
        "mrpc-sam-mask-adam-seed0"


def test_a_ticket_trained_by_the_optimizer_that_found_it_is_imps_own_round(monkeypatch):
    """The Adam ticket fine-tuned with Adam at IMP's seed reuses IMP's round at the ticket
    sparsity, and that round is the same computation as fine-tuning the ticket afresh."""
    from flatcomp.lab.experiments import lottery
    from flatcomp.lab.experiments.lottery import (_fine_tune_masked, _masked_weights_path,
                                                  ticket_masks)

    unit = dict(task="mrpc", mask="adam", optimizer="adam", seed=0)
    [reused] = stored("tickets", **{k: [v] for k, v in unit.items()})
    [imp_round] = stored("imp", task=["mrpc"], optimizer=["adam"], rewind=[True], round=[2])
    assert reused["history"] == imp_round["history"]
    lot = SMOKE.for_lottery()
    assert _masked_weights_path(lot, unit).exists()  # what the compound experiment loads
    monkeypatch.setattr(lottery, "save_weights", lambda *args: None)  # the cache stays the plan's
    afresh = _fine_tune_masked(lot, unit, ticket_masks(lot, "mrpc", "adam", seed=0))
    assert afresh["history"] == reused["history"]
    assert afresh["sparsity"] == pytest.approx(reused["sparsity"])


def test_transfer_trains_the_target_task_under_the_source_tasks_ticket():
    [r] = stored("transfer", source=["stsb"], task=["mrpc"], mask=["sam"], optimizer=["sam"])
    assert (r["source"], r["task"]) == ("stsb", "mrpc")
    assert r["sparsity"] == pytest.approx(ticket_sparsity(SMOKE, "stsb"), abs=1e-4)
    assert "stsb-sam-rewind-seed0-round1" in ResultsStore(SMOKE.for_lottery()).units("imp")
    assert unit_id(dict(source="stsb", task="mrpc", mask="sam", optimizer="adam", seed=0)) == \
        "stsb-to-mrpc-sam-mask-adam-seed0"


def test_mask_analysis_compares_the_adam_and_sam_tickets():
    [r] = stored("mask_analysis", task=["mrpc"])
    assert r["sparsity"] == ticket_sparsity(SMOKE, "mrpc")
    assert set(r["layers"]) == {"adam", "sam"}
    assert set(r["layers"]["adam"]) == set(r["overlap"]["layers"])
    assert r["overlap"]["chance_jaccard"] < r["overlap"]["jaccard"] <= 1  # both keep big weights


def test_compound_quantizes_the_stored_ticket():
    """Ticket then int8: the fp32 score is the ticket's own best score (same weights, fp32 eval)."""
    [r] = stored("compound", task=["mrpc"], mask=["sam"], seed=[0])
    [ticket] = stored("tickets", task=["mrpc"], mask=["sam"], optimizer=["sam"], seed=[0])
    assert r["optimizer"] == r["mask"] == "sam"
    assert r["scores"]["fp32"] == pytest.approx(ticket["best_score"], abs=0.02)
    assert r["int8_drop"] == r["scores"]["fp32"] - r["scores"]["int8"]


def test_ticket_flatness_measures_the_stored_tickets_subnetwork():
    wanted = dict(task=["mrpc"], mask=["random"], optimizer=["sam"], seed=[0])
    [r] = stored("ticket_flatness", **wanted)
    [ticket] = stored("tickets", **wanted)
    assert (r["best_score"], r["sparsity"]) == (ticket["best_score"], ticket["sparsity"])
    assert r["sharpness"] >= 0 and r["loss"] > 0


def test_pooler_check_trains_the_ticket_again_with_a_dense_pooler():
    from flatcomp.lab.experiments import ticket_masks

    wanted = dict(task=["mrpc"], mask=["adam"], optimizer=["sam"], seed=[0])
    [r] = stored("pooler_check", **wanted)
    [ticket] = stored("tickets", **wanted)
    masks = ticket_masks(SMOKE.for_lottery(), "mrpc", "adam", seed=0)
    pooler = masks["bert.pooler.dense.weight"]
    assert (r["pooler_kept"], r["pooler_size"]) == (int(pooler.sum()), pooler.numel())
    assert r["pooler_kept"] < r["pooler_size"]  # the ticket prunes the pooler, the check does not
    total = sum(m.numel() for m in masks.values())
    pruned_pooler = pooler.numel() - pooler.sum().item()
    assert r["sparsity"] == pytest.approx(ticket["sparsity"] - pruned_pooler / total, abs=1e-6)
    assert r["history"] != ticket["history"]
    assert unit_id({**{k: v[0] for k, v in wanted.items()}, "pooler": "dense"}) == \
        "mrpc-adam-mask-dense-pooler-sam-seed0"


def test_imp_flatness_measures_each_rounds_trained_subnetwork():
    wanted = dict(task=["mrpc"], optimizer=["sam"], rewind=[True], round=[0, 2])
    dense, pruned = stored("imp_flatness", **wanted)
    rounds = stored("imp", **wanted)
    assert [(r["imp_record_score"], r["sparsity"]) for r in (dense, pruned)] == \
        [(r["best_score"], r["sparsity"]) for r in rounds]
    assert pruned["sparsity"] == pytest.approx(0.2, abs=1e-3)
    # the same weights scored again: on the machine that trained them (fp32), the same score
    assert pruned["best_score"] == pytest.approx(pruned["imp_record_score"], abs=1e-6)
    assert all(r["sharpness"] >= 0 and r["loss"] > 0 for r in (dense, pruned))
    assert dense["loss"] != pruned["loss"]  # each round's own weights, not the dense model's


def test_the_pooler_free_imp_prunes_the_encoder_only():
    """imp_encoder's round k prunes k/10 of the encoder's matrices and leaves the pooler dense;
    its cache files are apart from those of imp, whose masks include the pooler."""
    from flatcomp.lab.experiments.lottery import _imp_path
    from flatcomp.pruning import load_masks

    [r1] = stored("imp_encoder", task=["mrpc"], optimizer=["adam"], seed=[0], round=[1])
    assert r1["sparsity"] == pytest.approx(0.1, abs=1e-4)
    lot = SMOKE.for_lottery()
    masks, _ = load_masks(_imp_path(lot, r1, 1, "masks", "imp_encoder"))
    assert masks and not any("pooler" in name for name in masks)
    assert _imp_path(lot, r1, 1, "masks", "imp_encoder") != _imp_path(lot, r1, 1, "masks")


def test_mask_overhead_times_dense_and_masked_steps_alike():
    adam, sam = stored("mask_overhead")
    for r in (adam, sam):
        assert len(r["seconds_per_step"]["dense"]) == len(r["seconds_per_step"]["masked"]) == 2
        assert all(t > 0 for ts in r["seconds_per_step"].values() for t in ts)
        assert r["overhead"] == pytest.approx(min(r["seconds_per_step"]["masked"])
                                              / min(r["seconds_per_step"]["dense"]) - 1)


# ---------------------------------------------------------------- SQuAD

def test_squad_units_fine_tune_quantize_prune_and_compound():
    from flatcomp.lab.experiments.core import finetuned_file

    [result] = stored("squad_finetune", optimizer=["adam"])
    assert result["train_rows"] == 118 and result["train_windows"] > 118
    assert result["best_score"] == max(h["f1"] for h in result["history"])
    made = provenance("squad_finetune", "squad-adam-seed0")
    assert "split by article" in made["data_cut"]
    assert made["config"]["batch_size"] == SMOKE.squad_batch_size
    assert finetuned_file(SMOKE, "squad", "adam", 0).exists()

    [quant] = stored("squad_quant", optimizer=["adam"])
    scores = quant["scores"]
    assert set(scores) == {"fp32", "int8", "int8 per channel"}
    per_question = quant["f1_per_question"]
    assert set(per_question) == {"fp32", "int8"}
    for name, values in per_question.items():  # the questions' F1s average to the score
        assert len(values) == 46 and sum(values) / 46 == pytest.approx(scores[name], abs=1e-4)
    assert scores["fp32"] == pytest.approx(result["best_score"], abs=0.02)  # fp32 vs bf16
    assert quant["int8_drop"] == pytest.approx(scores["fp32"] - scores["int8"])
    assert set(quant["exact_match"]) == set(scores)
    assert quant["size_bytes"]["int8"] < quant["size_bytes"]["fp32"]
    assert "split by article" in provenance("squad_quant", "squad-adam-seed0")["data_cut"]

    [bits] = stored("squad_bits", optimizer=["adam"])
    assert set(bits["scores"]) == {f"{b} bit{c}" for b in (8, 6, 4, 3)
                                   for c in ("", " per channel")}
    assert "f1_per_question" not in bits

    [compound] = stored("squad_compound", optimizer=["adam"])
    rounds = stored("squad_imp", optimizer=["adam"])
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert [r["sparsity"] for r in rounds] == pytest.approx([0.0, 0.1, 0.2], abs=1e-3)
    assert rounds[0]["best_score"] == result["best_score"]  # round 0 is the fine-tune
    for k in (1, 2):
        unit = f"squad-adam-rewind-seed0-round{k}"
        assert "split by article" in provenance("squad_imp", unit)["data_cut"]
    assert compound["sparsity"] == 0.2
    assert compound["imp_record_score"] == rounds[-1]["best_score"]
    assert set(compound["scores"]) == {"fp32", "int8", "int8 per channel"}


def test_a_squad_imp_round_trains_under_the_masks_the_round_before_pruned():
    from flatcomp.lab.experiments.squad import _imp_file
    from flatcomp.lab.models import load_model, load_weights
    from flatcomp.pruning import load_masks

    stored("squad_imp", optimizer=["sam"], round=[0, 1])
    unit = dict(task="squad", optimizer="sam", rewind=True, seed=0, round=1)
    at = experiment_profile(SMOKE, "squad_imp")
    masks, meta = load_masks(_imp_file(at, unit, 1, "masks"))
    assert meta["pruned_after_round"] == 0
    model = load_weights(load_model(SMOKE, "squad", 0), _imp_file(at, unit, 1, "weights"))
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.all(params[name][~mask] == 0), name
    assert _imp_file(at, unit, 2, "masks").exists()  # the next round's, pruned from round 1


# ---------------------------------------------------------------- efficiency

def test_bench_times_every_optimizer_against_adam():
    from flatcomp.lab import efficiency_report
    from flatcomp.lab.experiments.efficiency import COMPARED

    [bench] = stored("bench")
    assert set(bench["seconds_per_step"]) == set(COMPARED)
    assert bench["over_adam"]["adam"] == 1.0
    assert all(v > 0 for v in bench["over_adam"].values())
    assert set(bench["masked_over_dense"]) == {"adam", "sam"}
    assert set(bench["int8_over_fp32"]) == {"1", "32"}
    assert len(efficiency_report.bench_table([bench])) == len(COMPARED)


def test_variants_store_what_the_compression_chapters_measure():
    from flatcomp.lab import efficiency_report
    from flatcomp.lab.experiments.efficiency import COMPARED

    runs = stored("variants", seed=[0])
    assert [r["optimizer"] for r in runs] == list(COMPARED)
    for r in runs:
        assert 0 <= r["fp32"] <= 1 and r["int8_drop"] == pytest.approx(r["fp32"] - r["int8"])
        assert set(r["bits"]) == {"8", "6", "4", "3"} and set(r["one_shot"]) == {"0.5", "0.7"}
        assert r["sharpness"] >= 0
        assert {"compression", "flatness"} <= set(r)  # what every trained model records
        assert r["flatness"]["adaptive_sharpness"] >= 0
    differences = efficiency_report.variant_differences(runs, "sam")
    assert "SAM" not in {optimizer for _, optimizer in differences.index}
    assert len(differences) == len(COMPARED) - 1
