"""The SQuAD chapter's experiments: their units and order in the plan, their costs, the checkpoint
key (the smoke units run end to end are checked by the smoke pass: tests/smoke_units.py)."""

from __future__ import annotations

import pytest

from flatcomp.lab import plan
from flatcomp.lab.config import PAPER, PROFILES, SMALL
from flatcomp.lab.experiments import EXPERIMENTS, experiment_profile, planned_units, unit_id
from flatcomp.lab.experiments.core import training_digest
from flatcomp.lab.experiments.squad import squad_fine_tune_steps, squad_windows

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
