"""One plan for the whole book: every missing unit of every chapter, most important first, run on
one machine's process pool or on a Slurm cluster, through the same submitit jobs.

    python -m flatcomp plan --profile small --dry-run              # what is missing, and its cost
    python -m flatcomp plan --profile small --workers 12 --deadline 540
    python -m flatcomp plan --profile paper --executor slurm --partition gpu --gpus-per-job 1

A :class:`Step` is one :class:`~flatcomp.lab.experiments.core.Job` (the units of one experiment that
match its filters, run in order in one process) with its estimated seconds. The order is the
experiments' priority (the units a chapter's verdict rests on come first), then the seed (the
first seed of every experiment before any second one), then the order the chapters list them in.
A step starts once everything it needs is stored.

The cost model is the experiments' own count of training steps times the seconds one training
step takes on this device, at the profile's batch size, sequence length and precision, measured
once (a few steps of the profile's model on random tokens) and cached per device.

Every executor runs the same function, :func:`run_job`, in a worker: ``local`` (one process per
step on this machine, at most ``workers`` at once), ``debug`` (in this process, one after the
other: for tests) and ``slurm`` (job arrays, one wave of steps per dependency level, each wave
``afterok`` on the one before). Each job writes into the same resumable results store, so a job
that is killed or preempted is simply run again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from flatcomp.lab.config import Profile, cache_dir, get_profile
from flatcomp.lab.experiments import (CHAPTERS, EXPERIMENTS, experiment_profile, get_experiment,
                                      select, unit_id)
from flatcomp.lab.experiments.core import FileJob, Job
from flatcomp.lab.precision import resolve_precision
from flatcomp.lab.results import ResultsStore, check_record, device_description
from flatcomp.lab.train import default_device

EXECUTORS = ("local", "debug", "slurm")
PACE_FROM_SECONDS = 300.0  # the shortest estimate a step's real time is learned from


@dataclass(frozen=True)
class Step:
    """A job of the plan with the units it will compute and what they should cost here."""

    job: Job
    units: tuple[str, ...]          # ids of the missing units (a file job: its name)
    seconds: float                  # estimated, on this device
    priority: int
    alone: bool = False             # nothing else runs beside it (a timing, a whole-machine step)
    threads: int | None = None      # a whole-machine step's: every worker's threads

    @property
    def name(self) -> str:
        return self.job.name


# ---------------------------------------------------------------- what is missing, in order

def all_jobs(profile: Profile) -> list[Job]:
    """Every job of every chapter: a chapter module that orders some of its work itself (the
    lottery chapter's chains and tickets, :func:`~flatcomp.lab.experiments.lottery.lottery_jobs`)
    says so with a ``plan_jobs(profile)`` function, which may include file jobs
    (:class:`~flatcomp.lab.experiments.core.FileJob`); every other experiment is one job per unit,
    with the needs the experiment declares."""
    jobs: list[Job] = []
    for chapter in CHAPTERS:
        own = chapter.plan_jobs(profile) if hasattr(chapter, "plan_jobs") else []
        jobs += own
        covered = {job.experiment for job in own}
        for exp in (e for e in chapter.EXPERIMENTS if e.name not in covered):
            at = experiment_profile(profile, exp.name)
            jobs += [Job(exp.name, {k: [v] for k, v in unit.items()}, tuple(exp.needs(at, unit)))
                     for unit in exp.units(at)]
    return jobs


def make_plan(profile: Profile, store: ResultsStore | None = None,
              experiments: list[str] | None = None,
              seconds_per_step: Callable[[Profile], float] | None = None) -> list[Step]:
    """The steps that still have something to compute, most important first: of every
    experiment the profile plans (:attr:`~flatcomp.lab.config.Profile.plan_scope`), or all the units
    of ``experiments``."""
    store = store or ResultsStore(profile)
    seconds_per_step = seconds_per_step or measured_seconds_per_step
    wanted = set(experiments or EXPERIMENTS)
    unknown = wanted - set(EXPERIMENTS)
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(sorted(unknown))}: choose from "
                         f"{', '.join(EXPERIMENTS)}")
    steps, file_jobs = [], []
    for order, job in enumerate(all_jobs(profile)):
        if isinstance(job, FileJob):
            file_jobs.append((order, job))
        elif job.experiment in wanted:
            step = _experiment_step(profile, job, store, seconds_per_step, bool(experiments))
            if step is not None:
                steps.append((step.priority, _seed_rank(profile, job), order, step))
    needed: dict[Any, int] = {}  # what the planned steps wait on, and the first priority that does
    for priority, *_, step in steps:
        for need in step.job.needs:
            needed[need] = min(priority, needed.get(need, priority))
    for order, job in file_jobs:
        step = _file_step(profile, job, seconds_per_step, needed)
        if step is not None:
            steps.append((step.priority, _seed_rank(profile, job), order, step))
    return [step for *_, step in sorted(steps, key=lambda s: s[:3])]


def _experiment_step(profile: Profile, job: Job, store: ResultsStore,
                     seconds_per_step: Callable[[Profile], float],
                     named: bool = False) -> Step | None:
    """The job's missing units, with their cost and priority; None if none is missing. Unless
    its experiment was ``named``, only the units in the profile's plan (:attr:`Profile.in_plan`)."""
    exp = get_experiment(job.experiment)
    at = experiment_profile(profile, job.experiment)
    missing = [u for u in select(exp.units(at), **job.filters)
               if (named or profile.in_plan(exp.name, u))
               and not _stored(ResultsStore(at, store.root), exp.name, unit_id(u))]
    if not missing:
        return None
    seconds = seconds_per_step(at) * sum(exp.cost(at, u) * length_factor(at, u.get("task"))
                                         for u in missing)
    priority = min(exp.priority_of(at, u) for u in missing)
    return Step(job, tuple(unit_id(u) for u in missing), seconds, priority, exp.alone)


def _stored(store: ResultsStore, experiment: str, unit: str) -> bool:
    """Whether a unit is stored: its file exists and is a whole record of that unit. A corrupt
    or misplaced file raises :class:`~flatcomp.lab.results.CorruptResultError` naming it, so that a
    dry run or a check never counts it as done."""
    path = store.path(experiment, unit)
    if not path.exists():
        return False
    check_record(path, experiment, unit, store.profile.name)
    return True


def _file_step(profile: Profile, job: FileJob, seconds_per_step: Callable[[Profile], float],
               needed: dict[Any, int]) -> Step | None:
    """A file job, if a planned step waits on one of its files and this machine lacks it; at the
    priority of the first step that waits on it."""
    waiting = [needed[f] for f in job.makes(profile) if f in needed and not f.exists()]
    if not waiting:
        return None
    at = job.at(profile)
    return Step(job, (job.name,), seconds_per_step(at) * job.cost(profile), min(waiting))


def _seed_rank(profile: Profile, job: Job) -> int:
    """0 for a job of the profile's first seed (or of no seed), 1 for the second..."""
    seeds = job.filters.get("seed") or [profile.seeds[0]]
    return min(profile.seeds.index(s) if s in profile.seeds else len(profile.seeds)
               for s in seeds)


def describe(profile: Profile, steps: list[Step]) -> str:
    """One line per unit (experiment, unit, device, precision, estimated seconds), and the total."""
    device = device_description()
    lines = [f"{'experiment':16s} {'unit':44s} {'device':28s} {'precision':9s} {'seconds':>9s}"]
    for step in steps:
        at = _job_profile(profile, step.job)
        each = step.seconds / len(step.units)
        lines += [f"{step.job.experiment:16s} {u:44s} {device[:28]:28s} "
                  f"{resolve_precision(at, default_device()):9s} {each:9.0f}" for u in step.units]
    total = sum(s.seconds for s in steps)
    units = sum(len(s.units) for s in steps)
    lines.append(f"{units} units in {len(steps)} jobs, about {total:.0f} s "
                 f"({total / 3600:.1f} h) on one worker")
    return "\n".join(lines)


def _job_profile(profile: Profile, job: Job) -> Profile:
    return job.at(profile) if isinstance(job, FileJob) else experiment_profile(profile,
                                                                               job.experiment)


# ---------------------------------------------------------------- the cost model

_LENGTH_FACTORS: dict[tuple, float] = {}


def length_factor(profile: Profile, task: str | None) -> float:
    """The mean padded length of a training batch of ``task`` (one seeded epoch, batched as the
    profile batches) over the profile's maximum length, at which the step time is measured: a
    step's time grows about linearly with its tokens at these lengths. 1 where the task's rows
    cannot be read here, for SQuAD (its windows are mostly full) and for units of no task."""
    if task is None or task == "squad":
        return 1.0
    key = (profile.name, profile.model, profile.max_length, profile.batch_size,
           profile.length_grouped, profile.train_size.get(task), task)
    if key not in _LENGTH_FACTORS:
        from flatcomp.lab.data import DataNotFoundError, batch_order
        from flatcomp.lab.experiments import encoded_task

        try:
            train, _, _ = encoded_task(profile, task)
        except (DataNotFoundError, OSError, ValueError):
            return 1.0
        lengths = [len(ids) for ids in train.input_ids]
        order = batch_order(train, profile.batch_size, True, 1, profile.length_grouped)
        padded = sum(max(lengths[i] for i in b) for b in order) / max(1, len(order))
        _LENGTH_FACTORS[key] = min(1.0, padded / profile.max_length)
    return _LENGTH_FACTORS[key]


def measured_seconds_per_step(profile: Profile, steps: int = 5, seconds: float = 2.0) -> float:
    """Seconds of one Adam training step of the profile's model at its batch size and maximum
    length, on this device and precision: the fastest of at least ``steps`` timings on random
    tokens, and of as many more (up to 200) as fit in ``seconds`` (after one warm-up step; the
    fastest, because a busy machine only ever slows a step down, and a step of milliseconds
    needs many tries to find one that ran uninterrupted), cached in
    ``$FLATCOMP_CACHE/step-seconds.json`` (:func:`forget_step_times` to time again)."""
    from flatcomp.lab.models import load_model
    from flatcomp.lab.train import autocast, make_optimizer

    key = json.dumps([device_description(), profile.model, profile.batch_size, profile.max_length,
                      resolve_precision(profile, default_device()), torch.get_num_threads()])
    path = cache_dir() / "step-seconds.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if key not in known:
        device = default_device()
        model = load_model(profile, profile.tasks[0]).to(device).train()
        optimizer = make_optimizer("adam", model, 1e-5)
        ids = torch.randint(1000, model.config.vocab_size,
                            (profile.batch_size, profile.max_length),
                            generator=torch.Generator().manual_seed(0)).to(device)
        labels = torch.zeros(profile.batch_size, dtype=torch.long, device=device)
        if model.config.num_labels == 1:
            labels = labels.float()
        times: list[float] = []
        while len(times) <= steps or (sum(times) < seconds and len(times) <= 200):
            start = time.perf_counter()
            optimizer.zero_grad()
            with autocast(device, resolve_precision(profile, device) == "bf16"):
                loss = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                             labels=labels).loss
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        known[key] = min(times[1:])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known, indent=1))
    return known[key]


def forget_step_times() -> int:
    """Drop this device's cached step times (``plan --remeasure``), so that the next estimate
    times its steps again: one measured on a busy machine inflates every estimate. Returns how
    many were dropped."""
    path = cache_dir() / "step-seconds.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    device = device_description()
    kept = {k: v for k, v in known.items() if json.loads(k)[0] != device}
    if len(kept) < len(known):
        path.write_text(json.dumps(kept, indent=1))
    return len(known) - len(kept)


# ---------------------------------------------------------------- one job, in a worker

def run_job(profile_name: str, job: Job, seeds: tuple[int, ...] | None = None,
            threads: int | None = None) -> str:
    """What every executor runs: the job's missing units, each stored as it finishes."""
    from flatcomp.lab.experiments import load_or_run

    if threads:
        torch.set_num_threads(threads)
    profile = get_profile(profile_name)
    if seeds:
        profile = profile.with_overrides(seeds=tuple(seeds))
    if isinstance(job, FileJob):
        job.run(profile)
    else:
        load_or_run(profile, job.experiment, progress=False, **job.filters)
    return job.name


# ---------------------------------------------------------------- running the plan

@dataclass
class Outcome:
    """How a step ended: ``done``, ``failed``, ``killed`` at the deadline, or ``not started``
    (its needs were never met, or it could not finish before the deadline)."""

    step: Step
    status: str = "not started"
    seconds: float = 0.0
    error: str = ""


def execute(profile: Profile, steps: list[Step], executor: str = "local", workers: int = 1,
            deadline: float = math.inf, folder: Path = Path("plan-logs"),
            store: ResultsStore | None = None, seeds: tuple[int, ...] | None = None,
            threads: int | None = None, poll: float = 1.0, batch_seconds: float = 120,
            slurm: dict[str, Any] | None = None, pace: float = 1.0) -> list[Outcome]:
    """Run ``steps`` through a submitit executor. ``local`` and ``debug``: always start the first
    ready step (all its needs stored) whose estimate, times the run's :func:`measured_pace`
    (``pace`` until a step of the run has measured it), fits before ``deadline`` seconds, at most
    ``workers`` at once (a step marked ``alone`` runs with nothing beside it), short ones
    together in batches of about ``batch_seconds``; kill what still runs at the deadline. On an
    idle machine, a step that cannot finish in time on one worker's ``threads`` but can on every
    worker's runs alone on all of them (:func:`whole_machine`: an IMP chain longer than a
    session's plan, say). ``slurm``: submit everything at once (see :func:`submit_to_slurm`)."""
    import submitit

    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if not pace > 0:
        raise ValueError(f"pace {pace}: real seconds per estimated second must be positive "
                         "(1 trusts the estimates, 1.5 expects steps to take half as long again)")
    store = store or ResultsStore(profile)
    folder.mkdir(parents=True, exist_ok=True)
    args = (profile.name, seeds, threads)
    if executor == "slurm":
        return submit_to_slurm(submitit.AutoExecutor(folder, cluster="slurm"), steps, args,
                               **(slurm or {}))
    pool = (submitit.LocalExecutor if executor == "local" else submitit.DebugExecutor)(folder)
    # submitit's own timeout only backs the deadline up. Its warning signal (SIGUSR2, by default
    # 30 s before that timeout) is turned off: a worker still importing when it came died of it.
    pool.update_parameters(timeout_min=int(min(deadline, 7 * 24 * 3600) / 60) + 1,
                           signal_delay_s=0)
    whole = whole_machine(profile, workers, threads) if deadline < math.inf else None
    return _run_pool(pool, steps, args, workers, deadline, store, poll,
                     in_process=executor == "debug", batch_seconds=batch_seconds, pace=pace,
                     whole=whole)


def whole_machine(profile: Profile, workers: int, threads: int | None) -> tuple[float, int] | None:
    """How many times faster a training step of ``profile`` runs on every worker's threads than
    on one worker's (each timed once and cached, :func:`measured_seconds_per_step`), and that
    many threads; None with one worker."""
    if workers < 2:
        return None
    one = threads or torch.get_num_threads()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(one)
        alone = measured_seconds_per_step(profile)
        torch.set_num_threads(one * workers)
        together = measured_seconds_per_step(profile)
    finally:
        torch.set_num_threads(before)
    return alone / together, one * workers


def _run_pool(pool: Any, steps: list[Step], args: tuple, workers: int, deadline: float,
              store: ResultsStore, poll: float, in_process: bool,
              batch_seconds: float = 120, pace: float = 1.0,
              whole: tuple[float, int] | None = None) -> list[Outcome]:
    """Keep ``workers`` submitit jobs busy. Each job runs a batch of ready steps one after the
    other (:func:`run_steps`), as many as fit in ``batch_seconds`` of estimated work, so that
    short units do not each pay a process start (about 10 s, for the imports)."""
    outcomes = [Outcome(step) for step in steps]
    waiting, running, start = list(outcomes), [], time.monotonic()
    with _workers_cancelled_on_exit(running):
        return _keep_busy(pool, outcomes, waiting, running, start, args, workers, deadline, store,
                          poll, in_process, batch_seconds, pace, whole)


@contextlib.contextmanager
def _workers_cancelled_on_exit(running: list) -> Iterator[None]:
    """A plan stopped by a signal (``kill``, Ctrl-C) or an error cancels the jobs it started, so
    that no worker trains on, unwatched, after it (submitit's local workers are processes of
    their own). SIGTERM is turned into an exception for the while."""
    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(f"plan stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    except BaseException:
        _cancel([job for _, job, _ in running])
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _keep_busy(pool: Any, outcomes: list[Outcome], waiting: list[Outcome], running: list,
               start: float, args: tuple, workers: int, deadline: float, store: ResultsStore,
               poll: float, in_process: bool, batch_seconds: float,
               assumed_pace: float, whole: tuple[float, int] | None) -> list[Outcome]:
    said_pace = assumed_pace
    fresh: set[Any] = set()  # what this run's finished steps made
    while True:
        elapsed = time.monotonic() - start
        for batch, job, started in [r for r in running if r[1].done()]:
            running.remove((batch, job, started))
            _finish(batch, job, time.monotonic() - started, elapsed)
            fresh.update(_made_by(batch, store))
        slowdown = measured_pace(outcomes, assumed_pace)
        if abs(slowdown - said_pace) > 0.05:
            _say(elapsed, f"    pace: steps take {slowdown:.2f}x their estimates here")
            said_pace = slowdown
        if elapsed > deadline:
            for batch, job, started in running:
                for outcome in batch:
                    outcome.status, outcome.seconds = "killed", time.monotonic() - started
                _say(elapsed, f"  killed {', '.join(o.step.name for o in batch)}")
            _cancel([job for _, job, _ in running])
            return outcomes
        while len(running) < workers and not any(o.step.alone for b, _, _ in running for o in b):
            batch = _next_batch(waiting, store, (deadline - elapsed) / slowdown, batch_seconds,
                                alone_ok=not running, fresh=fresh, whole=whole)
            if not batch:
                break
            for outcome in batch:
                waiting.remove(outcome)
            name, seeds, threads = args
            job = pool.submit(run_steps, name, [o.step.job for o in batch], seeds,
                              batch[0].step.threads or threads)
            seconds = sum(o.step.seconds for o in batch)
            _say(elapsed, f" started {', '.join(o.step.name for o in batch)} "
                          f"(about {seconds:.0f} s)")
            if in_process:  # the debug executor runs the job when its result is asked for
                _finish(batch, job, _timed(job), time.monotonic() - start)
                fresh.update(_made_by(batch, store))
                continue
            running.append((batch, job, time.monotonic()))
        if not running:
            return outcomes
        time.sleep(poll)


def measured_pace(outcomes: list[Outcome], assumed: float = 1.0) -> float:
    """Real seconds per estimated second on this run: the steps done so far whose estimates
    were at least :data:`PACE_FROM_SECONDS` (a worker's start, about 10 s, would swamp shorter
    ones; and longer than a batch, each ran in a batch of its own, so its seconds are its own),
    their seconds summed over their estimates summed; ``assumed`` before any is done. A
    machine that trains beside other work (a developer's tests, say) runs slower than the step
    time measured when the plan began, and a step started on the raw estimate would be killed at
    the deadline, its work lost."""
    done = [o for o in outcomes if o.status == "done" and o.step.seconds >= PACE_FROM_SECONDS]
    estimated = sum(o.step.seconds for o in done)
    return sum(o.seconds for o in done) / estimated if estimated else assumed


def _made_by(batch: list[Outcome], store: ResultsStore) -> list[Any]:
    return [made for o in batch if o.status == "done" for made in _makes(o.step, store)]


def _next_batch(waiting: list[Outcome], store: ResultsStore, time_left: float,
                batch_seconds: float, alone_ok: bool,
                fresh: set[Any] | frozenset[Any] = frozenset(),
                whole: tuple[float, int] | None = None) -> list[Outcome]:
    """The first ready waiting step (its needs all stored, its estimate within the time left),
    and after it the next ready ones while their estimates add up to less than ``batch_seconds``
    (0: one step a batch). A step is ready too where a step before it in the batch makes what
    it waits for: a chain (IMP's rounds) runs in one process, not one process start a link.
    Steps that must run alone (timings) make batches of their own: one after the other in one
    process, with nothing beside them, and no other step among them.

    Steps that wait for something ``fresh`` (made by this run) come first, in their order: what
    they read is in this machine's checkpoint cache now, and a machine without it would train it
    again (a ticket's IMP chain, hours on a CPU).

    With ``whole`` (:func:`whole_machine`: the speed-up and the threads of every worker) and
    nothing running, the first ready step that does not fit in the time left but fits at that
    speed-up runs alone, on every worker's threads, its estimate divided by the speed-up."""
    batch: list[Outcome] = []
    made: set[Any] = set()  # what the batch's steps leave behind, for the steps after them
    for outcome in sorted(waiting, key=lambda o: not fresh.intersection(o.step.job.needs)):
        step = outcome.step
        total = sum(o.step.seconds for o in batch) + step.seconds
        if batch and (step.alone != batch[0].step.alone or total >= batch_seconds):
            break
        fits = total <= time_left
        fits_whole = bool(whole) and not batch and alone_ok and not step.alone \
            and step.seconds / whole[0] <= time_left
        if (step.alone and not alone_ok) or not (fits or fits_whole) \
                or not all(need in made or _exists(need, store) for need in step.job.needs):
            continue
        if not fits:
            outcome.step = replace(step, seconds=step.seconds / whole[0], alone=True,
                                   threads=whole[1])
            return [outcome]
        batch.append(outcome)
        made.update(_makes(step, store))
    return batch


def _exists(need: Any, store: ResultsStore) -> bool:
    if isinstance(need, Path):
        return need.exists()
    experiment, unit = need
    at = experiment_profile(store.profile, experiment)
    return ResultsStore(at, store.root).path(experiment, unit).exists()


def _timed(job: Any) -> float:
    start = time.perf_counter()
    try:
        job.result()
    except Exception:  # noqa: BLE001 - reported by _finish
        pass
    return time.perf_counter() - start


def _finish(batch: list[Outcome], job: Any, seconds: float, elapsed: float) -> None:
    """Record how each step of a finished batch ended: :func:`run_steps` returns one error
    message (empty if it succeeded) per step; a job that died says so for all of them."""
    try:
        errors = job.result()
    except Exception as error:  # noqa: BLE001 - a failed job must not stop the plan
        errors = [_last_line(error)] * len(batch)
    for outcome, error in zip(batch, errors):
        outcome.seconds = seconds / len(batch)
        outcome.status, outcome.error = ("failed", error) if error else ("done", "")
        _say(elapsed, f"{outcome.status:>8s} {outcome.step.name}"
                      + (f": {error}" if error else ""))


def _last_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


def _wait_until_gone(jobs: list[Any], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not all(job.done() for job in jobs):
        time.sleep(0.5)


def _cancel(jobs: list[Any], grace: float = 10) -> None:
    """Cancel running jobs (submitit's local jobs get SIGINT), and SIGKILL, with every process
    under it, a local job still running ``grace`` seconds later: a worker busy in a long call, or
    still starting, can miss the interrupt and train on, unwatched."""
    for job in jobs:
        job.cancel(check=False)
    _wait_until_gone(jobs, grace)
    for job in jobs:
        if not job.done():
            _kill_with_descendants(getattr(job, "_process", None))


def _kill_with_descendants(process: Any) -> None:
    """SIGKILL a local job's process and every process under it (found in Linux's /proc;
    elsewhere the process alone). A job with no process of its own is left alone."""
    if process is None or process.poll() is not None:
        return
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    doomed, todo = [], [process.pid]
    while todo:
        pid = todo.pop()
        doomed.append(pid)
        todo += children.get(pid, [])
    for pid in doomed:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def _say(elapsed: float, message: str) -> None:
    print(f"[{elapsed:6.0f} s] {message}", flush=True)


def summary(outcomes: list[Outcome]) -> str:
    """One line per status, naming what did not finish: ``done: 40``, ``not started: 3 (...)``."""
    by_status: dict[str, list[str]] = {}
    for o in outcomes:
        by_status.setdefault(o.status, []).append(o.step.name)
    return "\n".join(f"{status}: {len(names)}" + ("" if status == "done" else
                     f" ({', '.join(names[:8])}{' ...' if len(names) > 8 else ''})")
                     for status, names in by_status.items())


# ---------------------------------------------------------------- Slurm

def waves(steps: list[Step], store: ResultsStore) -> list[list[Step]]:
    """The steps by dependency level: a step is in the first wave after every wave that makes
    something it needs (what is stored already needs no wave)."""
    made_in: dict[Any, int] = {}
    level: list[int] = []
    for step in steps:
        needs = [n for n in step.job.needs if not _exists(n, store)]
        wave = 1 + max((made_in[n] for n in needs if n in made_in), default=-1)
        level.append(wave)
        for made in _makes(step, store):
            made_in.setdefault(made, wave)
    grouped: list[list[Step]] = [[] for _ in range(max(level, default=-1) + 1)]
    for step, wave in zip(steps, level):
        grouped[wave].append(step)
    return grouped


def _makes(step: Step, store: ResultsStore) -> list[Any]:
    """What a step leaves behind for others: its units and the files they make
    (:attr:`~flatcomp.lab.experiments.core.Experiment.makes`), or a file job's files."""
    job = step.job
    if isinstance(job, FileJob):
        return list(job.makes(store.profile))
    exp = get_experiment(job.experiment)
    at = experiment_profile(store.profile, job.experiment)
    units = select(exp.units(at), **job.filters)
    return [(job.experiment, unit_id(u)) for u in units] + \
        [made for u in units for made in exp.makes(at, u)]


def submit_to_slurm(executor: Any, steps: list[Step], args: tuple, partition: str | None = None,
                    gpus_per_job: int = 1, cpus_per_job: int = 8, hours: float = 24.0,
                    array_parallelism: int = 32, jobs_per_task: int = 1,
                    store: ResultsStore | None = None) -> list[Outcome]:
    """Submit the plan as Slurm job arrays: one array per wave (:func:`waves`), ``afterok`` on the
    array before it, ``jobs_per_task`` steps run one after the other in each array task, at most
    ``array_parallelism`` tasks of an array at once. Returns at once; every task writes into
    the shared results store (put ``$FLATCOMP_RESULTS`` and ``$FLATCOMP_CACHE`` on a shared
    file system), and submitting the plan again later submits only what is still missing."""
    store = store or ResultsStore(get_profile(args[0]))
    outcomes, previous = [], None
    for wave in waves(steps, store):
        parameters = dict(timeout_min=int(hours * 60), gpus_per_node=gpus_per_job,
                          cpus_per_task=cpus_per_job, slurm_array_parallelism=array_parallelism,
                          name=f"flatcomp-{args[0]}")
        if partition:
            parameters["slurm_partition"] = partition
        if previous:
            parameters["slurm_additional_parameters"] = {
                "dependency": "afterok:" + ":".join(str(j.job_id) for j in previous)}
        executor.update_parameters(**parameters)
        groups = [wave[i:i + jobs_per_task] for i in range(0, len(wave), jobs_per_task)]
        with executor.batch():
            submitted = [executor.submit(run_steps, args[0], [s.job for s in group], *args[1:],
                                         True) for group in groups]
        for group, job in zip(groups, submitted):
            outcomes += [Outcome(step, status=f"submitted (job {job.job_id})") for step in group]
        previous = submitted
    return outcomes


def run_steps(profile_name: str, jobs: list[Job], seeds: tuple[int, ...] | None = None,
              threads: int | None = None, raise_failures: bool = False) -> list[str]:
    """Several jobs in one worker, one after the other: an error message per job, empty for
    those that finished (one that fails does not stop the others). ``raise_failures``: end
    with an error if any failed (a Slurm task, so that ``afterok`` holds the next wave back)."""
    errors = []
    for job in jobs:
        try:
            run_job(profile_name, job, seeds, threads)
            errors.append("")
        except Exception as error:  # noqa: BLE001 - reported per job by the caller
            errors.append(f"{type(error).__name__}: {_last_line(error)}")
    if raise_failures and any(errors):
        raise RuntimeError("; ".join(f"{j.name}: {e}" for j, e in zip(jobs, errors) if e))
    return errors
