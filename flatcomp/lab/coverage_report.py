"""What the book's results cover: every chapter's cut section (what the profile changes from the
paper, what is not stored yet), the lottery chapter's coverage table, and the appendix "How the
results were made" (where each stored result was made).

The functions that read the experiment registry or the results store import them when called, so
that importing this module imports no experiment.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import pandas as pd

from flatcomp.lab.config import Profile
from flatcomp.lab.reporting import TASK_NAMES


def cuts_markdown(profile: Profile, only: tuple[str, ...] | None = None) -> str:
    """What the profile changes from the paper, and why: one Markdown bullet per cut (those named
    in ``only``, if given), whole (a table would truncate the reasons)."""
    cuts = {k: v for k, v in profile.cuts.items() if only is None or k in only}
    if not cuts:
        return f"The `{profile.name}` profile runs the paper's settings here."
    return "\n".join(f"* **{what}**: {why}" for what, why in cuts.items())


def waiting_markdown(profile: Profile, chapter: str | None = None,
                     experiments: Sequence[str] = ()) -> str:
    """What of a chapter's experiments (or of ``experiments``) is not stored yet, as one Markdown
    table: a row per experiment with missing units, how many are stored, how many of the missing
    ones the profile's plan computes (:attr:`~flatcomp.lab.config.Profile.plan_scope`; the others
    are left to a larger machine) and the command that computes all of them (empty when all is
    stored). The chapter lists it once, in its cut section, instead of in its sections. It
    imports the experiment registry and the results store when called, not at import."""
    from flatcomp.lab.experiments import EXPERIMENTS, experiment_profile, planned_units, unit_id
    from flatcomp.lab.results import ResultsStore

    rows = []
    for name, experiment in EXPERIMENTS.items():
        if experiment.chapter != chapter and name not in experiments:
            continue
        planned = planned_units(profile, name)
        have = set(ResultsStore(experiment_profile(profile, name)).units(name))
        missing = [u for u in planned if unit_id(u) not in have]
        if missing:
            rows.append(f"| `{name}` | {experiment.description} | "
                        f"{len(planned) - len(missing)} of {len(planned)} | "
                        f"{_in_plan(profile, name, missing)} | "
                        f"`python -m flatcomp plan --profile {profile.name} --experiment {name}` |")
    if not rows:
        return ""
    return "\n".join(["| not stored yet | what it is | units stored | in the plan | computed by |",
                      "|---|---|---|---|---|", *rows])


def _in_plan(profile: Profile, experiment: str, missing: list[dict]) -> str:
    """How many of an experiment's missing units the profile's plan computes."""
    planned = sum(profile.in_plan(experiment, u) for u in missing)
    if planned == len(missing):
        return "all"
    if planned == 0:
        return "no: left for `paper`"
    return f"{planned} of the {len(missing)}"


def coverage_table(profile: Profile, experiments: tuple[str, ...]) -> pd.DataFrame:
    """Per experiment: how many of the profile's units are stored, and which tasks are complete.
    It imports the experiment registry and the results store when called, not at import."""
    from flatcomp.lab.experiments import planned_units, unit_id
    from flatcomp.lab.results import ResultsStore

    store, rows = ResultsStore(profile), {}
    for name in experiments:
        units = planned_units(profile, name)
        have = [store.path(name, unit_id(u)).exists() for u in units]
        tasks = dict.fromkeys(u["task"] for u in units)
        complete = [TASK_NAMES[t] for t in tasks
                    if all(h for u, h in zip(units, have) if u["task"] == t)]
        rows[name] = {"stored": sum(have), "planned": len(units),
                      "complete for": ", ".join(complete) or "-"}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("experiment")


def provenance_table(profile: Profile) -> pd.DataFrame:
    """Per experiment and environment (device, precision, starting weights): how many records,
    from how many commits, with how many hours of wall time, over which dates. A CPU names the
    vector instructions its kernels used where the records say (``cpu: AMD EPYC (AVX2)``). It
    imports the results store when called (importing it runs git), not at import."""
    from pathlib import Path

    from flatcomp.lab.results import ResultsStore, environment as record_environment, read_record

    root = Path(ResultsStore(profile).root) / profile.name
    groups = defaultdict(list)
    for path in sorted(root.glob("*/*.json")):
        record = read_record(path)
        prov = record["provenance"]
        env = record_environment(prov, record["result"])
        device = env["device"] + (f" ({prov['cpu_capability']})" if prov.get("cpu_capability")
                                  and env["device"].startswith("cpu") else "")
        groups[path.parent.name, device, env["precision"], env["weights"]].append(prov)
    rows = [{"experiment": experiment, "device": device, "precision": precision,
             "weights": weights, "records": len(provs),
             "commits": len({p.get("git_commit") for p in provs}),
             "wall hours": f"{sum(p.get('wall_seconds') or 0 for p in provs) / 3600:.2f}",
             "dates": f"{min(p['date'][:10] for p in provs)} to {max(p['date'][:10] for p in provs)}"}
            for (experiment, device, precision, weights), provs in groups.items()]
    columns = ["experiment", "device", "precision", "weights", "records", "commits",
               "wall hours", "dates"]
    return pd.DataFrame(rows, columns=columns).set_index(["experiment", "device"])
