"""The one fine-tuning loop: Adam, SAM or SWA, linear decay without warm-up, best epoch kept.

Every optimizer goes through the same door, ``optimizer.step(closure)``: Adam runs the closure
once, SAM twice (see :mod:`flatcomp.sam`). SWA (Izmailov et al., UAI 2018) is a third way to a
flat region: Adam steps, and from epoch ``SWA_START_EPOCH`` on the model evaluated and kept is the
running average of the weights after every step (``torch.optim.swa_utils.AveragedModel``).

Optional masks (``{parameter name: bool tensor}``) hold pruned weights at exactly zero. The
weights are masked once, before training; their gradients are zeroed inside the closure, so SAM's
perturbation leaves them at zero too. That is enough: Adam's moments of a weight whose gradient is
always zero stay zero, so its update is exactly 0 (weight decay, L2 or decoupled, scales a zero),
and SWA averages zeros. Re-masking the weights after every step would only add work (the tests
check that no step revives a pruned weight).

The same loop fine-tunes SQuAD's span head when ``train`` and ``dev`` are
:class:`~flatcomp.lab.qa_features.QAFeatures` (the windows of questions): it then runs at the
profile's SQuAD batch size (:meth:`~flatcomp.lab.config.Profile.for_squad`), the loss is the span
head's, and an epoch's dev score is the F1 of the best span per question
(:mod:`flatcomp.lab.qa_answers`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from flatcomp import loop, sam_variants
from flatcomp.lab.config import Profile
from flatcomp.lab.data import Encoded, batch_order, batches, num_batches
from flatcomp.lab.precision import uses_bf16
from flatcomp.lab.qa_answers import squad_scores
from flatcomp.lab.qa_features import QAFeatures
from flatcomp.metrics import glue_metrics, main_score
from flatcomp.pruning import apply_masks, mask_gradients

TrainData = Encoded | QAFeatures  # GLUE rows, or SQuAD windows

OPTIMIZERS = ("adam", "sam", "swa")
# The cheaper routes to SAM's flatness (flatcomp.sam_variants), for the efficiency chapter.
VARIANTS = ("ksam", "looksam", "esam", "sam_on")
SAM_ON_RHO = 0.5  # Mueller et al. perturb only the norm layers, with a larger radius than SAM's
SWA_START_EPOCH = 2  # SWA averages the weights after every step from this epoch on


@dataclass
class FineTuneResult:
    """What a fine-tune measured; ``model`` holds the weights of the best epoch."""

    model: torch.nn.Module
    history: list[dict] = field(default_factory=list)   # per epoch: train loss, dev metrics
    best_epoch: int = 0
    best_score: float = float("-inf")
    seconds_per_step: float = 0.0
    steps: int = 0
    wall_seconds: float = 0.0
    dev_predictions: list | None = None  # GLUE: the best epoch's prediction for every dev row

    def summary(self) -> dict:
        """The JSON-ready part (everything but the weights)."""
        summary = {"history": self.history, "best_epoch": self.best_epoch,
                   "best_score": self.best_score, "seconds_per_step": self.seconds_per_step,
                   "steps": self.steps, "wall_seconds": self.wall_seconds}
        if self.dev_predictions is not None:
            summary["dev_predictions"] = self.dev_predictions
        return summary


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_optimizer(name: str, model: torch.nn.Module, lr: float, rho: float = 0.05,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``adam`` (PyTorch's AdamW with the given weight decay, 0 in the paper), ``sam`` on top of
    it, ``swa`` (Adam; the averaging happens in :func:`fine_tune`), or one of the cheaper SAM
    variants on top of Adam at their papers' defaults: ``ksam`` (SAM every 5th step),
    ``looksam`` (k = 5, alpha = 0.7), ``esam`` (beta = 0.6, gamma = 0.5), ``sam_on`` (only the
    LayerNorms perturbed, rho = :data:`SAM_ON_RHO`)."""
    if name in ("adam", "swa", "sam"):  # the library loop's own Adam and SAM
        return loop.make_optimizer("adam" if name == "swa" else name, model, lr, rho,
                                   weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    adam = dict(lr=lr, weight_decay=weight_decay)
    base = torch.optim.AdamW
    makers = {
        "ksam": lambda: sam_variants.KStepSAM(params, base, rho=rho, k=5, **adam),
        "looksam": lambda: sam_variants.LookSAM(params, base, rho=rho, k=5, alpha=0.7, **adam),
        "esam": lambda: sam_variants.ESAM(params, base, rho=rho, beta=0.6, gamma=0.5, **adam),
        "sam_on": lambda: sam_variants.sam_on(model, base, rho=SAM_ON_RHO, **adam),
    }
    if name not in makers:
        raise ValueError(f"unknown optimizer {name!r}: choose one of "
                         f"{', '.join(OPTIMIZERS + VARIANTS)}")
    return makers[name]()


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """lr_t = lr * (1 - t / T): linear decay to zero, no warm-up (the paper's schedule)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / max(1, total_steps)))


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast when ``enabled`` (see :func:`flatcomp.lab.precision.uses_bf16`)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def fine_tune(model: torch.nn.Module, train: TrainData, dev: TrainData, task: str,
              profile: Profile, optimizer: str = "adam", seed: int = 0,
              masks: dict[str, torch.Tensor] | None = None, epochs: int | None = None,
              lr: float | None = None, device: torch.device | None = None,
              progress: bool = True) -> FineTuneResult:
    """Fine-tune ``model`` on ``train``, evaluate on ``dev`` after every epoch, keep the best.
    SQuAD windows (:class:`~flatcomp.lab.qa_features.QAFeatures`) train at the profile's SQuAD batch
    size and are scored by F1 (see the module docstring)."""
    if isinstance(train, QAFeatures) != isinstance(dev, QAFeatures):
        raise TypeError(f"train is {type(train).__name__} but dev is {type(dev).__name__}: "
                        "both must be GLUE rows or both SQuAD windows")
    if isinstance(train, QAFeatures):
        profile = profile.for_squad()
    device = device or default_device()
    epochs = epochs if epochs is not None else profile.epochs_for(task)
    model.to(device)
    bf16 = uses_bf16(profile, device)
    if masks:  # on the parameters' device and dtype once, not at every step
        params = dict(model.named_parameters())
        masks = {k: m.to(params[k].device, params[k].dtype) for k, m in masks.items()}
        apply_masks(model, masks)
    opt = make_optimizer(optimizer, model, lr if lr is not None else profile.lr_for(task),
                         profile.sam_rho, profile.weight_decay)
    closure_for = closure_maker(optimizer)
    if masks and optimizer == "esam":  # ESAM calls backward itself: mask through hooks
        from flatcomp.pruning import Masker

        Masker(model, masks, opt)
    steps_per_epoch = num_batches(train, profile.batch_size)
    scheduler = linear_decay(opt, epochs * steps_per_epoch)
    average = AveragedModel(model) if optimizer == "swa" else None
    result = FineTuneResult(model=model)
    best_state, train_seconds, start = None, 0.0, time.perf_counter()
    torch.manual_seed(seed)  # dropout
    # At most two refreshes a second: a notebook cell that trains many models must not flood the
    # kernel's output channel (a full one drops messages, and nbval then times out).
    bar = tqdm(total=epochs * steps_per_epoch, disable=not progress, mininterval=0.5,
               desc=f"{task} {optimizer} seed {seed}", leave=False)
    for epoch in range(1, epochs + 1):
        model.train()
        losses, tick = [], time.perf_counter()
        for batch in batches(train, profile.batch_size, shuffle=True, seed=seed * 1000 + epoch,
                             group_by_length=profile.length_grouped):
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = opt.step(closure_for(model, batch, opt, masks, device, bf16))
            scheduler.step()
            if average is not None and epoch >= SWA_START_EPOCH:
                average.update_parameters(model)
            losses.append(float(loss))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        train_seconds += time.perf_counter() - tick
        evaluated = average.module if average is not None and epoch >= SWA_START_EPOCH else model
        metrics, predictions = evaluate_rows(evaluated, dev, task, profile, device)
        score = main_score(task, metrics)
        score = float("-inf") if math.isnan(score) else score
        result.history.append({"epoch": epoch, "train_loss": sum(losses) / len(losses), **metrics})
        if best_state is None or score > result.best_score:  # a NaN score never wins
            result.best_epoch, result.best_score = epoch, score
            result.dev_predictions = predictions
            best_state = {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()}
    bar.close()
    model.load_state_dict(best_state)
    result.steps = epochs * steps_per_epoch
    result.seconds_per_step = train_seconds / result.steps
    result.wall_seconds = time.perf_counter() - start
    return result


def _closure(model: torch.nn.Module, batch: dict, opt: torch.optim.Optimizer,
             masks: dict[str, torch.Tensor] | None, device: torch.device,
             bf16: bool) -> Callable[[], torch.Tensor]:
    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with autocast(device, bf16):
            loss = model(**batch).loss
        loss.backward()
        if masks:
            mask_gradients(model, masks)
        return loss.detach()
    return closure


def closure_maker(optimizer: str) -> Callable:
    """How a training step's closure is made for ``optimizer``: ESAM's gives per-example losses."""
    return _per_example_closure if optimizer == "esam" else _closure


def _per_example_closure(model: torch.nn.Module, batch: dict, opt: torch.optim.Optimizer,
                         masks: dict[str, torch.Tensor] | None, device: torch.device,
                         bf16: bool) -> Callable[..., torch.Tensor]:
    """ESAM's closure: every example's loss (of the rows at ``indices``, if given); ESAM zeroes
    the gradients and calls backward itself. Cross-entropy, squared error for regression, or
    the span head's mean of start and end cross-entropy for SQuAD windows."""
    def closure(indices: torch.Tensor | None = None) -> torch.Tensor:
        rows = batch if indices is None else {k: v[indices] for k, v in batch.items()}
        inputs = {k: v for k, v in rows.items() if k not in LABEL_KEYS}
        with autocast(device, bf16):
            output = model(**inputs)
        if "start_positions" in rows:  # the span head: the mean of the start and end losses
            cross_entropy = torch.nn.functional.cross_entropy
            return (cross_entropy(output.start_logits.float(), rows["start_positions"],
                                  reduction="none")
                    + cross_entropy(output.end_logits.float(), rows["end_positions"],
                                    reduction="none")) / 2
        logits = output.logits.float()
        if logits.shape[-1] == 1:
            return (logits[:, 0] - rows["labels"].float()) ** 2
        return torch.nn.functional.cross_entropy(logits, rows["labels"], reduction="none")
    return closure


LABEL_KEYS = ("labels", "start_positions", "end_positions")  # what a model must not see at eval


def rows_of(predictions: torch.Tensor) -> list:
    """Predictions as a JSON-ready list: class ids, or regression scores to 4 decimals."""
    if predictions.is_floating_point():
        return [round(float(x), 4) for x in predictions]
    return [int(x) for x in predictions]


def _in_eval_order(data: TrainData, batch_size: int, profile: Profile
                   ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Each evaluation batch with the indices of its rows: in order, or sorted by length where
    the profile groups by length (the same scores, less padding)."""
    for indices in batch_order(data, batch_size, group_by_length=profile.length_grouped):
        yield indices, data.collate(indices)


@torch.no_grad()
def predict(model: torch.nn.Module, data: Encoded, profile: Profile,
            device: torch.device | None = None) -> torch.Tensor:
    """Class ids (or regression scores) for every row of ``data``, in its order."""
    device = device or next(model.parameters()).device
    model.eval()
    bf16, rows, outputs = uses_bf16(profile, device), [], []
    for indices, batch in _in_eval_order(data, 2 * profile.batch_size, profile):
        batch = {k: v.to(device) for k, v in batch.items() if k not in LABEL_KEYS}
        with autocast(device, bf16):
            logits = model(**batch).logits.float()
        outputs.append(logits[:, 0] if data.regression else logits.argmax(-1))
        rows.extend(indices)
    predictions = torch.cat(outputs).cpu()
    return predictions[torch.argsort(torch.tensor(rows))]


@torch.no_grad()
def predict_spans(model: torch.nn.Module, data: QAFeatures, profile: Profile,
                  device: torch.device | None = None
                  ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The span head's start and end logits of every window of ``data`` (fp32, on the CPU, one
    tensor per window, as long as the window, in its order), at twice the SQuAD batch size."""
    device = device or next(model.parameters()).device
    model.eval()
    bf16 = uses_bf16(profile, device)
    starts: list = [None] * len(data)
    ends: list = [None] * len(data)
    for indices, batch in _in_eval_order(data, 2 * profile.for_squad().batch_size, profile):
        lengths = batch["attention_mask"].sum(-1).tolist()
        batch = {k: v.to(device) for k, v in batch.items() if k not in LABEL_KEYS}
        with autocast(device, bf16):
            output = model(**batch)
        for row, (i, n) in enumerate(zip(indices, lengths)):
            starts[i] = output.start_logits[row, :n].float().cpu()
            ends[i] = output.end_logits[row, :n].float().cpu()
    return starts, ends


def evaluate(model: torch.nn.Module, data: TrainData, task: str, profile: Profile,
             device: torch.device | None = None) -> dict[str, float]:
    """The task's GLUE metrics on ``data``; for SQuAD windows, exact match and F1 of the best
    span per question (:func:`flatcomp.lab.qa_answers.squad_scores`)."""
    if isinstance(data, QAFeatures):
        return squad_scores(data, *predict_spans(model, data, profile, device))
    return glue_metrics(task, predict(model, data, profile, device), list(data.labels))


def evaluate_rows(model: torch.nn.Module, data: TrainData, task: str, profile: Profile,
                  device: torch.device | None = None) -> tuple[dict[str, float], list | None]:
    """:func:`evaluate`, and the prediction for every GLUE row (:func:`rows_of`; None for SQuAD
    windows), from one pass over ``data``."""
    if isinstance(data, QAFeatures):
        return evaluate(model, data, task, profile, device), None
    predictions = predict(model, data, profile, device)
    return glue_metrics(task, predictions, list(data.labels)), rows_of(predictions)


def time_steps(model: torch.nn.Module, batch_list: list[dict], optimizer: str, profile: Profile,
               warmup: int = 2, device: torch.device | None = None,
               masks: dict[str, torch.Tensor] | None = None) -> float:
    """Mean seconds per training step over ``batch_list`` after ``warmup`` untimed steps, with
    the masking of :func:`fine_tune` when ``masks`` are given.

    Trains ``model`` in place (pass a copy). Used to compare optimizers on the same batches.
    """
    device = device or default_device()
    model.to(device).train()
    if masks:
        params = dict(model.named_parameters())
        masks = {k: m.to(params[k].device, params[k].dtype) for k, m in masks.items()}
        apply_masks(model, masks)
    opt = make_optimizer(optimizer, model, 1e-5, profile.sam_rho, profile.weight_decay)
    batch_list = [{k: v.to(device) for k, v in b.items()} for b in batch_list]
    bf16 = uses_bf16(profile, device)

    closure_for = closure_maker(optimizer)

    def step(batch: dict) -> None:
        opt.step(closure_for(model, batch, opt, masks, device, bf16))

    for batch in batch_list[:warmup]:
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batch_list[warmup:]:
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / max(1, len(batch_list) - warmup)
