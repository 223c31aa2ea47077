"""What every chapter's experiments share: the unit, the registry entry, cached fine-tunes, costs.

An experiment is a name, a way to list its units for a profile, a function that computes one
unit, and what the plan (:mod:`flatcomp.lab.plan`) needs to schedule it: the chapter, a priority
(units that decide a verdict first), the units or files each unit needs before it can start, and
a cost model in training steps. :func:`flatcomp.lab.experiments.load_or_run` walks the units in
order, reads those already stored and computes and writes each missing one as soon as it is
finished, so a killed run resumes where it stopped.

Fine-tuned weights go to the checkpoint cache (``$FLATCOMP_CACHE``) keyed by everything that
determines them, so later chapters (quantization, lottery tickets) reuse them, and a sweep run and a
baseline run with the same settings are trained only once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from flatcomp.lab.config import Profile, cache_dir
from flatcomp.lab.data import Encoded, batches, encode, load_task, task_rows
from flatcomp.lab.models import load_model, load_tokenizer, load_weights, save_weights
from flatcomp.lab.precision import resolve_precision
from flatcomp.lab.results import ResultsStore, atomic_write_json
from flatcomp.lab.train import OPTIMIZERS, FineTuneResult, default_device, evaluate, fine_tune
from flatcomp.metrics import main_score

Unit = dict  # the keys that identify a unit: task, optimizer, seed, lr...
# What must exist before a unit can start: a stored unit (experiment, unit id), or a file.
Need = "tuple[str, str] | Path"


def no_needs(profile: Profile, unit: Unit) -> tuple:
    return ()


def same_profile(profile: Profile) -> Profile:
    return profile


@dataclass(frozen=True)
class Experiment:
    """One experiment of a chapter.

    ``priority``: the plan starts lower numbers first (0: the units a chapter's verdict rests on;
    1: what the verdict also uses; 2: analyses; 3: extra seeds' worth and cross-checks; 4: what
    extends the paper, after every claim's units); a
    function of the profile and the unit where an experiment's units differ (see
    :meth:`priority_of`).
    ``cost``: a unit's work in training steps at the profile's batch size (a SAM step counts 2),
    which the plan multiplies by the seconds per step it measures on the device.
    ``alone``: a timing, which must run with nothing else on the machine.
    ``at``: the profile the experiment runs at, made from the book's profile (the lottery
    experiments: :meth:`~flatcomp.lab.config.Profile.for_lottery`, their tasks and schedule; the
    SQuAD ones: :meth:`~flatcomp.lab.config.Profile.for_squad`, SQuAD's batch size and length).
    ``makes``: files a unit leaves for other jobs to wait on (beside its stored record).
    """

    name: str
    description: str
    units: Callable[[Profile], list[Unit]]
    run: Callable[[Profile, Unit], dict]
    chapter: str
    priority: int | Callable[[Profile, Unit], int]
    cost: Callable[[Profile, Unit], float]
    needs: Callable[[Profile, Unit], tuple] = no_needs
    alone: bool = False
    at: Callable[[Profile], Profile] = same_profile
    makes: Callable[[Profile, Unit], tuple] = no_needs

    def priority_of(self, profile: Profile, unit: Unit) -> int:
        """The plan's priority of one unit."""
        return self.priority(profile, unit) if callable(self.priority) else self.priority


@dataclass(frozen=True)
class Job:
    """The units of ``experiment`` that match ``filters`` (run in order, in one process), once
    every one of ``needs`` exists."""

    experiment: str
    filters: dict[str, list]
    needs: tuple = ()

    @property
    def name(self) -> str:
        values = "-".join(str(v) for values in self.filters.values() for v in values)
        return f"{self.experiment}-{values}"


class FileJob(Job):
    """A job that stores no record but makes files other jobs need (a chapter's cached masks,
    say), where this machine lacks them. The plan runs one only when a job it plans needs one of
    its files; ``experiment`` names it in the plan's listing. A chapter subclasses it."""

    def at(self, profile: Profile) -> Profile:
        """The profile it runs at."""
        return profile

    def makes(self, profile: Profile) -> list[Path]:
        raise NotImplementedError

    def cost(self, profile: Profile) -> float:
        """Its work in training steps, 0 where its files exist."""
        raise NotImplementedError

    def run(self, profile: Profile) -> None:
        raise NotImplementedError


def unit_id(unit: Unit) -> str:
    """A readable file name: ``mrpc-adam-seed0`` (keys in a fixed order)."""
    parts = []
    for key in ("source", "task", "mask", "pooler", "optimizer", "rewind", "sparsity", "lr",
                "rho", "precision", "seed", "round"):
        if key in unit:
            value = unit[key]
            parts.append(f"lr{value:g}" if key == "lr" else
                         f"rho{value:g}" if key == "rho" else
                         f"sparsity{value:g}" if key == "sparsity" else
                         f"{value}-to" if key == "source" else
                         f"{value}-mask" if key == "mask" else
                         f"{value}-pooler" if key == "pooler" else
                         f"seed{value}" if key == "seed" else
                         f"round{value}" if key == "round" else
                         ("rewind" if value else "continue") if key == "rewind" else str(value))
    return "-".join(parts)


# ---------------------------------------------------------------- costs, in training steps

# Forward-and-backward passes per training step, on average: SAM two; SAM every 5th step and
# LookSAM (k = 5) 1.2; ESAM about 1.6 (a no-grad forward, a backward on half the batch); SAM-ON
# two (only the perturbation is smaller).
PASSES_PER_STEP = {"sam": 2.0, "ksam": 1.2, "looksam": 1.2, "esam": 1.6, "sam_on": 2.0}


def fine_tune_steps(profile: Profile, task: str, optimizer: str, epochs: int | None = None) -> float:
    """A fine-tune's work: epochs x batches of train (times the optimizer's passes per step,
    :data:`PASSES_PER_STEP`), plus one evaluation of dev per epoch (a forward pass is about a
    third of a training step)."""
    train_rows, dev_rows = task_rows(task, profile)
    epochs = epochs if epochs is not None else profile.epochs_for(task)
    train = epochs * math.ceil(train_rows / profile.batch_size)
    evaluation = epochs * math.ceil(dev_rows / (2 * profile.batch_size)) * 2 / 3
    return train * PASSES_PER_STEP.get(optimizer, 1.0) + evaluation


def trained_first(profile: Profile, needs: tuple) -> bool:
    """Whether a unit waits for one of ``needs`` (``(experiment, unit id)`` pairs) that is not
    stored yet: the plan runs that one first, into the checkpoint cache, so the model it trains
    costs the waiting unit nothing."""
    store = ResultsStore(profile)
    return any(not store.path(*need).exists() for need in needs)


def model_steps(profile: Profile, task: str, optimizer: str, seed: int, needs: tuple = (),
                fine_tune: float | None = None) -> float:
    """What getting a fine-tuned model costs a unit: nothing if the checkpoint cache has it or
    if a unit that trains it runs first (``needs``, :func:`trained_first`); else the fine-tune,
    ``fine_tune`` steps (by default :func:`fine_tune_steps`): its record came from another
    machine, its checkpoint did not."""
    if finetuned_file(profile, task, optimizer, seed).exists() or trained_first(profile, needs):
        return 0.0
    return fine_tune if fine_tune is not None else fine_tune_steps(profile, task, optimizer)


def finetune_model_steps(profile: Profile, unit: Unit) -> float:
    """:func:`model_steps` for a unit that waits for its ``finetune`` unit (:func:`needs_finetune`)."""
    return model_steps(profile, unit["task"], unit["optimizer"], unit["seed"],
                       needs_finetune(profile, unit))


def work_steps(experiment: Experiment, profile: Profile, unit: Unit) -> float:
    """A unit's own work: its cost, less the fine-tune of its model where it needs the
    ``finetune`` unit that trains that model and that unit is stored (while it is not, the cost
    counts no fine-tune already: :func:`model_steps`)."""
    own = experiment.cost(profile, unit)
    if experiment.needs is needs_finetune:
        own -= finetune_model_steps(profile, unit)
    return own


def finetune_cost(profile: Profile, unit: Unit) -> float:
    return fine_tune_steps(profile, unit["task"], unit["optimizer"])


def dev_pass_steps(profile: Profile, task: str, passes: int = 1) -> float:
    """``passes`` evaluations of the dev set, in training steps."""
    return passes * math.ceil(task_rows(task, profile)[1] / (2 * profile.batch_size)) * 2 / 3


def no_cost(profile: Profile, unit: Unit) -> float:
    return 0.0


def needs_finetune(profile: Profile, unit: Unit) -> tuple:
    """The stored fine-tune of the unit's task, optimizer and seed (its checkpoint comes too)."""
    return (("finetune", unit_id(dict(task=unit["task"], optimizer=unit["optimizer"],
                                      seed=unit["seed"]))),)


# ---------------------------------------------------------------- fine-tuning, cached

def finetuned(profile: Profile, task: str, optimizer: str, seed: int, lr: float | None = None,
              epochs: int | None = None, progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """A fine-tuned model and its summary, from the checkpoint cache or trained now."""
    lr = lr if lr is not None else profile.lr_for(task)
    epochs = epochs if epochs is not None else profile.epochs_for(task)
    weights, summary_path = checkpoint_paths(profile, task, optimizer, seed, lr, epochs)
    model = load_model(profile, task, seed)
    if weights.exists() and summary_path.exists():
        return load_weights(model, weights), json.loads(summary_path.read_text())
    train, dev, cut = encoded_task(profile, task)
    result = fine_tune(model, train, dev, task, profile, optimizer, seed, epochs=epochs, lr=lr,
                       progress=progress)
    summary = fine_tune_summary(result, task, optimizer, seed, lr, epochs, train, dev, cut)
    save_weights(result.model, weights)
    atomic_write_json(summary_path, summary)
    return result.model, summary


def finetuned_file(profile: Profile, task: str, optimizer: str, seed: int) -> Path:
    """Where :func:`finetuned` caches the weights of a fine-tune at the profile's schedule."""
    return checkpoint_paths(profile, task, optimizer, seed, profile.lr_for(task),
                             profile.epochs_for(task))[0]


def encoded_task(profile: Profile, task: str,
                 train_rows: int | None = None) -> tuple[Encoded, Encoded, str | None]:
    """Train and dev rows of ``task`` tokenised for the profile (``train_rows``: a seeded
    subsample of train), and the data cut if any. For ``"squad"``, the windows of
    :func:`flatcomp.lab.qa_features.squad_features` (``train_rows`` not supported)."""
    if task == "squad":
        if train_rows is not None:
            raise ValueError("train_rows subsamples GLUE rows; SQuAD's training questions are "
                             "capped by the profile's squad settings (train_questions)")
        from flatcomp.lab.qa_features import squad_features

        return squad_features(profile)
    data = load_task(task, profile)
    tokenizer = load_tokenizer(profile)
    regression = data.task.is_regression
    return (encode(data.train.subsample(train_rows), tokenizer, profile.max_length, regression),
            encode(data.dev, tokenizer, profile.max_length, regression), data.cut)


def fine_tune_summary(result: FineTuneResult, task: str, optimizer: str, seed: int, lr: float,
             epochs: int, train: Encoded, dev: Encoded, cut: str | None) -> dict:
    rows = {"train_rows": len(train), "dev_rows": len(dev)}
    if hasattr(train, "num_questions"):  # SQuAD: rows are questions, each one or more windows
        rows = {"train_rows": train.num_questions, "dev_rows": dev.num_questions,
                "train_windows": len(train), "dev_windows": len(dev)}
    else:  # the dev labels, beside the predictions, to score any resample of the dev rows
        rows["dev_labels"] = dev_labels(dev)
    return {**result.summary(), "task": task, "optimizer": optimizer, "seed": seed, "lr": lr,
            "epochs": epochs, **rows, "device": str(default_device()), "data_cut": cut}


def dev_labels(dev: Encoded) -> list:
    """The labels of the dev rows as a JSON-ready list (class ids, or regression targets)."""
    return [float(y) if dev.regression else int(y) for y in dev.labels]


def checkpoint_paths(profile: Profile, task: str, optimizer: str, seed: int, lr: float,
                      epochs: int) -> tuple[Path, Path]:
    digest = training_digest(profile, task, optimizer, seed, lr, epochs)
    stem = cache_dir() / profile.name / f"{task}-{optimizer}-seed{seed}-{digest}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def training_digest(profile: Profile, task: str, optimizer: str, seed: int, lr: float,
                     epochs: int) -> str:
    """A short hash of everything that determines a fine-tune's weights, the precision as it
    resolves on the default device (a checkpoint trained in fp32 is never read back as bf16's)."""
    key = {"model": profile.model, "task": task, "optimizer": optimizer, "seed": seed, "lr": lr,
           "epochs": epochs, "max_length": profile.max_length, "batch_size": profile.batch_size,
           "train_size": profile.train_size.get(task), "eval_size": profile.eval_size.get(task),
           "rho": profile.sam_rho, "weight_decay": profile.weight_decay,
           "shipped_data": profile.shipped_data,
           # a bool, as before precision could be "auto": older bf16 checkpoints keep their key
           "bf16": resolve_precision(profile, default_device()) == "bf16"}
    if profile.length_grouped:  # a new key only where set: older checkpoints keep theirs
        key["length_grouped"] = True
    if task == "squad":  # its windows, batch, split and subsample (GLUE keys stay as they were)
        squad = profile.for_squad()
        key.update(max_length=squad.max_length, batch_size=squad.batch_size,
                   squad={"doc_stride": profile.squad_doc_stride, **profile.squad_settings()})
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def finetune_record(summary: dict) -> dict:
    """What a results file keeps of a fine-tune (the weights stay in the cache)."""
    kept = {k: summary[k] for k in ("task", "optimizer", "seed", "lr", "epochs", "history",
                                    "best_epoch", "best_score", "seconds_per_step", "steps",
                                    "wall_seconds", "train_rows", "dev_rows", "device",
                                    "data_cut")}
    optional = ("train_windows", "dev_windows", "dev_predictions", "dev_labels")
    return {**kept, **{k: summary[k] for k in optional if k in summary}}


def model_units(profile: Profile) -> list[Unit]:
    """Every optimizer on every task of the profile, every seed: the models later chapters use."""
    return [dict(task=t, optimizer=o, seed=s)
            for t in profile.tasks for o in OPTIMIZERS for s in profile.seeds]


def dense_units(profile: Profile) -> list[Unit]:
    """:func:`model_units` over every task of the full-model comparisons
    (:meth:`~flatcomp.lab.config.Profile.dense_tasks`)."""
    return model_units(profile.with_overrides(tasks=profile.dense_tasks()))


# The tasks whose int8 drop the paper reports (besides SQuAD): their Adam and SAM pairs head the
# plan, as the full-model and int8 claims rest on them.
HEADLINE_TASKS = ("sst2", "rte", "mnli")


def dense_priority(profile: Profile, unit: Unit) -> int:
    """0 for the models of the profile's own tasks and the Adam and SAM models of
    :data:`HEADLINE_TASKS`; 2 for the other tasks' models and SWA's."""
    headline = unit["task"] in HEADLINE_TASKS and unit["optimizer"] in ("adam", "sam")
    return 0 if unit["task"] in profile.tasks or headline else 2


def adam_sam_units(profile: Profile) -> list[Unit]:
    return [u for u in model_units(profile) if u["optimizer"] in ("adam", "sam")]


def timing_batches(profile: Profile, task: str, steps: int) -> list[dict]:
    """The first ``steps`` shuffled training batches of ``task``: what every timing runs on."""
    train, _, _ = encoded_task(profile, task)
    return list(itertools.islice(batches(train, profile.batch_size, shuffle=True), steps))


def model_on_fixed_rows(profile: Profile, unit: Unit) -> tuple[torch.nn.Module, Callable]:
    """A fine-tuned model and its training loss on the profile's fixed flatness rows: the loss
    function every measurement of the loss surface uses."""
    model, _ = finetuned(profile, unit["task"], unit["optimizer"], unit["seed"])
    return model, fixed_rows_loss(profile, unit["task"])


def fixed_rows_loss(profile: Profile, task: str) -> Callable[[torch.nn.Module], torch.Tensor]:
    """A model's training loss on the profile's fixed flatness rows of ``task``."""
    from flatcomp.flatness import batch_loss_fn

    train, _, _ = encoded_task(profile, task, train_rows=FLATNESS_SETTINGS[profile.name]["rows"])
    return batch_loss_fn(list(batches(train, profile.batch_size)))


def cpu_fp32_scorer(profile: Profile, task: str, dev: Encoded) -> Callable[[torch.nn.Module], float]:
    """The dev score of a model on the CPU without autocast: how quantized models are compared."""
    fp32 = profile.with_overrides(precision="fp32")
    return lambda model: main_score(task, evaluate(model, dev, task, fp32, torch.device("cpu")))


# How flatness is measured, per profile: fixed training rows, iteration counts.
_FLATNESS = {"rows": 128, "sharpness_steps": 5, "eigen_iters": 20, "trace_samples": 10,
             "line_points": 21, "plane_points": 11}


FLATNESS_SETTINGS = {"smoke": {"rows": 16, "sharpness_steps": 2, "eigen_iters": 3,
                               "trace_samples": 2, "line_points": 5, "plane_points": 3},
                     "small": _FLATNESS, "paper": _FLATNESS}


def select(units: list[Unit], **wanted) -> list[Unit]:
    """The units whose keys match, e.g. ``select(units, task=["rte"], optimizer=["adam"])``."""
    return [u for u in units
            if all(values is None or u.get(key) in values for key, values in wanted.items())]
