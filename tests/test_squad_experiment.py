"""The SQuAD chapter's experiments: their units and order in the plan, their costs, the checkpoint
key, and the smoke units run end to end (seconds each)."""

from __future__ import annotations

import pytest
import torch

from flatcomp.lab import plan
from flatcomp.lab.config import PAPER, PROFILES, SMALL
from flatcomp.lab.experiments import (EXPERIMENTS, experiment_profile, load_or_run, planned_units,
                                      unit_id)
from flatcomp.lab.experiments.core import finetuned_file, training_digest
from flatcomp.lab.experiments.squad import squad_fine_tune_steps, squad_windows
from flatcomp.lab.results import ResultsStore, read_record

SQUAD = [name for name, exp in EXPERIMENTS.items() if exp.chapter == "squad"]
ONE_SECOND = lambda profile: 1.0  # noqa: E731


def test_the_chapter_lists_its_experiments_in_the_issues_priority_order():
    assert SQUAD == ["squad_finetune", "squad_quant", "squad_imp", "squad_compound",
                     "squad_more", "squad_more_quant", "squad_bits"]
    priority = {name: EXPERIMENTS[name].priority for name in SQUAD}
    assert priority["squad_finetune"] < priority["squad_quant"] < priority["squad_imp"] \
        < priority["squad_more"]
    first = SMALL.seeds[0]
    assert [unit_id(u) for u in planned_units(SMALL, "squad_finetune")] == \
        [f"squad-adam-seed{first}", f"squad-sam-seed{first}"]
    more = {unit_id(u) for u in planned_units(SMALL, "squad_more")}
    assert more == {f"squad-{o}-seed{s}" for o in ("adam", "sam", "swa") for s in SMALL.seeds} \
        - {f"squad-adam-seed{first}", f"squad-sam-seed{first}"}


def test_imp_goes_to_forty_percent_at_small_and_paper():
    for profile in (SMALL, PAPER):
        rounds = [u["round"] for u in planned_units(profile, "squad_imp")
                  if u["optimizer"] == "adam"]
        assert rounds == [0, 1, 2, 3, 4]
        assert [u["sparsity"] for u in planned_units(profile, "squad_compound")] == [0.4, 0.4]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_squad_experiments_run_at_the_squad_batch_and_length(name):
    profile = PROFILES[name]
    for experiment in SQUAD:
        at = experiment_profile(profile, experiment)
        assert (at.batch_size, at.max_length) == (profile.squad_batch_size,
                                                  profile.squad_max_length)
        assert at.for_squad() == at


def test_the_smoke_plan_orders_headline_models_then_int8_then_imp_then_more_seeds(smoke):
    steps = plan.make_plan(smoke, experiments=SQUAD, seconds_per_step=ONE_SECOND)
    order = [(s.job.experiment, s.units[0]) for s in steps]
    position = {item: i for i, item in enumerate(order)}
    assert position["squad_finetune", "squad-sam-seed0"] < position["squad_quant",
                                                                   "squad-adam-seed0"]
    assert position["squad_quant", "squad-sam-seed0"] < position["squad_imp",
                                                                "squad-adam-rewind-seed0-round1"]
    assert max(i for (e, _), i in position.items() if e.startswith("squad_imp")) < \
        position["squad_more", "squad-adam-seed1"]
    needs = {s.job.name: s.job.needs for s in steps}
    assert needs["squad_imp-squad-adam-True-0-2"] == (("squad_imp",
                                                       "squad-adam-rewind-seed0-round1"),)
    assert needs["squad_quant-squad-sam-0"] == (("squad_finetune", "squad-sam-seed0"),)


def test_costs_count_windows_and_sams_second_pass(smoke):
    train, dev = squad_windows(smoke)
    assert train > 118 and dev > 46  # more windows than questions
    adam, sam = squad_fine_tune_steps(smoke, "adam"), squad_fine_tune_steps(smoke, "sam")
    batches = -(-train // smoke.squad_batch_size)
    assert sam - adam == pytest.approx(smoke.epochs_for("squad") * batches)


def test_paper_costs_are_estimated_without_data(monkeypatch):
    monkeypatch.delenv("FLATCOMP_DATA", raising=False)
    train, dev = squad_windows(PAPER)
    assert (train, dev) == (88524, 10784)  # the official splits' windows at 384 / 128


def test_the_squad_checkpoint_key_holds_its_windows_and_glue_keys_stay():
    base = training_digest(SMALL, "squad", "adam", 0, 1e-4, 2)
    assert training_digest(SMALL.for_squad(), "squad", "adam", 0, 1e-4, 2) == base
    assert training_digest(SMALL.with_overrides(squad_doc_stride=32), "squad", "adam", 0, 1e-4,
                           2) != base
    assert training_digest(SMALL.with_overrides(squad={"train_questions": 100}), "squad",
                           "adam", 0, 1e-4, 2) != base
    changed = SMALL.with_overrides(squad_doc_stride=32, squad_max_length=128,
                                   squad={"train_questions": 100})
    assert training_digest(changed, "mrpc", "adam", 0, 5e-5, 6) == \
        training_digest(SMALL, "mrpc", "adam", 0, 5e-5, 6)


def test_an_unknown_squad_setting_is_an_error():
    with pytest.raises(ValueError, match="unknown SQuAD setting.*'eval_article'"):
        SMALL.with_overrides(squad={"eval_article": 5}).squad_settings()


# ---------------------------------------------------------------- the smoke units, end to end

def provenance(profile, experiment: str, unit: str) -> dict:
    store = ResultsStore(experiment_profile(profile, experiment))
    return read_record(store.path(experiment, unit))["provenance"]


def test_smoke_units_fine_tune_quantize_prune_and_compound(smoke):
    result, = load_or_run(smoke, "squad_finetune", optimizer=["adam"], progress=False)
    assert result["train_rows"] == 118 and result["train_windows"] > 118
    assert result["best_score"] == max(h["f1"] for h in result["history"])
    stored = provenance(smoke, "squad_finetune", "squad-adam-seed0")
    assert "split by article" in stored["data_cut"]
    assert stored["config"]["batch_size"] == smoke.squad_batch_size
    assert finetuned_file(smoke, "squad", "adam", 0).exists()

    quant, = load_or_run(smoke, "squad_quant", optimizer=["adam"], progress=False)
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
    assert "split by article" in provenance(smoke, "squad_quant", "squad-adam-seed0")["data_cut"]

    bits, = load_or_run(smoke, "squad_bits", optimizer=["adam"], progress=False)
    assert set(bits["scores"]) == {f"{b} bit{c}" for b in (8, 6, 4, 3)
                                   for c in ("", " per channel")}
    assert "f1_per_question" not in bits

    compound, = load_or_run(smoke, "squad_compound", optimizer=["adam"], progress=False)
    rounds = load_or_run(smoke, "squad_imp", optimizer=["adam"], missing="skip")
    assert [r["round"] for r in rounds] == [0, 1, 2]  # made on the way
    assert [r["sparsity"] for r in rounds] == pytest.approx([0.0, 0.1, 0.2], abs=1e-3)
    assert rounds[0]["best_score"] == result["best_score"]  # round 0 is the fine-tune
    for k in (1, 2):
        unit = f"squad-adam-rewind-seed0-round{k}"
        assert "split by article" in provenance(smoke, "squad_imp", unit)["data_cut"]
    assert compound["sparsity"] == 0.2
    assert compound["imp_record_score"] == rounds[-1]["best_score"]
    assert set(compound["scores"]) == {"fp32", "int8", "int8 per channel"}


def test_an_imp_round_trains_under_the_masks_the_round_before_pruned(smoke):
    from flatcomp.lab.experiments.squad import _imp_file
    from flatcomp.lab.models import load_model, load_weights
    from flatcomp.pruning import load_masks

    load_or_run(smoke, "squad_imp", optimizer=["sam"], round=[0, 1], progress=False)
    unit = dict(task="squad", optimizer="sam", rewind=True, seed=0, round=1)
    at = experiment_profile(smoke, "squad_imp")
    masks, meta = load_masks(_imp_file(at, unit, 1, "masks"))
    assert meta["pruned_after_round"] == 0
    model = load_weights(load_model(smoke, "squad", 0), _imp_file(at, unit, 1, "weights"))
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.all(params[name][~mask] == 0), name
    assert _imp_file(at, unit, 2, "masks").exists()  # the next round's, pruned from round 1
