"""The decisive comparison of Adam and SAM (claims C1 and C6): each optimizer at its own tuned
learning rate, trained to its plateau, several seeds, in one environment, and every model
measured for everything later chapters ask of it.

    tuned_lr  the same grid of learning rates for both optimizers, on the first seed
    tuned     every seed at the rate that won the grid for that task and optimizer, and per
              model: int8 (per tensor and per channel), the bit sweep, one-shot magnitude
              pruning, truncated SVD, and its flatness (sharpness, adaptive sharpness, top
              Hessian eigenvalue, trace)

The protocol (:data:`PROTOCOL`) fixes what the older experiments left to the device: fp32 (a
record made on any CPU pairs with any other), length-grouped batches, and the budget. Each model
is evaluated right after it is trained, so none is ever trained again for a later question.
"""

from __future__ import annotations

from typing import Any

from flatcomp.lab.config import Profile
from flatcomp.lab.experiments.core import (FLATNESS_SETTINGS, Experiment, Unit, checkpoint_paths,
                                           dev_labels, dev_pass_steps, encoded_task,
                                           finetune_record, finetuned, fine_tune_steps,
                                           fixed_rows_loss, unit_id)
from flatcomp.lab.experiments.quantization_runs import QUANT_BITS

# Per profile: the tasks in plan order, their seeds, the learning-rate grid, the epochs and the
# precision. None: the profile has no such comparison (paper: the faithful fine-tunes are its).
PROTOCOL: dict[str, dict[str, Any] | None] = {
    "smoke": {"tasks": ("mrpc",), "seeds": {"default": (0, 1)}, "grid": (5e-4, 1e-3),
              "epochs": {"default": 3}, "precision": "fp32"},
    # MRPC and SST-2 with five seeds, MNLI with three; the paper's 10 epochs of a small task
    # (SAM's best epoch was the last at 6 on most seeds).
    "small": {"tasks": ("mrpc", "sst2", "mnli"),
              "seeds": {"default": (0, 1, 2, 3, 4), "mnli": (0, 1, 2)},
              "grid": (5e-5, 1e-4, 2e-4), "epochs": {"default": 10}, "precision": "fp32"},
    "paper": None,
}
OPTIMIZERS = ("adam", "sam")
PRUNING_SPARSITIES = (0.3, 0.5, 0.7)
RANK_FRACTIONS = (0.5, 0.25)
ADAPTIVE_RHO = 0.5  # Kwon et al.'s radius for the adaptive ball (weights' own units)


def protocol(profile: Profile) -> dict[str, Any] | None:
    return PROTOCOL.get(profile.name)


def grid_rates(profile: Profile) -> tuple[float, ...]:
    """The learning rates both optimizers try on the first seed (none where the profile has no
    tuned protocol)."""
    p = protocol(profile)
    return () if p is None else p["grid"]


def protocol_profile(profile: Profile, task: str) -> Profile:
    """The profile a protocol model trains at: its precision, its epochs, grouped batches."""
    p = protocol(profile)
    return profile.with_overrides(precision=p["precision"], length_grouped=True,
                                  epochs={"default": p["epochs"].get(task, p["epochs"]["default"])})


def protocol_seeds(profile: Profile, task: str) -> tuple[int, ...]:
    seeds = protocol(profile)["seeds"]
    return seeds.get(task, seeds["default"])


def _grid_units(profile: Profile) -> list[Unit]:
    p = protocol(profile)
    return [] if p is None else [dict(task=t, optimizer=o, lr=lr, seed=protocol_seeds(profile, t)[0])
                                 for t in p["tasks"] for lr in p["grid"] for o in OPTIMIZERS]


def _tuned_units(profile: Profile) -> list[Unit]:
    p = protocol(profile)
    return [] if p is None else [dict(task=t, optimizer=o, seed=s) for t in p["tasks"]
                                 for s in protocol_seeds(profile, t) for o in OPTIMIZERS]


def _priority(profile: Profile, unit: Unit) -> int:
    """The protocol's tasks in order: the cheapest verdict (its first task) is decided first."""
    return protocol(profile)["tasks"].index(unit["task"])


def _grid_needs(profile: Profile, unit: Unit) -> tuple:
    return tuple(("tuned_lr", unit_id(u)) for u in _grid_units(profile)
                 if u["task"] == unit["task"] and u["optimizer"] == unit["optimizer"])


def _train(profile: Profile, task: str, optimizer: str, seed: int, lr: float):
    from flatcomp.lab.data import padding_ratio

    at = protocol_profile(profile, task)
    model, summary = finetuned(at, task, optimizer, seed, lr=lr)
    train, _, _ = encoded_task(at, task)
    record = {**finetune_record(summary), "precision": at.precision, "batching": "length-grouped",
              "padding_ratio": padding_ratio(train, at.batch_size, True, seed * 1000 + 1, True)}
    return model, record


def _run_grid(profile: Profile, unit: Unit) -> dict:
    _, record = _train(profile, unit["task"], unit["optimizer"], unit["seed"], unit["lr"])
    return record


def tuned_lr(grid: list[dict]) -> float:
    """The learning rate whose fine-tune scored best on dev (the first of a tie)."""
    return max(grid, key=lambda r: r["best_score"])["lr"]


def _run_tuned(profile: Profile, unit: Unit) -> dict:
    from flatcomp.lab.experiments import load_or_run

    task, optimizer, seed = unit["task"], unit["optimizer"], unit["seed"]
    grid = load_or_run(profile, "tuned_lr", missing="skip", task=[task], optimizer=[optimizer])
    if len(grid) < len(protocol(profile)["grid"]):
        raise RuntimeError(f"the learning-rate grid of {task} {optimizer} is not all stored: "
                           "run `python -m flatcomp run tuned_lr` first")
    lr = tuned_lr(grid)
    model, record = _train(profile, task, optimizer, seed, lr)
    at = protocol_profile(profile, task)
    return {**record, "lr_grid": {f"{r['lr']:g}": r["best_score"] for r in grid},
            **model_measures(at, task, model)}


def model_measures(profile: Profile, task: str, model) -> dict:
    """What every trained model records of itself, so that no model is trained twice for a later
    question: ``compression`` (:func:`compression_damage`) and ``flatness``
    (:func:`flatness_measures`)."""
    return {"compression": compression_damage(profile, task, model),
            "flatness": flatness_measures(profile, task, model)}


def compression_damage(profile: Profile, task: str, model) -> dict:
    """The dev score of ``model`` (fp32, CPU) and after each way to compress it without
    retraining: dynamic int8 per tensor and per channel, weights rounded to k bits, one-shot
    global magnitude pruning of the encoder's matrices, and truncated SVD of every encoder
    Linear; and the effective rank of the [CLS] features on dev. The fp32 and int8 predictions of
    every dev row are kept, to pair models row by row."""
    import copy

    import torch

    from flatcomp import quantization as q
    from flatcomp.lab.train import apply_masks, evaluate_rows
    from flatcomp.low_rank import effective_rank, low_rank_model, parameter_count
    from flatcomp.metrics import main_score
    from flatcomp.pruning import magnitude_masks, prunable_weights

    model = model.cpu().eval()
    _, dev, _ = encoded_task(profile, task)
    cpu = torch.device("cpu")

    def scored(m) -> tuple[float, list]:
        metrics, rows = evaluate_rows(m, dev, task, profile, cpu)
        return main_score(task, metrics), rows

    (fp32, fp32_rows), (int8, int8_rows) = scored(model), scored(q.quantize_dynamic_int8(model))
    scores = {"fp32": fp32, "int8": int8,
              "int8 per channel": scored(q.quantize_dynamic_int8(model, per_channel=True))[0]}
    for bits in QUANT_BITS:
        for per_channel in (False, True):
            key = f"{bits} bit{' per channel' if per_channel else ''}"
            scores[key] = scored(q.fake_quantize_weights(model, bits, per_channel))[0]
    pruned = {}
    for sparsity in PRUNING_SPARSITIES:
        sparse = copy.deepcopy(model)
        apply_masks(sparse, magnitude_masks(prunable_weights(sparse, preset="encoder"), sparsity))
        pruned[f"{sparsity:g}"] = scored(sparse)[0]
    truncated = {f"{f:g}": low_rank_model(model, f) for f in RANK_FRACTIONS}
    low_rank = {f: scored(m)[0] for f, m in truncated.items()}
    return {"scores": scores, "int8_drop": fp32 - int8, "pruned": pruned,
            "cls_effective_rank": effective_rank(cls_features(model, dev, profile)),
            "pruning_preset": "encoder", "low_rank": low_rank,
            "low_rank_parameters": {f: parameter_count(m) for f, m in truncated.items()},
            "parameters": parameter_count(model),
            "dev_predictions": {"fp32": fp32_rows, "int8": int8_rows},
            "dev_labels": dev_labels(dev)}


def cls_features(model, dev, profile: Profile):
    """The last layer's [CLS] vector of every dev row (fp32, CPU, eval mode), one row each."""
    import torch

    from flatcomp.lab.data import batches
    from flatcomp.lab.train import LABEL_KEYS

    rows = []
    with torch.no_grad():
        for batch in batches(dev, 2 * profile.batch_size):
            inputs = {k: v for k, v in batch.items() if k not in LABEL_KEYS}
            rows.append(model(**inputs, output_hidden_states=True).hidden_states[-1][:, 0])
    return torch.cat(rows)


def flatness_measures(profile: Profile, task: str, model) -> dict:
    """Sharpness at SAM's rho, adaptive sharpness, top Hessian eigenvalue and trace, on the
    profile's fixed training rows (fp32, eval mode)."""
    from flatcomp import flatness

    settings = FLATNESS_SETTINGS[profile.name]
    loss_fn = fixed_rows_loss(profile, task)
    model = model.cpu().eval()
    sharp = flatness.sharpness(model, loss_fn, rho=profile.sam_rho,
                               steps=settings["sharpness_steps"])
    adaptive = flatness.adaptive_sharpness(model, loss_fn, rho=ADAPTIVE_RHO,
                                           steps=settings["sharpness_steps"])
    eigen = flatness.hessian_top_eigenvalue(model, loss_fn, iters=settings["eigen_iters"])
    trace = flatness.hessian_trace(model, loss_fn, samples=settings["trace_samples"])
    return {"rows": settings["rows"], "loss": sharp["loss"], "rho": profile.sam_rho,
            "sharpness": sharp["sharpness"], "adaptive_rho": ADAPTIVE_RHO,
            "adaptive_sharpness": adaptive["sharpness"], "top_eigenvalue": eigen["eigenvalue"],
            "trace": trace["trace"], "trace_std_error": trace["std_error"]}


def _grid_cost(profile: Profile, unit: Unit) -> float:
    at = protocol_profile(profile, unit["task"])
    return fine_tune_steps(at, unit["task"], unit["optimizer"])


def measurement_steps(profile: Profile, task: str) -> float:
    """What measuring one trained model costs, in training steps: 19 dev passes
    (:func:`compression_damage`) and the flatness passes over the fixed rows
    (:func:`flatness_measures`)."""
    from flatcomp.lab.experiments.sam_runs import flatness_rows_steps

    s = FLATNESS_SETTINGS[profile.name]
    passes = 2 * (s["sharpness_steps"] + 1) + 2 * (s["eigen_iters"] + s["trace_samples"])
    return dev_pass_steps(profile, task, 19) + flatness_rows_steps(profile, passes)


def _first_seed_steps(profile: Profile, task: str, optimizer: str, seed: int) -> float:
    """The first seed's fine-tune: the grid's model at the winning rate, so none while the grid
    is still to run here (it trains into the checkpoint cache first) or where the cache has the
    winner's checkpoint; a whole fine-tune where the grid's records came from another machine."""
    from flatcomp.lab.experiments import load_or_run

    grid = load_or_run(profile, "tuned_lr", missing="skip", task=[task], optimizer=[optimizer])
    if len(grid) < len(grid_rates(profile)):
        return 0.0
    at = protocol_profile(profile, task)
    weights, _ = checkpoint_paths(at, task, optimizer, seed, tuned_lr(grid), at.epochs_for(task))
    return 0.0 if weights.exists() else fine_tune_steps(at, task, optimizer)


def _tuned_cost(profile: Profile, unit: Unit) -> float:
    """The fine-tune (for the first seed: :func:`_first_seed_steps`) and the measurements."""
    task, optimizer, seed = unit["task"], unit["optimizer"], unit["seed"]
    at = protocol_profile(profile, task)
    train = _first_seed_steps(profile, task, optimizer, seed) \
        if seed == protocol_seeds(profile, task)[0] else fine_tune_steps(at, task, optimizer)
    return train + measurement_steps(at, task)

EXPERIMENTS = (
    Experiment("tuned_lr", "Adam and SAM on the same learning-rate grid, first seed, at the "
               "protocol's budget (fp32, length-grouped batches)",
               _grid_units, _run_grid, "sam", priority=_priority, cost=_grid_cost),
    Experiment("tuned", "Adam and SAM at each one's tuned rate, every seed of the protocol, "
               "with int8, the bit sweep, one-shot pruning, low rank and flatness per model",
               _tuned_units, _run_tuned, "sam", priority=_priority, cost=_tuned_cost,
               needs=_grid_needs),
)
