"""Chapter 6, quantization: every fine-tuned model after dynamic int8 and k-bit weight rounding,
the second-order prediction of the loss increase, and what int8 saves in size and time."""

from __future__ import annotations

import torch

from flatcomp.lab.config import Profile
from flatcomp.lab.experiments.core import (FLATNESS_SETTINGS, Experiment, Unit, adam_sam_units,
                                           cpu_fp32_scorer, dense_priority, dense_units, dev_labels,
                                           dev_pass_steps, encoded_task, finetune_model_steps,
                                           finetuned, model_on_fixed_rows, needs_finetune)
from flatcomp.lab.experiments.sam_runs import flatness_rows_steps

QUANT_BITS = (8, 6, 4, 3)


def _run_quantization(profile: Profile, unit: Unit) -> dict:
    """Dev score of a fine-tuned model in fp32, after dynamic int8, and with its Linear weights
    rounded to fewer bits (per tensor and per channel). All on the CPU, without autocast. The
    predictions of fp32 and int8 for every dev row are kept, to pair two models row by row."""
    from flatcomp import quantization as q
    from flatcomp.lab.train import evaluate_rows
    from flatcomp.metrics import main_score

    task = unit["task"]
    model, _ = finetuned(profile, task, unit["optimizer"], unit["seed"])
    model = model.cpu().eval()
    int8 = q.quantize_dynamic_int8(model)
    _, dev, _ = encoded_task(profile, task)
    score = cpu_fp32_scorer(profile, task, dev)
    fp32, cpu = profile.with_overrides(precision="fp32"), torch.device("cpu")
    scored = {"fp32": evaluate_rows(model, dev, task, fp32, cpu),
              "int8": evaluate_rows(int8, dev, task, fp32, cpu)}
    scores = {k: main_score(task, metrics) for k, (metrics, _) in scored.items()}
    scores["int8 per channel"] = score(q.quantize_dynamic_int8(model, per_channel=True))
    for bits in QUANT_BITS:
        for per_channel in (False, True):
            key = f"{bits} bit{' per channel' if per_channel else ''}"
            scores[key] = score(q.fake_quantize_weights(model, bits, per_channel))
    return {**unit, "scores": scores, "int8_drop": scores["fp32"] - scores["int8"],
            "size_bytes": {"fp32": q.model_size_bytes(model), "int8": q.model_size_bytes(int8)},
            "dev_predictions": {k: rows for k, (_, rows) in scored.items()},
            "dev_labels": dev_labels(dev)}


def _run_quant_theory(profile: Profile, unit: Unit) -> dict:
    """The second-order prediction of the loss increase from rounding the Linear weights to b
    bits, E[dL] ~ 1/2 sum_i H_ii Delta_i^2 / 12 (Hessian diagonal by Hutchinson's estimator),
    against the increase measured on the same fixed training rows (fp32, eval mode)."""
    from flatcomp import flatness
    from flatcomp import quantization as q

    settings = FLATNESS_SETTINGS[profile.name]
    model, loss_fn = model_on_fixed_rows(profile, unit)
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





def _quantization_cost(profile: Profile, unit: Unit) -> float:
    """fp32, two int8 and two roundings per bit width, each one pass over dev."""
    return finetune_model_steps(profile, unit) + \
        dev_pass_steps(profile, unit["task"], 3 + 2 * len(QUANT_BITS))


def _quant_theory_cost(profile: Profile, unit: Unit) -> float:
    passes = 2 * FLATNESS_SETTINGS[profile.name]["trace_samples"] + 2 * len(QUANT_BITS) / 3
    return finetune_model_steps(profile, unit) + \
        flatness_rows_steps(profile, passes)


def _quant_speed_cost(profile: Profile, unit: Unit) -> float:
    return finetune_model_steps(profile, unit) + 40


EXPERIMENTS = (
    Experiment("quantization", "dev score after dynamic int8 and k-bit weight rounding",
               dense_units, _run_quantization, "quantization", priority=dense_priority,
               cost=_quantization_cost, needs=needs_finetune),
    Experiment("quant_theory", "second-order prediction of the loss increase from k-bit "
               "weights, against the measured increase", adam_sam_units, _run_quant_theory,
               "quantization", priority=2, cost=_quant_theory_cost, needs=needs_finetune),
    Experiment("quant_speed", "size and latency of fp32 against dynamic int8",
               _quant_speed_units, _run_quant_speed, "quantization", priority=3,
               cost=_quant_speed_cost, needs=needs_finetune, alone=True),
)
