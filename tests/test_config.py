"""Profiles: lookup by name and environment, the paper's hyper-parameters, small's written cuts."""

import pytest

from flatcomp.lab.config import DEFAULT_PROFILE, PAPER, PROFILES, SMALL, SMOKE, get_profile

# The fields whose difference between small and paper must be justified in small.cuts.
CUT_FIELDS = ("model", "lr", "epochs", "max_length", "batch_size", "train_size", "precision",
              "imp_rounds")


@pytest.mark.parametrize("name, expected", [("smoke", SMOKE), ("small", SMALL), ("paper", PAPER)])
def test_get_profile_by_name(name, expected):
    assert get_profile(name) is expected
    assert get_profile(name).name == name


@pytest.mark.parametrize("name", ["smoke", "paper"])
def test_get_profile_reads_environment_variable(monkeypatch, name):
    monkeypatch.setenv("FLATCOMP_PROFILE", name)
    assert get_profile() is PROFILES[name]


def test_explicit_name_wins_over_environment(monkeypatch):
    monkeypatch.setenv("FLATCOMP_PROFILE", "paper")
    assert get_profile("smoke") is SMOKE


def test_default_profile_without_environment():
    assert get_profile() is PROFILES[DEFAULT_PROFILE]


def test_unknown_profile_names_the_choices():
    with pytest.raises(ValueError) as info:
        get_profile("huge")
    message = str(info.value)
    assert "huge" in message
    for name in PROFILES:
        assert name in message


def test_unknown_profile_from_environment_raises(monkeypatch):
    monkeypatch.setenv("FLATCOMP_PROFILE", "nosuch")
    with pytest.raises(ValueError, match="nosuch"):
        get_profile()


def test_paper_profile_carries_the_papers_glue_hyper_parameters():
    assert PAPER.model == "bert-base-uncased"
    for task in ("mnli", "qqp", "qnli", "sst2", "rte", "mrpc", "stsb", "cola"):
        assert PAPER.lr_for(task) == 2e-5
    assert PAPER.batch_size == 32
    assert PAPER.max_length == 128
    assert PAPER.sam_rho == 0.05
    assert PAPER.weight_decay == 0.0
    assert PAPER.train_size == {} and PAPER.eval_size == {}


def test_paper_profile_prunes_to_ninety_percent_in_steps_of_ten():
    # the dense fine-tune, then 9 pruning rounds of 10% of the original weights: up to 90%
    assert PAPER.imp_rounds == 9
    assert PAPER.imp_rate == 0.1
    assert round(PAPER.imp_rounds * PAPER.imp_rate, 6) == 0.9


@pytest.mark.parametrize("task", ["mnli", "qqp", "qnli", "sst2"])
def test_paper_trains_large_tasks_three_epochs(task):
    assert PAPER.epochs_for(task) == 3


@pytest.mark.parametrize("task", ["rte", "mrpc", "stsb", "cola"])
def test_paper_trains_small_tasks_ten_epochs(task):
    assert PAPER.epochs_for(task) == 10


def test_paper_squad_settings():
    assert PAPER.lr_for("squad") == 3e-5
    assert PAPER.squad_batch_size == 16
    assert PAPER.squad_max_length == 384
    assert PAPER.squad_doc_stride == 128


def test_every_departure_of_small_from_paper_is_written_in_cuts():
    small, paper = SMALL.to_dict(), PAPER.to_dict()
    differing = [f for f in CUT_FIELDS if small[f] != paper[f]]
    assert differing, "small and paper should differ somewhere (at least the model)"
    missing = [f for f in differing if not SMALL.cuts.get(f, "").strip()]
    assert not missing, f"fields where small departs from paper without a reason in cuts: {missing}"


def test_with_overrides_returns_a_changed_copy():
    changed = SMOKE.with_overrides(seeds=(7,))
    assert changed.seeds == (7,)
    assert SMOKE.seeds != (7,)  # the original is untouched (profiles are frozen)
    assert changed.name == SMOKE.name


def test_transfer_grid_is_the_tasks_unless_cut():
    assert PAPER.transfer_grid() == PAPER.tasks
    lottery = SMALL.for_lottery()
    assert lottery.transfer_grid() == ("mrpc", "sst2", "rte", "cola")  # STS-B cut, see cuts
    assert "transfer is cut to four of the five tasks" in SMALL.cuts["lottery"]
    # the grid never names a task the profile does not run
    assert lottery.with_overrides(tasks=("rte", "stsb")).transfer_grid() == ("rte",)


def test_every_profile_chooses_its_precision_per_machine():
    assert SMOKE.precision == SMALL.precision == PAPER.precision == "auto"
    assert "AVX512-BF16" in SMALL.cuts["precision"] and "bf16_check" in SMALL.cuts["precision"]


@pytest.mark.parametrize("bad", ["fp16", "BF16", True])
def test_a_profile_refuses_an_unknown_precision(bad):
    with pytest.raises(ValueError, match="'auto', 'bf16', 'fp32'"):
        SMOKE.with_overrides(precision=bad)


def test_dense_tasks_are_the_profile_tasks_then_the_rest_of_its_glue_tasks():
    assert SMALL.dense_tasks()[:len(SMALL.tasks)] == SMALL.tasks
    assert set(SMALL.dense_tasks()) == set(PAPER.tasks)  # the paper's eight GLUE tasks
    assert len(set(SMALL.dense_tasks())) == len(SMALL.dense_tasks())
    assert PAPER.dense_tasks() == PAPER.tasks and SMOKE.dense_tasks() == SMOKE.tasks
    assert SMOKE.with_overrides(glue_tasks=("rte", "mrpc")).dense_tasks() == ("mrpc", "stsb", "rte")
