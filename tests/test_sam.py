"""SAM and ASAM against steps computed by hand on a quadratic loss L(w) = 0.5 w^T A w.

With g = grad L(w) = A w:
    SAM   e = rho g / ||g||,          then w <- w - lr * A (w + e)   (SGD base)
    ASAM  e = rho w^2 g / ||w g||     (element-wise products), same second step
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn

from flatcomp.sam import SAM

A = torch.tensor([[3.0, 1.0, 0.0],
                  [1.0, 2.0, 0.5],
                  [0.0, 0.5, 1.0]], dtype=torch.float64)
W0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
RHO, LR = 0.05, 0.1


def quadratic(w: torch.Tensor, a: torch.Tensor = A) -> torch.Tensor:
    return 0.5 * w @ a @ w


def _backward(w: torch.Tensor, a: torch.Tensor = A) -> None:
    quadratic(w, a).backward()


def test_sam_step_matches_the_hand_computed_step():
    w = nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=RHO, lr=LR)
    g = A @ W0
    e = RHO * g / g.norm()

    _backward(w)
    opt.first_step(zero_grad=True)
    torch.testing.assert_close(w.detach(), W0 + e)
    assert w.grad is None or w.grad.abs().sum() == 0

    _backward(w)
    opt.second_step(zero_grad=True)
    torch.testing.assert_close(w.detach(), W0 - LR * A @ (W0 + e))


def test_sam_step_differs_from_a_plain_sgd_step():
    """The check above would pass for SGD too if e were forgotten; make sure it is not."""
    w = nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=RHO, lr=LR)
    _backward(w)
    opt.first_step(zero_grad=True)
    _backward(w)
    opt.second_step(zero_grad=True)
    assert not torch.allclose(w.detach(), W0 - LR * A @ W0)


def test_asam_step_matches_the_hand_computed_step():
    w = nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=RHO, adaptive=True, lr=LR)
    g = A @ W0
    e = RHO * W0.square() * g / (W0 * g).norm()

    _backward(w)
    opt.first_step(zero_grad=True)
    torch.testing.assert_close(w.detach(), W0 + e)
    _backward(w)
    opt.second_step(zero_grad=True)
    torch.testing.assert_close(w.detach(), W0 - LR * A @ (W0 + e))


def test_step_with_closure_equals_the_two_explicit_steps():
    w1, w2 = nn.Parameter(W0.clone()), nn.Parameter(W0.clone())
    opt1 = SAM([w1], torch.optim.SGD, rho=RHO, lr=LR)
    opt2 = SAM([w2], torch.optim.SGD, rho=RHO, lr=LR)
    _backward(w1)
    opt1.first_step(zero_grad=True)
    _backward(w1)
    opt1.second_step(zero_grad=True)

    loss = opt2.step(_closure(w2, opt2))
    torch.testing.assert_close(w2.detach(), w1.detach())
    torch.testing.assert_close(loss.detach(), quadratic(W0))  # the loss at w, not at w + e


def _explicit_steps(w: nn.Parameter, opt: SAM, steps: int) -> None:
    """davda54/sam's two-step loop, with zero_grad between the passes."""
    for _ in range(steps):
        _backward(w)
        opt.first_step(zero_grad=True)
        _backward(w)
        opt.second_step(zero_grad=True)


def _non_zeroing_closure(w: nn.Parameter):
    """A closure that only calls backward, as in davda54/sam's README."""
    def closure():
        loss = quadratic(w)
        loss.backward()
        return loss
    return closure


@pytest.mark.parametrize("zeroes", [True, False])
def test_step_with_closure_is_the_two_step_loop_bit_for_bit(zeroes):
    """Whether or not the closure zeroes the gradients, step(closure) applies grad L(w + e(w))
    alone, as the explicit loop does (not g(w) + grad L(w + e(w))), bit for bit, Adam base."""
    w1, w2 = nn.Parameter(W0.clone()), nn.Parameter(W0.clone())
    opt1 = SAM([w1], torch.optim.Adam, rho=RHO, lr=0.01)
    opt2 = SAM([w2], torch.optim.Adam, rho=RHO, lr=0.01)
    _explicit_steps(w1, opt1, 3)
    closure = _closure(w2, opt2) if zeroes else _non_zeroing_closure(w2)
    for _ in range(3):
        opt2.step(closure)
    torch.testing.assert_close(w2.detach(), w1.detach(), rtol=0, atol=0)


def test_readme_loop_without_zeroing_gives_the_sam_step():
    """davda54/sam's README: a backward pass before step(closure), a closure that does not zero
    the gradients, zero_grad after. The gradients held on entry must not leak into the step."""
    w = nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=RHO, lr=LR)
    _backward(w)
    loss = opt.step(_non_zeroing_closure(w))
    opt.zero_grad()
    g = A @ W0
    torch.testing.assert_close(w.detach(), W0 - LR * A @ (W0 + RHO * g / g.norm()))
    torch.testing.assert_close(loss.detach(), quadratic(W0))


def test_an_optimizer_instance_as_base_is_a_clear_type_error():
    w = nn.Parameter(W0.clone())
    with pytest.raises(TypeError, match=r"optimizer class.*instance of SGD.*"
                                        r"SAM\(params, torch.optim.SGD, rho=0.05, lr=0.1\)"):
        SAM([w], torch.optim.SGD([w], lr=LR), rho=RHO)
    with pytest.raises(TypeError, match="instance of str"):
        SAM([w], "adam", rho=RHO, lr=LR)


def test_step_without_closure_raises():
    opt = SAM([nn.Parameter(W0.clone())], torch.optim.SGD, lr=LR)
    with pytest.raises(ValueError, match="closure"):
        opt.step()


def test_negative_rho_raises():
    with pytest.raises(ValueError, match="rho"):
        SAM([nn.Parameter(W0.clone())], torch.optim.SGD, rho=-0.1, lr=LR)


def test_zero_gradient_gives_no_nan_and_no_move():
    w = nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=RHO, lr=LR)
    w.grad = torch.zeros_like(w)
    opt.first_step()
    assert torch.isfinite(w).all()
    assert torch.equal(w.detach(), W0)
    opt.second_step()
    assert torch.equal(w.detach(), W0)


def test_parameter_without_gradient_is_skipped():
    w = nn.Parameter(W0.clone())
    frozen = nn.Parameter(torch.tensor([4.0, 5.0], dtype=torch.float64))
    opt = SAM([w, frozen], torch.optim.SGD, rho=RHO, lr=LR)
    g = A @ W0
    _backward(w)  # frozen.grad stays None
    opt.first_step(zero_grad=True)
    assert frozen.grad is None
    torch.testing.assert_close(w.detach(), W0 + RHO * g / g.norm())  # the norm ignores frozen
    assert torch.equal(frozen.detach(), torch.tensor([4.0, 5.0], dtype=torch.float64))
    _backward(w)
    opt.second_step(zero_grad=True)
    assert torch.equal(frozen.detach(), torch.tensor([4.0, 5.0], dtype=torch.float64))


def test_param_groups_use_their_own_rho():
    """e_i = rho_i g_i / ||g||: each group its own radius, one norm over all parameters."""
    u = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    v = nn.Parameter(torch.tensor([-1.0, 3.0], dtype=torch.float64))
    opt = SAM([{"params": [u], "rho": 0.2}, {"params": [v]}], torch.optim.SGD, rho=0.05, lr=LR)
    (u.square().sum() + 0.5 * v.square().sum()).backward()
    gu, gv = 2 * u.detach().clone(), v.detach().clone()
    norm = torch.cat([gu, gv]).norm()
    u0, v0 = u.detach().clone(), v.detach().clone()
    opt.first_step()
    torch.testing.assert_close(u.detach(), u0 + 0.2 * gu / norm)
    torch.testing.assert_close(v.detach(), v0 + 0.05 * gv / norm)


def _closure(w: nn.Parameter, opt: SAM):
    def closure():
        opt.zero_grad()
        loss = quadratic(w)
        loss.backward()
        return loss
    return closure


def _adam_sam_steps(w: nn.Parameter, opt: SAM, steps: int) -> None:
    for _ in range(steps):
        opt.step(_closure(w, opt))


def test_state_dict_round_trip_with_adam_base():
    w = nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.Adam, rho=RHO, lr=0.01)
    _adam_sam_steps(w, opt, 3)
    buffer = io.BytesIO()  # through a checkpoint file: state_dict() itself shares tensors
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)

    w2 = nn.Parameter(w.detach().clone())
    opt2 = SAM([w2], torch.optim.Adam, rho=RHO, lr=0.5)  # a different lr, overwritten by the load
    opt2.load_state_dict(state)
    assert float(opt2.base_optimizer.state[w2]["step"]) == 3
    torch.testing.assert_close(opt2.base_optimizer.state[w2]["exp_avg"],
                               opt.base_optimizer.state[w]["exp_avg"])
    assert opt2.param_groups[0]["lr"] == 0.01
    assert opt2.param_groups[0]["rho"] == RHO
    assert opt2.param_groups is opt2.base_optimizer.param_groups

    _adam_sam_steps(w, opt, 1)
    _adam_sam_steps(w2, opt2, 1)
    assert float(opt2.base_optimizer.state[w2]["step"]) == 4
    torch.testing.assert_close(w2.detach(), w.detach(), rtol=0, atol=0)


def test_scheduler_on_sam_changes_the_base_optimizers_lr():
    w = nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=RHO, lr=LR)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    opt.step(_closure(w, opt))
    scheduler.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(LR / 2)

    # the next step really uses the halved lr
    start = w.detach().clone()
    g = A @ start
    e = RHO * g / g.norm()
    opt.step(_closure(w, opt))
    torch.testing.assert_close(w.detach(), start - LR / 2 * A @ (start + e))


class _DropoutModel(nn.Module):
    def __init__(self, n: int = 200) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(0.5, 1.5, n))
        self.drop = nn.Dropout(p=0.5)
        self.masks: list[torch.Tensor] = []

    def forward(self) -> torch.Tensor:
        out = self.drop(self.w)
        self.masks.append((out != 0).detach().clone())
        return out.square().sum()


def test_closure_passes_share_one_dropout_mask():
    torch.manual_seed(0)
    model = _DropoutModel().train()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=RHO, lr=LR)

    def closure():
        opt.zero_grad()
        loss = model()
        loss.backward()
        return loss

    opt.step(closure)
    first, second = model.masks
    assert 0 < first.sum() < first.numel()  # dropout really dropped something
    assert torch.equal(first, second)
    opt.step(closure)  # the next step draws a new mask
    assert not torch.equal(model.masks[2], first)


def test_masked_weight_stays_exactly_zero_with_adam_base():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4)
    mask = torch.rand_like(layer.weight) > 0.5
    with torch.no_grad():
        layer.weight.mul_(mask)
    opt = SAM(layer.parameters(), torch.optim.Adam, rho=0.5, lr=0.05)
    x, y = torch.randn(16, 6), torch.randn(16, 4)

    def closure():
        opt.zero_grad()
        loss = (layer(x) - y).square().mean()
        loss.backward()
        layer.weight.grad.mul_(mask)
        return loss

    before = layer.weight.detach().clone()
    for _ in range(5):
        opt.step(closure)
    assert torch.all(layer.weight[~mask] == 0)
    assert not torch.equal(layer.weight[mask], before[mask])  # the rest did train


def test_gradient_accumulation_before_first_step():
    """Two backward passes add up: e and the base step use the summed gradient."""
    B = torch.tensor([[1.0, 0.0, 0.0], [0.0, 4.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    w = nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=RHO, lr=LR)
    g = (A + B) @ W0
    e = RHO * g / g.norm()

    _backward(w, A)
    _backward(w, B)
    opt.first_step(zero_grad=True)
    torch.testing.assert_close(w.detach(), W0 + e)
    _backward(w, A)
    _backward(w, B)
    opt.second_step(zero_grad=True)
    torch.testing.assert_close(w.detach(), W0 - LR * (A + B) @ (W0 + e))


def test_grad_scaler_recipe_gives_the_unscaled_update():
    """The module docstring's fp16 recipe: scaled backward passes, restore, scaler.step on the
    base optimizer. e(w) depends only on the gradient's direction, so it equals plain SAM."""
    w = nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=RHO, lr=LR)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.scale(quadratic(w)).backward()
    opt.first_step(zero_grad=True)
    scaler.scale(quadratic(w)).backward()
    opt.restore()
    scaler.step(opt.base_optimizer)
    scaler.update()
    g = A @ W0
    torch.testing.assert_close(w.detach(), W0 - LR * A @ (W0 + RHO * g / g.norm()))


def test_an_overflowed_gradient_perturbs_nothing():
    w = nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=RHO, lr=LR)
    w.grad = torch.tensor([float("inf"), 1.0, 0.0], dtype=torch.float64)
    opt.first_step()
    assert torch.equal(w.detach(), W0)
    opt.restore()
    assert torch.equal(w.detach(), W0)
