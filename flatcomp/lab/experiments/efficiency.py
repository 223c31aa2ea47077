"""Chapter 8, efficiency and scale: what SAM costs, and whether its cheaper variants keep what
it buys for compression.

``bench`` times, in one process and on the same batches from the same weights, every optimizer's
training step against Adam's, a masked step against a dense one, and int8 against fp32
inference (``python -m flatcomp bench``). ``variants`` fine-tunes Adam, SAM and each cheaper
variant (:data:`flatcomp.lab.train.VARIANTS`) on the same tasks and seeds, at the lottery chapter's
short schedule, and measures what the compression chapters measure on each model: the int8 drop
and the bit sweep, the dev score after one-shot global magnitude pruning, and the sharpness.
"""

from __future__ import annotations

import copy

import torch

from flatcomp.lab.config import Profile
from flatcomp.lab.experiments.core import (Experiment, Unit, cpu_fp32_scorer, encoded_task,
                                           finetune_record, finetuned, model_steps, timing_batches)
from flatcomp.lab.experiments.lottery import _subnetwork_sharpness
from flatcomp.lab.experiments.quantization_runs import QUANT_BITS
from flatcomp.lab.experiments.sam_runs import flatness_rows_steps
from flatcomp.lab.experiments.tuned import measurement_steps, model_measures
from flatcomp.lab.models import load_model
from flatcomp.lab.train import VARIANTS, time_steps

# The tasks the variants are fine-tuned on, per profile (the SAM chapter's first tasks).
EFFICIENCY_TASKS = {"smoke": ("mrpc",), "small": ("mrpc", "sst2"), "paper": ("mrpc", "sst2")}
ONE_SHOT_SPARSITIES = (0.5, 0.7)
BENCH_STEPS = 12  # the first two untimed
COMPARED = ("adam", "sam") + VARIANTS


# ---------------------------------------------------------------- bench

def _bench_units(profile: Profile) -> list[Unit]:
    return [dict(task=profile.tasks[0])]


def _run_bench(profile: Profile, unit: Unit) -> dict:
    """Seconds per training step of every optimizer and of masked Adam and SAM, and int8 against
    fp32 latency, each also as a ratio to its baseline (Adam; dense; fp32)."""
    from flatcomp import quantization as q
    from flatcomp.pruning import magnitude_masks, prunable_weights

    task = unit["task"]
    batch_list = timing_batches(profile, task, BENCH_STEPS)
    step = {o: time_steps(load_model(profile, task, 0), batch_list, o, profile) for o in COMPARED}
    masks = magnitude_masks(prunable_weights(load_model(profile, task, 0)), 0.5)
    masked = {o: time_steps(load_model(profile, task, 0), batch_list, o, profile, masks=masks)
              for o in ("adam", "sam")}
    model = load_model(profile, task, 0).cpu().eval()
    generator = torch.Generator().manual_seed(0)

    def make_batch(batch_size: int, length: int) -> dict:
        ids = torch.randint(0, model.config.vocab_size, (batch_size, length), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    latency = q.compare_speed(model, make_batch, seq_len=profile.max_length, threads=2)
    mean = {(r["precision"], r["batch_size"]): r["mean_s"] for r in latency}
    return {**unit, "steps_timed": BENCH_STEPS - 2, "batch_size": profile.batch_size,
            "seconds_per_step": step, "masked_seconds_per_step": masked,
            "over_adam": {o: step[o] / step["adam"] for o in COMPARED},
            "masked_over_dense": {o: masked[o] / step[o] for o in masked},
            "int8_over_fp32": {str(b): mean["int8", b] / mean["fp32", b] for b in (1, 32)},
            "latency": latency, "threads": torch.get_num_threads()}


def _bench_cost(profile: Profile, unit: Unit) -> float:
    passes = sum(2 if o != "adam" else 1 for o in COMPARED) + 3
    return BENCH_STEPS * passes + 40


# ---------------------------------------------------------------- the variants' models

def _variant_units(profile: Profile) -> list[Unit]:
    """Adam, SAM and every variant on each efficiency task, the first seed of all first."""
    tasks = EFFICIENCY_TASKS[profile.name]
    return [dict(task=t, optimizer=o, seed=s) for s in profile.seeds for t in tasks
            for o in COMPARED]


def _run_variant(profile: Profile, unit: Unit) -> dict:
    """A fine-tune with the unit's optimizer, then on the CPU in fp32: its dev score, the drop
    after dynamic int8, the score with weights rounded to k bits, the score after one-shot global
    magnitude pruning (no retraining), and its sharpness on the fixed flatness rows; and what
    every trained model records (:func:`~flatcomp.lab.experiments.tuned.model_measures`)."""
    from flatcomp import quantization as q

    task = unit["task"]
    model, summary = finetuned(profile, task, unit["optimizer"], unit["seed"])
    model = model.cpu().eval()
    _, dev, _ = encoded_task(profile, task)
    score = cpu_fp32_scorer(profile, task, dev)
    fp32 = score(model)
    bits = {str(b): score(q.fake_quantize_weights(model, b)) for b in QUANT_BITS}
    pruned = {f"{s:g}": score(one_shot_pruned(model, s)) for s in ONE_SHOT_SPARSITIES}
    int8 = score(q.quantize_dynamic_int8(model))
    sharp = _subnetwork_sharpness(profile, task, model, None)
    return {**finetune_record(summary), "fp32": fp32, "int8": int8, "int8_drop": fp32 - int8,
            "bits": bits, "one_shot": pruned, "sharpness": sharp["sharpness"],
            "flatness_loss": sharp["loss"], **model_measures(profile, task, model)}


def one_shot_pruned(model: torch.nn.Module, sparsity: float) -> torch.nn.Module:
    """A copy of ``model`` with the smallest ``sparsity`` of its prunable weights set to zero."""
    from flatcomp.lab.train import apply_masks
    from flatcomp.pruning import magnitude_masks, prunable_weights

    pruned = copy.deepcopy(model)
    apply_masks(pruned, magnitude_masks(prunable_weights(pruned), sparsity))
    return pruned


def _variant_cost(profile: Profile, unit: Unit) -> float:
    from flatcomp.lab.experiments.core import dev_pass_steps

    model = model_steps(profile, unit["task"], unit["optimizer"], unit["seed"])
    evaluations = dev_pass_steps(profile, unit["task"], 2 + len(QUANT_BITS) +
                                 len(ONE_SHOT_SPARSITIES))
    return model + evaluations + flatness_rows_steps(profile, 6) + \
        measurement_steps(profile, unit["task"])


EXPERIMENTS = (
    Experiment("bench", "every optimizer's step, a masked step and int8 inference, each against "
               "its baseline, on the same batches", _bench_units, _run_bench, "efficiency",
               priority=0, cost=_bench_cost, alone=True),
    Experiment("variants", "Adam, SAM and the cheaper SAM variants fine-tuned on the same tasks "
               "and seeds, then int8, k-bit, one-shot pruning and sharpness",
               _variant_units, _run_variant, "efficiency", priority=1, cost=_variant_cost,
               at=Profile.for_lottery),
)
