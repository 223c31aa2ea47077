"""A fine-tuning loop for any model: Adam or SAM, a linear decay, the best epoch kept.

    result = fine_tune(model, train_batches, epochs=3, optimizer="sam", lr=5e-5,
                       evaluate=lambda m: accuracy(m, dev_batches))
    result.model, result.best_epoch, result.history

The batches are any iterable of dicts that is read once per epoch (a list, or a function of the
epoch that returns one, to reshuffle). The loss is ``model(**batch).loss`` for a Hugging Face
model, or whatever ``loss_fn(model, batch)`` returns for any other module. It takes no profile:
the book's machinery (:mod:`flatcomp.lab.train`) passes its settings in the same way.

The schedule is the paper's: the peak rate decays linearly to zero over all steps, with no
warm-up and no weight decay by default (Na et al., 2022, Sec. 4). After every epoch ``evaluate``
scores the model and the weights of the best epoch are restored at the end, as the paper keeps
the best epoch on dev. SAM takes its two passes through :meth:`flatcomp.sam.SAM.step` (Foret et
al., ICLR 2021), with the same dropout mask in both; ``masks`` hold pruned weights at exactly zero
throughout (:class:`flatcomp.pruning.Masker`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from flatcomp.pruning import Masker
from flatcomp.sam import SAM

Batch = Mapping[str, torch.Tensor]
OPTIMIZER_CHOICES = ("adam", "sam")


@dataclass
class FitResult:
    """What :func:`fine_tune` returns: the model at its best epoch, and one row per epoch."""

    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0           # 1-based; the last epoch where there is no ``evaluate``
    best_score: float | None = None


def hugging_face_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The loss a Hugging Face model computes itself when the batch holds ``labels``."""
    return model(**batch).loss


def make_optimizer(name: str, model: nn.Module, lr: float, rho: float = 0.05,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``adam``: AdamW at ``lr``; ``sam``: SAM of radius ``rho`` around that AdamW."""
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adam":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sam":
        return SAM(params, torch.optim.AdamW, rho=rho, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZER_CHOICES)}, "
                     "or pass an optimizer made for the model")


def fine_tune(model: nn.Module, train: Iterable[Batch] | Callable[[int], Iterable[Batch]],
              epochs: int, optimizer: str | torch.optim.Optimizer = "adam", lr: float = 2e-5,
              rho: float = 0.05, weight_decay: float = 0.0,
              evaluate: Callable[[nn.Module], float] | None = None,
              loss_fn: Callable[[nn.Module, Batch], torch.Tensor] = hugging_face_loss,
              masks: Mapping[str, torch.Tensor] | None = None, seed: int = 0) -> FitResult:
    """Train ``model`` in place for ``epochs`` over ``train`` and return it at its best epoch.

    ``optimizer`` is ``"adam"``, ``"sam"`` or an optimizer already made for the model (a
    :class:`~flatcomp.sam.SAM` or one of its variants steps with a closure). ``evaluate`` maps
    the model (in eval mode) to a score, higher is better. ``seed`` seeds dropout.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    epoch_batches = train if callable(train) else (lambda epoch: train)
    first = list(epoch_batches(0))
    if not first:
        raise ValueError("the training batches are empty: pass at least one batch")
    torch.manual_seed(seed)
    opt = make_optimizer(optimizer, model, lr, rho, weight_decay) \
        if isinstance(optimizer, str) else optimizer
    total = epochs * len(first)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1 - step / total))
    masker = Masker(model, masks, opt) if masks else None
    result, best_state = FitResult(model), None
    try:
        for epoch in range(epochs):
            batches = first if epoch == 0 else list(epoch_batches(epoch))
            loss = _train_epoch(model, batches, opt, schedule, loss_fn)
            row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss}
            if evaluate is not None:
                row["score"] = _score(model, evaluate)
                if result.best_score is None or row["score"] > result.best_score:
                    result.best_score, result.best_epoch = row["score"], epoch + 1
                    best_state = copy.deepcopy(model.state_dict())
            else:
                result.best_epoch = epoch + 1
            result.history.append(row)
    finally:
        if masker is not None:
            masker.remove()
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def _train_epoch(model: nn.Module, batches: list[Batch], opt: torch.optim.Optimizer,
                 schedule: torch.optim.lr_scheduler.LRScheduler,
                 loss_fn: Callable[[nn.Module, Batch], torch.Tensor]) -> float:
    """One pass over ``batches``; the mean training loss (at w, for SAM)."""
    model.train()
    total = 0.0
    for batch in batches:
        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_fn(model, batch)
            loss.backward()
            return loss

        if isinstance(opt, SAM):
            loss = opt.step(closure)
        else:
            loss = closure()
            opt.step()
        schedule.step()
        total += float(loss.detach())
    return total / len(batches)


@torch.no_grad()
def _score(model: nn.Module, evaluate: Callable[[nn.Module], float]) -> float:
    model.eval()
    return float(evaluate(model))
