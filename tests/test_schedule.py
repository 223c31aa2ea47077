"""The parallel lottery schedule: which jobs, in which order, and how they are run."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from flatcomp.config import PROFILES
from flatcomp.experiments import (finetuned_file, get_experiment, select, ticket_file,
                                  unit_id)
from flatcomp.results import ResultsStore
from flatcomp.schedule import Job, lottery_jobs, run_jobs, summary

LOTTERY = ("imp", "tickets", "transfer", "compound", "mask_analysis", "ticket_flatness",
           "imp_flatness", "pooler_check")


@pytest.mark.parametrize("name", ["smoke", "small", "paper"])
def test_every_lottery_unit_is_in_exactly_one_job(name):
    profile = PROFILES[name]
    jobs = lottery_jobs(profile)
    for experiment in LOTTERY:
        units = get_experiment(experiment).units(profile.for_lottery())
        covered = [unit_id(u) for j in jobs if j.experiment == experiment
                   for u in select(units, **j.filters)]
        assert sorted(covered) == sorted(unit_id(u) for u in units), experiment


@pytest.mark.parametrize("name", ["smoke", "small"])
def test_every_need_is_made_by_an_earlier_job(name):
    """A run job makes its units (IMP's round 0 also the dense checkpoint); a ticket job its
    ticket file."""
    profile = PROFILES[name].for_lottery()
    made: set = set()
    for job in lottery_jobs(PROFILES[name]):
        assert set(job.needs) <= made, job.name
        if job.experiment == "ticket":
            made.add(ticket_file(profile, job.filters["task"][0], job.filters["mask"][0]))
            continue
        units = select(get_experiment(job.experiment).units(profile), **job.filters)
        made |= {(job.experiment, unit_id(u)) for u in units}
        made |= {finetuned_file(profile, u["task"], u["optimizer"], u["seed"]) for u in units
                 if job.experiment == "imp" and u["round"] == 0}


def test_a_ticket_job_per_chain_and_the_tickets_wait_for_its_file(smoke):
    lot = smoke.for_lottery()
    jobs = {j.name: j for j in lottery_jobs(smoke)}
    # smoke: 2 rounds of 10%, ticket sparsity capped at 20%: masks pruned after round 1
    assert jobs["ticket-mrpc-adam"].needs == (("imp", "mrpc-adam-rewind-seed0-round1"),)
    assert jobs["ticket-mrpc-adam"].command(smoke)[3:] == ["ticket", "--profile", "smoke",
                                                          "--task", "mrpc", "--mask", "adam"]
    adam = ticket_file(lot, "mrpc", "adam")
    assert jobs["tickets-mrpc-adam-sam"].needs == (adam,)
    assert jobs["tickets-mrpc-adam-adam"].needs == (adam, ("imp", "mrpc-adam-rewind-seed0-round2"))
    assert jobs["tickets-mrpc-random-sam"].needs == (adam,)
    assert jobs["transfer-stsb-mrpc"].needs == (ticket_file(lot, "stsb", "adam"),
                                                ticket_file(lot, "stsb", "sam"))


def test_job_command_selects_its_units(smoke):
    job = Job("imp", dict(task=["mrpc"], rewind=[False]))
    assert job.command(smoke)[1:] == ["-m", "flatcomp", "run", "imp", "--profile", "smoke",
                                      "--task", "mrpc", "--rewind", "False"]


@dataclass(frozen=True)
class ScriptJob(Job):
    """A job that runs a line of Python instead of an experiment."""

    script: str = ""

    def command(self, profile):
        return [sys.executable, "-c", self.script]


def test_run_jobs_respects_needs_and_reports_every_ending(smoke, tmp_path):
    store = ResultsStore(smoke.for_lottery(), tmp_path / "results")
    made = store.path("imp", "first")
    write = f"import pathlib; p = pathlib.Path({str(made)!r}); p.parent.mkdir(parents=True); " \
            f"p.write_text('{{}}')"
    jobs = [ScriptJob("imp", dict(task=["second"]), (("imp", "first"),), script="pass"),
            ScriptJob("imp", dict(task=["first"]), script=write),
            ScriptJob("imp", dict(task=["fails"]), script="raise SystemExit(3)"),
            ScriptJob("imp", dict(task=["orphan"]), (("imp", "never"),), script="pass")]
    outcomes = run_jobs(smoke, jobs, workers=1, log_dir=tmp_path / "logs", store=store, poll=0.05)
    status = {o.job.filters["task"][0]: o.status for o in outcomes}
    assert status == {"second": "done", "first": "done", "fails": "failed (exit 3)",
                      "orphan": "not started"}
    assert "not started: 1 (imp-orphan)" in summary(outcomes)


def test_run_jobs_kills_at_the_deadline(smoke, tmp_path):
    store = ResultsStore(smoke.for_lottery(), tmp_path / "results")
    jobs = [ScriptJob("imp", dict(task=["slow"]), script="import time; time.sleep(60)"),
            ScriptJob("imp", dict(task=["late"]), script="pass")]
    outcomes = run_jobs(smoke, jobs, workers=1, log_dir=tmp_path / "logs", store=store,
                        stop_after=0.5, kill_after=1.0, poll=0.05)
    assert [o.status for o in outcomes] == ["killed", "not started"]
    assert outcomes[0].seconds < 30
