"""The lottery experiments as parallel processes on one machine (a GPU box, or many cores).

IMP is a chain: round k trains under the masks that round k - 1 pruned. A ticket needs the IMP
round that pruned it, a transferred ticket its source task's, and the analyses need the tickets.
:func:`lottery_jobs` lists that work as jobs in the order of importance (the ticket table first,
then the curves, the transfer grid, the rest), each naming the stored units it needs first, and
:func:`run_jobs` keeps ``workers`` processes busy with the most important job that is ready. A
MiniLM fine-tune leaves a large GPU mostly idle, so several share it. (On an H200, 14 processes
at once took about half a minute per 3-epoch MRPC fine-tune, and about 13 s to start a job.)

Trained weights and masks stay in the checkpoint cache of the machine that ran them. Where the
IMP rounds are stored but their masks are not in this machine's cache, one ``ticket`` job per
chain remakes them (:func:`flatcomp.experiments.ticket_masks`) before the jobs that need them.

Every job is a ``python -m flatcomp`` command that stores each unit (or ticket) as it finishes,
so a job killed at the deadline loses only what it was training, and a later run resumes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from flatcomp.config import Profile
from flatcomp.experiments import (finetuned_file, get_experiment, ticket_file, ticket_imp_unit,
                                  unit_id)
from flatcomp.results import ResultsStore

# What must exist before a job starts: a stored unit (experiment, unit id), or a file.
Need = tuple[str, str] | Path


@dataclass(frozen=True)
class Job:
    """``python -m flatcomp run <experiment>`` on the units that match ``filters``; or, for the
    experiment ``"ticket"``, ``python -m flatcomp ticket`` (one task's ticket, made if missing)."""

    experiment: str
    filters: dict[str, list]
    needs: tuple[Need, ...] = ()

    @property
    def name(self) -> str:
        values = "-".join(str(v) for values in self.filters.values() for v in values)
        return f"{self.experiment}-{values}"

    def command(self, profile: Profile) -> list[str]:
        verb = ["ticket"] if self.experiment == "ticket" else ["run", self.experiment]
        args = [sys.executable, "-m", "flatcomp", *verb, "--profile", profile.name]
        for key, values in self.filters.items():
            args += [f"--{key}", *map(str, values)]
        return args


def lottery_jobs(profile: Profile) -> list[Job]:
    """Every unit of the lottery experiments, as jobs in the order they should start:
    IMP with rewinding (one chain per task and optimizer) and its ticket, then per task the mask x
    optimizer table, the mask analysis and compound compression, then ticket transfer, IMP
    without rewinding, the flatness of IMP's rounds and of the tickets, and the tickets again with
    a dense pooler."""
    lot = profile.for_lottery()
    seed = lot.seeds[0]

    def imp(task: str, optimizer: str, rewind: bool, k: int) -> Need:
        return "imp", unit_id(dict(task=task, optimizer=optimizer, rewind=rewind, seed=seed,
                                   round=k))

    def pruned(task: str, optimizer: str, later: int = 0) -> Need:  # the round that pruned it
        return imp(task, optimizer, True, ticket_imp_unit(lot, task, optimizer)["round"] + later)

    def ticket(unit: dict) -> Need:
        return "tickets", unit_id(unit)

    chains = [(t, o) for t in lot.tasks for o in ("adam", "sam")]
    jobs = []
    if True in lot.imp_rewind:
        jobs += [Job("imp", dict(task=[t], optimizer=[o], rewind=[True])) for t, o in chains]
    # The ticket file: made by its chain here, or remade where the chain is stored from elsewhere.
    jobs += [Job("ticket", dict(task=[t], mask=[o]), (pruned(t, o),)) for t, o in chains]
    found = {(t, o): ticket_file(lot, t, o) for t, o in chains}
    tickets = get_experiment("tickets").units(lot)
    for task in lot.tasks:
        for mask in ("random", "adam", "sam"):
            for optimizer in ("adam", "sam"):  # every seed; IMP's own round if mask = optimizer
                needs = (found[task, "adam" if mask == "random" else mask],)
                if mask == optimizer:
                    needs += (pruned(task, mask, later=1),)
                jobs.append(Job("tickets", dict(task=[task], mask=[mask], optimizer=[optimizer]),
                                needs))
        jobs.append(Job("mask_analysis", dict(task=[task]),
                        (found[task, "adam"], found[task, "sam"])))
        jobs.append(Job("compound", dict(task=[task]), tuple(
            ticket(u) for u in get_experiment("compound").units(lot) if u["task"] == task)))
    grid = lot.transfer_grid()
    for source in grid:
        for task in grid:
            if task != source:
                jobs.append(Job("transfer", dict(source=[source], task=[task]),
                                (found[source, "adam"], found[source, "sam"])))
    # Without rewinding, round 1 starts from the dense model (round 0) of the ticket's chain.
    jobs += [Job("imp", dict(task=[t], optimizer=[o], rewind=[False]),
                 (finetuned_file(lot, t, o, seed),))
             for t, o in chains if False in lot.imp_rewind]
    jobs += [Job("imp_flatness", dict(task=[t], optimizer=[o]), (imp(t, o, True, lot.imp_rounds),))
             for t, o in chains if True in lot.imp_rewind]
    jobs += [Job("ticket_flatness", dict(task=[task]),
                 tuple(ticket(u) for u in tickets if u["task"] == task)) for task in lot.tasks]
    jobs += [Job("pooler_check", dict(task=[task]), (found[task, "adam"], found[task, "sam"]))
             for task in lot.tasks]
    return jobs


@dataclass
class Outcome:
    """How a job ended: ``done``, ``failed`` (exit status), ``killed`` at the deadline, or
    ``not started`` (its needs were never met, or the deadline came first)."""

    job: Job
    status: str = "not started"
    seconds: float = 0.0
    log: Path | None = None


@dataclass
class _Running:
    outcome: Outcome
    process: subprocess.Popen
    started: float
    log_file: IO[str] = field(repr=False)


def run_jobs(profile: Profile, jobs: list[Job], workers: int, log_dir: Path,
             stop_after: float = float("inf"), kill_after: float = float("inf"),
             store: ResultsStore | None = None, poll: float = 1.0) -> list[Outcome]:
    """Run ``jobs`` in up to ``workers`` processes, always starting the first ready one (all its
    needs stored). No job starts after ``stop_after`` seconds; those still running at
    ``kill_after`` are killed. Each job's output goes to ``log_dir/<job name>.log``."""
    store = store or ResultsStore(profile.for_lottery())
    log_dir.mkdir(parents=True, exist_ok=True)
    outcomes = [Outcome(job) for job in jobs]
    waiting, running, start = list(outcomes), [], time.monotonic()

    def ready(outcome: Outcome) -> bool:
        return all((need if isinstance(need, Path) else store.path(*need)).exists()
                   for need in outcome.job.needs)

    while True:
        elapsed = time.monotonic() - start
        for r in [r for r in running if r.process.poll() is not None]:
            running.remove(r)
            r.log_file.close()
            r.outcome.seconds = time.monotonic() - r.started
            code = r.process.returncode
            r.outcome.status = "done" if code == 0 else f"failed (exit {code})"
            _say(elapsed, f"{r.outcome.status:>8s} {r.outcome.job.name} "
                          f"({r.outcome.seconds:.0f} s)")
        if elapsed > kill_after:
            for r in running:
                r.process.kill()
                r.process.wait()
                r.log_file.close()
                r.outcome.status, r.outcome.seconds = "killed", time.monotonic() - r.started
                _say(elapsed, f"  killed {r.outcome.job.name}")
            return outcomes
        while elapsed < stop_after and len(running) < workers:
            outcome = next((o for o in waiting if ready(o)), None)
            if outcome is None:
                break
            waiting.remove(outcome)
            outcome.log = log_dir / f"{outcome.job.name}.log"
            log_file = outcome.log.open("w")
            process = subprocess.Popen(outcome.job.command(profile), stdout=log_file,
                                       stderr=subprocess.STDOUT)
            running.append(_Running(outcome, process, time.monotonic(), log_file))
            _say(elapsed, f" started {outcome.job.name}")
        if not running:
            return outcomes
        time.sleep(poll)


def _say(elapsed: float, message: str) -> None:
    print(f"[{elapsed:6.0f} s] {message}", flush=True)


def summary(outcomes: list[Outcome]) -> str:
    """One line per status, e.g. ``done: 40, not started: 3 (transfer-..., ...)``."""
    by_status: dict[str, list[str]] = {}
    for o in outcomes:
        by_status.setdefault(o.status, []).append(o.job.name)
    return "\n".join(f"{status}: {len(names)}" + ("" if status == "done" else
                     f" ({', '.join(names[:8])}{' ...' if len(names) > 8 else ''})")
                     for status, names in by_status.items())
