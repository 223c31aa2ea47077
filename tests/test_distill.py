"""Distillation on the tiny BERT: zero when the student is the teacher, the T^2-scaled KL,
the identity layer map, and CoFi's backward dynamic layer matching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flatcomp.distill import (LayerMap, default_teacher_layers, distillation_loss, layer_loss,
                              logit_loss, match_layers)
from flatcomp.lab.models import load_model


@pytest.fixture
def outputs(smoke):
    model = load_model(smoke, "mrpc").eval()
    ids = torch.randint(1000, 5000, (3, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True)


def test_loss_is_zero_when_student_is_teacher(outputs):
    loss = distillation_loss(outputs, outputs, LayerMap(64), alpha_layer=0.5, alpha_ce=0.5,
                             teacher_layers=[1, 2])
    assert loss.item() == pytest.approx(0.0, abs=1e-10)


def test_logit_loss_is_t_squared_kl():
    s, t = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 2.0]])
    p_t = F.softmax(t / 2, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / 2, -1))).sum()
    assert float(logit_loss(s, t)) == pytest.approx(4 * float(kl))
    assert float(logit_loss(s[:, :1], t[:, :1])) == pytest.approx(1.0)  # regression: MSE


def test_layer_map_starts_as_identity():
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(LayerMap(8)(x), x)
    assert LayerMap(8, 12)(x).shape == (2, 5, 12)


def test_matching_goes_backwards_to_existing_layers():
    # rows: teacher layers; columns: student layers 1..4
    losses = torch.tensor([[0.1, 0.5, 0.5, 0.5],
                           [0.5, 0.5, 0.1, 0.5],
                           [0.5, 0.5, 0.2, 0.1]])
    assert match_layers(losses, torch.ones(4, dtype=torch.bool)) == [1, 3, 4]
    gone = torch.tensor([True, True, True, False])  # student layer 4 removed
    assert match_layers(losses, gone) == [1, 1, 3]  # 3 then 1 (below 3), then 1 again
    assert match_layers(losses, torch.tensor([False, True, False, True])) == [2, 2, 4]
    assert match_layers(losses, torch.zeros(4, dtype=torch.bool)) == [None, None, None]


def test_layer_loss_uses_the_matched_layer(outputs):
    h = outputs.hidden_states
    shuffled = (h[0], h[2], h[1])  # the student's layer 2 is the teacher's layer 1
    assert layer_loss(shuffled, h, LayerMap(64), teacher_layers=[1]).item() == 0.0
    one = layer_loss(shuffled, h, LayerMap(64), teacher_layers=[1], existing=[True, False])
    assert one.item() == pytest.approx(float(F.mse_loss(h[2], h[1])))


def test_default_teacher_layers():
    assert default_teacher_layers(12) == [2, 5, 8, 11]
    assert default_teacher_layers(2) == [1]
    assert default_teacher_layers(1) == [1]
