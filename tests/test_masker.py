"""Masks that hold in a loop of one's own: ``Masker`` with Adam, AdamW, SGD with momentum and SAM.

The model is a small ``nn.Sequential``; its prunable set is its first two Linears (the last is
the output head). After several steps the sparsity must still be exactly the target.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from flatcomp.pruning import (Masker, apply_masks, magnitude_masks, prunable_weights,
                              sparsity_report)
from flatcomp.sam import SAM

OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=0.05),
    "adamw-decay": lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1),
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "sam": lambda p: SAM(p, torch.optim.Adam, rho=0.5, lr=0.05),
}


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 3))
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    return model, x, y


def _train(model, opt, x, y, steps: int) -> None:
    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)


def _sparsity(model) -> float:
    return sparsity_report(model)["sparsity"]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_sparsity_stays_at_the_target_with_any_optimizer(name):
    model, x, y = _setup()
    masks = magnitude_masks(prunable_weights(model), 0.5)
    before = {n: w.detach().clone() for n, w in prunable_weights(model).items()}
    opt = OPTIMIZERS[name](model.parameters())
    Masker(model, masks, opt)
    assert _sparsity(model) == 0.5  # masked at once
    _train(model, opt, x, y, 5)
    assert _sparsity(model) == 0.5
    for n, w in prunable_weights(model).items():
        assert torch.all(w[~masks[n]] == 0)
        assert not torch.equal(w[masks[n]], before[n][masks[n]])  # the kept weights train


def test_the_reported_sam_loop_bug_is_what_the_masker_fixes():
    """Masks applied once and nothing else: SAM revives the pruned weights in three steps (all
    but those of dead ReLU units, whose gradient is zero anyway)."""
    model, x, y = _setup()
    masks = magnitude_masks(prunable_weights(model), 0.5)
    apply_masks(model, masks)
    opt = SAM(model.parameters(), torch.optim.Adam, rho=0.05, lr=1e-3)
    _train(model, opt, x, y, 3)
    assert _sparsity(model) < 0.05

    model, x, y = _setup()
    opt = SAM(model.parameters(), torch.optim.Adam, rho=0.05, lr=1e-3)
    Masker(model, masks, opt)
    _train(model, opt, x, y, 3)
    assert _sparsity(model) == 0.5


def test_the_explicit_two_step_sam_loop_is_masked_too():
    model, x, y = _setup()
    masks = magnitude_masks(prunable_weights(model), 0.5)
    opt = SAM(model.parameters(), torch.optim.Adam, rho=0.5, lr=0.05)
    Masker(model, masks, opt)
    for _ in range(4):
        nn.functional.cross_entropy(model(x), y).backward()
        opt.first_step(zero_grad=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.second_step(zero_grad=True)
    assert _sparsity(model) == 0.5


def test_re_masking_after_the_step_catches_adams_earlier_moments():
    """Pruning mid-training: Adam's moments are not zero at the pruned entries, so masked
    gradients alone let them move; the post-step hook holds them at zero."""
    results = {}
    for attach in (False, True):
        model, x, y = _setup()
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        _train(model, opt, x, y, 3)  # dense steps: moments everywhere
        masks = magnitude_masks(prunable_weights(model), 0.5)
        Masker(model, masks, opt if attach else None)
        _train(model, opt, x, y, 3)
        results[attach] = _sparsity(model)
    assert results[False] < 0.05 and results[True] == 0.5


def test_apply_without_an_optimizer_and_remove():
    model, x, y = _setup()
    masks = magnitude_masks(prunable_weights(model), 0.5)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    _train(model, opt, x, y, 2)
    masker = Masker(model, masks)
    _train(model, opt, x, y, 1)
    assert _sparsity(model) < 0.5
    masker.apply()
    assert _sparsity(model) == 0.5

    masker.attach(opt)
    masker.remove()  # gradient and step hooks both off: the weights train freely
    _train(model, opt, x, y, 1)
    assert _sparsity(model) < 0.05


def test_masks_that_do_not_fit_the_model_raise():
    model, _, _ = _setup()
    with pytest.raises(KeyError, match="lacks"):
        Masker(model, {"9.weight": torch.ones(3, 16, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        Masker(model, {"0.weight": torch.ones(8, 16, dtype=torch.bool)})
