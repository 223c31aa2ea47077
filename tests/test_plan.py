"""The plan: which jobs, in which order, at what cost, and how each executor runs them.

The whole smoke plan, run to the end and then checked to have nothing left, is the first part of
`make test-smoke` (the chapters then read its results).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flatcomp.lab import plan
from flatcomp.lab.config import PROFILES
from flatcomp.lab.experiments import (EXPERIMENTS, experiment_profile, finetuned_file, select,
                                      ticket_file, unit_id)
from flatcomp.lab.experiments import lottery
from flatcomp.lab.experiments.core import FileJob, Job, checkpoint_paths
from flatcomp.lab.results import ResultsStore

ONE_SECOND = lambda profile: 1.0  # noqa: E731 - a cost model that needs no measurement


# ---------------------------------------------------------------- the jobs

@pytest.mark.parametrize("name", ["smoke", "small", "paper"])
def test_every_unit_of_every_experiment_is_in_exactly_one_job(name):
    profile = PROFILES[name]
    jobs = plan.all_jobs(profile)
    for experiment, exp in EXPERIMENTS.items():
        units = exp.units(experiment_profile(profile, experiment))
        covered = [unit_id(u) for j in jobs if j.experiment == experiment
                   for u in select(units, **j.filters)]
        assert sorted(covered) == sorted(unit_id(u) for u in units), experiment


@pytest.mark.parametrize("name", ["smoke", "small"])
def test_every_need_is_made_by_an_earlier_job(name):
    """A job makes its units and the files they declare (IMP's round 0 also the dense
    checkpoint); a file job (the lottery's tickets) its files."""
    profile = PROFILES[name]
    made: set = set()
    for job in plan.all_jobs(profile):
        assert set(job.needs) <= made, job.name
        if isinstance(job, FileJob):
            made |= set(job.makes(profile))
            continue
        exp = EXPERIMENTS[job.experiment]
        at = experiment_profile(profile, job.experiment)
        units = select(exp.units(at), **job.filters)
        made |= {(job.experiment, unit_id(u)) for u in units}
        made |= {f for u in units for f in exp.makes(at, u)}
    lot = profile.for_lottery()
    assert finetuned_file(lot, lot.tasks[0], "sam", lot.seeds[0]) in made


def test_a_ticket_job_per_chain_and_the_tickets_wait_for_its_file(smoke):
    lot = smoke.for_lottery()
    jobs = {j.name: j for j in plan.all_jobs(smoke)}
    # smoke: 2 rounds of 10%, ticket sparsity capped at 20%: masks pruned after round 1
    assert jobs["ticket-mrpc-adam"].needs == (("imp", "mrpc-adam-rewind-seed0-round1"),)
    adam = ticket_file(lot, "mrpc", "adam")
    assert isinstance(jobs["ticket-mrpc-adam"], FileJob)
    assert jobs["ticket-mrpc-adam"].makes(smoke) == [adam]
    assert jobs["tickets-mrpc-adam-sam"].needs == (adam,)
    assert jobs["tickets-mrpc-adam-adam"].needs == (adam, ("imp", "mrpc-adam-rewind-seed0-round2"))
    assert jobs["transfer-stsb-mrpc"].needs == (ticket_file(lot, "stsb", "adam"),
                                                ticket_file(lot, "stsb", "sam"))
    assert jobs["flatness-mrpc-sam-1"].needs == (("finetune", "mrpc-sam-seed1"),)
    # the pooler-free tickets wait for their own seed's chain's file (smoke's lottery: one seed)
    two = smoke.with_seeds((0, 1))
    jobs = {j.name: j for j in plan.all_jobs(two)}
    lot = two.for_lottery()
    adam1, sam1 = (ticket_file(lot, "mrpc", m, "imp_encoder", 1) for m in ("adam", "sam"))
    assert adam1 != ticket_file(lot, "mrpc", "adam", "imp_encoder", 0)
    assert jobs["ticket_encoder-mrpc-adam-1"].needs == (
        ("imp_encoder", "mrpc-adam-rewind-seed1-round1"),)
    assert jobs["ticket_encoder-mrpc-adam-1"].makes(two) == [adam1]
    assert jobs["tickets_encoder-mrpc-random-adam-1"].needs == (adam1,)
    assert jobs["tickets_encoder-mrpc-sam-sam-1"].needs == (
        sam1, ("imp_encoder", "mrpc-sam-rewind-seed1-round2"))
    assert jobs["transfer_encoder-stsb-mrpc-0"].needs == tuple(
        ticket_file(lot, "stsb", m, "imp_encoder", 0) for m in ("adam", "sam"))
    # the chain's round that prunes the ticket leaves the file: the plan knows who makes it
    imp_encoder = EXPERIMENTS["imp_encoder"]
    assert imp_encoder.makes(lot, dict(task="mrpc", optimizer="adam", rewind=True, seed=1,
                                       round=1)) == (adam1,)
    assert imp_encoder.makes(lot, dict(task="mrpc", optimizer="adam", rewind=True, seed=1,
                                       round=2)) == ()


def test_a_file_job_runs_only_where_a_planned_job_waits_for_its_missing_file(smoke):
    """The plan knows no chapter: the lottery's ticket jobs are file jobs, planned at the
    priority of the first job that waits on their file, and only while the file is missing."""
    def tickets(**kw) -> dict[str, plan.Step]:
        steps = plan.make_plan(smoke, seconds_per_step=ONE_SECOND, **kw)
        return {s.name: s for s in steps if isinstance(s.job, FileJob)}

    lot = smoke.for_lottery()
    chains = {f"ticket-{t}-{m}" for t in lot.tasks for m in ("adam", "sam")}
    encoder = {f"ticket_encoder-{t}-{m}-0" for t in lot.tasks for m in ("adam", "sam")}
    assert set(tickets()) == chains | encoder
    assert {s.priority for n, s in tickets().items() if n in chains} == \
        {EXPERIMENTS["tickets"].priority}
    assert tickets(experiments=["finetune"]) == {}  # no planned job waits for a ticket
    made = ticket_file(lot, "mrpc", "adam")
    made.parent.mkdir(parents=True, exist_ok=True)
    made.write_bytes(b"")
    assert set(tickets()) == (chains | encoder) - {"ticket-mrpc-adam"}
    # a chain the plan has yet to run leaves the file itself: its file job costs nothing; a
    # chain stored from elsewhere is trained again up to the ticket
    job = tickets()["ticket_encoder-mrpc-sam-0"].job
    assert job.cost(smoke) == 0
    maker = ResultsStore(lot).path("imp_encoder", "mrpc-sam-rewind-seed0-round1")
    maker.parent.mkdir(parents=True, exist_ok=True)
    maker.write_text("{}")
    assert job.cost(smoke) == 2 * EXPERIMENTS["imp_encoder"].cost(
        lot, dict(task="mrpc", optimizer="sam", rewind=True, seed=0, round=1))


# ---------------------------------------------------------------- the order and the cost

def test_the_plan_puts_priority_then_the_first_seed_first(smoke):
    steps = plan.make_plan(smoke, seconds_per_step=ONE_SECOND)
    priorities = [s.priority for s in steps]
    assert priorities == sorted(priorities)
    finetunes = [s.job.filters["seed"][0] for s in steps if s.job.experiment == "finetune"]
    assert finetunes == sorted(finetunes)  # every seed-0 fine-tune before any seed-1 one
    assert steps[0].priority == 0 and steps[-1].priority == 4  # the rho sweep


def test_stored_units_leave_the_plan(smoke):
    store = ResultsStore(smoke)
    before = plan.make_plan(smoke, experiments=["data_cards"], seconds_per_step=ONE_SECOND)
    assert [s.units for s in before][:2] == [("cola",), ("sst2",)]
    store.save("data_cards", "cola", {"task": "cola"}, seed=None, seconds=0.0)
    after = plan.make_plan(smoke, experiments=["data_cards"], seconds_per_step=ONE_SECOND)
    assert [s.units for s in after] == [s.units for s in before][1:]


def test_a_scoped_plan_runs_only_its_units_unless_an_experiment_is_named(smoke):
    scoped = smoke.with_overrides(plan_scope={"finetune": {"task": ("mrpc",)}, "data_cards": {}})
    steps = plan.make_plan(scoped, seconds_per_step=ONE_SECOND)
    assert {s.job.experiment for s in steps} == {"finetune", "data_cards"}
    assert {s.job.filters["task"][0] for s in steps if s.job.experiment == "finetune"} == {"mrpc"}
    named = plan.make_plan(scoped, experiments=["finetune"], seconds_per_step=ONE_SECOND)
    every = {u["task"] for u in EXPERIMENTS["finetune"].units(smoke)}
    assert {s.job.filters["task"][0] for s in named} == every != {"mrpc"}


def test_every_need_of_the_small_plan_is_stored_or_planned():
    """The small profile's scope leaves out no unit that a unit in it waits for."""
    small = PROFILES["small"]
    kept = {(e, unit_id(u)) for e in small.plan_scope
            for u in EXPERIMENTS[e].units(experiment_profile(small, e)) if small.in_plan(e, u)}
    for job in plan.all_jobs(small):
        if isinstance(job, FileJob) or job.experiment not in small.plan_scope:
            continue
        units = select(EXPERIMENTS[job.experiment].units(experiment_profile(small, job.experiment)),
                       **job.filters)
        if not any(small.in_plan(job.experiment, u) for u in units):
            continue
        for need in job.needs:
            if isinstance(need, tuple):
                stored = ResultsStore(experiment_profile(small, need[0]),
                                      Path(__file__).parent.parent / "results").path(*need)
                assert need in kept or stored.exists(), (job.name, need)


def test_the_cost_model_counts_sam_twice(smoke):
    steps = {s.name: s for s in plan.make_plan(smoke, experiments=["finetune"],
                                               seconds_per_step=ONE_SECOND)}
    adam, sam = steps["finetune-mrpc-adam-0"].seconds, steps["finetune-mrpc-sam-0"].seconds
    # 256 shipped train rows at batch 16: 16 steps a epoch, 3 epochs, plus dev passes, at the
    # rows' padded length
    shorter = plan.length_factor(smoke, "mrpc")
    assert adam == pytest.approx((48 + 3 * 4 * 2 / 3) * shorter)
    assert sam - adam == pytest.approx(48 * shorter)


def test_a_chain_cut_short_elsewhere_counts_its_rounds_again_without_their_masks(smoke):
    exp = EXPERIMENTS["imp_encoder"]
    lot = experiment_profile(smoke, "imp_encoder")
    round2 = dict(task="mrpc", optimizer="sam", rewind=True, seed=0, round=2)
    one_round = exp.cost(lot, round2)  # round 1 not stored: this run trains it first
    ResultsStore(lot).save("imp_encoder", unit_id({**round2, "round": 1}), {}, seed=0,
                           seconds=0.0)
    assert exp.cost(lot, round2) == pytest.approx(3 * one_round)  # rounds 0 and 1 again
    masks = lottery._imp_path(lot, round2, 2, "masks", "imp_encoder")
    masks.parent.mkdir(parents=True, exist_ok=True)
    masks.write_bytes(b"")
    assert exp.cost(lot, round2) == pytest.approx(one_round)


@pytest.mark.parametrize("experiment, trainer, unit", [
    ("squad_more_quant", "squad_more", dict(task="squad", optimizer="adam", seed=1)),
    ("cofi", "finetune", dict(task="mrpc", optimizer="sam", sparsity=0.95, seed=0)),
    ("quantization", "finetune", dict(task="mrpc", optimizer="adam", seed=0)),
])
def test_the_cost_model_counts_a_model_once(smoke, experiment, trainer, unit):
    """A unit that waits for the unit that trains its model counts no fine-tune while that one
    is still to run (the plan runs it first, into the cache); once it is stored, it counts the
    fine-tune again only where this machine's cache lacks the checkpoint."""
    exp = EXPERIMENTS[experiment]
    at = experiment_profile(smoke, experiment)
    model = dict(task=unit["task"], optimizer=unit["optimizer"], seed=unit["seed"])
    assert exp.needs(at, unit) == ((trainer, unit_id(model)),)
    waiting = exp.cost(at, unit)
    ResultsStore(at).save(trainer, unit_id(model), {}, seed=unit["seed"], seconds=0.0)
    again = exp.cost(at, unit)
    fine_tune = EXPERIMENTS[trainer].cost(experiment_profile(smoke, trainer), model)
    assert again == pytest.approx(waiting + fine_tune)
    checkpoint = finetuned_file(at, **model)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"")
    assert exp.cost(at, unit) == pytest.approx(waiting)


def test_the_first_tuned_seed_counts_its_fine_tune_only_where_the_grid_winner_is_not_cached(smoke):
    """The first seed's model is the grid's at the winning rate: free while the grid is still to
    run (it trains into the cache first) or where its checkpoint is cached; a whole fine-tune
    where the grid's records were made on another machine."""
    from flatcomp.lab.experiments import tuned

    at = experiment_profile(smoke, "tuned")
    unit = dict(task="mrpc", optimizer="sam", seed=tuned.protocol_seeds(at, "mrpc")[0])
    waiting = EXPERIMENTS["tuned"].cost(at, unit)
    rates = tuned.grid_rates(at)
    store = ResultsStore(experiment_profile(smoke, "tuned_lr"))
    for lr, score in zip(rates, (70.0, 75.0)):  # the second rate wins
        grid_unit = dict(task="mrpc", optimizer="sam", lr=lr, seed=unit["seed"])
        store.save("tuned_lr", unit_id(grid_unit), {"lr": lr, "best_score": score},
                   seed=unit["seed"], seconds=0.0)
        if lr == rates[0]:  # half the grid stored: its winner is not known yet
            assert EXPERIMENTS["tuned"].cost(at, unit) == pytest.approx(waiting)
    grid_winner = dict(task="mrpc", optimizer="sam", lr=rates[1], seed=unit["seed"])
    fine_tune = EXPERIMENTS["tuned_lr"].cost(experiment_profile(smoke, "tuned_lr"), grid_winner)
    assert EXPERIMENTS["tuned"].cost(at, unit) == pytest.approx(waiting + fine_tune)
    trained_at = tuned.protocol_profile(at, "mrpc")
    checkpoint, _ = checkpoint_paths(trained_at, "mrpc", "sam", unit["seed"], rates[1],
                                     trained_at.epochs_for("mrpc"))
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"")
    assert EXPERIMENTS["tuned"].cost(at, unit) == pytest.approx(waiting)


def test_the_cost_model_counts_the_tokens_a_step_computes(smoke):
    random = plan.length_factor(smoke, "stsb")
    grouped = plan.length_factor(smoke.with_overrides(length_grouped=True), "stsb")
    assert 0 < grouped < random < 1  # shorter than the maximum length; grouped pads less
    assert plan.length_factor(smoke, None) == plan.length_factor(smoke, "squad") == 1.0


def test_a_corrupt_results_file_fails_the_dry_run_and_the_check(smoke, capsys):
    from flatcomp.lab.cli import main
    from flatcomp.lab.results import CorruptResultError

    path = ResultsStore(smoke).path("data_cards", "cola")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("garbage")
    with pytest.raises(CorruptResultError, match="data_cards/cola.json"):
        plan.make_plan(smoke, experiments=["data_cards"], seconds_per_step=ONE_SECOND)
    for flag in ("--dry-run", "--check"):
        assert main(["plan", "--profile", "smoke", "--experiment", "data_cards", flag]) == 2
        assert "cola.json is corrupt" in capsys.readouterr().err
    assert path.read_text() == "garbage"  # never overwritten


def test_dry_run_lists_every_unit_and_the_total(smoke):
    steps = plan.make_plan(smoke, experiments=["lr_sweep"], seconds_per_step=ONE_SECOND)
    lines = plan.describe(smoke, steps).splitlines()
    assert len(lines) == 1 + 4 + 1  # header, the four sweep units, the total
    assert lines[1].split()[:2] == ["lr_sweep", "mrpc-adam-lr0.001-seed0"]
    assert "fp32" in lines[1] or "bf16" in lines[1]
    assert lines[-1].startswith("4 units in 4 jobs, about ")


def test_unknown_experiment_is_an_error(smoke):
    with pytest.raises(ValueError, match="unknown experiment.*nope"):
        plan.make_plan(smoke, experiments=["nope"], seconds_per_step=ONE_SECOND)


def test_seconds_per_step_is_measured_once_and_cached(smoke):
    first = plan.measured_seconds_per_step(smoke, steps=1)
    assert first > 0
    cached = json.loads((Path(os.environ["FLATCOMP_CACHE"]) / "step-seconds.json").read_text())
    assert list(cached.values()) == [first]
    assert plan.measured_seconds_per_step(smoke) == first
    assert plan.forget_step_times() == 1  # plan --remeasure
    assert plan.measured_seconds_per_step(smoke, steps=1) > 0


# ---------------------------------------------------------------- executors

def test_short_steps_share_a_worker_and_a_timing_runs_alone(smoke):
    waiting = [plan.Outcome(s) for s in
               plan.make_plan(smoke, experiments=["data_cards", "step_time"],
                              seconds_per_step=ONE_SECOND)]
    store = ResultsStore(smoke)
    batch = plan._next_batch(waiting, store, 1e9, batch_seconds=120, alone_ok=True)
    assert [o.step.job.experiment for o in batch] == ["data_cards"] * 10
    timings = [o for o in waiting if o.step.alone]
    assert len(timings) == 2
    assert plan._next_batch(timings, store, 1e9, 120, alone_ok=False) == []
    # the timings share one process, with no other step among them
    assert plan._next_batch(timings, store, 1e9, 120, alone_ok=True) == timings
    assert plan._next_batch(timings + waiting[:1], store, 1e9, 120, alone_ok=True) == timings
    assert plan._next_batch(timings, store, 1e9, 0, alone_ok=True) == timings[:1]


def test_a_chain_runs_in_one_batch_each_link_after_the_one_it_needs(smoke):
    steps = plan.make_plan(smoke, experiments=["squad_finetune", "squad_imp"],
                           seconds_per_step=ONE_SECOND)
    waiting = [plan.Outcome(s) for s in steps]
    batch = plan._next_batch(waiting, ResultsStore(smoke), 1e9, batch_seconds=1e9, alone_ok=True)
    assert [o.step for o in batch] == steps and len(steps) == 8  # 2 fine-tunes, 2 x 3 rounds
    # a link whose need nothing before it makes waits, as before
    assert plan._next_batch(waiting[2:], ResultsStore(smoke), 1e9, 1e9, alone_ok=True) == []


def test_a_step_that_reads_what_this_run_made_goes_first(smoke, tmp_path):
    first = plan.make_plan(smoke, experiments=["data_cards"], seconds_per_step=ONE_SECOND)[0]
    made = tmp_path / "round3.masks.safetensors"
    made.touch()
    reader = plan.Step(Job("data_cards", {"task": ["rte"]}, (made,)), ("rte",), 10.0, 5)
    waiting = [plan.Outcome(first), plan.Outcome(reader)]
    store = ResultsStore(smoke)
    assert [o.step for o in plan._next_batch(waiting, store, 1e9, 0, True)] == [first]
    batch = plan._next_batch(waiting, store, 1e9, 0, True, fresh={made})
    assert [o.step for o in batch] == [reader]
    # a finished batch's units and files count as made; a failed one's do not
    done, failed = plan.Outcome(first, "done"), plan.Outcome(reader, "failed")
    assert ("data_cards", first.units[0]) in plan._made_by([done, failed], store)
    assert plan._made_by([failed], store) == []


def test_a_step_too_long_for_one_worker_gets_the_idle_machine(smoke):
    steps = plan.make_plan(smoke, experiments=["data_cards"], seconds_per_step=ONE_SECOND)[:2]
    store = ResultsStore(smoke)
    long, short = (plan.Step(s.job, s.units, seconds, s.priority)
                   for s, seconds in zip(steps, (400.0, 100.0)))

    def first(order, whole, alone_ok=True):
        return plan._next_batch([plan.Outcome(s) for s in order], store, 300.0, 0, alone_ok,
                                whole=whole)
    batch = first([long, short], whole=(2.0, 4))
    assert [o.step.job for o in batch] == [long.job]
    assert batch[0].step.alone and batch[0].step.threads == 4 and batch[0].step.seconds == 200
    # not while something runs, not where even the whole machine is too slow, not before a
    # step that comes first and fits on one worker
    assert [o.step for o in first([long, short], (2.0, 4), alone_ok=False)] == [short]
    assert [o.step for o in first([long, short], (1.2, 4))] == [short]
    assert [o.step for o in first([short, long], (2.0, 4))] == [short]
    assert [o.step for o in first([long, short], None)] == [short]


def test_the_whole_machine_is_every_worker_s_threads_timed_once(smoke):
    import torch

    before = torch.get_num_threads()
    assert plan.whole_machine(smoke, 1, 1) is None
    speedup, threads = plan.whole_machine(smoke, 2, 1)
    assert threads == 2 and speedup > 0 and torch.get_num_threads() == before
    assert plan.whole_machine(smoke, 2, 1) == (speedup, 2)  # cached


def test_debug_executor_runs_in_order_and_respects_needs(smoke, tmp_path):
    steps = plan.make_plan(smoke, experiments=["data_cards"], seconds_per_step=ONE_SECOND)[:2]
    orphan = plan.Step(Job("data_cards", {"task": ["rte"]}, (("data_cards", "never"),)),
                       ("rte",), 0.0, 0)
    outcomes = plan.execute(smoke, steps + [orphan], executor="debug", folder=tmp_path / "logs")
    assert [o.status for o in outcomes] == ["done", "done", "not started"]
    assert ResultsStore(smoke).units("data_cards") == ["cola", "sst2"]
    assert "not started: 1 (data_cards-rte)" in plan.summary(outcomes)


def test_a_step_that_cannot_finish_before_the_deadline_is_not_started(smoke, tmp_path):
    steps = plan.make_plan(smoke, experiments=["data_cards"], seconds_per_step=ONE_SECOND)[:1]
    slow = [plan.Step(s.job, s.units, 3600.0, s.priority) for s in steps]
    outcomes = plan.execute(smoke, slow, executor="debug", deadline=60, folder=tmp_path / "logs")
    assert [o.status for o in outcomes] == ["not started"]
    assert ResultsStore(smoke).units("data_cards") == []


def test_the_pace_assumed_or_measured_keeps_a_step_that_would_be_killed_from_starting(
        smoke, tmp_path):
    steps = plan.make_plan(smoke, experiments=["data_cards"], seconds_per_step=ONE_SECOND)[:1]
    long = [plan.Step(s.job, s.units, 400.0, s.priority) for s in steps]
    outcomes = plan.execute(smoke, long, executor="debug", deadline=1000, pace=3.0,
                            folder=tmp_path / "logs")
    assert [o.status for o in outcomes] == ["not started"]
    outcomes = plan.execute(smoke, long, executor="debug", deadline=1000, pace=2.0,
                            folder=tmp_path / "logs")
    assert [o.status for o in outcomes] == ["done"]
    with pytest.raises(ValueError, match="pace 0: real seconds per estimated second"):
        plan.execute(smoke, long, executor="debug", pace=0, folder=tmp_path / "logs")
    # measured: the done steps' real seconds over their estimates, short steps left out
    done = [plan.Outcome(plan.Step(long[0].job, (), estimate, 0), "done", real)
            for estimate, real in ((400.0, 600.0), (600.0, 900.0), (10.0, 100.0))]
    failed = plan.Outcome(plan.Step(long[0].job, (), 400.0, 0), "failed", 4000.0)
    assert plan.measured_pace(done + [failed], assumed=3.0) == pytest.approx(1.5)
    assert plan.measured_pace(done[2:] + [failed], assumed=3.0) == 3.0


# ---------------------------------------------------------------- Slurm, without a cluster

class FakeSlurm:
    """Records what submitit's Slurm executor would be asked to submit."""

    def __init__(self):
        self.arrays, self.parameters, self._open, self._count = [], [], None, 100

    def update_parameters(self, **parameters):
        self.parameters.append(parameters)

    def batch(self):
        fake = self

        class Batch:
            def __enter__(self):
                fake._open = []

            def __exit__(self, *exc):
                fake.arrays.append(fake._open)

        return Batch()

    def submit(self, fn, *args):
        self._count += 1
        job = type("FakeJob", (), {"job_id": str(self._count)})()
        self._open.append((fn, args, job))
        return job


def test_slurm_gets_one_array_per_wave_each_afterok_on_the_last(smoke):
    store = ResultsStore(smoke.for_lottery())
    steps = plan.make_plan(smoke, experiments=["imp"], seconds_per_step=ONE_SECOND)
    slurm = FakeSlurm()
    outcomes = plan.submit_to_slurm(slurm, steps, ("smoke", None, None), partition="gpu",
                                    gpus_per_job=1, array_parallelism=8, jobs_per_task=2,
                                    store=store)
    assert len(outcomes) == len(steps) and all("submitted" in o.status for o in outcomes)
    assert len(slurm.arrays) == len(plan.waves(steps, store))
    first, second = slurm.parameters[0], slurm.parameters[1]
    assert first["slurm_partition"] == "gpu" and first["slurm_array_parallelism"] == 8
    assert "slurm_additional_parameters" not in first
    first_ids = [job.job_id for _, _, job in slurm.arrays[0]]
    assert second["slurm_additional_parameters"]["dependency"] == "afterok:" + ":".join(first_ids)
    fn, args, _ = slurm.arrays[0][0]
    assert fn is plan.run_steps and args[0] == "smoke" and len(args[1]) <= 2


def test_waves_follow_the_chains(smoke):
    store = ResultsStore(smoke.for_lottery())
    steps = plan.make_plan(smoke, experiments=["imp", "tickets"], seconds_per_step=ONE_SECOND)
    level = {s.name: k for k, wave in enumerate(plan.waves(steps, store)) for s in wave}
    assert level["imp-mrpc-adam-True"] == 0
    assert level["tickets-mrpc-adam-sam"] == 1  # needs the ticket file IMP's chain leaves
