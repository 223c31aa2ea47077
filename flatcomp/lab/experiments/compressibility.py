"""Does flatness predict compressibility? A dose-response for SAM's radius.

    rho_sweep  MRPC at the lottery's short schedule, SAM at each radius of :data:`RHO_SWEEP`
               (rho = 0 is Adam: SAM's step at a zero radius is the plain gradient's), every seed
               of the sweep, each model measured as the tuned protocol measures its models:
               flatness (sharpness, adaptive sharpness, top eigenvalue, trace) and compression
               damage (int8, k bits, one-shot pruning, low rank)

Across radii, flatness should rise smoothly with rho; if flatness makes a model compressible,
the damage should fall with it. The models of ``tuned`` add pairs of optimizers at their tuned
rates to the same scatter.
"""

from __future__ import annotations

from flatcomp.lab.config import Profile
from flatcomp.lab.experiments.core import (Experiment, Unit, fine_tune_steps, finetune_record,
                                           finetuned)
from flatcomp.lab.experiments.tuned import measurement_steps, model_measures

# SAM's radius per profile (the first seeds only at smoke); 0 trains Adam.
RHO_SWEEP = {"smoke": ((0.0, 0.05), (0,)),
             "small": ((0.0, 0.01, 0.02, 0.05, 0.1, 0.2), (0, 1, 2)),
             "paper": ((), ())}
TASK = "mrpc"


def sweep_profile(profile: Profile, rho: float) -> Profile:
    """The lottery's short schedule (its epochs, length and rate), fp32, length-grouped batches,
    SAM at radius ``rho``."""
    return profile.for_lottery().with_overrides(precision="fp32", length_grouped=True,
                                                 sam_rho=rho)


def _units(profile: Profile) -> list[Unit]:
    rhos, seeds = RHO_SWEEP.get(profile.name, ((), ()))
    return [dict(task=TASK, rho=rho, seed=s) for s in seeds for rho in rhos]


def _optimizer(rho: float) -> str:
    return "adam" if rho == 0 else "sam"


def _run(profile: Profile, unit: Unit) -> dict:
    at = sweep_profile(profile, unit["rho"])
    optimizer = _optimizer(unit["rho"])
    model, summary = finetuned(at, unit["task"], optimizer, unit["seed"])
    return {**finetune_record(summary), "rho": unit["rho"], "precision": at.precision,
            "batching": "length-grouped",
            **model_measures(at, unit["task"], model)}


def _cost(profile: Profile, unit: Unit) -> float:
    at = sweep_profile(profile, unit["rho"])
    return fine_tune_steps(at, unit["task"], _optimizer(unit["rho"])) + \
        measurement_steps(at, unit["task"])


EXPERIMENTS = (
    Experiment("rho_sweep", "MRPC at the lottery's schedule with SAM at several radii (0: Adam), "
               "each model's flatness and compression damage", _units, _run, "compressibility",
               priority=4, cost=_cost),  # an extension: after every claim's units
)
