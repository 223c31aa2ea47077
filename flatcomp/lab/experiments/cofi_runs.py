"""Chapter 5, structured pruning with CoFi: does a flat (SAM) teacher make a better compact student?

Every unit prunes the *pre-trained* model (``load_model``, the same start for both teachers) to a
target sparsity of its encoder layers' matrices with CoFi's gates (:mod:`flatcomp.cofi`) while
distilling a fine-tuned teacher of the SAM chapter (``finetuned(profile, task, "adam" | "sam",
seed)``), then fine-tunes the compact model with distillation (:mod:`flatcomp.lab.cofi_train`). An
Adam unit and a SAM unit of the same task, target and seed differ only in the teacher: the same
student initialisation (its hash is recorded), the same batches, the same gate noise.

The units come from the profile's ``cofi`` settings, each list in priority order::

    cofi       the first two tasks at the first two targets, both teachers, the first seed
               (at small: SST-2 and QNLI at 95% and 70%)
    cofi_more  the other targets and tasks at the first seed, then every unit at the other seeds

A unit is a task, the teacher's optimizer, the target sparsity and the seed
(``sst2-adam-sparsity0.95-seed0``).
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch

from flatcomp.lab.config import Profile
from flatcomp.lab.data import task_rows
from flatcomp.lab.experiments.core import (Experiment, Unit, cpu_fp32_scorer, dev_pass_steps,
                                           encoded_task, finetuned, model_steps, unit_id)

HEADLINE = 2  # the first HEADLINE tasks and targets of the profile's lists, at the first seed
LATENCY_BATCHES = (1, 32)


def cofi_settings(profile: Profile) -> dict:
    """The profile's ``cofi`` settings (tasks, sparsities, seeds default to the profile's)."""
    c = dict(profile.cofi)
    c.setdefault("tasks", profile.tasks)
    c.setdefault("seeds", profile.seeds)
    c.setdefault("sparsities", (0.95, 0.7, 0.9, 0.5))
    return c


def cofi_unit(task: str, sparsity: float, optimizer: str, seed: int) -> Unit:
    return dict(task=task, optimizer=optimizer, sparsity=sparsity, seed=seed)


def all_cofi_units(profile: Profile) -> list[Unit]:
    """Every unit in priority order: the headline ones, the other targets and tasks at the first
    seed, then the same order for each further seed."""
    c = cofi_settings(profile)
    tasks, sparsities, seeds = list(c["tasks"]), list(c["sparsities"]), list(c["seeds"])
    units = []
    for seed in seeds:
        pairs = [(t, s) for t in tasks[:HEADLINE] for s in sparsities[:HEADLINE]]
        pairs += [(t, s) for t in tasks[:HEADLINE] for s in sparsities[HEADLINE:]]
        pairs += [(t, s) for t in tasks[HEADLINE:] for s in sparsities]
        units += [cofi_unit(t, s, o, seed) for t, s in pairs for o in ("adam", "sam")]
    return units


def _is_headline(profile: Profile, unit: Unit) -> bool:
    c = cofi_settings(profile)
    return (unit["seed"] == list(c["seeds"])[0] and unit["task"] in list(c["tasks"])[:HEADLINE]
            and unit["sparsity"] in list(c["sparsities"])[:HEADLINE])


def _headline_units(profile: Profile) -> list[Unit]:
    return [u for u in all_cofi_units(profile) if _is_headline(profile, u)]


def _more_units(profile: Profile) -> list[Unit]:
    return [u for u in all_cofi_units(profile) if not _is_headline(profile, u)]


# ---------------------------------------------------------------- one unit

def _run_cofi(profile: Profile, unit: Unit) -> dict:
    """Prune, compact and fine-tune a student of the unit's task to its target sparsity,
    distilling the unit's teacher; score everything on the CPU in fp32; time both models."""
    from flatcomp import quantization as q
    from flatcomp.lab.cofi_train import (cofi_prune, encoder_matrix_params, kept_matrix_params,
                                         schedule_for)
    from flatcomp.lab.models import load_model
    from flatcomp.lab.train import default_device

    task, optimizer, seed, target = unit["task"], unit["optimizer"], unit["seed"], unit["sparsity"]
    schedule = schedule_for(profile, task)
    teacher, summary = finetuned(profile, task, optimizer, seed, progress=False)
    train, dev, cut = encoded_task(profile.with_overrides(max_length=schedule.max_length), task)
    student = load_model(profile, task, seed)
    device = default_device()
    result = cofi_prune(student, teacher, train, dev, task, profile, schedule, target, seed,
                        device)

    cpu = torch.device("cpu")
    teacher, small = teacher.to(cpu).eval(), result.model.to(cpu).eval()
    gated = result.gated_model.to(cpu).eval()
    result.gates.to(cpu)
    score = cpu_fp32_scorer(profile, task, dev)
    gated_score = score(gated)
    pruned_small = _compact_of(gated, result.gates)  # the kept pruning epoch, not fine-tuned
    kept = small.config.cofi_kept
    d_head = result.gates.d_head
    full = result.gates.full_params()
    compact_matrix = encoder_matrix_params(small)
    assert compact_matrix == kept_matrix_params(kept, d_head), (compact_matrix, kept)
    removed_attention = [i for i, h in enumerate(kept["heads"]) if h == 0]
    removed_ffn = [i for i, f in enumerate(kept["ffn"]) if f == 0]
    return {
        **unit,
        "target_sparsity": target,
        "teacher": {"optimizer": optimizer, "dev_score": summary["best_score"],
                    "best_epoch": summary["best_epoch"], "dev_score_cpu_fp32": score(teacher),
                    "max_length": profile.max_length},
        "expected_sparsity": result.expected_sparsity,
        "realised_sparsity": 1 - compact_matrix / full,
        "reached_target": result.reached_target,
        "prune_epoch": result.prune_epoch,
        "finetune_epoch": result.finetune_epoch,
        "encoder_params": {"dense": full, "compact": compact_matrix},
        "params": {"dense": _count(teacher), "compact": _count(small)},
        "dev_score": score(small),
        "gated_dev_score": gated_score,
        "compact_dev_score_pruned": score(pruned_small),
        "max_logit_gap": _max_logit_gap(gated, pruned_small, dev, profile),
        "kept": {"heads": kept["heads"], "ffn": kept["ffn"], "hidden": kept["hidden"],
                 "attention_removed": removed_attention, "ffn_removed": removed_ffn,
                 "layers_removed": sorted(set(removed_attention) & set(removed_ffn)),
                 "of": {"heads": result.gates.num_heads, "ffn": result.gates.d_ffn,
                        "hidden": result.gates.d_model, "layers": result.gates.num_layers}},
        "latency": _latency(teacher, small, schedule.max_length,
                            int(profile.cofi.get("latency_repeats", 10))),
        "history": result.history,
        "trace": result.trace,
        "schedule": asdict(schedule),
        "student_init_sha256": result.init_sha256,
        "steps": result.steps, "seconds_per_step": result.seconds_per_step,
        "wall_seconds": result.wall_seconds, "train_rows": len(train), "dev_rows": len(dev),
        "device": str(device), "data_cut": cut,
    }


def _compact_of(gated: torch.nn.Module, gates) -> torch.nn.Module:
    from flatcomp.cofi import compact

    return compact(gated, gates).eval()


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def _max_logit_gap(gated: torch.nn.Module, small: torch.nn.Module, dev, profile: Profile) -> float:
    """max |gated logits - compact logits| over the first two dev batches (fp32, CPU)."""
    from flatcomp.lab.data import batches

    gap = 0.0
    for i, batch in enumerate(batches(dev, profile.batch_size)):
        if i == 2:
            break
        batch = {k: v for k, v in batch.items() if k != "labels"}
        gap = max(gap, float((gated(**batch).logits - small(**batch).logits).abs().max()))
    return gap


def _latency(dense: torch.nn.Module, small: torch.nn.Module, seq_len: int,
             repeats: int) -> list[dict]:
    """CPU seconds per forward pass of the dense (teacher-sized) and the compact model, full-length
    rows of random tokens, 2 threads; compact rows add ``speedup``. Measured inside the unit,
    possibly beside other jobs of the plan: compare rows of one record, not across records."""
    from flatcomp import quantization as q

    generator = torch.Generator().manual_seed(0)
    rows = []
    for batch_size in LATENCY_BATCHES:
        ids = torch.randint(1000, dense.config.vocab_size, (batch_size, seq_len),
                            generator=generator)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        timed = {name: q.benchmark_latency(m, batch, threads=2, repeats=repeats)
                 for name, m in (("dense", dense), ("compact", small))}
        for name, row in timed.items():
            row = {"model": name, "batch_size": batch_size, "seq_len": seq_len, **row}
            if name == "compact":
                row["speedup"] = timed["dense"]["mean_s"] / row["mean_s"]
            rows.append(row)
    return rows


# ---------------------------------------------------------------- plan: needs and cost

def _teacher_unit(unit: Unit) -> Unit:
    return dict(task=unit["task"], optimizer=unit["optimizer"], seed=unit["seed"])


def _needs(profile: Profile, unit: Unit) -> tuple:
    """The teacher's ``finetune`` unit where the SAM chapter has it at this profile; else nothing
    (the unit then trains its teacher itself, and its cost says so)."""
    from flatcomp.lab.experiments.sam_runs import _finetune_units

    teacher = unit_id(_teacher_unit(unit))
    if any(unit_id(u) == teacher for u in _finetune_units(profile)):
        return (("finetune", teacher),)
    return ()


def _cost(profile: Profile, unit: Unit) -> float:
    """In training steps: the teacher if the cache lacks it (and no unit of the plan trains it
    first); pruning epochs x batches x 1.5 (the
    gated student's step and the teacher's forward, a third of a step); fine-tune epochs x
    batches x (1/3 + the compact model's share, 1 - sparsity, at least 0.2); a dev pass per epoch
    and per extra candidate after the warm-up, and six more (the teacher, the gated and compact
    models twice in fp32 on the CPU); about 20 steps of latency measurement."""
    from flatcomp.lab.cofi_train import schedule_for

    task, s = unit["task"], schedule_for(profile, unit["task"])
    steps = math.ceil(task_rows(task, profile)[0] / s.batch_size)
    teacher = model_steps(profile, task, unit["optimizer"], unit["seed"], _needs(profile, unit))
    prune = s.prune_epochs * steps * 1.5
    finetune = s.finetune_epochs * steps * (1 / 3 + max(0.2, 1 - unit["sparsity"]))
    length = s.max_length / profile.max_length  # shorter rows: cheaper steps (roughly)
    candidates = (s.prune_epochs - s.warmup_epochs) * (s.evals_per_epoch - 1)
    passes = dev_pass_steps(profile, task, s.prune_epochs + candidates + s.finetune_epochs + 6)
    return teacher + (prune + finetune + passes) * length + 20


EXPERIMENTS = (
    Experiment("cofi", "CoFi structured pruning distilled from an Adam or a SAM teacher: the "
               "headline tasks and target sparsities, first seed", _headline_units, _run_cofi,
               "cofi", priority=1, cost=_cost, needs=_needs),
    Experiment("cofi_more", "CoFi: the other target sparsities and tasks, then more seeds",
               _more_units, _run_cofi, "cofi", priority=2, cost=_cost, needs=_needs),
)
