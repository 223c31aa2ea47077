"""The plan's processes: a local worker killed at the deadline, a plan killed with SIGKILL that
resumes, a plan stopped with SIGTERM that takes its workers with it.

These race real processes against a clock, beside whatever else the test run has on the CPU;
each leaves room for a busy machine (see each test's bounds).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flatcomp.lab import plan
from flatcomp.lab.results import ResultsStore, read_record


@pytest.mark.slow
def test_local_executor_kills_at_the_deadline_and_keeps_what_finished(smoke, tmp_path,
                                                                      monkeypatch):
    free = lambda profile: 0.0  # noqa: E731 - every step fits: only the deadline stops them
    card = plan.make_plan(smoke, experiments=["data_cards"], seconds_per_step=free)[:1]
    # The deadline is set from this machine as loaded as it is now: the data card, run once into
    # a results folder of its own, times a worker's start and one short step.
    with monkeypatch.context() as timing:
        timing.setenv("FLATCOMP_RESULTS", str(tmp_path / "timing"))
        start = time.monotonic()
        once = plan.execute(smoke, card, executor="local", folder=tmp_path / "timing-logs",
                            store=ResultsStore(smoke, tmp_path / "timing"), threads=1, poll=0.2)
        short = time.monotonic() - start
    assert [o.status for o in once] == ["done"]
    # Then the card again, with twice that time to finish in, and fourteen fine-tunes, one
    # process each: fourteen worker starts take far longer than the deadline.
    slow = plan.make_plan(smoke, experiments=["finetune"], seconds_per_step=free)
    assert len(slow) == 14
    outcomes = plan.execute(smoke, card + slow, executor="local", workers=1,
                            deadline=2 * short + 5, folder=tmp_path / "logs", threads=1,
                            poll=0.2, batch_seconds=0)
    statuses = [o.status for o in outcomes]
    killed = statuses.index("killed")
    assert statuses[:killed] == ["done"] * killed and killed >= 1  # the data card among them
    assert statuses[killed + 1:] == ["not started"] * (len(statuses) - killed - 1)
    store = ResultsStore(smoke)
    assert store.units("data_cards") == ["cola"]
    stored = set(store.units("finetune"))
    for o in outcomes[1:killed]:  # what finished is kept
        assert set(o.step.units) <= stored
    for o in outcomes[killed + 1:]:  # what never started left nothing
        assert not set(o.step.units) & stored


def _plan_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "flatcomp", "plan", "--profile", "smoke", "--threads", "1",
            *args]


def _records(root: Path) -> dict[str, dict]:
    return {str(p.relative_to(root)): read_record(p)["result"]
            for p in sorted(root.rglob("*.json"))}


@pytest.mark.slow
def test_a_plan_killed_with_sigkill_resumes_to_byte_identical_results(smoke, tmp_path):
    """The same two units (the smoke profile's radius sweep: a fine-tune and its flatness and
    compression damage each), run through once (here) and, by a plan process, killed (-9) once
    the first is stored: the resumed plan computes only the second, and both results are byte
    for byte the same.
    Both plan processes run their units themselves (the debug executor): a local worker is one
    more process start, and the SIGTERM test below checks that workers end with their plan."""
    outcomes = plan.execute(smoke, plan.make_plan(smoke, experiments=["rho_sweep"]), "debug",
                            folder=tmp_path / "ref-logs", threads=1)
    assert [o.status for o in outcomes] == ["done"] * len(outcomes)
    env = {**os.environ, "FLATCOMP_RESULTS": str(tmp_path / "killed" / "results"),
           "FLATCOMP_CACHE": str(tmp_path / "killed" / "cache")}
    command = _plan_command("--experiment", "rho_sweep", "--executor", "debug",
                            "--logs", str(tmp_path / "logs"))
    killed = subprocess.Popen(command, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "killed" / "results"
    end = time.monotonic() + 900  # the first unit: a plan and a fine-tune, on a busy CPU
    while time.monotonic() < end and killed.poll() is None and not list(folder.rglob("*.json")):
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    before = {p: p.read_bytes() for p in folder.rglob("*.json")}
    assert len(before) == 1
    resumed = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    assert "1 units in" in resumed.stdout
    assert all(p.read_bytes() == b for p, b in before.items())
    reference = _records(tmp_path / "results")
    again = _records(folder)
    timing = ("seconds_per_step", "wall_seconds")
    strip = lambda r: json.dumps({k: v for k, v in r.items() if k not in timing}, sort_keys=True)
    assert sorted(again) == sorted(reference) and len(reference) == 2
    assert all(strip(again[k]) == strip(reference[k]) for k in reference)


def test_a_plan_stopped_with_sigterm_stops_its_workers(smoke, tmp_path):
    """``kill PLAN`` ends the local workers it started too: none trains on, unwatched."""
    logs = tmp_path / "logs"
    command = _plan_command("--experiment", "finetune", "--executor", "local", "--workers", "1",
                            "--logs", str(logs))
    planner = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.PIPE, text=True)
    for line in planner.stdout:
        if " started " in line:
            break
    end = time.monotonic() + 60
    while time.monotonic() < end and not _workers_of(logs):
        time.sleep(0.2)
    assert _workers_of(logs)
    planner.send_signal(signal.SIGTERM)
    planner.wait(timeout=60)
    end = time.monotonic() + 30
    while time.monotonic() < end and _workers_of(logs):
        time.sleep(0.2)
    assert not _workers_of(logs)


def _workers_of(logs: Path) -> list[int]:
    """Processes whose command line names the plan's log folder (its submitit workers)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(logs) in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                found.append(int(proc.name))
        except OSError:
            continue
    return found
