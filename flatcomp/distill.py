"""Knowledge distillation from a fine-tuned teacher, as CoFi trains its pruned students
(Xia et al., ACL 2022, "Structured Pruning Learns Compact and Accurate Models", section 3.2;
Hinton et al. 2015, "Distilling the Knowledge in a Neural Network").

Logits: KL between temperature-softened distributions, scaled by T^2 so that its gradients keep
their size as T changes (Hinton et al.), T = 2::

    L_pred = T^2 KL(softmax(t / T) || softmax(s / T))      (MSE for a one-output regression head)

Layers: a learned linear map W (d_student -> d_teacher, initialised to the identity; one map shared
by every layer, as in CoFi) and the MSE to the teacher's hidden states::

    L_layer = sum_{i in T} MSE(W h_s^{m(i)}, h_t^i)

where T is a set of teacher layers and m(i) the student layer matched *dynamically*: going backwards
from the last teacher layer, the closest (lowest MSE) student layer that still exists (its attention
or its FFN is kept) and lies below the one matched before (or that one again when none is left). Hidden states are indexed as
``output_hidden_states`` returns them: 0 is the embeddings, i the output of layer i.

    L = alpha_layer L_layer + alpha_ce L_pred

CoFi's grid pairs alpha_layer in {0.9, 0.7, 0.5} with alpha_ce in {0.1, 0.3, 0.5}. A step::

    with torch.no_grad():
        t = teacher(**batch, output_hidden_states=True)
    s = student(**batch, output_hidden_states=True)
    loss = distillation_loss(s, t, layer_map, existing=gates.existing_layers())
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

TEMPERATURE = 2.0


def logit_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               temperature: float = TEMPERATURE) -> torch.Tensor:
    """T^2 KL(softmax(t / T) || softmax(s / T)), averaged over the batch; MSE for one output."""
    if student_logits.shape[-1] == 1:
        return F.mse_loss(student_logits, teacher_logits)
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature ** 2


class LayerMap(nn.Module):
    """W: the student's hidden states to the teacher's width, initialised to the identity."""

    def __init__(self, d_student: int, d_teacher: int | None = None):
        super().__init__()
        self.linear = nn.Linear(d_student, d_teacher or d_student)
        nn.init.eye_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden)


def default_teacher_layers(num_layers: int) -> list[int]:
    """Every third layer counting down from the last but one: CoFi's [2, 5, 8, 11] for 12."""
    return sorted(range(num_layers - 1, 0, -3)) or [num_layers]


def match_layers(losses: torch.Tensor, existing: torch.Tensor) -> list[int | None]:
    """For a (teacher layers, student layers) table of MSEs, student indices from 1, the
    student layer of each teacher layer: going backwards, the lowest-MSE existing student layer
    below the last matched one; when none is left, the last matched one again (as CoFi does), or
    None (that teacher layer is skipped) when no student layer exists at all."""
    below, matched = losses.shape[1] + 1, []
    for row in reversed(range(losses.shape[0])):
        allowed = existing & (torch.arange(1, losses.shape[1] + 1) < below)
        if not allowed.any():
            matched.append(matched[-1] if matched else None)
            continue
        j = int(losses[row].detach().masked_fill(~allowed, float("inf")).argmin()) + 1
        matched.append(j)
        below = j
    return matched[::-1]


def layer_loss(student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor],
               layer_map: nn.Module, teacher_layers: Sequence[int] | None = None,
               existing: Sequence[bool] | torch.Tensor | None = None) -> torch.Tensor:
    """sum over teacher layers i of MSE(W h_s^{m(i)}, h_t^i), m matched by :func:`match_layers`."""
    n_student = len(student_hidden) - 1
    teacher_layers = teacher_layers or default_teacher_layers(len(teacher_hidden) - 1)
    existing = (torch.ones(n_student, dtype=torch.bool) if existing is None
                else torch.as_tensor(existing, dtype=torch.bool).cpu())
    mapped = [layer_map(h) for h in student_hidden[1:]]
    losses = torch.stack([torch.stack([F.mse_loss(s, teacher_hidden[i]) for s in mapped])
                          for i in teacher_layers])
    pairs = [(row, j - 1) for row, j in enumerate(match_layers(losses, existing)) if j is not None]
    return sum((losses[row, col] for row, col in pairs), losses.new_zeros(()))


def distillation_loss(student_out: Any, teacher_out: Any, layer_map: nn.Module | None = None,
                      alpha_layer: float = 0.9, alpha_ce: float = 0.1,
                      temperature: float = TEMPERATURE, teacher_layers: Sequence[int] | None = None,
                      existing: Sequence[bool] | torch.Tensor | None = None) -> torch.Tensor:
    """alpha_layer L_layer + alpha_ce L_pred from two model outputs (``.logits`` and, for the
    layer term, ``.hidden_states``); without ``layer_map`` only the logit term is used."""
    loss = alpha_ce * logit_loss(student_out.logits, teacher_out.logits, temperature)
    if layer_map is not None and alpha_layer:
        loss = loss + alpha_layer * layer_loss(student_out.hidden_states, teacher_out.hidden_states,
                                               layer_map, teacher_layers, existing)
    return loss
