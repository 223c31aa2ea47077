"""The book's experiments, one module per chapter, each a list of resumable units.

    setup         chapter 1: data cards, learning-rate sweep, bf16 check, step time
    sam_runs      chapter 3: Adam / SAM / SWA fine-tunes, flatness, loss surfaces
    tuned         chapters 3 and 6: Adam and SAM at tuned rates, every model measured
    lottery       chapter 4: IMP, tickets, transfer, compound, the masks' analyses
    cofi_runs     chapter 5: structured pruning with distillation from Adam and SAM teachers
    quantization_runs  chapter 6: int8 and k-bit rounding, its second-order theory, speed
    squad         SQuAD: span extraction with Adam, SAM and SWA, then int8, k bits and IMP
    efficiency    chapter 8: what SAM costs (bench), the cheaper variants' compressibility
    compressibility  chapter 9: does flatness predict compressibility (the rho sweep)
    core          what they share: the Experiment entry, unit ids, cached fine-tunes, costs

:func:`load_or_run` walks an experiment's units in order, reads those already stored and
computes and writes each missing one as soon as it is finished, so a killed run resumes where it
stopped. Notebooks, the command line and the plan (:mod:`flatcomp.lab.plan`) all call it.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from flatcomp.lab.config import Profile
from flatcomp.lab.experiments import (cofi_runs, compressibility, efficiency, lottery,
                                      quantization_runs, sam_runs, setup, squad, tuned)
from flatcomp.lab.experiments.core import (FLATNESS_SETTINGS, Experiment, Job, Unit, encoded_task,
                                           finetuned, finetuned_file, select, unit_id)
from flatcomp.lab.experiments.lottery import (lottery_jobs, ticket_and_origin, ticket_file,
                                              ticket_imp_unit, ticket_masks, ticket_sparsity)
from flatcomp.lab.experiments.quantization_runs import QUANT_BITS
from flatcomp.lab.experiments.setup import SWEEP_GRID
from flatcomp.lab.results import ResultsStore

_NO_KEY = object()  # stands for "the unit lacks this key" in select_or_explain's sets

CHAPTERS = (setup, sam_runs, tuned, lottery, cofi_runs, quantization_runs, squad, efficiency,
            compressibility)  # the book's order
EXPERIMENTS: dict[str, Experiment] = {e.name: e for chapter in CHAPTERS
                                      for e in chapter.EXPERIMENTS}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def experiment_profile(profile: Profile, experiment: str) -> Profile:
    """The profile an experiment runs at, as the experiment says (:attr:`Experiment.at`)."""
    return get_experiment(experiment).at(profile)


def planned_units(profile: Profile, experiment: str) -> list[Unit]:
    """Every unit of an experiment at the profile it runs at (:func:`experiment_profile`)."""
    return get_experiment(experiment).units(experiment_profile(profile, experiment))


def select_or_explain(units: list[Unit], experiment: str, **wanted) -> list[Unit]:
    """:func:`select`, but every asked value must match a unit: ``task=["foo"]`` raises
    ``ValueError`` naming ``'foo'`` and listing the tasks the units have. A value that exists but
    matches nothing together with the other filters (SAM on a task with only Adam baselines)
    raises too, naming the values those filters leave. ``None`` means: any value."""
    for key, values in wanted.items():
        if isinstance(values, (str, bytes)):
            raise ValueError(f"{key}={values!r}: pass a list of values, e.g. {key}=[{values!r}]")
    asked = {key: list(values) for key, values in wanted.items() if values is not None}
    problems = [_unmatched(units, experiment, key, values, "")
                for key, values in asked.items()]
    if not any(problems):  # each value exists alone: check it within the other filters
        for key, values in asked.items():
            others = {k: v for k, v in asked.items() if k != key}
            problems.append(_unmatched(select(units, **others), experiment, key, values,
                                       _describe(others)))
    problems = [p for p in problems if p]
    if problems:
        raise ValueError("; ".join(problems) + ". Choose among the values listed, or drop "
                         "that filter.")
    return select(units, **wanted)


def _unmatched(units: list[Unit], experiment: str, key: str, values: list,
               context: str) -> str | None:
    """Why some of ``values`` of ``key`` match none of ``units``, or None if all match."""
    have = {u.get(key, _NO_KEY) for u in units} - {_NO_KEY}
    missing = [v for v in values if v not in have]
    if not missing:
        return None
    shown = ", ".join(repr(v) for v in missing)
    head = f"no unit of {experiment}{context} has {key} {shown}"
    if not units:
        return f"{head}: it has no units{' with those' if context else ' at this profile'}"
    if not have:
        keys = sorted({k for u in units for k in u})
        return f"{head}: its units have no {key} (their keys: {', '.join(keys)})"
    return f"{head}; its {key}s{' there' if context else ''} are: " + \
        ", ".join(str(v) for v in _sorted(have))


def _sorted(values: set) -> list:
    try:
        return sorted(values)
    except TypeError:  # mixed types
        return sorted(values, key=str)


def _describe(filters: dict[str, list]) -> str:
    """`` with optimizer 'sam' and seed 0 or 1``: the other filters, for an error message."""
    parts = [f"{key} {' or '.join(repr(v) for v in values)}" for key, values in filters.items()]
    return f" with {' and '.join(parts)}" if parts else ""


def load_or_run(profile: Profile, experiment: str, store: ResultsStore | None = None,
                progress: bool = True, missing: str = "run", **wanted) -> list[dict]:
    """Every (selected) unit of an experiment: stored ones at once, missing ones computed, or
    left out with ``missing="skip"`` (to show what a long run has stored so far). A filter value
    that matches no unit raises ``ValueError`` (:func:`select_or_explain`)."""
    if missing not in ("run", "skip"):
        raise ValueError(f"missing={missing!r}: say 'run' (compute them) or 'skip' (leave out)")
    exp = get_experiment(experiment)
    profile = experiment_profile(profile, experiment)
    store = store or ResultsStore(profile)
    units = select_or_explain(exp.units(profile), experiment, **wanted)
    stored = {unit_id(u): store.load(exp.name, unit_id(u)) for u in units}
    if missing == "skip":
        return [record for record in stored.values() if record is not None]
    todo = [u for u in units if stored[unit_id(u)] is None]
    for unit in tqdm(todo, desc=experiment, disable=not (progress and todo), leave=False):
        stored[unit_id(unit)] = store.load_or_run(exp.name, unit_id(unit),
                                                  lambda u=unit: exp.run(profile, u),
                                                  unit.get("seed"))
    return [stored[unit_id(u)] for u in units]

