"""Chapter 4, lottery tickets: IMP with and without rewinding, the mask x optimizer table, ticket
transfer, compound compression, the masks' structure and flatness, and the pooler check.

IMP is a chain: round k trains under the masks that round k - 1 pruned. A ticket needs the IMP
round that pruned it, a transferred ticket its source task's, and the analyses need the tickets.
:func:`lottery_jobs` lists that work as jobs in the order of importance (the ticket table first,
then the curves, the transfer grid, the rest), each naming the stored units it needs first. A
MiniLM fine-tune leaves a large GPU mostly idle, so the plan runs several at once (on an H200, 14
processes at once took about half a minute per 3-epoch MRPC fine-tune).

Trained weights and masks stay in the checkpoint cache of the machine that ran them. Where the
IMP rounds are stored but their masks are not in this machine's cache, one ``ticket`` job per
chain (``ticket_encoder`` for the pooler-free chains, one per seed) remakes them
(:func:`ticket_masks`) before the jobs that need them.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

from flatcomp.lab.config import Profile, cache_dir
from flatcomp.lab.experiments.core import (FLATNESS_SETTINGS, Experiment, FileJob, Job, Unit,
                                           checkpoint_paths, cpu_fp32_scorer, dev_pass_steps,
                                           encoded_task, fine_tune_steps, fine_tune_summary,
                                           finetune_record, finetuned, finetuned_file,
                                           fixed_rows_loss, model_steps, no_cost, timing_batches,
                                           training_digest, unit_id)
from flatcomp.lab.experiments.sam_runs import flatness_rows_steps
from flatcomp.lab.experiments.tuned import measurement_steps, model_measures
from flatcomp.lab.models import load_model, load_weights, save_weights
from flatcomp.lab.results import ResultsStore
from flatcomp.lab.train import default_device, fine_tune, time_steps


def _mask_overhead_units(profile: Profile) -> list[Unit]:
    return [dict(task=profile.tasks[0], optimizer=o) for o in ("adam", "sam")]


def _run_mask_overhead(profile: Profile, unit: Unit, steps: int = 12, repeats: int = 2) -> dict:
    """Seconds per step with and without 50% magnitude masks, on the same batches from the same
    pre-trained weights, alternating the two ``repeats`` times and keeping each one's fastest (a
    busy machine only ever adds time)."""
    from flatcomp.pruning import magnitude_masks, prunable_weights

    task = unit["task"]
    batch_list = timing_batches(profile, task, steps)
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


def _imp_units(profile: Profile) -> list[Unit]:
    """IMP curves: one seed, rounds 0 (dense) to ``imp_rounds``, with rewinding and (where the
    profile asks for it) without."""
    return [dict(task=t, optimizer=o, rewind=r, seed=profile.seeds[0], round=k)
            for t in profile.tasks for o in ("adam", "sam") for r in profile.imp_rewind
            for k in range(profile.imp_rounds + 1)]


# The IMP experiments and the prunable set each prunes (flatcomp.pruning.prunable_weights):
# "imp" Chen et al.'s, every encoder matrix and the pooler; "imp_encoder" the encoder only, the
# pooler kept dense, as all-MiniLM-L6-v2's pooler was never trained (it pools by averaging).
IMP_PRESETS = {"imp": "linear", "imp_encoder": "encoder"}
# The experiments that fine-tune tickets, and the IMP experiment whose chains pruned them.
TICKET_SOURCES = {"tickets": "imp", "transfer": "imp", "tickets_encoder": "imp_encoder",
                  "transfer_encoder": "imp_encoder"}
# The pooler-free lottery runs on every lottery task and seed, except at paper, whose BERT-base
# pooler was trained by next-sentence prediction; these tasks come first in the plan.
ENCODER_FIRST_TASKS = ("mrpc", "sst2")


def encoder_tasks(profile: Profile) -> tuple[str, ...]:
    """The tasks of the pooler-free lottery (``imp_encoder`` and its tickets): none at paper."""
    return () if profile.name == "paper" else profile.tasks


def _encoder_priority(profile: Profile, unit: Unit) -> int:
    """MRPC's and SST-2's pooler-free chains and tickets first (1), the other tasks after (2)."""
    return 1 if unit["task"] in ENCODER_FIRST_TASKS else 2


def chain_seed(profile: Profile, imp: str, seed: int) -> int:
    """The seed of the IMP chain whose ticket a fine-tune of seed ``seed`` uses: the ``imp``
    experiment runs the first seed only, ``imp_encoder`` every seed (each seed its own ticket)."""
    return profile.seeds[0] if imp == "imp" else seed


def _imp_encoder_units(profile: Profile) -> list[Unit]:
    """IMP with rewinding and the pooler kept dense: every seed, rounds 0 to ``imp_rounds``."""
    return [dict(task=t, optimizer=o, rewind=True, seed=s, round=k)
            for t in encoder_tasks(profile) for o in ("adam", "sam")
            for s in profile.seeds for k in range(profile.imp_rounds + 1)]


def _run_imp(profile: Profile, unit: Unit, experiment: str = "imp") -> dict:
    """One round of IMP (see :func:`flatcomp.pruning.iterative_magnitude_pruning`), over the
    prunable set of ``experiment`` (:data:`IMP_PRESETS`).

    Round 0 is the dense fine-tune (the ``finetune`` checkpoint), with its flatness and
    compression damage (:func:`~flatcomp.lab.experiments.tuned.model_measures`). Round k > 0 needs
    the masks that round k - 1 pruned: they are computed first if missing, and every round
    leaves its next masks (and, without rewinding, its trained weights) in the checkpoint cache.
    """
    from flatcomp import pruning

    task, optimizer, seed, k = unit["task"], unit["optimizer"], unit["seed"], unit["round"]
    lr, epochs, preset = profile.lr_for(task), profile.epochs_for(task), IMP_PRESETS[experiment]
    path = lambda k, kind: _imp_path(profile, unit, k, kind, experiment)
    if k == 0:
        model, summary = finetuned(profile, task, optimizer, seed)
        masks = None
    else:
        previous = {**unit, "round": k - 1}
        ResultsStore(profile).load_or_run(experiment, unit_id(previous),
                                          lambda: _run_imp(profile, previous, experiment), seed)
        masks, _ = pruning.load_masks(_cached(profile, path(k, "masks"), previous, experiment))
        start_state = None if unit["rewind"] else load_file(
            _cached(profile, path(k - 1, "weights"), previous, experiment))
        train, dev, cut = encoded_task(profile, task)
        train_fn = lambda model, m: fine_tune(model, train, dev, task, profile, optimizer, seed,
                                              masks=m, epochs=epochs, lr=lr)
        _, result = next(pruning.imp_rounds(
            lambda: load_model(profile, task, seed), train_fn, profile.imp_rounds,
            profile.imp_rate, unit["rewind"], start_round=k, start_masks=masks,
            start_state=start_state, preset=preset))
        model = result.model
        summary = fine_tune_summary(result, task, optimizer, seed, lr, epochs, train, dev, cut)
    next_sparsity = round((k + 1) * profile.imp_rate, 12) if k < profile.imp_rounds else None
    record = finish_imp_round(model, masks, unit, k, next_sparsity, summary, path, preset)
    if k == 0:  # the dense model, measured as every trained model is (its next masks are saved)
        record.update(model_measures(profile, task, model))
    return record


def _run_imp_encoder(profile: Profile, unit: Unit) -> dict:
    return _run_imp(profile, unit, "imp_encoder")


def finish_imp_round(model: torch.nn.Module, masks: dict | None, unit: Unit, k: int,
                     next_sparsity: float | None, summary: dict,
                     path: Callable[[int, str], Path], preset: str = "linear") -> dict:
    """The end of IMP round ``k``: the next round's masks pruned from the trained weights by
    global magnitude over the ``preset`` set to ``next_sparsity`` (None: the last round), the
    trained weights cached (``path(round, "masks" | "weights")``), and the round's record."""
    from flatcomp import pruning

    if next_sparsity is not None:
        next_masks = pruning.magnitude_masks(pruning.prunable_weights(model, preset),
                                             next_sparsity, masks)
        pruning.save_masks(next_masks, path(k + 1, "masks"),
                           {"unit": unit_id(unit), "pruned_after_round": k,
                            "device": summary["device"], "round_score": summary["best_score"]})
    save_weights(model, path(k, "weights"))
    return {**unit, **finetune_record(summary),
            "sparsity": pruning.sparsity_report(model, preset)["sparsity"]}


def ticket_sparsity(profile: Profile, task: str) -> float:
    """Chen et al.'s winning-ticket sparsity for ``task``, capped at what the profile's IMP reaches
    (the smoke profile prunes only two rounds)."""
    from flatcomp.lab.paper import TICKET_SPARSITY

    return min(TICKET_SPARSITY[task], round(profile.imp_rounds * profile.imp_rate, 12))


def _ticket_units(profile: Profile, tasks: tuple[str, ...] | None = None) -> list[Unit]:
    """The mask x optimizer table: random, Adam-found and SAM-found masks at the task's ticket
    sparsity, each fine-tuned from the pre-trained weights with Adam and with SAM, every seed."""
    tasks = profile.tasks if tasks is None else tasks
    return [dict(task=t, mask=m, optimizer=o, seed=s) for t in tasks
            for m in ("random", "adam", "sam") for o in ("adam", "sam") for s in profile.seeds]


def _encoder_ticket_units(profile: Profile) -> list[Unit]:
    """The mask x optimizer table of the pooler-free tickets: seed s uses the ticket of the
    ``imp_encoder`` chain of seed s."""
    return _ticket_units(profile, encoder_tasks(profile))


def _is_own_round(profile: Profile, unit: Unit, imp: str) -> bool:
    """A ticket on its own task, fine-tuned with the optimizer that found it, with its chain's
    seed: the same computation as the chain's round at the ticket sparsity."""
    return (unit.get("source", unit["task"]) == unit["task"] and unit["mask"] == unit["optimizer"]
            and unit["seed"] == chain_seed(profile, imp, unit["seed"]))


def _run_ticket(profile: Profile, unit: Unit, need_weights: bool = False,
                experiment: str = "tickets") -> dict:
    """Fine-tune the pre-trained model on the unit's task under its mask (:func:`ticket_masks`),
    the ticket of the unit's ``source`` task if it has one (transfer), else of its own task, from
    the IMP chains of ``TICKET_SOURCES[experiment]``. The record says where the mask came from
    (:func:`ticket_and_origin`).

    A ticket fine-tuned with the optimizer that found it, with its chain's seed, is the chain's
    own round at the ticket sparsity: see :func:`_imp_round_as_ticket`.
    """
    imp = TICKET_SOURCES[experiment]
    if _is_own_round(profile, unit, imp):
        return _imp_round_as_ticket(profile, unit, need_weights, imp)
    masks, origin = ticket_and_origin(profile, unit.get("source", unit["task"]), unit["mask"],
                                      unit["seed"], imp)
    return {**_fine_tune_masked(profile, unit, masks, imp), "ticket": origin}


def _run_encoder_ticket(profile: Profile, unit: Unit) -> dict:
    return _run_ticket(profile, unit, experiment="tickets_encoder")


def _run_encoder_transfer(profile: Profile, unit: Unit) -> dict:
    return _run_ticket(profile, unit, experiment="transfer_encoder")


def _imp_round_as_ticket(profile: Profile, unit: Unit, need_weights: bool,
                         imp: str = "imp") -> dict:
    """IMP's round at the ticket sparsity, which is the same computation as fine-tuning the
    ticket with the optimizer that found it: its stored record is reused, with the stored round
    that pruned the mask as the ticket's origin. Its weights are copied if they are in the
    checkpoint cache; if not, the round is trained again for them only when ``need_weights``
    (:func:`_ticket_model`)."""
    store = ResultsStore(profile)
    maker = ticket_imp_unit(profile, unit["task"], unit["mask"], imp, unit["seed"])
    trained_unit = {**maker, "round": maker["round"] + 1}
    pruned_by = store.load_or_run(imp, unit_id(maker), lambda: _run_imp(profile, maker, imp),
                                  unit["seed"])
    record = store.load_or_run(imp, unit_id(trained_unit),
                               lambda: _run_imp(profile, trained_unit, imp), unit["seed"])
    trained = _imp_path(profile, trained_unit, trained_unit["round"], "weights", imp)
    if trained.exists() or need_weights:
        path = _masked_weights_path(profile, unit, imp)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_cached(profile, trained, trained_unit, imp), path)
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


def ticket_masks(profile: Profile, task: str, mask: str, seed: int,
                 imp: str = "imp") -> dict[str, torch.Tensor]:
    """The ``adam`` or ``sam`` ticket of ``task``: the mask that IMP with rewinding (experiment
    ``imp``, chain :func:`chain_seed`) trains with at :func:`ticket_sparsity`, computed first if
    missing; or a ``random`` mask with as many weights per layer as the Adam ticket, at positions
    drawn with ``seed``."""
    return ticket_and_origin(profile, task, mask, seed, imp)[0]


def ticket_and_origin(profile: Profile, task: str, mask: str, seed: int,
                      imp: str = "imp") -> tuple[dict[str, torch.Tensor], dict]:
    """:func:`ticket_masks`, and where the ticket came from: the IMP round that pruned it (a random
    mask: the Adam ticket's), the device it trained on and its dev score there, beside the score
    in that round's stored record (the two differ when the masks were remade on another machine,
    see :func:`_cached`)."""
    from flatcomp import pruning

    masks, meta = pruning.load_masks(_ticket_path(profile, task, mask, imp, seed))
    maker = _ticket_maker(profile, task, mask, imp, seed)
    stored = ResultsStore(profile).load(imp, unit_id(maker))
    origin = {"imp_round": unit_id(maker), "device": meta.get("device"),
              "round_score": meta.get("round_score"),
              "stored_round_score": stored["best_score"] if stored else None}
    return (pruning.random_masks(masks, seed=seed) if mask == "random" else masks), origin


def ticket_file(profile: Profile, task: str, mask: str, imp: str = "imp",
                seed: int | None = None) -> Path:
    """Where the checkpoint cache keeps ``task``'s Adam or SAM ticket (for ``random``: Adam's,
    from which the random masks are drawn) of the ``imp`` chain of ``seed`` (for ``imp``: its
    only chain). It may not exist yet: see :func:`ticket_masks`."""
    source = _ticket_maker(profile, task, mask, imp, seed)
    return _imp_path(profile, source, source["round"] + 1, "masks", imp)


def _ticket_path(profile: Profile, task: str, mask: str, imp: str = "imp",
                 seed: int | None = None) -> Path:
    """:func:`ticket_file`, made first if missing (IMP trained, or remade, up to the ticket)."""
    source = _ticket_maker(profile, task, mask, imp, seed)
    ResultsStore(profile).load_or_run(imp, unit_id(source),
                                      lambda: _run_imp(profile, source, imp), source["seed"])
    return _cached(profile, ticket_file(profile, task, mask, imp, seed), source, imp)


def _ticket_maker(profile: Profile, task: str, mask: str, imp: str = "imp",
                  seed: int | None = None) -> Unit:
    """The IMP round that pruned ``task``'s ``mask`` ticket (for a random mask: Adam's)."""
    return ticket_imp_unit(profile, task, "adam" if mask == "random" else mask, imp, seed)


def _cached(profile: Profile, path: Path, maker: Unit, experiment: str = "imp") -> Path:
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
        _run_imp(profile, maker, experiment)
    return path


def ticket_imp_unit(profile: Profile, task: str, optimizer: str, imp: str = "imp",
                    seed: int | None = None) -> Unit:
    """The round of experiment ``imp`` (with rewinding; its chain of :func:`chain_seed`) after
    which ``task``'s ticket is pruned."""
    k = round(ticket_sparsity(profile, task) / profile.imp_rate)
    seed = chain_seed(profile, imp, profile.seeds[0] if seed is None else seed)
    return dict(task=task, optimizer=optimizer, rewind=True, seed=seed, round=k - 1)


def _fine_tune_masked(profile: Profile, unit: Unit, masks: dict[str, torch.Tensor],
                      imp: str = "imp") -> dict:
    """The pre-trained model fine-tuned on ``unit["task"]`` under ``masks``, as a results record
    (its sparsity over the prunable set of ``imp``'s chains)."""
    from flatcomp.pruning import sparsity_report

    task, optimizer, seed = unit["task"], unit["optimizer"], unit["seed"]
    train, dev, cut = encoded_task(profile, task)
    lr, epochs = profile.lr_for(task), profile.epochs_for(task)
    result = fine_tune(load_model(profile, task, seed), train, dev, task, profile, optimizer, seed,
                       masks=masks, epochs=epochs, lr=lr)
    save_weights(result.model, _masked_weights_path(profile, unit, imp))
    summary = fine_tune_summary(result, task, optimizer, seed, lr, epochs, train, dev, cut)
    return {**unit, **finetune_record(summary),
            "sparsity": sparsity_report(result.model, IMP_PRESETS[imp])["sparsity"]}


def _masked_weights_path(profile: Profile, unit: Unit, imp: str = "imp") -> Path:
    """Cache file of a fine-tune under a ticket of experiment ``imp``'s chains: the unit's name
    and the training config's key."""
    task = unit["task"]
    digest = training_digest(profile, task, unit["optimizer"], unit["seed"],
                              profile.lr_for(task), profile.epochs_for(task))
    folder = "masked" if imp == "imp" else f"masked-{IMP_PRESETS[imp]}"
    return cache_dir() / profile.name / folder / f"{unit_id(unit)}-{digest}.safetensors"


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
    score = cpu_fp32_scorer(profile, task, dev)
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
    score = cpu_fp32_scorer(profile, task, dev)(model)  # before sharpness moves it to the device
    return {**unit, **_subnetwork_sharpness(profile, task, model, masks), "best_score": score,
            "imp_record_score": record["best_score"], "sparsity": record["sparsity"]}


def _subnetwork_sharpness(profile: Profile, task: str, model: torch.nn.Module,
                          masks: dict[str, torch.Tensor] | None) -> dict:
    """S_rho of ``model`` on the profile's fixed flatness rows, perturbing only inside ``masks``."""
    from flatcomp.flatness import sharpness

    settings = FLATNESS_SETTINGS[profile.name]
    sharp = sharpness(model.to(default_device()).eval(), fixed_rows_loss(profile, task),
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


def _transfer_units(profile: Profile, grid: tuple[str, ...] | None = None,
                    seeds: tuple[int, ...] | None = None) -> list[Unit]:
    """Ticket transfer (the paper's Figures 8 and 9): the Adam and SAM tickets of every source
    task, fine-tuned with Adam and with SAM on every other task of the transfer grid
    (:meth:`Profile.transfer_grid`), first seed. (The diagonal, source = target, is the
    ``tickets`` experiment.)"""
    grid = profile.transfer_grid() if grid is None else grid
    return [dict(source=a, task=b, mask=m, optimizer=o, seed=s)
            for a in grid for b in grid if a != b
            for m in ("adam", "sam") for o in ("adam", "sam")
            for s in seeds or profile.seeds[:1]]


def _encoder_transfer_units(profile: Profile) -> list[Unit]:
    """Transfer of the pooler-free tickets over the transfer grid, every seed (seed s moves the
    tickets of the chains of seed s)."""
    grid = tuple(t for t in profile.transfer_grid() if t in encoder_tasks(profile))
    return _transfer_units(profile, grid, profile.seeds)


def _imp_path(profile: Profile, unit: Unit, k: int, kind: str, experiment: str = "imp") -> Path:
    """Cache file of round ``k``'s masks (those it trains with) or trained weights."""
    weights, _ = checkpoint_paths(profile, unit["task"], unit["optimizer"], unit["seed"],
                                   profile.lr_for(unit["task"]), profile.epochs_for(unit["task"]))
    run = f"{'rewind' if unit['rewind'] else 'continue'}-rate{profile.imp_rate:g}"
    if IMP_PRESETS[experiment] != "linear":
        run += f"-{IMP_PRESETS[experiment]}"
    return weights.parent / "imp" / f"{weights.stem}-{run}-round{k}.{kind}.safetensors"



# ---------------------------------------------------------------- the plan's jobs and costs

def lottery_jobs(profile: Profile) -> list[Job]:
    """Every unit of the lottery experiments, as jobs in the order they should start:
    IMP with rewinding (one chain per task and optimizer) and its ticket, then per task the mask x
    optimizer table, the mask analysis and compound compression, then ticket transfer, IMP
    without rewinding, the flatness of IMP's rounds and of the tickets, and the tickets again with
    a dense pooler."""
    lot = profile.for_lottery()
    seed = lot.seeds[0]

    def imp(task: str, optimizer: str, rewind: bool, k: int) -> tuple[str, str]:
        return "imp", unit_id(dict(task=task, optimizer=optimizer, rewind=rewind, seed=seed,
                                   round=k))

    def pruned(task: str, optimizer: str, later: int = 0) -> tuple[str, str]:  # the round that pruned it
        return imp(task, optimizer, True, ticket_imp_unit(lot, task, optimizer)["round"] + later)

    def ticket(unit: dict) -> tuple[str, str]:
        return "tickets", unit_id(unit)

    chains = [(t, o) for t in lot.tasks for o in ("adam", "sam")]
    jobs = []
    if True in lot.imp_rewind:
        jobs += [Job("imp", dict(task=[t], optimizer=[o], rewind=[True])) for t, o in chains]
    jobs += [Job("imp_encoder", dict(task=[t], optimizer=[o], seed=[s]))
             for s in lot.seeds for t in encoder_tasks(lot) for o in ("adam", "sam")]
    # The ticket file: made by its chain here, or remade where the chain is stored from elsewhere.
    jobs += [TicketJob("ticket", dict(task=[t], mask=[o]), (pruned(t, o),)) for t, o in chains]
    found = {(t, o): ticket_file(lot, t, o) for t, o in chains}
    tickets = _ticket_units(lot)
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
            ticket(u) for u in _compound_units(lot) if u["task"] == task)))
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
    return jobs + encoder_jobs(lot)


def encoder_jobs(lot: Profile) -> list[Job]:
    """The pooler-free tickets' jobs, one per seed, each waiting for the rounds of that seed's
    ``imp_encoder`` chains that pruned its tickets: the mask x optimizer table per task, then
    transfer per pair of tasks."""
    def pruned(task: str, mask: str, seed: int, later: int = 0) -> tuple[str, str]:
        maker = _ticket_maker(lot, task, mask, "imp_encoder", seed)
        return "imp_encoder", unit_id({**maker, "round": maker["round"] + later})

    jobs: list[Job] = []
    for seed in lot.seeds:
        found = {(t, m): ticket_file(lot, t, m, "imp_encoder", seed)
                 for t in encoder_tasks(lot) for m in ("adam", "sam")}
        jobs += [EncoderTicketJob("ticket_encoder", dict(task=[t], mask=[m], seed=[seed]),
                                  (pruned(t, m, seed),)) for t, m in found]
        for task in encoder_tasks(lot):
            for mask in ("random", "adam", "sam"):
                for optimizer in ("adam", "sam"):
                    needs = (found[task, "adam" if mask == "random" else mask],)
                    if mask == optimizer:
                        needs += (pruned(task, mask, seed, later=1),)
                    jobs.append(Job("tickets_encoder", dict(task=[task], mask=[mask],
                                                            optimizer=[optimizer], seed=[seed]),
                                    needs))
        grid = [t for t in lot.transfer_grid() if t in encoder_tasks(lot)]
        jobs += [Job("transfer_encoder", dict(source=[a], task=[b], seed=[seed]),
                     (found[a, "adam"], found[a, "sam"])) for a in grid for b in grid if a != b]
    return jobs


plan_jobs = lottery_jobs  # the plan takes this chapter's jobs in this order (flatcomp.lab.plan)


def _imp_cost(profile: Profile, unit: Unit, experiment: str = "imp") -> float:
    """Round 0 is the dense fine-tune (free if cached); every later round one masked fine-tune,
    and the rounds before it again where they are stored but the masks it trains with are not in
    this machine's checkpoint cache (a chain cut short on another machine, or a fresh one)."""
    k = unit["round"]
    if k == 0:
        return model_steps(profile, unit["task"], unit["optimizer"], unit["seed"]) + \
            measurement_steps(profile, unit["task"])
    previous = unit_id({**unit, "round": k - 1})
    remade = k if ResultsStore(profile).path(experiment, previous).exists() \
        and not _imp_path(profile, unit, k, "masks", experiment).exists() else 0
    return (1 + remade) * fine_tune_steps(profile, unit["task"], unit["optimizer"])


def _imp_encoder_cost(profile: Profile, unit: Unit) -> float:
    return _imp_cost(profile, unit, "imp_encoder")


def _ticket_cost(profile: Profile, unit: Unit, imp: str = "imp") -> float:
    """A masked fine-tune, except a ticket that is IMP's own round (:func:`_imp_round_as_ticket`)."""
    if _is_own_round(profile, unit, imp):
        return 0.0
    return fine_tune_steps(profile, unit["task"], unit["optimizer"])


def _encoder_ticket_cost(profile: Profile, unit: Unit) -> float:
    return _ticket_cost(profile, unit, "imp_encoder")


def _compound_cost(profile: Profile, unit: Unit) -> float:
    return dev_pass_steps(profile, unit["task"], 3)


def _subnetwork_flatness_cost(profile: Profile, unit: Unit) -> float:
    passes = FLATNESS_SETTINGS[profile.name]["sharpness_steps"] + 1
    return flatness_rows_steps(profile, passes) + dev_pass_steps(profile, unit["task"])


def _mask_overhead_cost(profile: Profile, unit: Unit) -> float:
    return 2 * 2 * 12 * (2 if unit["optimizer"] == "sam" else 1)


class TicketJob(FileJob):
    """A task's Adam or SAM ticket file of the ``imp`` chain (``filters``: the task and the mask),
    made by its IMP chain on this machine, or remade up to the ticket where the chain is stored
    but this machine's checkpoint cache lacks the file (results brought from another machine, or
    a fresh machine)."""

    imp = "imp"

    def _ticket(self) -> tuple[str, str, str, int | None]:
        """The task, the mask, the IMP experiment and the chain's seed (None: the first)."""
        return (self.filters["task"][0], self.filters["mask"][0], self.imp,
                self.filters.get("seed", [None])[0])

    def at(self, profile: Profile) -> Profile:
        return profile.for_lottery()

    def makes(self, profile: Profile) -> list[Path]:
        return [ticket_file(self.at(profile), *self._ticket())]

    def cost(self, profile: Profile) -> float:
        """:func:`ticket_job_cost`, but nothing where the chain is not stored: the plan runs the
        chain before this job, and the chain leaves the file here."""
        lot = self.at(profile)
        task, mask, imp, seed = self._ticket()
        maker = _ticket_maker(lot, task, mask, imp, seed)
        if not ResultsStore(lot).path(imp, unit_id(maker)).exists():
            return 0.0
        return ticket_job_cost(lot, task, mask, imp, seed)

    def run(self, profile: Profile) -> None:
        lot = self.at(profile)
        task, mask, imp, seed = self._ticket()
        ticket_and_origin(lot, task, mask, lot.seeds[0] if seed is None else seed, imp)


class EncoderTicketJob(TicketJob):
    """A ticket file of the ``imp_encoder`` chain of one seed (``filters``: task, mask, seed)."""

    imp = "imp_encoder"


def _imp_makes(profile: Profile, unit: Unit) -> tuple:
    """Round 0 leaves the dense model in the checkpoint cache (IMP without rewinding starts from
    it); a chain with rewinding leaves its ticket's masks (the tickets wait on them)."""
    made: tuple = ()
    if unit["round"] == 0:
        made += (finetuned_file(profile, unit["task"], unit["optimizer"], unit["seed"]),)
    if unit["rewind"]:
        made += (ticket_file(profile, unit["task"], unit["optimizer"]),)
    return made


def _imp_encoder_makes(profile: Profile, unit: Unit) -> tuple:
    """The round that prunes a ticket leaves its file in the checkpoint cache."""
    maker = ticket_imp_unit(profile, unit["task"], unit["optimizer"], "imp_encoder", unit["seed"])
    return (ticket_file(profile, unit["task"], unit["optimizer"], "imp_encoder", unit["seed"]),) \
        if maker["round"] == unit["round"] else ()


def ticket_job_cost(profile: Profile, task: str, mask: str, imp: str = "imp",
                    seed: int | None = None) -> float:
    """Making a ticket file here: nothing if the cache has it, else its IMP chain up to it."""
    if ticket_file(profile, task, mask, imp, seed).exists():
        return 0.0
    maker = _ticket_maker(profile, task, mask, imp, seed)
    return (maker["round"] + 1) * fine_tune_steps(profile, task, maker["optimizer"])


EXPERIMENTS = (
    Experiment("imp", "iterative magnitude pruning, one unit per round",
               _imp_units, _run_imp, "lottery", priority=1, cost=_imp_cost, at=Profile.for_lottery,
               makes=_imp_makes),
    Experiment("imp_encoder", "IMP with rewinding, the pooler kept dense (out of the prunable "
               "set: MiniLM's pooler was never trained), every seed",
               _imp_encoder_units, _run_imp_encoder, "lottery",
               priority=_encoder_priority, cost=_imp_encoder_cost, at=Profile.for_lottery,
               makes=_imp_encoder_makes),
    Experiment("tickets_encoder", "the mask x optimizer table of the pooler-free tickets, each "
               "seed with its own chain's ticket", _encoder_ticket_units, _run_encoder_ticket,
               "lottery", priority=_encoder_priority, cost=_encoder_ticket_cost, at=Profile.for_lottery),
    Experiment("transfer_encoder", "the pooler-free tickets of one task fine-tuned on another, "
               "every seed", _encoder_transfer_units, _run_encoder_transfer, "lottery",
               priority=2, cost=_encoder_ticket_cost, at=Profile.for_lottery),
    Experiment("tickets", "random, Adam and SAM masks, each fine-tuned with Adam and with SAM",
               _ticket_units, _run_ticket, "lottery", priority=1, cost=_ticket_cost,
               at=Profile.for_lottery),
    Experiment("compound", "a winning ticket, then dynamic int8",
               _compound_units, _run_compound, "lottery", priority=2, cost=_compound_cost,
               at=Profile.for_lottery),
    Experiment("mask_analysis", "per-layer sparsity and overlap of the Adam and SAM tickets",
               _mask_analysis_units, _run_mask_analysis, "lottery", priority=2, cost=no_cost,
               at=Profile.for_lottery),
    Experiment("transfer", "tickets of one task fine-tuned on another",
               _transfer_units, _run_ticket, "lottery", priority=2, cost=_ticket_cost,
               at=Profile.for_lottery),
    Experiment("imp_flatness", "sharpness of every IMP round's subnetwork beside its score",
               _imp_flatness_units, _run_imp_flatness, "lottery", priority=3,
               cost=_subnetwork_flatness_cost, at=Profile.for_lottery),
    Experiment("ticket_flatness", "sharpness of every ticket's subnetwork beside its score",
               _ticket_units, _run_ticket_flatness, "lottery", priority=3,
               cost=_subnetwork_flatness_cost, at=Profile.for_lottery),
    Experiment("pooler_check", "the Adam and SAM tickets fine-tuned again with a dense pooler",
               _pooler_check_units, _run_pooler_check, "lottery", priority=3,
               cost=_ticket_cost, at=Profile.for_lottery),
    Experiment("mask_overhead", "seconds per step with and without pruning masks",
               _mask_overhead_units, _run_mask_overhead, "lottery", priority=3,
               cost=_mask_overhead_cost, alone=True),
)
