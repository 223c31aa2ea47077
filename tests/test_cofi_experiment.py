"""The CoFi chapter's experiment: its units in priority order, one smoke unit end to end, the
teacher as the only difference between an Adam and a SAM unit, and its place in the plan."""

from __future__ import annotations

import pytest

from flatcomp.lab import plan
from flatcomp.lab.config import SMALL, SMOKE
from flatcomp.lab.experiments import EXPERIMENTS, load_or_run, unit_id
from flatcomp.lab.experiments.cofi_runs import all_cofi_units


def test_small_units_start_with_sst2_at_95_and_70_percent_both_teachers_seed_0():
    ids = [unit_id(u) for u in EXPERIMENTS["cofi"].units(SMALL)]
    assert ids[:4] == ["sst2-adam-sparsity0.95-seed0", "sst2-sam-sparsity0.95-seed0",
                       "sst2-adam-sparsity0.7-seed0", "sst2-sam-sparsity0.7-seed0"]
    assert ids[4:] == [i.replace("sst2", "qnli") for i in ids[:4]]
    more = EXPERIMENTS["cofi_more"].units(SMALL)
    seeds = [u["seed"] for u in more]  # seed 0 less the headline's 8 units, then 24 per seed
    assert seeds == [0] * 16 + [1] * 24 + [2] * 24
    assert [u["sparsity"] for u in more[:4]] == [0.9, 0.9, 0.5, 0.5]
    assert EXPERIMENTS["cofi"].priority < EXPERIMENTS["cofi_more"].priority
    every = [unit_id(u) for u in all_cofi_units(SMALL)]
    assert len(every) == len(set(every)) == 3 * 4 * 3 * 2  # tasks, sparsities, seeds, teachers


def test_the_plan_runs_the_headline_after_its_teachers():
    steps = plan.make_plan(SMOKE, experiments=["cofi"], seconds_per_step=lambda p: 1.0)
    cofi = [s for s in steps if s.job.experiment == "cofi"]
    assert [u for s in cofi for u in s.units][0] == "mrpc-adam-sparsity0.95-seed0"
    assert cofi[0].job.needs == (("finetune", "mrpc-adam-seed0"),)
    assert all(s.seconds > 0 for s in cofi)
    small = plan.make_plan(SMALL, experiments=["cofi"], seconds_per_step=lambda p: 1.0)
    assert small[0].units == ("sst2-adam-sparsity0.95-seed0",)
    assert small[0].job.needs == (("finetune", "sst2-adam-seed0"),)  # the SAM chapter's model
    alone = plan.make_plan(SMALL.with_overrides(glue_tasks=()), experiments=["cofi"],
                           seconds_per_step=lambda p: 1.0)
    assert alone[0].job.needs == ()  # SST-2 is no fine-tune task there: the unit trains it


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """The 95% smoke units with the Adam and the SAM teacher (teachers trained here)."""
    import os

    root = tmp_path_factory.mktemp("cofi")
    old = {k: os.environ.get(k) for k in ("FLATCOMP_RESULTS", "FLATCOMP_CACHE")}
    os.environ["FLATCOMP_RESULTS"], os.environ["FLATCOMP_CACHE"] = str(root / "r"), str(root / "c")
    try:
        return {o: load_or_run(SMOKE, "cofi", progress=False, task=["mrpc"], sparsity=[0.95],
                               optimizer=[o])[0] for o in ("adam", "sam")}
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_a_smoke_unit_reaches_its_target_and_its_compact_model_is_exact(records):
    r = records["adam"]
    # 4 pruning epochs of 32 steps: the expected sparsity within 0.05 of 95% (asserted here)
    assert abs(r["expected_sparsity"] - r["target_sparsity"]) <= 0.05
    enc = r["encoder_params"]
    assert enc["compact"] == round((1 - r["realised_sparsity"]) * enc["dense"])
    kept = r["kept"]
    d_head = kept["of"]["hidden"] // kept["of"]["heads"]
    # the deterministic gates round each structure's expected count: the realised sparsity is
    # off by at most about one head's share of the encoder (12% of the tiny model's weights)
    head_share = 4 * d_head * kept["of"]["hidden"] / enc["dense"]
    assert abs(r["realised_sparsity"] - r["expected_sparsity"]) <= head_share
    assert enc["compact"] == kept["hidden"] * (4 * d_head * sum(kept["heads"]) + 2 * sum(kept["ffn"]))
    assert r["params"]["compact"] < r["params"]["dense"]
    assert r["compact_dev_score_pruned"] == r["gated_dev_score"]
    assert r["max_logit_gap"] < 1e-4
    assert {row["batch_size"] for row in r["latency"]} == {1, 32}
    assert {row["model"] for row in r["latency"]} == {"dense", "compact"}
    phases = [h["phase"] for h in r["history"]]
    # a candidate at every epoch's end, and at mid-epoch once the target has warmed up (epoch 1)
    assert phases == ["prune"] * 7 + ["finetune"]
    assert [h["epoch"] for h in r["history"][:7]] == [1, 1.5, 2, 2.5, 3, 3.5, 4]
    steps = [row["step"] for row in r["trace"]]
    assert steps == sorted(steps) and steps[-1] == 128 and len(steps) <= 101
    assert r["trace"][-1]["target"] == r["target_sparsity"]
    assert {"expected_sparsity", "lambda_1", "lambda_2", "train_loss", "dev_score"} <= \
        set(r["history"][0])
    assert r["teacher"]["optimizer"] == "adam" and "dev_score" in r["teacher"]


def test_the_teacher_is_the_only_difference(records):
    adam, sam = records["adam"], records["sam"]
    assert adam["student_init_sha256"] == sam["student_init_sha256"]
    assert adam["train_rows"] == sam["train_rows"] and adam["schedule"] == sam["schedule"]
    assert adam["teacher"]["optimizer"] == "adam" and sam["teacher"]["optimizer"] == "sam"
    assert [h["train_loss"] for h in adam["history"]] != [h["train_loss"] for h in sam["history"]]
