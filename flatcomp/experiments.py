"""The book's experiments, each a list of resumable units stored in the results store.

An experiment is a name, a way to list its units for a profile, and a function that computes one
unit. :func:`load_or_run` walks the units in order, reads those already stored and computes and
writes each missing one as soon as it is finished, so a killed run resumes where it stopped.
Notebooks and the command line both call it.

Fine-tuned weights go to the checkpoint cache (``$FLATCOMP_CACHE``) keyed by everything that
determines them, so later chapters (quantization, lottery tickets) reuse them, and a sweep run and a
baseline run with the same settings are trained only once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from flatcomp.config import Profile, cache_dir
from flatcomp.data import Encoded, batches, encode, load_task
from flatcomp.models import load_model, load_tokenizer, load_weights, save_weights
from flatcomp.metrics import main_score
from flatcomp.results import ResultsStore, atomic_write_json
from flatcomp.train import (OPTIMIZERS, FineTuneResult, default_device, evaluate, fine_tune,
                            time_steps)

Unit = dict  # the keys that identify a unit: task, optimizer, seed, lr...


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    units: Callable[[Profile], list[Unit]]
    run: Callable[[Profile, Unit], dict]
    lottery: bool = False  # runs at ``profile.for_lottery()``


def unit_id(unit: Unit) -> str:
    """A readable file name: ``mrpc-adam-seed0`` (keys in a fixed order)."""
    parts = []
    for key in ("source", "task", "mask", "pooler", "optimizer", "rewind", "lr", "precision",
                "seed", "round"):
        if key in unit:
            value = unit[key]
            parts.append(f"lr{value:g}" if key == "lr" else
                         f"{value}-to" if key == "source" else
                         f"{value}-mask" if key == "mask" else
                         f"{value}-pooler" if key == "pooler" else
                         f"seed{value}" if key == "seed" else
                         f"round{value}" if key == "round" else
                         ("rewind" if value else "continue") if key == "rewind" else str(value))
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
    train, dev, cut = encoded_task(profile, task)
    result = fine_tune(model, train, dev, task, profile, optimizer, seed, epochs=epochs, lr=lr,
                       progress=progress)
    summary = _summary(result, task, optimizer, seed, lr, epochs, train, dev, cut)
    save_weights(result.model, weights)
    atomic_write_json(summary_path, summary)
    return result.model, summary


def finetuned_file(profile: Profile, task: str, optimizer: str, seed: int) -> Path:
    """Where :func:`finetuned` caches the weights of a fine-tune at the profile's schedule."""
    return _checkpoint_paths(profile, task, optimizer, seed, profile.lr_for(task),
                             profile.epochs_for(task))[0]


def encoded_task(profile: Profile, task: str,
                 train_rows: int | None = None) -> tuple[Encoded, Encoded, str | None]:
    """Train and dev rows of ``task`` tokenised for the profile (``train_rows``: a seeded
    subsample of train), and the data cut if any."""
    data = load_task(task, profile)
    tokenizer = load_tokenizer(profile)
    regression = data.task.is_regression
    return (encode(data.train.subsample(train_rows), tokenizer, profile.max_length, regression),
            encode(data.dev, tokenizer, profile.max_length, regression), data.cut)


def _summary(result: FineTuneResult, task: str, optimizer: str, seed: int, lr: float,
             epochs: int, train: Encoded, dev: Encoded, cut: str | None) -> dict:
    return {**result.summary(), "task": task, "optimizer": optimizer, "seed": seed, "lr": lr,
            "epochs": epochs, "train_rows": len(train), "dev_rows": len(dev),
            "device": str(default_device()), "data_cut": cut}


def _checkpoint_paths(profile: Profile, task: str, optimizer: str, seed: int, lr: float,
                      epochs: int) -> tuple[Path, Path]:
    digest = _training_digest(profile, task, optimizer, seed, lr, epochs)
    stem = cache_dir() / profile.name / f"{task}-{optimizer}-seed{seed}-{digest}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _training_digest(profile: Profile, task: str, optimizer: str, seed: int, lr: float,
                     epochs: int) -> str:
    """A short hash of everything that determines a fine-tune's weights."""
    key = {"model": profile.model, "task": task, "optimizer": optimizer, "seed": seed, "lr": lr,
           "epochs": epochs, "max_length": profile.max_length, "batch_size": profile.batch_size,
           "train_size": profile.train_size.get(task), "eval_size": profile.eval_size.get(task),
           "bf16": profile.bf16, "rho": profile.sam_rho, "weight_decay": profile.weight_decay,
           "shipped_data": profile.shipped_data}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _finetune_record(summary: dict) -> dict:
    """What a results file keeps of a fine-tune (the weights stay in the cache)."""
    return {k: summary[k] for k in ("task", "optimizer", "seed", "lr", "epochs", "history",
                                    "best_epoch", "best_score", "seconds_per_step", "steps",
                                    "wall_seconds", "train_rows", "dev_rows", "device",
                                    "data_cut")}


# ---------------------------------------------------------------- the experiments

def _model_units(profile: Profile) -> list[Unit]:
    """Every optimizer on every task of the profile, every seed: the models later chapters use."""
    return [dict(task=t, optimizer=o, seed=s)
            for t in profile.tasks for o in OPTIMIZERS for s in profile.seeds]


def _finetune_units(profile: Profile) -> list[Unit]:
    """The models of :func:`_model_units`, then Adam on any baseline task not among them."""
    return _model_units(profile) + [dict(task=t, optimizer="adam", seed=s)
                                    for t in profile.baseline_tasks if t not in profile.tasks
                                    for s in profile.seeds]


def _run_finetune(profile: Profile, unit: Unit) -> dict:
    _, summary = finetuned(profile, unit["task"], unit["optimizer"], unit["seed"])
    return _finetune_record(summary)


def _sweep_units(profile: Profile) -> list[Unit]:
    """Each task's first learning rate before any task's second: the likeliest come first."""
    grids = SWEEP_GRID[profile.name]
    return [dict(task=t, optimizer=o, lr=grid[rank][0], seed=profile.seeds[0])
            for rank in range(max(map(len, grids.values())))
            for t, grid in grids.items() if rank < len(grid) for o in grid[rank][1]]


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


def _timing_batches(profile: Profile, task: str, steps: int) -> list[dict]:
    """The first ``steps`` shuffled training batches of ``task``: what every timing runs on."""
    train, _, _ = encoded_task(profile, task)
    return list(itertools.islice(batches(train, profile.batch_size, shuffle=True), steps))


def _run_step_time(profile: Profile, unit: Unit, steps: int = 12) -> dict:
    """Adam and SAM timed on the same batches, from the same weights, on a quiet machine."""
    task = unit["task"]
    batch_list = _timing_batches(profile, task, steps)
    seconds = {opt: time_steps(load_model(profile, task, 0), batch_list, opt, profile)
               for opt in ("adam", "sam")}
    return {"task": task, "steps_timed": steps - 2, "batch_size": profile.batch_size,
            "mean_padded_length": statistics.fmean(b["input_ids"].shape[1] for b in batch_list),
            "seconds_per_step": seconds, "sam_over_adam": seconds["sam"] / seconds["adam"],
            "threads": torch.get_num_threads(), "device": str(default_device())}


def _model_on_fixed_rows(profile: Profile, unit: Unit) -> tuple[torch.nn.Module, Callable]:
    """A fine-tuned model and its training loss on the profile's fixed flatness rows: the loss
    function every measurement of the loss surface uses."""
    model, _ = finetuned(profile, unit["task"], unit["optimizer"], unit["seed"])
    return model, _fixed_rows_loss(profile, unit["task"])


def _fixed_rows_loss(profile: Profile, task: str) -> Callable[[torch.nn.Module], torch.Tensor]:
    """A model's training loss on the profile's fixed flatness rows of ``task``."""
    from flatcomp.flatness import batch_loss_fn

    train, _, _ = encoded_task(profile, task, train_rows=FLATNESS_SETTINGS[profile.name]["rows"])
    return batch_loss_fn(list(batches(train, profile.batch_size)))


def _mask_overhead_units(profile: Profile) -> list[Unit]:
    return [dict(task=profile.tasks[0], optimizer=o) for o in ("adam", "sam")]


def _run_mask_overhead(profile: Profile, unit: Unit, steps: int = 12, repeats: int = 2) -> dict:
    """Seconds per step with and without 50% magnitude masks, on the same batches from the same
    pre-trained weights, alternating the two ``repeats`` times and keeping each one's fastest (a
    busy machine only ever adds time)."""
    from flatcomp.pruning import magnitude_masks, prunable_weights

    task = unit["task"]
    batch_list = _timing_batches(profile, task, steps)
    masks = magnitude_masks(prunable_weights(load_model(profile, task, 0)), 0.5)
    timed = {"dense": [], "masked": []}
    for _ in range(repeats):
        for kind, m in (("dense", None), ("masked", masks)):
            timed[kind].append(time_steps(load_model(profile, task, 0), batch_list,
                                          unit["optimizer"], profile, masks=m))
    dense, masked = min(timed["dense"]), min(timed["masked"])
    return {**unit, "sparsity": 0.5, "steps_timed": steps - 2, "seconds_per_step": timed,
            "overhead": masked / dense - 1, "threads": torch.get_num_threads(),
            "device": str(default_device())}


def _run_flatness(profile: Profile, unit: Unit) -> dict:
    """Sharpness, top Hessian eigenvalue and Hessian trace of a fine-tuned model (fp32, eval
    mode), on fixed training batches."""
    from flatcomp import flatness

    settings = FLATNESS_SETTINGS[profile.name]
    model, loss_fn = _model_on_fixed_rows(profile, unit)
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
    model, loss_fn = _model_on_fixed_rows(profile, unit)
    line = _from_minus_one_to_one(settings["line_points"])
    grid = _from_minus_one_to_one(settings["plane_points"])
    d1, d2 = flatness.random_direction(model, seed=0), flatness.random_direction(model, seed=1)
    return {**unit, "rows": settings["rows"], "alphas": line,
            "line": flatness.loss_line(model, loss_fn, d1, line),
            "grid": grid, "plane": flatness.loss_plane(model, loss_fn, d1, d2, grid, grid)}


def _from_minus_one_to_one(points: int) -> list[float]:
    return [round(-1 + 2 * i / (points - 1), 6) for i in range(points)]


def _run_quantization(profile: Profile, unit: Unit) -> dict:
    """Dev score of a fine-tuned model in fp32, after dynamic int8, and with its Linear weights
    rounded to fewer bits (per tensor and per channel). All on the CPU, without autocast."""
    from flatcomp import quantization as q

    task = unit["task"]
    model, _ = finetuned(profile, task, unit["optimizer"], unit["seed"])
    model = model.cpu().eval()
    _, dev, _ = encoded_task(profile, task)
    score = _cpu_fp32_scorer(profile, task, dev)
    scores = {"fp32": score(model), "int8": score(q.quantize_dynamic_int8(model)),
              "int8 per channel": score(q.quantize_dynamic_int8(model, per_channel=True))}
    for bits in QUANT_BITS:
        for per_channel in (False, True):
            key = f"{bits} bit{' per channel' if per_channel else ''}"
            scores[key] = score(q.fake_quantize_weights(model, bits, per_channel))
    return {**unit, "scores": scores, "int8_drop": scores["fp32"] - scores["int8"],
            "size_bytes": {"fp32": q.model_size_bytes(model),
                           "int8": q.model_size_bytes(q.quantize_dynamic_int8(model))}}


def _cpu_fp32_scorer(profile: Profile, task: str, dev: Encoded) -> Callable[[torch.nn.Module], float]:
    """The dev score of a model on the CPU without autocast: how quantized models are compared."""
    fp32 = profile.with_overrides(bf16=False)
    return lambda model: main_score(task, evaluate(model, dev, task, fp32, torch.device("cpu")))


def _adam_sam_units(profile: Profile) -> list[Unit]:
    return [u for u in _model_units(profile) if u["optimizer"] in ("adam", "sam")]


def _run_quant_theory(profile: Profile, unit: Unit) -> dict:
    """The second-order prediction of the loss increase from rounding the Linear weights to b
    bits, E[dL] ~ 1/2 sum_i H_ii Delta_i^2 / 12 (Hessian diagonal by Hutchinson's estimator),
    against the increase measured on the same fixed training rows (fp32, eval mode)."""
    from flatcomp import flatness
    from flatcomp import quantization as q

    settings = FLATNESS_SETTINGS[profile.name]
    model, loss_fn = _model_on_fixed_rows(profile, unit)
    model = model.cpu().eval()
    names = list(q.rounding_noise_variance(model, 8))
    diagonal = flatness.hessian_diagonal(model, loss_fn, samples=settings["trace_samples"],
                                         params=names)
    with torch.no_grad():
        loss = float(loss_fn(model))
    rows = []
    for bits in QUANT_BITS:
        for per_channel in (False, True):
            variance = q.rounding_noise_variance(model, bits, per_channel)
            predicted = 0.5 * sum(float((diagonal[n] * variance[n]).sum()) for n in names)
            with torch.no_grad():
                measured = float(loss_fn(q.fake_quantize_weights(model, bits, per_channel))) - loss
            rows.append({"bits": bits, "per_channel": per_channel, "predicted": predicted,
                         "measured": measured})
    return {**unit, "rows": settings["rows"], "loss": loss,
            "hessian_samples": settings["trace_samples"], "increase": rows}


def _quant_speed_units(profile: Profile) -> list[Unit]:
    return [dict(task=profile.tasks[0], optimizer="adam", seed=profile.seeds[0])]


def _run_quant_speed(profile: Profile, unit: Unit) -> dict:
    """Size and CPU latency of fp32 against dynamic int8 at batch 1 and 32, full-length rows of
    random tokens (the speed does not depend on which tokens), 2 threads."""
    from flatcomp import quantization as q

    model, _ = finetuned(profile, unit["task"], unit["optimizer"], unit["seed"])
    model = model.cpu().eval()
    vocabulary = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)

    def make_batch(batch_size: int, length: int) -> dict:
        ids = torch.randint(0, vocabulary, (batch_size, length), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    rows = q.compare_speed(model, make_batch, seq_len=profile.max_length, threads=2)
    return {**unit, "timings": rows, "device": "cpu"}


def _imp_units(profile: Profile) -> list[Unit]:
    """IMP curves: one seed, rounds 0 (dense) to ``imp_rounds``, with rewinding and (where the
    profile asks for it) without."""
    return [dict(task=t, optimizer=o, rewind=r, seed=profile.seeds[0], round=k)
            for t in profile.tasks for o in ("adam", "sam") for r in profile.imp_rewind
            for k in range(profile.imp_rounds + 1)]


def _run_imp(profile: Profile, unit: Unit) -> dict:
    """One round of IMP (see :func:`flatcomp.pruning.iterative_magnitude_pruning`).

    Round 0 is the dense fine-tune (the ``finetune`` checkpoint). Round k > 0 needs the masks
    that round k - 1 pruned: they are computed first if missing, and every round leaves its
    next masks (and, without rewinding, its trained weights) in the checkpoint cache.
    """
    from flatcomp import pruning

    task, optimizer, seed, k = unit["task"], unit["optimizer"], unit["seed"], unit["round"]
    lr, epochs = profile.lr_for(task), profile.epochs_for(task)
    if k == 0:
        model, summary = finetuned(profile, task, optimizer, seed)
        masks = None
    else:
        previous = {**unit, "round": k - 1}
        ResultsStore(profile).load_or_run("imp", unit_id(previous),
                                          lambda: _run_imp(profile, previous), seed)
        masks, _ = pruning.load_masks(_cached(profile, _imp_path(profile, unit, k, "masks"),
                                              previous))
        start_state = None if unit["rewind"] else load_file(
            _cached(profile, _imp_path(profile, unit, k - 1, "weights"), previous))
        train, dev, cut = encoded_task(profile, task)
        train_fn = lambda model, m: fine_tune(model, train, dev, task, profile, optimizer, seed,
                                              masks=m, epochs=epochs, lr=lr)
        _, result = next(pruning.imp_rounds(
            lambda: load_model(profile, task, seed), train_fn, profile.imp_rounds,
            profile.imp_rate, unit["rewind"], start_round=k, start_masks=masks,
            start_state=start_state))
        model = result.model
        summary = _summary(result, task, optimizer, seed, lr, epochs, train, dev, cut)
    if k < profile.imp_rounds:
        next_masks = pruning.magnitude_masks(pruning.prunable_weights(model),
                                             round((k + 1) * profile.imp_rate, 12), masks)
        pruning.save_masks(next_masks, _imp_path(profile, unit, k + 1, "masks"),
                           {"unit": unit_id(unit), "pruned_after_round": k,
                            "device": summary["device"], "round_score": summary["best_score"]})
    save_weights(model, _imp_path(profile, unit, k, "weights"))
    return {**unit, **_finetune_record(summary),
            "sparsity": pruning.sparsity_report(model)["sparsity"]}


def ticket_sparsity(profile: Profile, task: str) -> float:
    """Chen et al.'s winning-ticket sparsity for ``task``, capped at what the profile's IMP reaches
    (the smoke profile prunes only two rounds)."""
    from flatcomp.paper import TICKET_SPARSITY

    return min(TICKET_SPARSITY[task], round(profile.imp_rounds * profile.imp_rate, 12))


def _ticket_units(profile: Profile) -> list[Unit]:
    """The mask x optimizer table: random, Adam-found and SAM-found masks at the task's ticket
    sparsity, each fine-tuned from the pre-trained weights with Adam and with SAM, every seed."""
    return [dict(task=t, mask=m, optimizer=o, seed=s) for t in profile.tasks
            for m in ("random", "adam", "sam") for o in ("adam", "sam") for s in profile.seeds]


def _run_ticket(profile: Profile, unit: Unit, need_weights: bool = False) -> dict:
    """Fine-tune the pre-trained model on the unit's task under its mask (:func:`ticket_masks`),
    the ticket of the unit's ``source`` task if it has one (transfer), else of its own task. The
    record says where the mask came from (:func:`ticket_and_origin`).

    A ticket fine-tuned with the optimizer that found it, with IMP's seed, is IMP's own round at
    the ticket sparsity: see :func:`_imp_round_as_ticket`.
    """
    task, source = unit["task"], unit.get("source", unit["task"])
    if source == task and unit["mask"] == unit["optimizer"] and unit["seed"] == profile.seeds[0]:
        return _imp_round_as_ticket(profile, unit, need_weights)
    masks, origin = ticket_and_origin(profile, source, unit["mask"], unit["seed"])
    return {**_fine_tune_masked(profile, unit, masks), "ticket": origin}


def _imp_round_as_ticket(profile: Profile, unit: Unit, need_weights: bool) -> dict:
    """IMP's round at the ticket sparsity, which is the same computation as fine-tuning the
    ticket with the optimizer that found it: its stored record is reused, with the stored round
    that pruned the mask as the ticket's origin. Its weights are copied if they are in the
    checkpoint cache; if not, the round is trained again for them only when ``need_weights``
    (:func:`_ticket_model`)."""
    store = ResultsStore(profile)
    maker = ticket_imp_unit(profile, unit["task"], unit["mask"])
    trained_unit = {**maker, "round": maker["round"] + 1}
    pruned_by = store.load_or_run("imp", unit_id(maker), lambda: _run_imp(profile, maker),
                                  unit["seed"])
    record = store.load_or_run("imp", unit_id(trained_unit),
                               lambda: _run_imp(profile, trained_unit), unit["seed"])
    trained = _imp_path(profile, trained_unit, trained_unit["round"], "weights")
    if trained.exists() or need_weights:
        path = _masked_weights_path(profile, unit)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_cached(profile, trained, trained_unit), path)
    origin = {"imp_round": unit_id(maker), "device": pruned_by["device"],
              "round_score": pruned_by["best_score"], "stored_round_score": pruned_by["best_score"]}
    return {**unit, **{k: v for k, v in record.items() if k not in ("rewind", "round")},
            "ticket": origin}


def _pooler_check_units(profile: Profile) -> list[Unit]:
    """The Adam and SAM tickets of the mask x optimizer table, each again with its pooler dense."""
    return [{**u, "pooler": "dense"} for u in _ticket_units(profile) if u["mask"] != "random"]


def _run_pooler_check(profile: Profile, unit: Unit) -> dict:
    """A ``tickets`` unit fine-tuned again with the pooler left out of its mask (dense, trained):
    does the ticket fail because global magnitude pruning emptied the pooler? The record says how
    many pooler weights the ticket itself keeps."""
    from flatcomp.pruning import without_pooler

    masks, origin = ticket_and_origin(profile, unit["task"], unit["mask"], unit["seed"])
    kept = without_pooler(masks)
    pooler = [m for name, m in masks.items() if name not in kept]
    return {**_fine_tune_masked(profile, unit, kept), "ticket": origin,
            "pooler_kept": sum(int(m.sum()) for m in pooler),
            "pooler_size": sum(m.numel() for m in pooler)}


def ticket_masks(profile: Profile, task: str, mask: str, seed: int) -> dict[str, torch.Tensor]:
    """The ``adam`` or ``sam`` ticket of ``task``: the mask that IMP with rewinding (first seed)
    trains with at :func:`ticket_sparsity`, computed first if missing; or a ``random`` mask with
    as many weights per layer as the Adam ticket, at positions drawn with ``seed``."""
    return ticket_and_origin(profile, task, mask, seed)[0]


def ticket_and_origin(profile: Profile, task: str, mask: str,
                      seed: int) -> tuple[dict[str, torch.Tensor], dict]:
    """:func:`ticket_masks`, and where the ticket came from: the IMP round that pruned it (a random
    mask: the Adam ticket's), the device it trained on and its dev score there, beside the score
    in that round's stored record (the two differ when the masks were remade on another machine,
    see :func:`_cached`)."""
    from flatcomp import pruning

    masks, meta = pruning.load_masks(_ticket_path(profile, task, mask))
    maker = _ticket_maker(profile, task, mask)
    stored = ResultsStore(profile).load("imp", unit_id(maker))
    origin = {"imp_round": unit_id(maker), "device": meta.get("device"),
              "round_score": meta.get("round_score"),
              "stored_round_score": stored["best_score"] if stored else None}
    return (pruning.random_masks(masks, seed=seed) if mask == "random" else masks), origin


def ticket_file(profile: Profile, task: str, mask: str) -> Path:
    """Where the checkpoint cache keeps ``task``'s Adam or SAM ticket (for ``random``: Adam's,
    from which the random masks are drawn). It may not exist yet: see :func:`ticket_masks`."""
    source = _ticket_maker(profile, task, mask)
    return _imp_path(profile, source, source["round"] + 1, "masks")


def _ticket_path(profile: Profile, task: str, mask: str) -> Path:
    """:func:`ticket_file`, made first if missing (IMP trained, or remade, up to the ticket)."""
    source = _ticket_maker(profile, task, mask)
    ResultsStore(profile).load_or_run("imp", unit_id(source), lambda: _run_imp(profile, source),
                                      source["seed"])
    return _cached(profile, ticket_file(profile, task, mask), source)


def _ticket_maker(profile: Profile, task: str, mask: str) -> Unit:
    """The IMP round that pruned ``task``'s ``mask`` ticket (for a random mask: Adam's)."""
    return ticket_imp_unit(profile, task, "adam" if mask == "random" else mask)


def _cached(profile: Profile, path: Path, maker: Unit) -> Path:
    """``path``, which the stored IMP round ``maker`` left in the checkpoint cache.

    If the round was stored on another machine (or the cache was cleared) the file is gone: the
    round is trained again to remake it (and, recursively, the rounds before it), with a warning.
    Its stored record is kept. On a CPU the remade files are identical; after a GPU they may
    differ slightly (nondeterministic kernels), which :func:`ticket_and_origin` shows.
    """
    if not path.exists():
        warnings.warn(f"{path.name} is not in the checkpoint cache ({path.parent}), though IMP "
                      f"round {unit_id(maker)} is stored (computed on another machine, or the "
                      f"cache was cleared): training that round again to remake it",
                      stacklevel=2)
        _run_imp(profile, maker)
    return path


def ticket_imp_unit(profile: Profile, task: str, optimizer: str) -> Unit:
    """The IMP round (with rewinding, first seed) after which ``task``'s ticket is pruned."""
    k = round(ticket_sparsity(profile, task) / profile.imp_rate)
    return dict(task=task, optimizer=optimizer, rewind=True, seed=profile.seeds[0], round=k - 1)


def _fine_tune_masked(profile: Profile, unit: Unit, masks: dict[str, torch.Tensor]) -> dict:
    """The pre-trained model fine-tuned on ``unit["task"]`` under ``masks``, as a results record."""
    from flatcomp.pruning import sparsity_report

    task, optimizer, seed = unit["task"], unit["optimizer"], unit["seed"]
    train, dev, cut = encoded_task(profile, task)
    lr, epochs = profile.lr_for(task), profile.epochs_for(task)
    result = fine_tune(load_model(profile, task, seed), train, dev, task, profile, optimizer, seed,
                       masks=masks, epochs=epochs, lr=lr)
    save_weights(result.model, _masked_weights_path(profile, unit))
    summary = _summary(result, task, optimizer, seed, lr, epochs, train, dev, cut)
    return {**unit, **_finetune_record(summary),
            "sparsity": sparsity_report(result.model)["sparsity"]}


def _masked_weights_path(profile: Profile, unit: Unit) -> Path:
    """Cache file of a fine-tune under a mask: the unit's name and the training config's key."""
    task = unit["task"]
    digest = _training_digest(profile, task, unit["optimizer"], unit["seed"],
                              profile.lr_for(task), profile.epochs_for(task))
    return cache_dir() / profile.name / "masked" / f"{unit_id(unit)}-{digest}.safetensors"


def _compound_units(profile: Profile) -> list[Unit]:
    """A winning ticket found and fine-tuned with one optimizer, then dynamic int8."""
    return [u for u in _ticket_units(profile) if u["mask"] == u["optimizer"]]


def _ticket_model(profile: Profile, unit: Unit) -> tuple[torch.nn.Module, dict]:
    """A ``tickets`` unit's fine-tuned model on the CPU in eval mode, and its stored record
    (both computed first if missing; trained again if the weights left the cache)."""
    record = ResultsStore(profile).load_or_run("tickets", unit_id(unit),
                                               lambda: _run_ticket(profile, unit), unit["seed"])
    path = _masked_weights_path(profile, unit)
    if not path.exists():
        _run_ticket(profile, unit, need_weights=True)
    model = load_weights(load_model(profile, unit["task"], unit["seed"]), path)
    return model.cpu().eval(), record


def _run_compound(profile: Profile, unit: Unit) -> dict:
    """Dev score of a ticket in fp32 and after dynamic int8, on the CPU without autocast."""
    from flatcomp import quantization as q

    task = unit["task"]
    model, _ = _ticket_model(profile, unit)
    _, dev, _ = encoded_task(profile, task)
    score = _cpu_fp32_scorer(profile, task, dev)
    scores = {"fp32": score(model), "int8": score(q.quantize_dynamic_int8(model)),
              "int8 per channel": score(q.quantize_dynamic_int8(model, per_channel=True))}
    return {**unit, "sparsity": ticket_sparsity(profile, task), "scores": scores,
            "int8_drop": scores["fp32"] - scores["int8"]}


def _run_ticket_flatness(profile: Profile, unit: Unit) -> dict:
    """Sharpness of a ticket's subnetwork (the perturbation masked like the weights) on the
    profile's fixed flatness rows, beside the ticket's dev score."""
    model, record = _ticket_model(profile, unit)
    masks = ticket_masks(profile, unit["task"], unit["mask"], unit["seed"])
    return {**unit, **_subnetwork_sharpness(profile, unit["task"], model, masks),
            "best_score": record["best_score"], "sparsity": record["sparsity"]}


def _imp_flatness_units(profile: Profile) -> list[Unit]:
    """Every round of IMP with rewinding: a ticket at each sparsity, with the mask and optimizer
    of its chain."""
    return [u for u in _imp_units(profile) if u["rewind"]]


def _run_imp_flatness(profile: Profile, unit: Unit) -> dict:
    """Sharpness of an IMP round's trained subnetwork (under the masks it trained with) beside
    the dev score of the same weights (fp32 on the CPU). It reads the weights IMP left in the
    cache, or trains the round again (:func:`_cached`); a remade round's weights may differ from
    those behind the stored IMP record (another machine), so its score is measured afresh and the
    record's kept beside it."""
    from flatcomp.pruning import load_masks

    record = ResultsStore(profile).load_or_run("imp", unit_id(unit),
                                               lambda: _run_imp(profile, unit), unit["seed"])
    task, k = unit["task"], unit["round"]
    weights = _cached(profile, _imp_path(profile, unit, k, "weights"), unit)
    model = load_weights(load_model(profile, task, unit["seed"]), weights).cpu().eval()
    masks = load_masks(_cached(profile, _imp_path(profile, unit, k, "masks"),
                               {**unit, "round": k - 1}))[0] if k else None
    _, dev, _ = encoded_task(profile, task)
    score = _cpu_fp32_scorer(profile, task, dev)(model)  # before sharpness moves it to the device
    return {**unit, **_subnetwork_sharpness(profile, task, model, masks), "best_score": score,
            "imp_record_score": record["best_score"], "sparsity": record["sparsity"]}


def _subnetwork_sharpness(profile: Profile, task: str, model: torch.nn.Module,
                          masks: dict[str, torch.Tensor] | None) -> dict:
    """S_rho of ``model`` on the profile's fixed flatness rows, perturbing only inside ``masks``."""
    from flatcomp.flatness import sharpness

    settings = FLATNESS_SETTINGS[profile.name]
    sharp = sharpness(model.to(default_device()).eval(), _fixed_rows_loss(profile, task),
                      rho=profile.sam_rho, steps=settings["sharpness_steps"], masks=masks)
    return {"rows": settings["rows"], "rho": profile.sam_rho, "loss": sharp["loss"],
            "sharpness": sharp["sharpness"]}


def _mask_analysis_units(profile: Profile) -> list[Unit]:
    return [dict(task=t) for t in profile.tasks]


def _run_mask_analysis(profile: Profile, unit: Unit) -> dict:
    """Where the Adam and the SAM tickets of a task prune (per-layer sparsity) and how much they
    agree (overall and per layer, beside two independent random masks of the same densities)."""
    from flatcomp.pruning import mask_overlap, sparsity_report

    masks = {m: ticket_masks(profile, unit["task"], m, profile.seeds[0]) for m in ("adam", "sam")}
    return {**unit, "sparsity": ticket_sparsity(profile, unit["task"]),
            "layers": {m: sparsity_report(masks[m])["layers"] for m in masks},
            "overlap": mask_overlap(masks["adam"], masks["sam"])}


def _transfer_units(profile: Profile) -> list[Unit]:
    """Ticket transfer (the paper's Figures 8 and 9): the Adam and SAM tickets of every source
    task, fine-tuned with Adam and with SAM on every other task of the transfer grid
    (:meth:`Profile.transfer_grid`), first seed. (The diagonal, source = target, is the
    ``tickets`` experiment.)"""
    grid = profile.transfer_grid()
    return [dict(source=a, task=b, mask=m, optimizer=o, seed=profile.seeds[0])
            for a in grid for b in grid if a != b
            for m in ("adam", "sam") for o in ("adam", "sam")]


def _imp_path(profile: Profile, unit: Unit, k: int, kind: str) -> Path:
    """Cache file of round ``k``'s masks (those it trains with) or trained weights."""
    weights, _ = _checkpoint_paths(profile, unit["task"], unit["optimizer"], unit["seed"],
                                   profile.lr_for(unit["task"]), profile.epochs_for(unit["task"]))
    run = f"{'rewind' if unit['rewind'] else 'continue'}-rate{profile.imp_rate:g}"
    return weights.parent / "imp" / f"{weights.stem}-{run}-round{k}.{kind}.safetensors"


def _data_card_units(profile: Profile) -> list[Unit]:
    return [dict(task=t) for t in DATA_CARD_TASKS]


def _run_data_card(profile: Profile, unit: Unit) -> dict:
    from flatcomp.datacards import data_card

    return data_card(unit["task"], profile)


# The (learning rate, optimizers) each profile's sweep tries per task, with the profile's first
# seed. At small, the paper's 2e-5 runs with Adam only: SAM converges more slowly than Adam at
# the same rate (see the chapter), so where Adam fails to learn in the budget, so would SAM.
BOTH = ("adam", "sam")
SWEEP_GRID: dict[str, dict[str, tuple[tuple[float, tuple[str, ...]], ...]]] = {
    "smoke": {"mrpc": ((1e-3, BOTH),), "rte": ((1e-3, BOTH),)},
    "small": {"mrpc": ((5e-5, BOTH), (2e-5, ("adam",))),
              "rte": ((1e-4, BOTH), (2e-5, ("adam",)))},
    "paper": {"mrpc": ((2e-5, BOTH),), "rte": ((2e-5, BOTH),)},
}
# How flatness is measured, per profile: fixed training rows, iteration counts.
_FLATNESS = {"rows": 128, "sharpness_steps": 5, "eigen_iters": 20, "trace_samples": 10,
             "line_points": 21, "plane_points": 11}
FLATNESS_SETTINGS = {"smoke": {"rows": 16, "sharpness_steps": 2, "eigen_iters": 3,
                               "trace_samples": 2, "line_points": 5, "plane_points": 3},
                     "small": _FLATNESS, "paper": _FLATNESS}
QUANT_BITS = (8, 6, 4, 3)
DATA_CARD_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "squad")

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("data_cards", "sizes, label balance, lengths and examples of every task",
               _data_card_units, _run_data_card),
    Experiment("lr_sweep", "Adam and SAM at a few learning rates, one seed (calibration)",
               _sweep_units, _run_sweep),
    Experiment("finetune", "Adam, SAM and SWA fine-tunes of every task of the profile (and Adam "
               "on its baseline tasks), every seed",
               _finetune_units, _run_finetune),
    Experiment("step_time", "seconds per step of Adam and SAM on the same batches",
               _step_time_units, _run_step_time),
    Experiment("flatness", "sharpness and Hessian of every fine-tuned model",
               _model_units, _run_flatness),
    Experiment("landscape", "loss along 1-D and on 2-D filter-normalised random directions",
               _landscape_units, _run_landscape),
    Experiment("quantization", "dev score after dynamic int8 and k-bit weight rounding",
               _model_units, _run_quantization),
    Experiment("quant_theory", "second-order prediction of the loss increase from k-bit "
               "weights, against the measured increase", _adam_sam_units, _run_quant_theory),
    Experiment("quant_speed", "size and latency of fp32 against dynamic int8",
               _quant_speed_units, _run_quant_speed),
    Experiment("tickets", "random, Adam and SAM masks, each fine-tuned with Adam and with SAM",
               _ticket_units, _run_ticket, lottery=True),
    Experiment("compound", "a winning ticket, then dynamic int8",
               _compound_units, _run_compound, lottery=True),
    Experiment("mask_analysis", "per-layer sparsity and overlap of the Adam and SAM tickets",
               _mask_analysis_units, _run_mask_analysis, lottery=True),
    Experiment("ticket_flatness", "sharpness of every ticket's subnetwork beside its score",
               _ticket_units, _run_ticket_flatness, lottery=True),
    Experiment("imp_flatness", "sharpness of every IMP round's subnetwork beside its score",
               _imp_flatness_units, _run_imp_flatness, lottery=True),
    Experiment("transfer", "tickets of one task fine-tuned on another",
               _transfer_units, _run_ticket, lottery=True),
    Experiment("pooler_check", "the Adam and SAM tickets fine-tuned again with a dense pooler",
               _pooler_check_units, _run_pooler_check, lottery=True),
    Experiment("mask_overhead", "seconds per step with and without pruning masks",
               _mask_overhead_units, _run_mask_overhead),
    Experiment("imp", "iterative magnitude pruning, one unit per round",
               _imp_units, _run_imp, lottery=True),
    Experiment("bf16_check", "the same fine-tune under bf16 autocast and in fp32",
               _bf16_units, _run_bf16),
)}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def planned_units(profile: Profile, experiment: str) -> list[Unit]:
    """Every unit of an experiment at the profile it runs at (``profile.for_lottery()`` for the
    lottery experiments, whose tasks and schedule may differ)."""
    exp = get_experiment(experiment)
    return exp.units(profile.for_lottery() if exp.lottery else profile)


def select(units: list[Unit], **wanted) -> list[Unit]:
    """The units whose keys match, e.g. ``select(units, task=["rte"], optimizer=["adam"])``."""
    return [u for u in units
            if all(values is None or u.get(key) in values for key, values in wanted.items())]


def load_or_run(profile: Profile, experiment: str, store: ResultsStore | None = None,
                progress: bool = True, missing: str = "run", **wanted) -> list[dict]:
    """Every (selected) unit of an experiment: stored ones at once, missing ones computed, or
    left out with ``missing="skip"`` (to show what a long run has stored so far)."""
    if missing not in ("run", "skip"):
        raise ValueError(f"missing={missing!r}: say 'run' (compute them) or 'skip' (leave out)")
    exp = get_experiment(experiment)
    profile = profile.for_lottery() if exp.lottery else profile
    store = store or ResultsStore(profile)
    units = select(exp.units(profile), **wanted)
    stored = {unit_id(u): store.load(exp.name, unit_id(u)) for u in units}
    if missing == "skip":
        return [record for record in stored.values() if record is not None]
    todo = [u for u in units if stored[unit_id(u)] is None]
    for unit in tqdm(todo, desc=experiment, disable=not (progress and todo), leave=False):
        stored[unit_id(unit)] = store.load_or_run(exp.name, unit_id(unit),
                                                  lambda u=unit: exp.run(profile, u),
                                                  unit.get("seed"))
    return [stored[unit_id(u)] for u in units]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
