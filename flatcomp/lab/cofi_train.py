"""The CoFi training loop: prune a pre-trained BERT with hard-concrete gates while distilling a
fine-tuned teacher, then fine-tune the compact model with distillation (Xia et al., ACL 2022).

The gates, the Lagrangian and :func:`~flatcomp.cofi.compact` are :mod:`flatcomp.cofi`'s; the
distillation loss is :mod:`flatcomp.distill`'s. This module only runs them::

    pruning    epochs 1..P: gates sampled, target sparsity warmed up linearly from 0 over W epochs,
               loss = alpha_layer L_layer + alpha_ce L_pred + lambda_1 (s - t) + lambda_2 (s - t)^2
               (the model and the log alphas descend, the lambdas ascend; CoFi replaces the task
               loss by the distillation loss). After every epoch the gated model (deterministic
               gates) is scored on dev; the best epoch whose expected sparsity s is at least
               within epsilon = 0.01 of t (once t has warmed up to the target) is kept, else the
               epoch whose expected sparsity is closest to the target.
    compact    the kept epoch's model sliced to what its deterministic gates keep; its logits
               equal the gated model's (checked on dev and recorded).
    fine-tune  epochs 1..F of the compact model with the same distillation loss, the gates
               frozen (folded into its weights, as CoFi fine-tunes its pruned model); the best dev
               epoch (or the compact start, epoch 0) is kept.

The student's randomness (gate samples, dropout) comes from one seed and its data order from
:func:`flatcomp.lab.data.batches` with seeds of its own, and the teacher runs in eval mode under
``no_grad`` and draws no random numbers: two runs that differ only in the teacher see the same
student initialisation, batches and gate noise.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from flatcomp.cofi import (CoFiGates, Lagrangian, add_gates, bert_of, cofi_optimizers, compact,
                           target_at)
from flatcomp.distill import LayerMap, distillation_loss
from flatcomp.lab.config import Profile
from flatcomp.lab.data import Encoded, batches, num_batches
from flatcomp.lab.precision import uses_bf16
from flatcomp.lab.train import autocast, evaluate, linear_decay
from flatcomp.metrics import main_score


@dataclass(frozen=True)
class CoFiSchedule:
    """One unit's schedule, read from a profile's ``cofi`` settings by :func:`schedule_for`."""

    prune_epochs: int
    warmup_epochs: int
    finetune_epochs: int
    max_length: int
    lr: float
    finetune_lr: float
    gate_lr: float = 0.01
    lambda_lr: float = 0.01
    alpha_layer: float = 0.9
    alpha_ce: float = 0.1
    sparsity_epsilon: float = 0.01
    evals_per_epoch: int = 1     # candidates per pruning epoch once the target has warmed up
    # log alpha at the start of every gate: all open (ln 100 once constrained). CoFi's too, but
    # for the FFN dimensions, which it starts at 0; flatcomp.cofi's docstring says why we keep 10
    gate_init: float = 10.0
    batch_size: int = 32


def _per_task(value: Any, task: str) -> Any:
    return value.get(task, value["default"]) if isinstance(value, dict) else value


def schedule_for(profile: Profile, task: str) -> CoFiSchedule:
    """The profile's CoFi schedule for ``task`` (per-task values are dicts with a default)."""
    c = profile.cofi
    names = CoFiSchedule.__dataclass_fields__
    values = {k: _per_task(v, task) for k, v in c.items() if k in names}
    values.setdefault("max_length", profile.max_length)
    values.setdefault("batch_size", profile.batch_size)
    return CoFiSchedule(**values)


TRACE_POINTS = 100  # rows of the pruning trace: step, target, expected sparsity, lambdas


@dataclass
class CoFiResult:
    """What :func:`cofi_prune` measured; ``model`` is the compact student (fine-tuned)."""

    model: nn.Module
    gated_model: nn.Module
    gates: CoFiGates
    history: list[dict] = field(default_factory=list)
    trace: list[dict] = field(default_factory=list)  # the pruning phase, about TRACE_POINTS rows
    prune_epoch: float = 0.0  # when the kept candidate was taken, in epochs
    reached_target: bool = False
    expected_sparsity: float = 0.0
    finetune_epoch: int = 0
    init_sha256: str = ""
    steps: int = 0
    seconds_per_step: float = 0.0
    wall_seconds: float = 0.0


def state_sha256(model: nn.Module) -> str:
    """sha256 of a state dict (names and fp32 bytes in name order): which weights a run starts from."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def encoder_matrix_params(model: nn.Module) -> int:
    """The weights of the encoder layers' Linear matrices (no biases, LayerNorms, embeddings,
    pooler or head): what :meth:`CoFiGates.full_params` and the sparsity count."""
    return sum(m.weight.numel() for m in bert_of(model).encoder.modules()
               if isinstance(m, nn.Linear))


def kept_matrix_params(kept: dict, d_head: int) -> int:
    """hidden (4 d_head heads + 2 FFN dims), summed over layers, for ``config.cofi_kept``."""
    return kept["hidden"] * (4 * d_head * sum(kept["heads"]) + 2 * sum(kept["ffn"]))


def existing_from_kept(kept: dict) -> torch.Tensor:
    """(L,) bool: the compact model's layers that keep their attention or their FFN."""
    return torch.tensor([h > 0 or f > 0 for h, f in zip(kept["heads"], kept["ffn"])])


@torch.no_grad()
def _trace_row(step: int, target: float, gates: CoFiGates, lagrangian: Lagrangian,
               distill: torch.Tensor) -> dict:
    return {"step": step, "target": target, "expected_sparsity": float(gates.expected_sparsity()),
            "lambda_1": lagrangian.lambda_1.item(), "lambda_2": lagrangian.lambda_2.item(),
            "distill_loss": float(distill.detach())}


def _score(model: nn.Module, dev: Encoded, task: str, profile: Profile,
           device: torch.device) -> float:
    score = main_score(task, evaluate(model, dev, task, profile, device))
    return float("-inf") if math.isnan(score) else score


def cofi_prune(student: nn.Module, teacher: nn.Module, train: Encoded, dev: Encoded, task: str,
               profile: Profile, schedule: CoFiSchedule, target: float, seed: int = 0,
               device: torch.device | None = None,
               progress: Callable[[str], None] | None = None) -> CoFiResult:
    """Prune ``student`` (pre-trained, with its task head) to ``target`` sparsity of its encoder
    layers' matrices while distilling ``teacher``, compact it, fine-tune it; see the module
    docstring. ``student`` is trained in place (its gated form is ``result.gated_model``)."""
    device = device or torch.device("cpu")
    start = time.perf_counter()
    init_sha = state_sha256(student)
    teacher = teacher.to(device).eval()
    student.to(device)
    bf16 = uses_bf16(profile, device)
    torch.manual_seed(seed)  # gate samples and dropout: the same for every teacher
    gates = add_gates(student, init_mean=schedule.gate_init).to(device)
    lagrangian = Lagrangian().to(device)
    d_student = bert_of(student).config.hidden_size
    layer_map = LayerMap(d_student, bert_of(teacher).config.hidden_size).to(device)
    opt, gate_opt, lag_opt = cofi_optimizers(student, gates, lagrangian, lr=schedule.lr,
                                             gate_lr=schedule.gate_lr,
                                             lambda_lr=schedule.lambda_lr,
                                             weight_decay=profile.weight_decay)
    opt.add_param_group({"params": list(layer_map.parameters())})
    per_epoch = num_batches(train, schedule.batch_size)
    total = schedule.prune_epochs * per_epoch
    scheduler = linear_decay(opt, total)
    warmup = schedule.warmup_epochs * per_epoch
    result = CoFiResult(model=student, gated_model=student, gates=gates, init_sha256=init_sha)
    best, best_key, step, train_seconds = None, None, 0, 0.0
    trace_every = -(-total // TRACE_POINTS)

    def distill(batch: dict, model: nn.Module, existing: torch.Tensor | None, lmap: nn.Module):
        """The distillation loss; ``existing`` None: the layers the gates just sampled keep."""
        with torch.no_grad(), autocast(device, bf16):
            t = teacher(**batch, output_hidden_states=True)
        with autocast(device, bf16):
            s = model(**batch, output_hidden_states=True)
            kept = gates.existing_layers() if existing is None else existing
            return distillation_loss(s, t, lmap, schedule.alpha_layer, schedule.alpha_ce,
                                     existing=kept)

    eval_every = max(1, per_epoch // schedule.evals_per_epoch)
    losses, distills = [], []
    for epoch in range(1, schedule.prune_epochs + 1):
        student.train()
        tick = time.perf_counter()
        for batch in batches(train, schedule.batch_size, shuffle=True, seed=seed * 1000 + epoch):
            batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            d_loss = distill(batch, student, None, layer_map)  # samples the gates (gates.z)
            t = target_at(step, warmup, target)
            loss = d_loss.float() + lagrangian(gates.expected_sparsity(), t)
            loss.backward()
            for o in (opt, gate_opt, lag_opt):
                o.step()
                o.zero_grad(set_to_none=True)
            scheduler.step()
            gates.constrain()
            step += 1
            if step % trace_every == 0 or step == total:
                result.trace.append(_trace_row(step, t, gates, lagrangian, d_loss))
            losses.append(float(loss.detach()))
            distills.append(float(d_loss.detach()))
            epoch_end = step % per_epoch == 0
            if not epoch_end and (step % eval_every or target_at(step, warmup, target) < target):
                continue  # candidates between epochs only once the target has warmed up
            train_seconds += time.perf_counter() - tick
            with torch.no_grad():
                expected = float(gates.expected_sparsity())
            score = _score(student, dev, task, profile, device)
            student.train()
            t_now = target_at(step, warmup, target)
            result.history.append({
                "phase": "prune", "epoch": step / per_epoch, "step": step, "target": t_now,
                "expected_sparsity": expected, "lambda_1": lagrangian.lambda_1.item(),
                "lambda_2": lagrangian.lambda_2.item(), "train_loss": sum(losses) / len(losses),
                "distill_loss": sum(distills) / len(distills), "dev_score": score})
            losses, distills = [], []
            if progress:
                progress(f"prune {step / per_epoch:.2f}: s={expected:.3f} t={t_now:.3f} "
                         f"dev={score:.4f}")
            gap = abs(expected - target)
            reached = t_now >= target and gap <= schedule.sparsity_epsilon
            key = (reached, score if reached else -gap)  # else the one closest to the target
            if best_key is None or key > best_key:
                best_key = key
                best = (step / per_epoch, reached, expected,
                        copy.deepcopy(student.state_dict()), copy.deepcopy(gates.state_dict()),
                        copy.deepcopy(layer_map.state_dict()))
            tick = time.perf_counter()
        train_seconds += time.perf_counter() - tick
    result.prune_epoch, result.reached_target, result.expected_sparsity = best[:3]
    student.load_state_dict(best[3])
    gates.load_state_dict(best[4])
    layer_map.load_state_dict(best[5])
    student.eval()

    small = compact(student, gates)
    kept = small.config.cofi_kept
    hidden_kept = gates.deterministic()["hidden"][0].nonzero()[:, 0]
    small_map = LayerMap(len(hidden_kept), layer_map.linear.out_features).to(device)
    with torch.no_grad():
        small_map.linear.weight.copy_(layer_map.linear.weight[:, hidden_kept])
        small_map.linear.bias.copy_(layer_map.linear.bias)
    existing = existing_from_kept(kept)
    bert_of(small).embeddings.requires_grad_(False)  # compact() made new ones: frozen, as before
    result.gated_model = student
    result.model = small.to(device)
    steps_ft = schedule.finetune_epochs * per_epoch
    if steps_ft:
        trainable = [p for p in small.parameters() if p.requires_grad] + \
            list(small_map.parameters())
        ft_opt = torch.optim.AdamW(trainable, lr=schedule.finetune_lr,
                                   weight_decay=profile.weight_decay)
        ft_sched = linear_decay(ft_opt, steps_ft)
    best_score = _score(small, dev, task, profile, device)
    best_state, result.finetune_epoch = copy.deepcopy(small.state_dict()), 0
    for epoch in range(1, schedule.finetune_epochs + 1):
        small.train()
        tick, losses = time.perf_counter(), []
        for batch in batches(train, schedule.batch_size, shuffle=True,
                             seed=seed * 1000 + schedule.prune_epochs + epoch):
            batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            loss = distill(batch, small, existing, small_map)
            loss.backward()
            ft_opt.step()
            ft_opt.zero_grad(set_to_none=True)
            ft_sched.step()
            losses.append(float(loss.detach()))
        train_seconds += time.perf_counter() - tick
        score = _score(small, dev, task, profile, device)
        result.history.append({
            "phase": "finetune", "epoch": epoch, "target": target,
            "expected_sparsity": result.expected_sparsity,
            "lambda_1": lagrangian.lambda_1.item(), "lambda_2": lagrangian.lambda_2.item(),
            "train_loss": sum(losses) / len(losses), "distill_loss": sum(losses) / len(losses),
            "dev_score": score})
        if progress:
            progress(f"fine-tune {epoch}: dev={score:.4f}")
        if score > best_score:
            best_score, result.finetune_epoch = score, epoch
            best_state = copy.deepcopy(small.state_dict())
    small.load_state_dict(best_state)
    small.eval()
    result.steps = total + steps_ft
    result.seconds_per_step = train_seconds / max(1, result.steps)
    result.wall_seconds = time.perf_counter() - start
    return result

