"""Chapter 3, SAM fine-tuning: Adam, SAM and SWA on every task and seed, and how flat each model
is (sharpness, Hessian, loss surfaces)."""

from __future__ import annotations

import math

from flatcomp.lab.config import Profile
from flatcomp.lab.experiments.core import (FLATNESS_SETTINGS, Experiment, Unit, dense_priority,
                                           dense_units, finetune_cost, finetune_model_steps,
                                           finetune_record, finetuned, model_on_fixed_rows,
                                           model_units, needs_finetune)

def _finetune_units(profile: Profile) -> list[Unit]:
    """The models of :func:`dense_units`, then Adam on any baseline task not among them."""
    return dense_units(profile) + [dict(task=t, optimizer="adam", seed=s)
                                    for t in profile.baseline_tasks
                                    if t not in profile.dense_tasks() for s in profile.seeds]


def _run_finetune(profile: Profile, unit: Unit) -> dict:
    _, summary = finetuned(profile, unit["task"], unit["optimizer"], unit["seed"],
                           epochs=unit.get("epochs"))
    return finetune_record(summary)


# A longer budget for the profile's first task, to see whether an optimizer whose best epoch is
# its last had reached its plateau: the paper's 10 epochs of a small GLUE task (smoke: one more
# than its own). None: the profile already trains that long, or (small) the tuned protocol
# answers it, each optimizer at its own rate (flatcomp.lab.experiments.tuned).
LONGER_BUDGET = {"smoke": 4, "small": None, "paper": None}


def _budget_units(profile: Profile) -> list[Unit]:
    epochs = LONGER_BUDGET.get(profile.name)
    return [] if epochs is None else [
        dict(task=profile.tasks[0], optimizer=o, epochs=epochs, seed=s)
        for o in ("adam", "sam") for s in profile.seeds]


def _budget_cost(profile: Profile, unit: Unit) -> float:
    return finetune_cost(profile, unit) * unit["epochs"] / profile.epochs_for(unit["task"])


def _run_flatness(profile: Profile, unit: Unit) -> dict:
    """Sharpness, top Hessian eigenvalue and Hessian trace of a fine-tuned model (fp32, eval
    mode), on fixed training batches."""
    from flatcomp import flatness

    settings = FLATNESS_SETTINGS[profile.name]
    model, loss_fn = model_on_fixed_rows(profile, unit)
    sharp = flatness.sharpness(model, loss_fn, rho=profile.sam_rho,
                               steps=settings["sharpness_steps"])
    eigen = flatness.hessian_top_eigenvalue(model, loss_fn, iters=settings["eigen_iters"])
    trace = flatness.hessian_trace(model, loss_fn, samples=settings["trace_samples"])
    return {**unit, "rows": settings["rows"], "rho": profile.sam_rho, "loss": sharp["loss"],
            "sharpness": sharp["sharpness"], "sharpness_steps": sharp["steps"],
            "top_eigenvalue": eigen["eigenvalue"], "eigen_iterations": eigen["iterations"],
            "eigen_change": eigen["change"], "eigen_history": eigen["history"],
            "trace": trace["trace"], "trace_std_error": trace["std_error"],
            "trace_samples": trace["samples"]}


def _landscape_units(profile: Profile) -> list[Unit]:
    return [dict(task=t, optimizer=o, seed=profile.seeds[0]) for t in profile.tasks
            for o in ("adam", "sam")]


def _run_landscape(profile: Profile, unit: Unit) -> dict:
    """Training loss of a fine-tuned model (fp32, eval mode, the flatness rows) along one and on
    two filter-normalised random directions (seeds 0 and 1), at steps of the weights' own scale."""
    from flatcomp import flatness

    settings = FLATNESS_SETTINGS[profile.name]
    model, loss_fn = model_on_fixed_rows(profile, unit)
    line = _from_minus_one_to_one(settings["line_points"])
    grid = _from_minus_one_to_one(settings["plane_points"])
    d1, d2 = flatness.random_direction(model, seed=0), flatness.random_direction(model, seed=1)
    return {**unit, "rows": settings["rows"], "alphas": line,
            "line": flatness.loss_line(model, loss_fn, d1, line),
            "grid": grid, "plane": flatness.loss_plane(model, loss_fn, d1, d2, grid, grid)}


def _from_minus_one_to_one(points: int) -> list[float]:
    return [round(-1 + 2 * i / (points - 1), 6) for i in range(points)]



def flatness_rows_steps(profile: Profile, passes: float) -> float:
    """``passes`` forward-and-backward passes over the fixed flatness rows, in training steps."""
    return passes * math.ceil(FLATNESS_SETTINGS[profile.name]["rows"] / profile.batch_size)


def _flatness_cost(profile: Profile, unit: Unit) -> float:
    """Sharpness ascent steps, plus two passes per Hessian-vector product (power iteration and
    Hutchinson's trace), plus the model if it is not in the cache."""
    s = FLATNESS_SETTINGS[profile.name]
    passes = s["sharpness_steps"] + 1 + 2 * (s["eigen_iters"] + s["trace_samples"])
    return finetune_model_steps(profile, unit) + \
        flatness_rows_steps(profile, passes)


def _landscape_cost(profile: Profile, unit: Unit) -> float:
    s = FLATNESS_SETTINGS[profile.name]
    forwards = s["line_points"] + s["plane_points"] ** 2
    return finetune_model_steps(profile, unit) + \
        flatness_rows_steps(profile, forwards / 3)


EXPERIMENTS = (
    Experiment("finetune", "Adam, SAM and SWA fine-tunes of every GLUE task of the profile (and "
               "Adam on its baseline tasks), every seed",
               _finetune_units, _run_finetune, "sam", priority=dense_priority,
               cost=finetune_cost),
    Experiment("budget", "Adam and SAM at a longer budget on the first task, every seed: had "
               "the profile's epochs reached each optimizer's plateau?",
               _budget_units, _run_finetune, "sam", priority=1, cost=_budget_cost),
    Experiment("flatness", "sharpness and Hessian of every fine-tuned model",
               model_units, _run_flatness, "sam", priority=2, cost=_flatness_cost,
               needs=needs_finetune),
    Experiment("landscape", "loss along 1-D and on 2-D filter-normalised random directions",
               _landscape_units, _run_landscape, "sam", priority=2, cost=_landscape_cost,
               needs=needs_finetune),
)
