"""Experiments as resumable units, and the command line.

The resume test runs the smoke profile's ``lr_sweep`` on RTE (2 units: adam and sam) with fewer
rows and epochs than the smoke profile itself (same name, so the same sweep grid), to stay fast.
"""

from __future__ import annotations

import re

import pytest
import torch

import flatcomp.lab.experiments.setup as E
from flatcomp.lab.cli import main
from flatcomp.lab.config import PROFILES
from flatcomp.lab.experiments import (EXPERIMENTS, experiment_profile, get_experiment, load_or_run,
                                      select, unit_id)
from flatcomp.lab.results import ResultsStore

TIMING = ("seconds_per_step", "wall_seconds")  # the only fields allowed to differ between runs


@pytest.fixture
def quick(smoke):
    """The smoke profile, cut to 64 RTE train rows, 32 dev rows and 2 epochs."""
    return smoke.with_overrides(epochs={"default": 2}, train_size={"rte": 64},
                                eval_size={"rte": 32})


def _use_dirs(monkeypatch, tmp_path, name):
    monkeypatch.setenv("FLATCOMP_RESULTS", str(tmp_path / name / "results"))
    monkeypatch.setenv("FLATCOMP_CACHE", str(tmp_path / name / "cache"))


def _numbers(results):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in results]


# ---------------------------------------------------------------- resuming a killed run

def test_killed_run_resumes_to_the_same_numbers(quick, tmp_path, monkeypatch):
    # the reference: an uninterrupted run, with its own results and checkpoint folders
    _use_dirs(monkeypatch, tmp_path, "reference")
    reference = load_or_run(quick, "lr_sweep", progress=False, task=["rte"])
    assert [(r["task"], r["optimizer"]) for r in reference] == [("rte", "adam"), ("rte", "sam")]

    # the same run, killed while it computes its second unit, in fresh folders
    _use_dirs(monkeypatch, tmp_path, "killed")
    real_finetuned, calls = E.finetuned, []

    def dies_on_second_unit(profile, task, optimizer, *args, **kwargs):
        calls.append(optimizer)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_finetuned(profile, task, optimizer, *args, **kwargs)

    monkeypatch.setattr(E, "finetuned", dies_on_second_unit)
    with pytest.raises(KeyboardInterrupt):
        load_or_run(quick, "lr_sweep", progress=False, task=["rte"])
    store = ResultsStore(quick)
    assert store.units("lr_sweep") == ["rte-adam-lr0.001-seed0"]
    first_file = store.path("lr_sweep", "rte-adam-lr0.001-seed0")
    first_bytes = first_file.read_bytes()

    # resumed: only the missing unit is computed, and the numbers are the reference's
    calls.clear()

    def counting(profile, task, optimizer, *args, **kwargs):
        calls.append(optimizer)
        return real_finetuned(profile, task, optimizer, *args, **kwargs)

    monkeypatch.setattr(E, "finetuned", counting)
    resumed = load_or_run(quick, "lr_sweep", progress=False, task=["rte"])
    assert calls == ["sam"]
    assert first_file.read_bytes() == first_bytes
    assert _numbers(resumed) == _numbers(reference)
    assert len(store.units("lr_sweep")) == 2


def test_stored_results_are_read_without_training(quick, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a stored unit was trained again")

    first = load_or_run(quick, "lr_sweep", progress=False, task=["rte"], optimizer=["adam"])
    monkeypatch.setattr(E, "finetuned", no_training)
    again = load_or_run(quick, "lr_sweep", progress=False, task=["rte"], optimizer=["adam"])
    assert again == first


# ---------------------------------------------------------------- units

def test_unit_id_orders_its_keys():
    unit = {"seed": 0, "lr": 1e-4, "optimizer": "sam", "task": "rte"}
    assert unit_id(unit) == "rte-sam-lr0.0001-seed0"


@pytest.mark.parametrize("unit, expected", [
    ({"task": "mrpc", "optimizer": "adam", "seed": 2}, "mrpc-adam-seed2"),
    ({"task": "mrpc", "optimizer": "adam", "precision": "bf16", "seed": 0}, "mrpc-adam-bf16-seed0"),
    ({"task": "rte", "optimizer": "adam", "lr": 2e-5, "seed": 0}, "rte-adam-lr2e-05-seed0"),
    ({"task": "squad"}, "squad"),
])
def test_unit_id_format(unit, expected):
    assert unit_id(unit) == expected


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_unit_ids_are_unique_within_an_experiment(profile, experiment):
    units = EXPERIMENTS[experiment].units(PROFILES[profile])
    # empty by design: no transfer with one task; smoke runs only CoFi's headline units; the
    # paper's own schedule is the longer budget, and its pooler was trained; small's longer
    # budget is the tuned protocol's; the paper has no tuned protocol or rho sweep (its
    # fine-tunes are the faithful ones)
    assert units or (experiment.startswith("transfer") and len(PROFILES[profile].tasks) == 1) \
        or (experiment, profile) in (("cofi_more", "smoke"), ("budget", "paper"),
                                     ("budget", "small"), ("imp_encoder", "paper"),
                                     ("tickets_encoder", "paper"), ("transfer_encoder", "paper"),
                                     ("tuned_lr", "paper"), ("tuned", "paper"),
                                     ("rho_sweep", "paper"))
    assert len({unit_id(u) for u in units}) == len(units)


def test_a_dropped_baseline_task_keeps_only_its_adam_fine_tunes(smoke):
    profile = smoke.with_overrides(tasks=("mrpc",), baseline_tasks=("rte", "mrpc"))
    units = EXPERIMENTS["finetune"].units(profile)
    rte = select(units, task=["rte"])
    assert {u["optimizer"] for u in rte} == {"adam"}
    assert [u["seed"] for u in rte] == list(profile.seeds)
    assert {u["optimizer"] for u in select(units, task=["mrpc"])} == {"adam", "sam", "swa"}
    for other in ("imp", "flatness", "quantization", "landscape"):
        assert not select(EXPERIMENTS[other].units(profile), task=["rte"])


def test_select_keeps_matching_units():
    units = [dict(task=t, optimizer=o, seed=s)
             for t in ("rte", "mrpc") for o in ("adam", "sam") for s in (0, 1)]
    assert select(units) == units
    assert select(units, task=None, optimizer=None) == units
    rte = select(units, task=["rte"])
    assert len(rte) == 4 and all(u["task"] == "rte" for u in rte)
    picked = select(units, task=["mrpc"], optimizer=["sam"], seed=[1])
    assert picked == [dict(task="mrpc", optimizer="sam", seed=1)]
    assert select(units, task=["cola"]) == []
    assert select(units, lr=[1e-3]) == []  # a key the units lack matches nothing


def test_unknown_experiment_raises(smoke):
    with pytest.raises(ValueError) as info:
        get_experiment("nosuch")
    for name in EXPERIMENTS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="nosuch"):
        load_or_run(smoke, "nosuch")


# ---------------------------------------------------------------- the command line

def test_cli_list_prints_the_experiments(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert name in out


def test_cli_report_on_an_empty_results_folder(capsys):
    assert main(["report", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    for name, exp in EXPERIMENTS.items():
        planned = len(exp.units(experiment_profile(PROFILES["smoke"], name)))
        assert re.search(rf"^{name}\s+0/\s*{planned} units stored",
                         out, re.MULTILINE), out


def test_cli_report_counts_lottery_units_at_the_lottery_profile(capsys):
    from flatcomp.lab.config import SMALL

    assert main(["report", "--profile", "small"]) == 0
    planned = len(get_experiment("imp").units(SMALL.for_lottery()))
    assert planned != len(get_experiment("imp").units(SMALL))  # small's lottery has more tasks
    assert re.search(rf"^imp\s+0/\s*{planned} units stored", capsys.readouterr().out,
                     re.MULTILINE)


def test_cli_unknown_experiment_exits_non_zero(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "nosuch"])
    assert info.value.code != 0
    assert "nosuch" in capsys.readouterr().err


def _fake_finetuned(profile, task, optimizer, seed, lr=None, epochs=None, progress=True):
    """A stand-in for training: the summary fields a results record keeps, no model."""
    summary = dict(task=task, optimizer=optimizer, seed=seed, lr=lr, epochs=epochs, history=[],
                   best_epoch=1, best_score=0.5, seconds_per_step=0.0, steps=0,
                   wall_seconds=0.0, train_rows=0, dev_rows=0, device="cpu", data_cut=None)
    return None, summary


def test_cli_run_stores_the_selected_units(smoke, monkeypatch, capsys):
    monkeypatch.setattr(E, "finetuned", _fake_finetuned)
    assert main(["run", "lr_sweep", "--profile", "smoke", "--task", "rte"]) == 0
    assert "2 units of lr_sweep" in capsys.readouterr().out
    assert ResultsStore(smoke).units("lr_sweep") == ["rte-adam-lr0.001-seed0",
                                                     "rte-sam-lr0.001-seed0"]
    assert main(["report", "--profile", "smoke"]) == 0
    assert re.search(r"^lr_sweep\s+2/", capsys.readouterr().out, re.MULTILINE)


def test_cli_selects_on_integer_keys_such_as_the_imp_round(smoke):
    assert main(["run", "imp", "--profile", "smoke", "--task", "mrpc", "--optimizer", "adam",
                 "--round", "0"]) == 0
    assert ResultsStore(smoke).units("imp") == ["mrpc-adam-continue-seed0-round0",
                                                "mrpc-adam-rewind-seed0-round0"]


def test_cli_corrupt_results_file_returns_2_naming_it(smoke, monkeypatch, capsys):
    first = select(get_experiment("lr_sweep").units(smoke), task=["rte"])[0]
    path = ResultsStore(smoke).path("lr_sweep", unit_id(first))
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    monkeypatch.setattr(E, "finetuned", _fake_finetuned)

    assert main(["run", "lr_sweep", "--profile", "smoke", "--task", "rte"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert path.read_text() == "{not json"


# ---------------------------------------------------------------- lottery units

def test_transfer_pairs_every_two_tasks_of_the_grid():
    lottery = PROFILES["small"].for_lottery()
    units = EXPERIMENTS["transfer"].units(lottery)
    pairs = {(u["source"], u["task"]) for u in units}
    grid = lottery.transfer_grid()
    assert pairs == {(a, b) for a in grid for b in grid if a != b}
    assert len(units) == 4 * len(pairs)  # Adam and SAM ticket, each under Adam and SAM
    assert "stsb" in lottery.tasks and "stsb" not in grid


def test_imp_rounds_are_units_that_build_on_each_other(smoke):
    """Asking for round 2 alone computes rounds 0 and 1 first; round k trains at sparsity k/10."""
    from flatcomp.lab.experiments import load_or_run
    from flatcomp.lab.results import ResultsStore

    [r2] = load_or_run(smoke, "imp", task=["mrpc"], optimizer=["adam"], rewind=[True],
                       round=[2], progress=False)
    stored = ResultsStore(smoke).units("imp")
    assert stored == [f"mrpc-adam-rewind-seed0-round{k}" for k in range(3)]
    rounds = load_or_run(smoke, "imp", task=["mrpc"], optimizer=["adam"], rewind=[True],
                         progress=False)
    assert [r["round"] for r in rounds] == [0, 1, 2] and rounds[2] == r2
    for r in rounds:
        assert r["sparsity"] == pytest.approx(0.1 * r["round"], abs=1e-4)
    # the dense round 0 records its flatness and compression damage, as every trained model does
    assert {"compression", "flatness"} <= set(rounds[0]) and "flatness" not in rounds[1]


def test_a_reused_ticket_trains_its_round_again_only_when_its_weights_are_needed(smoke):
    """IMP's round stored elsewhere (its weights not in the cache): the ticket's record needs no
    training, and an experiment that needs its model remakes the round, identically on a CPU."""
    from safetensors.torch import load_file

    from flatcomp.lab.experiments import load_or_run
    from flatcomp.lab.experiments.lottery import (_imp_path, _masked_weights_path, _ticket_model,
                                                  ticket_imp_unit)

    lottery = smoke.for_lottery()
    unit = dict(task="mrpc", mask="sam", optimizer="sam", seed=0)
    maker = ticket_imp_unit(lottery, "mrpc", "sam")  # the round that pruned the ticket
    trained_round = {**maker, "round": maker["round"] + 1}  # the round that trained it
    [imp_round] = load_or_run(smoke, "imp", **{k: [v] for k, v in trained_round.items()},
                              progress=False)
    trained = _imp_path(lottery, trained_round, trained_round["round"], "weights")
    original = load_file(trained)
    trained.unlink()
    [record] = load_or_run(smoke, "tickets", **{k: [v] for k, v in unit.items()}, progress=False)
    assert record["history"] == imp_round["history"]
    [pruned_by] = load_or_run(smoke, "imp", **{k: [v] for k, v in maker.items()}, progress=False)
    assert record["ticket"] == {"imp_round": unit_id(maker),
                                "device": pruned_by["device"],
                                "round_score": pruned_by["best_score"],
                                "stored_round_score": pruned_by["best_score"]}
    assert not trained.exists() and not _masked_weights_path(lottery, unit).exists()
    with pytest.warns(UserWarning, match="training that round again"):
        model, stored = _ticket_model(lottery, unit)
    assert stored["history"] == record["history"]
    remade = load_file(_masked_weights_path(lottery, unit))
    assert all(torch.equal(remade[name], original[name]) for name in original)


def test_load_or_run_can_show_only_what_is_stored(smoke):
    from flatcomp.lab.experiments import load_or_run

    wanted = dict(task=["mrpc"], optimizer=["adam"], rewind=[True])
    assert load_or_run(smoke, "imp", missing="skip", **wanted) == []
    [first] = load_or_run(smoke, "imp", round=[0], progress=False, **wanted)
    assert load_or_run(smoke, "imp", missing="skip", **wanted) == [first]
    with pytest.raises(ValueError, match="'run'.*'skip'"):
        load_or_run(smoke, "imp", missing="later")


def test_the_command_line_selects_on_rewind(capsys):
    assert main(["run", "imp", "--profile", "smoke", "--task", "mrpc", "--optimizer", "adam",
                 "--rewind", "true", "--round", "0"]) == 0
    assert "1 units of imp" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["run", "imp", "--profile", "smoke", "--rewind", "maybe"])


def test_a_stored_imp_round_whose_masks_left_the_cache_is_trained_again(smoke, tmp_path,
                                                                        monkeypatch):
    """Stored IMP records without their cached masks (made on another machine): the rounds are
    trained again, with a warning, and on a CPU the remade ticket is the same one."""
    from flatcomp.lab.experiments import load_or_run, ticket_and_origin, ticket_masks

    lottery = smoke.for_lottery()
    stored = load_or_run(smoke, "imp", task=["mrpc"], optimizer=["adam"], rewind=[True],
                         round=[0, 1], progress=False)
    here = ticket_masks(lottery, "mrpc", "adam", seed=0)
    monkeypatch.setenv("FLATCOMP_CACHE", str(tmp_path / "another machine"))
    with pytest.warns(UserWarning, match="mrpc-adam-rewind-seed0-round1 is stored"):
        remade = ticket_masks(lottery, "mrpc", "adam", seed=0)
    assert remade.keys() == here.keys()
    assert all(torch.equal(remade[k], here[k]) for k in here)
    _, origin = ticket_and_origin(lottery, "mrpc", "adam", seed=0)
    assert origin["imp_round"] == "mrpc-adam-rewind-seed0-round1"
    assert origin["round_score"] == origin["stored_round_score"] == stored[1]["best_score"]
    assert origin["device"] == "cpu"


def test_the_command_line_writes_a_tasks_ticket(tmp_path, capsys):
    from flatcomp.pruning import load_masks

    out = tmp_path / "mrpc-sam.safetensors"
    assert main(["ticket", "--profile", "smoke", "--task", "mrpc", "--mask", "sam",
                 "--out", str(out)]) == 0
    assert "pruned, by IMP round mrpc-sam-rewind-seed0-round1" in capsys.readouterr().out
    masks, meta = load_masks(out)
    assert (meta["task"], meta["mask"], meta["profile"]) == ("mrpc", "sam", "smoke")
    assert meta["sparsity"] == pytest.approx(0.2, abs=1e-3)   # smoke: 2 rounds of 10%
    with pytest.raises(SystemExit):
        main(["ticket", "--profile", "smoke", "--task", "mrcp", "--mask", "sam"])


def test_the_full_model_and_int8_units_cover_the_dense_tasks_headline_pairs_first():
    from flatcomp.lab.config import SMALL
    from flatcomp.lab.experiments.core import HEADLINE_TASKS

    for name in ("finetune", "quantization"):
        exp = EXPERIMENTS[name]
        units = exp.units(SMALL)
        assert {u["task"] for u in units} >= set(SMALL.dense_tasks())
        first = {(u["task"], u["optimizer"]) for u in units if exp.priority_of(SMALL, u) == 0}
        assert first == {(t, o) for t in SMALL.tasks for o in ("adam", "sam", "swa")} | \
            {(t, o) for t in HEADLINE_TASKS for o in ("adam", "sam")}
        assert all(exp.priority_of(SMALL, u) == 2 for u in units
                   if (u["task"], u["optimizer"]) not in first)


def test_small_sweeps_adam_and_sam_over_the_same_grid():
    from flatcomp.lab.config import SMALL

    units = EXPERIMENTS["lr_sweep"].units(SMALL)
    for task in ("mrpc", "sst2", "rte"):
        rates = {o: {u["lr"] for u in units if u["task"] == task and u["optimizer"] == o}
                 for o in ("adam", "sam")}
        assert {5e-5, 1e-4, 2e-4} <= rates["adam"] and rates["sam"] == {5e-5, 1e-4, 2e-4}


def test_each_seed_of_the_pooler_free_table_uses_its_own_chains_ticket(smoke):
    """tickets_encoder's seed 1: the SAM ticket fine-tuned with SAM is round 2 of the seed-1
    imp_encoder chain (no training of its own); with Adam it trains under that chain's mask,
    whose pooler is dense, and its weights are cached apart from the with-pooler tickets'."""
    from flatcomp.lab.experiments import load_or_run, ticket_and_origin
    from flatcomp.lab.experiments.lottery import _masked_weights_path

    two = smoke.with_seeds((0, 1))  # smoke's lottery runs the first seed only
    lot = two.for_lottery()
    wanted = dict(task=["mrpc"], mask=["sam"], seed=[1])
    own, other = (load_or_run(two, "tickets_encoder", optimizer=[o], progress=False, **wanted)[0]
                  for o in ("sam", "adam"))
    [chain] = load_or_run(two, "imp_encoder", task=["mrpc"], optimizer=["sam"], seed=[1],
                          round=[2], progress=False)
    assert own["history"] == chain["history"]
    assert other["sparsity"] == pytest.approx(own["sparsity"])  # both over the encoder
    assert own["ticket"]["imp_round"] == "mrpc-sam-rewind-seed1-round1" == \
        other["ticket"]["imp_round"]
    masks, _ = ticket_and_origin(lot, "mrpc", "sam", 1, "imp_encoder")
    assert not any("pooler" in name for name in masks)
    unit = dict(task="mrpc", mask="sam", optimizer="adam", seed=1)
    assert _masked_weights_path(lot, unit, "imp_encoder").exists()
    assert _masked_weights_path(lot, unit, "imp_encoder") != _masked_weights_path(lot, unit)


def test_pooler_free_transfer_moves_the_same_seeds_tickets(smoke):
    from flatcomp.lab.experiments import load_or_run

    [cell] = load_or_run(smoke.with_seeds((0, 1)), "transfer_encoder", source=["stsb"],
                         task=["mrpc"], mask=["adam"], optimizer=["sam"], seed=[1], progress=False)
    assert cell["ticket"]["imp_round"] == "stsb-adam-rewind-seed1-round1"
    assert cell["task"] == "mrpc" and 0 < cell["sparsity"] < 1
