"""Flatness measurements against closed forms on a quadratic, L(w) = 1/2 (w - w*)^T A (w - w*),
whose Hessian is A everywhere; the bookkeeping (the model left exactly as found); the tiny BERT;
and a cross-check against the ``loss-landscapes`` package, with the defects of it that we avoid.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from flatcomp.flatness import (batch_loss_fn, hessian_diagonal, hessian_top_eigenvalue,
                               hessian_trace, interpolate, loss_line, loss_plane,
                               random_direction, sharpness)

EIGS = [10.0, 3.0, 2.0, 1.0, 0.5, 0.1]


def spd(eigs: list[float], rotate: bool = True) -> torch.Tensor:
    """Q diag(eigs) Q^T with a fixed orthogonal Q (or the identity)."""
    lam = torch.diag(torch.tensor(eigs, dtype=torch.float64))
    if not rotate:
        return lam
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ lam @ q.T


class Quadratic(nn.Module):
    def __init__(self, a: torch.Tensor, offset: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("w_star", torch.linspace(-1, 1, len(a), dtype=torch.float64))
        self.w = nn.Parameter(self.w_star + offset)


def quad_loss(model: Quadratic) -> torch.Tensor:
    d = model.w - model.w_star
    return 0.5 * d @ model.a @ d


def value(model: Quadratic) -> float:
    return quad_loss(model).item()


# ---------------------------------------------------------------- the Hessian

@pytest.mark.parametrize("offset", [0.0, 0.7])  # the Hessian is A at and away from the minimum
def test_top_eigenvalue_of_quadratic(offset):
    out = hessian_top_eigenvalue(Quadratic(spd(EIGS), offset), quad_loss, iters=100, tol=1e-10)
    assert out["eigenvalue"] == pytest.approx(10.0, rel=1e-2)
    assert out["converged"] and out["iterations"] == len(out["history"]) < 100
    assert out["change"] < 1e-6


def test_top_eigenvalue_stops_at_iters():
    out = hessian_top_eigenvalue(Quadratic(spd(EIGS)), quad_loss, iters=3, tol=0.0)
    assert out["iterations"] == 3 and not out["converged"]
    assert all(h <= 10.0 + 1e-9 for h in out["history"])  # Rayleigh quotients never overshoot


def test_trace_is_exact_for_diagonal_hessian():
    out = hessian_trace(Quadratic(spd(EIGS, rotate=False)), quad_loss, samples=5)
    assert out["samples"] == 5 and len(out["estimates"]) == 5
    assert out["estimates"] == pytest.approx([sum(EIGS)] * 5, rel=1e-12)
    assert out["std_error"] == pytest.approx(0.0, abs=1e-12)


def test_trace_is_unbiased_for_rotated_hessian():
    out = hessian_trace(Quadratic(spd(EIGS)), quad_loss, samples=300, seed=1)
    assert out["std_error"] > 0  # v^T A v varies with v when A is not diagonal
    assert abs(out["trace"] - sum(EIGS)) < 4 * out["std_error"]
    assert out["trace"] == pytest.approx(sum(EIGS), rel=0.1)


def test_diagonal_is_exact_for_diagonal_hessian():
    a = spd(EIGS, rotate=False)
    diag = hessian_diagonal(Quadratic(a), quad_loss, samples=2)
    assert set(diag) == {"w"}
    torch.testing.assert_close(diag["w"], torch.diagonal(a))


# ---------------------------------------------------------------- sharpness

@pytest.mark.parametrize("steps", [5, 20])
def test_sharpness_at_minimum_is_half_rho2_lambda_max(steps):
    rho = 0.05
    out = sharpness(Quadratic(spd(EIGS)), quad_loss, rho=rho, steps=steps)
    exact = 0.5 * rho ** 2 * max(EIGS)  # the worst e is rho times the top eigenvector
    assert out["loss"] == 0.0 and out["rho"] == rho and out["steps"] == steps
    assert out["sharpness"] == pytest.approx(exact, rel=0.03)
    assert out["sharpness"] <= exact * (1 + 1e-9)  # projected: never outside the ball
    assert out["perturbed_loss"] == out["loss"] + out["sharpness"]


def test_sharper_minimum_is_sharper():
    flat = sharpness(Quadratic(spd(EIGS)), quad_loss, steps=10)["sharpness"]
    sharp = sharpness(Quadratic(10 * spd(EIGS)), quad_loss, steps=10)["sharpness"]
    assert sharp / flat == pytest.approx(10.0, rel=0.03)


def test_sharpness_away_from_minimum_is_at_least_first_order():
    rho, model = 0.05, Quadratic(spd(EIGS), offset=0.3)
    g = spd(EIGS) @ (model.w.detach() - model.w_star)
    out = sharpness(model, quad_loss, rho=rho, steps=5)
    e = rho * g / g.norm()  # SAM's first-order point lies in the ball: the max is at least there
    assert out["sharpness"] >= float(g @ e + 0.5 * e @ spd(EIGS) @ e) - 1e-12
    assert out["loss"] == pytest.approx(value(model))


# ---------------------------------------------------------------- lines, planes, interpolation

def test_loss_line_is_symmetric_at_minimum_and_exact_at_zero():
    a, model = spd(EIGS), Quadratic(spd(EIGS))
    d = torch.linspace(0.5, -1.0, 6, dtype=torch.float64)
    alphas = [-1.0, -0.5, 0.0, 0.5, 1.0]
    line = loss_line(model, quad_loss, {"w": d}, alphas)
    assert line[2] == value(model) == 0.0
    assert line == pytest.approx([0.5 * x * x * float(d @ a @ d) for x in alphas], rel=1e-12)
    assert line[0] == pytest.approx(line[4], rel=1e-12) and line[1] == pytest.approx(line[3])
    moved = Quadratic(spd(EIGS), offset=0.2)
    assert loss_line(moved, quad_loss, {"w": d}, [0.0]) == [value(moved)]


def test_loss_plane_matches_closed_form():
    a, model = spd(EIGS), Quadratic(spd(EIGS))
    d1, d2 = torch.eye(6, dtype=torch.float64)[0], torch.ones(6, dtype=torch.float64)
    alphas, betas = [-1.0, 0.0, 2.0], [-0.5, 0.5]
    plane = loss_plane(model, quad_loss, {"w": d1}, {"w": d2}, alphas, betas)
    assert len(plane) == 3 and all(len(row) == 2 for row in plane)
    for i, x in enumerate(alphas):
        for j, y in enumerate(betas):
            e = x * d1 + y * d2
            assert plane[i][j] == pytest.approx(0.5 * float(e @ a @ e), rel=1e-12)


def test_filter_normalised_direction():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight[1] = 0.0  # a pruned row
    d = random_direction(model, seed=0)
    assert set(d) == {n for n, _ in model.named_parameters()}
    assert not any(t.isnan().any() for t in d.values())
    for name in ("0.weight", "2.weight"):
        w = dict(model.named_parameters())[name].detach()
        torch.testing.assert_close(d[name].norm(dim=1), w.norm(dim=1))
    assert torch.equal(d["0.weight"][1], torch.zeros(4))
    for name in ("0.bias", "1.weight", "1.bias", "2.bias"):  # 1-D: not perturbed (Li et al.)
        assert torch.equal(d[name], torch.zeros_like(d[name]))
    assert torch.equal(random_direction(model, seed=0)["2.weight"], d["2.weight"])
    assert not torch.equal(random_direction(model, seed=1)["2.weight"], d["2.weight"])
    only = random_direction(model, seed=0, params=["2.weight"])
    assert set(only) == {"2.weight"}
    with pytest.raises(ValueError, match="nope"):
        random_direction(model, params=["nope"])


def test_interpolate_endpoints_and_beyond():
    a = spd(EIGS)
    model_a, model_b = Quadratic(a, offset=0.5), Quadratic(a, offset=-0.25)
    alphas = [0.0, 1.0, 2 / 3, -0.5, 1.5]
    out = interpolate(model_a, model_b, quad_loss, alphas)
    assert out[0] == value(model_a) and out[1] == value(model_b)
    for x, got in zip(alphas, out):
        offset = (1 - x) * 0.5 + x * -0.25
        assert got == pytest.approx(value(Quadratic(a, offset)), rel=1e-12)
    assert out[2] == pytest.approx(0.0, abs=1e-20)  # the minimum lies on the segment
    with pytest.raises(ValueError, match="model_b"):
        interpolate(model_a, nn.Linear(2, 2), quad_loss, [0.5])


# ---------------------------------------------------------------- the model is left as found

class Net(nn.Module):
    """A module with every kind of state to disturb: buffers updated by forward (BatchNorm in
    train mode), a sub-module in eval mode, a frozen parameter and a gradient already there."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Dropout(0.5),
                                  nn.Linear(4, 1))
        self.body[3].eval()  # dropout off, on purpose, while the rest trains
        self.body[0].bias.requires_grad_(False)
        self.body[4].weight.grad = torch.ones_like(self.body[4].weight)
        self.x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))


def net_loss(model: Net) -> torch.Tensor:
    return model.body(model.x).square().mean()


def snapshot(model: nn.Module) -> dict:
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "modes": [m.training for m in model.modules()],
            "requires_grad": [p.requires_grad for p in model.parameters()],
            "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()]}


def assert_same(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    assert before["modes"] == after["modes"]
    assert before["requires_grad"] == after["requires_grad"]
    for g0, g1 in zip(before["grads"], after["grads"]):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)


def measurements(other: nn.Module):
    """Every public function, cheap settings; (name, call, the loss_fn call that fails)."""
    return [
        ("sharpness", lambda m, f: sharpness(m, f, steps=3), 3),
        ("top_eigenvalue", lambda m, f: hessian_top_eigenvalue(m, f, iters=3), 1),
        ("trace", lambda m, f: hessian_trace(m, f, samples=2), 1),
        ("diagonal", lambda m, f: hessian_diagonal(m, f, samples=2), 1),
        ("direction", lambda m, f: random_direction(m, seed=0), None),
        ("line", lambda m, f: loss_line(m, f, random_direction(m, 0), [-1.0, 1.0]), 2),
        ("plane", lambda m, f: loss_plane(m, f, random_direction(m, 0), random_direction(m, 1),
                                          [-1.0, 1.0], [0.5]), 2),
        ("interpolate", lambda m, f: interpolate(m, other, f, [0.5, 2.0]), 2),
    ]


@pytest.mark.parametrize("index", range(8))
def test_model_left_bit_identical(index):
    model, other = Net(), Net()
    with torch.no_grad():
        other.body[4].weight.add_(1.0)
    name, call, _ = measurements(other)[index]
    before, other_before = snapshot(model), snapshot(other)
    call(model, net_loss)
    assert_same(before, model)
    assert_same(other_before, other)


@pytest.mark.parametrize("index", [0, 1, 2, 3, 5, 6, 7])
def test_model_restored_when_loss_fn_raises(index):
    """A loss_fn that moves the weights, flips the modes, leaves gradients, then raises."""
    model, other = Net(), Net()
    name, call, fail_at = measurements(other)[index]
    calls = []

    def vandal(m: Net) -> torch.Tensor:
        calls.append(1)
        if len(calls) == fail_at:
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(1.0)
                    p.grad = torch.full_like(p, 7.0)
                m.body[1].running_mean.add_(1.0)
            m.eval()
            m.body[0].bias.requires_grad_(True)
            raise RuntimeError("loss_fn failed")
        return net_loss(m)

    before = snapshot(model)
    with pytest.raises(RuntimeError, match="loss_fn failed"):
        call(model, vandal)
    assert len(calls) == fail_at, name
    assert_same(before, model)


def test_params_restricts_the_measurement():
    model = Net()
    diag = hessian_diagonal(model, net_loss, samples=2, params=["body.4.weight"])
    assert set(diag) == {"body.4.weight"} and diag["body.4.weight"].shape == (1, 4)
    with pytest.raises(ValueError, match="body.0.bias"):  # frozen: not measured
        hessian_trace(model, net_loss, params=["body.0.bias"])


# ---------------------------------------------------------------- the tiny BERT

@pytest.fixture(scope="module")
def bert(smoke, tokenizer):
    from flatcomp.lab.data import Examples, batches, encode, load_task
    from flatcomp.lab.models import load_model

    rows = load_task("rte", smoke).train
    rows = Examples(rows.texts[:16], rows.labels[:16])
    data = encode(rows, tokenizer, smoke.max_length)
    return load_model(smoke, "rte", 0), load_model(smoke, "rte", 1), list(batches(data, 8))


def test_tiny_bert_measurements(bert):
    model, other, model_batches = bert
    loss_fn = batch_loss_fn(model_batches)
    before = snapshot(model)
    assert model.training  # dropout would make the loss random: batch_loss_fn switches it off
    loss = float(loss_fn(model).detach())
    assert loss == float(loss_fn(model).detach()) and model.training
    classifier = ["classifier.weight", "classifier.bias"]
    direction = random_direction(model, seed=0)
    results = {
        "sharpness": sharpness(model, loss_fn, steps=2)["sharpness"],
        "eigenvalue": hessian_top_eigenvalue(model, loss_fn, iters=3)["eigenvalue"],
        "trace": hessian_trace(model, loss_fn, samples=2)["trace"],
        "diagonal": float(hessian_diagonal(model, loss_fn, samples=2,
                                           params=classifier)["classifier.weight"].sum()),
        "line": loss_line(model, loss_fn, direction, [-0.5, 0.0, 0.5]),
        "plane": loss_plane(model, loss_fn, direction, random_direction(model, 1),
                            [-0.5, 0.5], [0.5]),
        "interpolate": interpolate(model, other, loss_fn, [0.0, 1.0], params=classifier),
    }
    assert results["line"][1] == loss
    assert results["interpolate"] == [loss, float(loss_fn(other).detach())]
    assert results["sharpness"] >= 0
    flat = [results["sharpness"], results["eigenvalue"], results["trace"], results["diagonal"],
            *results["line"], *sum(results["plane"], []), *results["interpolate"]]
    assert all(math.isfinite(x) for x in flat), results
    assert_same(before, model)


# ---------------------------------------------------------------- loss-landscapes 3.0.6

def zero_init_bias(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.zeros_(module.bias)


@pytest.fixture
def loss_landscapes():
    from importlib.metadata import version

    module = pytest.importorskip("loss_landscapes")
    if version("loss_landscapes") != "3.0.6":
        pytest.skip("the defects checked are those of loss-landscapes 3.0.6")
    from loss_landscapes.metrics.metric import Metric

    class LossMetric(Metric):
        def __init__(self, loss_fn):
            super().__init__()
            self.loss_fn = loss_fn

        def __call__(self, wrapper):
            return float(self.loss_fn(wrapper.modules[0]))

    return module, LossMetric


def test_interpolation_agrees_with_loss_landscapes(loss_landscapes):
    """Its linear_interpolation evaluates at a = 1/steps, ..., 1 (never at the start, a = 0)."""
    ll, LossMetric = loss_landscapes
    model_a, model_b = Net().eval(), Net().eval()
    for model in (model_a, model_b):  # the package moves every parameter, frozen ones too
        model.body[0].bias.requires_grad_(True)
    with torch.no_grad():
        for p in model_b.parameters():
            p.mul_(-0.5)
    theirs = ll.linear_interpolation(model_a, model_b, LossMetric(net_loss), steps=4,
                                     deepcopy_model=True)
    ours = interpolate(model_a, model_b, net_loss, [0.25, 0.5, 0.75, 1.0])
    assert ours == pytest.approx(list(theirs), rel=1e-5)


def test_loss_landscapes_defects_we_avoid(loss_landscapes):
    ll, LossMetric = loss_landscapes
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    w0 = [p.detach().clone() for p in model.parameters()]
    ll.random_line(model, LossMetric(lambda m: m.weight.sum()), distance=0.1, steps=4)
    # 1. the model is left at the last point evaluated, with requires_grad switched off
    assert not any(torch.equal(a, p) for a, p in zip(w0, model.parameters()))
    assert not any(p.requires_grad for p in model.parameters())
    # 2. `distance` is inverted: the line ends at ||w|| / distance from w, not at distance
    moved = [p.detach() - a for a, p in zip(w0, model.parameters())]
    travelled = float(torch.cat([m.flatten() for m in moved]).norm())
    w_norm = float(torch.cat([a.flatten() for a in w0]).norm())
    assert travelled == pytest.approx(w_norm / 0.1, rel=1e-4)
    # 3. filter normalisation divides by zero on an all-zero bias (BERT's are zero at init)
    zero_bias = nn.Linear(3, 2)
    nn.init.zeros_(zero_bias.bias)
    with pytest.raises(ZeroDivisionError):
        ll.random_line(zero_bias, LossMetric(lambda m: m.weight.sum()), steps=2)
    assert not any(p.requires_grad for p in zero_bias.parameters())  # switched off, again
    ours = random_direction(nn.Linear(3, 2).requires_grad_(True).apply(zero_init_bias))
    assert not any(t.isnan().any() for t in ours.values())


def test_loss_landscapes_plane_grid_is_sheared(loss_landscapes):
    """random_plane walks the grid as a snake, one step along d2 before each evaluation, so odd
    rows sit one step lower along d2 than even rows: the grid is not rectangular."""
    ll, LossMetric = loss_landscapes
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
    w0, points = model.weight.detach().flatten().clone(), []

    def record(m: nn.Module) -> torch.Tensor:
        points.append(m.weight.detach().flatten() - w0)
        return torch.tensor(float(len(points) - 1))

    grid = ll.random_plane(model, LossMetric(record), distance=1, steps=4).astype(int)
    at = [[points[k] for k in row] for row in grid]     # offsets from w, row i, column j
    d1, d2 = (at[2][0] - at[0][0]) / 2, at[0][1] - at[0][0]  # one grid step along each
    basis = torch.stack([d1, d2], dim=1)
    assert torch.linalg.solve(basis, at[0][0]).tolist() == pytest.approx([-2.0, -1.0], abs=1e-4)
    assert torch.linalg.solve(basis, at[1][0]).tolist() == pytest.approx([-1.0, -2.0], abs=1e-4)


def test_masked_sharpness_is_the_sharpness_of_the_subnetwork():
    """Masking out the sharpest coordinate of a diagonal quadratic leaves the next one as the
    worst direction, and the masked coordinate is never moved."""
    eigs = torch.tensor([9.0, 3.0, 1.0, 0.5], dtype=torch.float64)
    model, rho = Quadratic(torch.diag(eigs)), 0.05
    keep = torch.tensor([False, True, True, True])
    seen = []

    def loss_watching_the_pruned_weight(m: Quadratic) -> torch.Tensor:
        seen.append(float(m.w[0] - m.w_star[0]))
        return quad_loss(m)

    out = sharpness(model, loss_watching_the_pruned_weight, rho=rho, steps=20, masks={"w": keep})
    assert out["sharpness"] == pytest.approx(0.5 * rho ** 2 * 3.0, rel=0.03)
    assert set(seen) == {0.0}
    unmasked = sharpness(model, quad_loss, rho=rho, steps=20)
    assert unmasked["sharpness"] == pytest.approx(0.5 * rho ** 2 * 9.0, rel=0.03)
