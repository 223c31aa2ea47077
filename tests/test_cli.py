"""Bad input on the command line gets a clear error (issue 14, item 7).

Filters that match no unit, extra seeds, stored files that are not what their place says, and a
missing dataset. Nothing here trains: fine-tunes are replaced by a stand-in summary.
"""

from __future__ import annotations

import json
import re

import pytest

import flatcomp.lab.datacards
import flatcomp.lab.experiments.sam_runs as S
from flatcomp.lab.cli import main
from flatcomp.lab.config import SMOKE
from flatcomp.lab.data import DataNotFoundError
from flatcomp.lab.experiments import load_or_run, planned_units, select, select_or_explain, unit_id
from flatcomp.lab.results import ResultsStore, read_record


def _fake_finetuned(profile, task, optimizer, seed, lr=None, epochs=None, progress=True):
    """A stand-in for training: the summary fields a results record keeps, no model."""
    summary = dict(task=task, optimizer=optimizer, seed=seed, lr=lr, epochs=epochs, history=[],
                   best_epoch=1, best_score=0.5, seconds_per_step=0.0, steps=0,
                   wall_seconds=0.0, train_rows=0, dev_rows=0, device="cpu", data_cut=None)
    return None, summary


@pytest.fixture
def fake_training(monkeypatch):
    monkeypatch.setattr(S, "finetuned", _fake_finetuned)


def _values(experiment: str, key: str) -> str:
    """The values of ``key`` among the smoke profile's units, as the error lists them."""
    return ", ".join(str(v) for v in sorted({u[key] for u in planned_units(SMOKE, experiment)}))


# ---------------------------------------------------------------- filters that match nothing

@pytest.mark.parametrize("flag, value, key", [("--task", "foo", "task"),
                                              ("--optimizer", "adamw", "optimizer"),
                                              ("--seed", "7", "seed")])
def test_a_filter_value_no_unit_has_exits_2_listing_the_values_there_are(flag, value, key,
                                                                         capsys):
    assert main(["run", "finetune", "--profile", "smoke", flag, value]) == 2
    err = capsys.readouterr().err
    assert f"no unit of finetune has {key} " in err and value in err
    assert f"its {key}s are: {_values('finetune', key)}" in err
    assert ResultsStore(SMOKE).units("finetune") == []


def test_a_filter_on_a_key_the_units_lack_exits_2_naming_their_keys(capsys):
    assert main(["run", "finetune", "--profile", "smoke", "--round", "99"]) == 2
    err = capsys.readouterr().err
    assert "finetune has round 99" in err and "optimizer, seed, task" in err
    assert ResultsStore(SMOKE).units("finetune") == []


def test_only_the_values_that_match_nothing_are_named(fake_training, capsys):
    assert main(["run", "finetune", "--profile", "smoke", "--task", "mrpc", "foo"]) == 2
    err = capsys.readouterr().err
    assert "has task 'foo';" in err and "'mrpc'" not in err
    assert ResultsStore(SMOKE).units("finetune") == []  # nothing ran: the error came first


def test_values_that_exist_but_not_together_are_an_error(capsys):
    """RTE is a smoke baseline task (Adam only): SAM on RTE is no unit."""
    assert main(["run", "finetune", "--profile", "smoke", "--task", "rte",
                 "--optimizer", "sam"]) == 2
    err = capsys.readouterr().err
    assert "with task 'rte' has optimizer 'sam'; its optimizers there are: adam" in err


def test_select_or_explain_matches_select_when_every_value_matches():
    units = planned_units(SMOKE, "finetune")
    wanted = dict(task=["mrpc", "rte"], optimizer=["adam"], seed=None)
    assert select_or_explain(units, "finetune", **wanted) == select(units, **wanted)
    assert select_or_explain(units, "finetune") == units


def test_select_or_explain_raises_value_error_naming_each_key_that_matched_nothing():
    units = planned_units(SMOKE, "finetune")
    with pytest.raises(ValueError) as info:
        select_or_explain(units, "finetune", task=["foo"], optimizer=["adamw"])
    message = str(info.value)
    assert "task 'foo'" in message and "optimizer 'adamw'" in message
    assert f"its tasks are: {_values('finetune', 'task')}" in message


def test_select_or_explain_refuses_a_bare_string():
    with pytest.raises(ValueError, match=r"task=\['mrpc'\]"):
        select_or_explain(planned_units(SMOKE, "finetune"), "finetune", task="mrpc")


def test_load_or_run_is_strict_too(smoke):
    with pytest.raises(ValueError, match="no unit of imp has round 99"):
        load_or_run(smoke, "imp", missing="skip", round=[99])
    assert load_or_run(smoke, "imp", missing="skip", round=[0]) == []  # exists, not stored


# ---------------------------------------------------------------- extra seeds

def test_seeds_replace_the_profiles_seeds_and_are_computed(fake_training, capsys):
    assert main(["run", "finetune", "--profile", "smoke", "--task", "mrpc", "--optimizer",
                 "adam", "--seeds", "0", "1", "2", "3", "4", "--seed", "3", "4"]) == 0
    assert "2 units of finetune" in capsys.readouterr().out
    store = ResultsStore(SMOKE)
    assert store.units("finetune") == ["mrpc-adam-seed3", "mrpc-adam-seed4"]
    record = read_record(store.path("finetune", "mrpc-adam-seed4"))
    assert record["provenance"]["seed"] == 4
    assert record["provenance"]["config"]["seeds"] == [0, 1, 2, 3, 4]


def test_a_seed_filter_outside_the_given_seeds_exits_2(capsys):
    assert main(["run", "finetune", "--profile", "smoke", "--seeds", "0", "3",
                 "--seed", "1"]) == 2
    assert "has seed 1; its seeds are: 0, 3" in capsys.readouterr().err


@pytest.mark.parametrize("seeds, message", [(["0", "1", "1"], "seed 1 given twice"),
                                            (["-2"], "non-negative integers, not -2")])
def test_bad_seeds_exit_2_saying_what_is_wrong(seeds, message, capsys):
    assert main(["run", "finetune", "--profile", "smoke", "--seeds", *seeds]) == 2
    assert message in capsys.readouterr().err


def test_with_seeds_validates_and_reaches_the_lottery_profile(smoke):
    assert smoke.with_seeds([3, 0]).seeds == (3, 0)
    assert smoke.with_seeds(range(5)).for_lottery().seeds == (0, 1, 2, 3, 4)
    assert smoke.with_overrides(lottery={"seeds": (0,)}).with_seeds((5,)).for_lottery().seeds \
        == (5,)
    for bad, message in (((), "at least one"), ((0, 0), "given twice"), ((1.5,), "1.5"),
                         ((True,), "True"), ((-1,), "-1")):
        with pytest.raises(ValueError, match=message):
            smoke.with_seeds(bad)


# ---------------------------------------------------------------- report checks what it counts

def _store_fake_finetune(unit: str) -> ResultsStore:
    store = ResultsStore(SMOKE)
    store.save("finetune", unit, {"best_score": 0.5}, seed=0, seconds=0.0)
    return store


def test_report_names_bad_files_and_does_not_count_them(capsys):
    store = _store_fake_finetune("mrpc-adam-seed0")
    good = store.path("finetune", "mrpc-adam-seed0")
    truncated = store.path("finetune", "mrpc-adam-seed1")
    truncated.write_text(good.read_text()[:40])
    foreign = store.path("finetune", "mrpc-sam-seed0")
    foreign.write_text(json.dumps({"schema": "someone-else/2", "result": {}}))
    misplaced = store.path("finetune", "mrpc-sam-seed1")
    misplaced.write_text(good.read_text())  # a copy: its fields name another unit

    assert main(["report", "--profile", "smoke"]) == 1
    captured = capsys.readouterr()
    for path in (truncated, foreign, misplaced):
        assert str(path) in captured.err
    assert str(good) not in captured.err
    assert "unit 'mrpc-adam-seed0' (expected 'mrpc-sam-seed1')" in captured.err
    planned = len(planned_units(SMOKE, "finetune"))
    assert re.search(rf"^finetune\s+1/\s*{planned} units stored, 3 bad files", captured.out,
                     re.MULTILINE), captured.out


def test_report_of_good_files_exits_0(capsys):
    _store_fake_finetune("mrpc-adam-seed0")
    assert main(["report", "--profile", "smoke"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert re.search(r"^finetune\s+1/", captured.out, re.MULTILINE)


# ---------------------------------------------------------------- a missing dataset

def _no_data(name, profile, folder=None):
    raise DataNotFoundError(f"no data for task {name!r}. Tried: nothing here")


def test_a_data_card_without_data_is_an_error_never_a_stored_card(monkeypatch, capsys):
    monkeypatch.setattr(flatcomp.lab.datacards, "load_task", _no_data)
    assert main(["run", "data_cards", "--profile", "smoke", "--task", "rte"]) == 2
    assert "no data for task 'rte'. Tried: nothing here" in capsys.readouterr().err
    assert ResultsStore(SMOKE).units("data_cards") == []


def test_data_card_raises_data_not_found(monkeypatch, smoke):
    monkeypatch.setattr(flatcomp.lab.datacards, "load_task", _no_data)
    with pytest.raises(DataNotFoundError, match="'mrpc'"):
        flatcomp.lab.datacards.data_card("mrpc", smoke)


def test_a_data_card_of_shipped_rows_is_stored(capsys):
    assert main(["run", "data_cards", "--profile", "smoke", "--task", "mrpc"]) == 0
    [card] = load_or_run(SMOKE, "data_cards", missing="skip", task=["mrpc"])
    assert card["available"] is True and card["train_rows"] > 0
    assert unit_id(dict(task="mrpc")) in ResultsStore(SMOKE).units("data_cards")


def test_ticket_says_what_it_will_train_and_dry_run_trains_nothing(capsys):
    """On a fresh machine a ticket needs its IMP chain: the command says so, with the time it
    expects, before it trains; ``--dry-run`` stops there."""
    lottery = SMOKE.for_lottery()
    assert main(["ticket", "--profile", "smoke", "--task", "mrpc", "--mask", "sam",
                 "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert re.search(r"this trains IMP rounds 0 to 1 of mrpc with sam \(rewinding\), about "
                     r"\d+ min on this machine", said)
    assert ResultsStore(lottery).units("imp") == []


def test_run_selects_sweep_units_by_learning_rate(capsys):
    assert main(["run", "lr_sweep", "--profile", "smoke", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "lr" in err and "0.001" in err  # the rates the smoke sweep has
