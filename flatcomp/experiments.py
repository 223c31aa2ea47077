"""The book's experiments, each a list of resumable units stored in the results store.

An experiment is a name, a way to list its units for a profile, and a function that computes one
unit. ``run_experiment`` walks the units in order, skips those already stored and writes each new
one as soon as it is finished, so a killed run resumes where it stopped. Notebooks call
``load_or_run`` for what they show.

Fine-tuned weights go to the checkpoint cache (``$FLATCOMP_CACHE``) keyed by everything that
determines them, so later chapters (quantization, lottery tickets) reuse them, and a sweep run and a
baseline run with the same settings are trained only once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from flatcomp.config import Profile, cache_dir
from flatcomp.data import batches, encode, load_task
from flatcomp.models import load_model, load_tokenizer, load_weights, save_weights
from flatcomp.results import ResultsStore, atomic_write_json
from flatcomp.train import OPTIMIZERS, FineTuneResult, default_device, fine_tune, time_steps

Unit = dict  # the keys that identify a unit: task, optimizer, seed, lr...


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    units: Callable[[Profile], list[Unit]]
    run: Callable[[Profile, Unit], dict]


def unit_id(unit: Unit) -> str:
    """A readable file name: ``mrpc-adam-seed0`` (keys in a fixed order)."""
    parts = []
    for key in ("task", "optimizer", "lr", "precision", "seed"):
        if key in unit:
            value = unit[key]
            parts.append(f"lr{value:g}" if key == "lr" else
                         f"seed{value}" if key == "seed" else str(value))
    return "-".join(parts)


# ---------------------------------------------------------------- fine-tuning, cached

def finetuned(profile: Profile, task: str, optimizer: str, seed: int, lr: float | None = None,
              epochs: int | None = None, progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """A fine-tuned model and its summary, from the checkpoint cache or trained now."""
    lr = lr if lr is not None else profile.lr_for(task)
    epochs = epochs if epochs is not None else profile.epochs_for(task)
    weights, summary_path = _checkpoint_paths(profile, task, optimizer, seed, lr, epochs)
    model = load_model(profile, task, seed)
    if weights.exists() and summary_path.exists():
        return load_weights(model, weights), json.loads(summary_path.read_text())
    data = load_task(task, profile)
    tokenizer = load_tokenizer(profile)
    regression = data.task.is_regression
    train = encode(data.train, tokenizer, profile.max_length, regression)
    dev = encode(data.dev, tokenizer, profile.max_length, regression)
    result: FineTuneResult = fine_tune(model, train, dev, task, profile, optimizer, seed,
                                       epochs=epochs, lr=lr, progress=progress)
    summary = {**result.summary(), "task": task, "optimizer": optimizer, "seed": seed, "lr": lr,
               "epochs": epochs, "train_rows": len(train), "dev_rows": len(dev),
               "device": str(default_device()), "data_cut": data.cut}
    save_weights(result.model, weights)
    atomic_write_json(summary_path, summary)
    return result.model, summary


def _checkpoint_paths(profile: Profile, task: str, optimizer: str, seed: int, lr: float,
                      epochs: int) -> tuple[Path, Path]:
    key = {"model": profile.model, "task": task, "optimizer": optimizer, "seed": seed, "lr": lr,
           "epochs": epochs, "max_length": profile.max_length, "batch_size": profile.batch_size,
           "train_size": profile.train_size.get(task), "eval_size": profile.eval_size.get(task),
           "bf16": profile.bf16, "rho": profile.sam_rho, "weight_decay": profile.weight_decay,
           "shipped_data": profile.shipped_data}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    stem = cache_dir() / profile.name / f"{task}-{optimizer}-seed{seed}-{digest}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _finetune_record(summary: dict) -> dict:
    """What a results file keeps of a fine-tune (the weights stay in the cache)."""
    return {k: summary[k] for k in ("task", "optimizer", "seed", "lr", "epochs", "history",
                                    "best_epoch", "best_score", "seconds_per_step", "steps",
                                    "wall_seconds", "train_rows", "dev_rows", "device",
                                    "data_cut")}


# ---------------------------------------------------------------- the experiments

def _finetune_units(profile: Profile) -> list[Unit]:
    return [dict(task=t, optimizer=o, seed=s)
            for t in profile.tasks for o in OPTIMIZERS for s in profile.seeds]


def _run_finetune(profile: Profile, unit: Unit) -> dict:
    _, summary = finetuned(profile, unit["task"], unit["optimizer"], unit["seed"])
    return _finetune_record(summary)


def _sweep_units(profile: Profile) -> list[Unit]:
    """Each task's first learning rate before any task's second: the likeliest come first."""
    grids = SWEEP_GRID[profile.name]
    return [dict(task=t, optimizer=o, lr=grid[rank], seed=profile.seeds[0])
            for rank in range(max(map(len, grids.values())))
            for t, grid in grids.items() if rank < len(grid) for o in ("adam", "sam")]


def _run_sweep(profile: Profile, unit: Unit) -> dict:
    _, summary = finetuned(profile, unit["task"], unit["optimizer"], unit["seed"], lr=unit["lr"])
    return _finetune_record(summary)


def _bf16_units(profile: Profile) -> list[Unit]:
    return [dict(task="mrpc", optimizer="adam", precision=p, seed=profile.seeds[0])
            for p in ("bf16", "fp32")]


def _run_bf16(profile: Profile, unit: Unit) -> dict:
    at = profile.with_overrides(bf16=unit["precision"] == "bf16")
    _, summary = finetuned(at, unit["task"], unit["optimizer"], unit["seed"])
    return {**_finetune_record(summary), "precision": unit["precision"]}


def _step_time_units(profile: Profile) -> list[Unit]:
    return [dict(task=t) for t in ("rte", "mrpc")]


def _run_step_time(profile: Profile, unit: Unit, steps: int = 12) -> dict:
    """Adam and SAM timed on the same batches, from the same weights, on a quiet machine."""
    task = unit["task"]
    data = load_task(task, profile)
    train = encode(data.train, load_tokenizer(profile), profile.max_length,
                   data.task.is_regression)
    batch_list = list(itertools.islice(batches(train, profile.batch_size, shuffle=True), steps))
    seconds = {opt: time_steps(load_model(profile, task, 0), batch_list, opt, profile)
               for opt in ("adam", "sam")}
    return {"task": task, "steps_timed": steps - 2, "batch_size": profile.batch_size,
            "mean_padded_length": statistics.fmean(b["input_ids"].shape[1] for b in batch_list),
            "seconds_per_step": seconds, "sam_over_adam": seconds["sam"] / seconds["adam"],
            "threads": torch.get_num_threads(), "device": str(default_device())}


def _data_card_units(profile: Profile) -> list[Unit]:
    return [dict(task=t) for t in DATA_CARD_TASKS]


def _run_data_card(profile: Profile, unit: Unit) -> dict:
    from flatcomp.datacards import data_card

    return data_card(unit["task"], profile)


# The learning rates each profile's sweep tries, per task (seed = the profile's first seed).
SWEEP_GRID: dict[str, dict[str, tuple[float, ...]]] = {
    "smoke": {"mrpc": (1e-3,), "rte": (1e-3,)},
    "small": {"mrpc": (5e-5, 1e-4), "rte": (1e-4, 2e-4)},
    "paper": {"mrpc": (2e-5,), "rte": (2e-5,)},
}
DATA_CARD_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "squad")

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("data_cards", "sizes, label balance, lengths and examples of every task",
               _data_card_units, _run_data_card),
    Experiment("lr_sweep", "Adam and SAM at a few learning rates, one seed (calibration)",
               _sweep_units, _run_sweep),
    Experiment("finetune", "Adam, SAM and SWA fine-tunes of every task of the profile, every seed",
               _finetune_units, _run_finetune),
    Experiment("step_time", "seconds per step of Adam and SAM on the same batches",
               _step_time_units, _run_step_time),
    Experiment("bf16_check", "the same fine-tune under bf16 autocast and in fp32",
               _bf16_units, _run_bf16),
)}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def select(units: list[Unit], **wanted) -> list[Unit]:
    """The units whose keys match, e.g. ``select(units, task=["rte"], optimizer=["adam"])``."""
    return [u for u in units
            if all(values is None or u.get(key) in values for key, values in wanted.items())]


def load_or_run(profile: Profile, experiment: str, store: ResultsStore | None = None,
                progress: bool = True, **wanted) -> list[dict]:
    """Every (selected) unit of an experiment: stored ones at once, missing ones computed."""
    exp = get_experiment(experiment)
    store = store or ResultsStore(profile)
    units = select(exp.units(profile), **wanted)
    missing = any(store.load(exp.name, unit_id(u)) is None for u in units)
    results = []
    for unit in tqdm(units, desc=experiment, disable=not (progress and missing), leave=False):
        results.append(store.load_or_run(exp.name, unit_id(unit),
                                         lambda u=unit: exp.run(profile, u), unit.get("seed")))
    return results


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
