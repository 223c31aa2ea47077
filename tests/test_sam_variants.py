"""The cheaper SAM variants against steps computed by hand (SGD base, no momentum).

On the quadratic L(w) = 0.5 w^T A w, with g(w) = A w and e(w) = rho g / ||g||:
    SAM step    w <- w - lr A (w + e(w))
    plain step  w <- w - lr A w
ESAM on least squares, l_i(w) = 0.5 (x_i . w - y_i)^2; SAM-ON on a tiny net, its gradients by
autograd at hand-made points.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from flatcomp.pruning import Masker, magnitude_masks, prunable_weights, sparsity_report
from flatcomp.sam import SAM
from flatcomp.sam_variants import ESAM, KStepSAM, LookSAM, norm_parameters, sam_on

A = torch.tensor([[3.0, 1.0, 0.0],
                  [1.0, 2.0, 0.5],
                  [0.0, 0.5, 1.0]], dtype=torch.float64)
W0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
RHO, LR = 0.05, 0.1


def _e(w: torch.Tensor) -> torch.Tensor:
    g = A @ w
    return RHO * g / g.norm()


def _sam(w: torch.Tensor) -> torch.Tensor:
    return w - LR * A @ (w + _e(w))


def _plain(w: torch.Tensor) -> torch.Tensor:
    return w - LR * A @ w


def _quadratic_closure(w: nn.Parameter, opt: torch.optim.Optimizer):
    def closure():
        opt.zero_grad()
        loss = 0.5 * w @ A @ w
        loss.backward()
        return loss
    return closure


def _run(opt_class, steps: int, **kwargs) -> list[torch.Tensor]:
    w = nn.Parameter(W0.clone())
    opt = opt_class([w], torch.optim.SGD, rho=RHO, lr=LR, **kwargs)
    path = []
    for _ in range(steps):
        opt.step(_quadratic_closure(w, opt))
        path.append(w.detach().clone())
    return path


# ---------------------------------------------------------------- SAM every k steps

def test_k_step_sam_is_sam_on_every_kth_call_and_plain_in_between():
    path = _run(KStepSAM, 4, k=2)
    w1 = _sam(W0)
    w2 = _plain(w1)
    w3 = _sam(w2)
    for got, want in zip(path, [w1, w2, w3, _plain(w3)]):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(w2, _sam(w1))  # the plain step really differs from a SAM step


def test_k_step_sam_with_k_1_is_sam():
    torch.testing.assert_close(torch.stack(_run(KStepSAM, 3, k=1)), torch.stack(_run(SAM, 3)))
    with pytest.raises(ValueError, match="k must be"):
        KStepSAM([nn.Parameter(W0.clone())], torch.optim.SGD, k=0, lr=LR)


# ---------------------------------------------------------------- LookSAM

def _looksam_by_hand(alpha: float) -> list[torch.Tensor]:
    g = A @ W0
    g_s = A @ (W0 + _e(W0))
    g_v = g_s - (g @ g_s) / (g @ g) * g
    assert abs(float(g_v @ g)) < 1e-12  # orthogonal to g, by construction
    w1 = W0 - LR * g_s
    g1 = A @ w1
    w2 = w1 - LR * (g1 + alpha * g1.norm() / g_v.norm() * g_v)
    g2 = A @ w2
    w3 = w2 - LR * (g2 + alpha * g2.norm() / g_v.norm() * g_v)  # the same g_v, reused
    return [w1, w2, w3, _sam(w3)]


def test_looksam_matches_the_hand_computed_steps():
    path = _run(LookSAM, 4, k=3, alpha=0.7)
    for got, want in zip(path, _looksam_by_hand(0.7)):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(path[1], _plain(path[0]))  # g_v really is added


def test_looksam_with_alpha_0_is_k_step_sam():
    torch.testing.assert_close(torch.stack(_run(LookSAM, 4, k=3, alpha=0.0)),
                               torch.stack(_run(KStepSAM, 4, k=3)))


# ---------------------------------------------------------------- ESAM

X = torch.tensor([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0], [-1.0, 2.0, 1.0], [2.0, 1.0, -0.5]],
                 dtype=torch.float64)
Y = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
V0 = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
ESAM_RHO = 0.5


def _losses(v: torch.Tensor, rows=slice(None)) -> torch.Tensor:
    return 0.5 * (X[rows] @ v - Y[rows]) ** 2


def _esam(beta: float, gamma: float, seed: int = 0):
    v = nn.Parameter(V0.clone())
    opt = ESAM([v], torch.optim.SGD, rho=ESAM_RHO, beta=beta, gamma=gamma, seed=seed, lr=LR)
    calls = []

    def closure(indices=None):
        calls.append(None if indices is None else indices.tolist())
        return _losses(v, slice(None) if indices is None else indices)

    loss = opt.step(closure)
    return v.detach(), loss, calls


def _esam_by_hand(mask: torch.Tensor, beta: float, rows: list[int]) -> torch.Tensor:
    g = X.T @ (X @ V0 - Y) / len(Y)
    e_hat = mask * ESAM_RHO * g / g.norm() / beta
    xs, ys = X[rows], Y[rows]
    return V0 - LR * xs.T @ (xs @ (V0 + e_hat) - ys) / len(rows)


def test_esam_data_selection_takes_the_largest_loss_increases():
    """beta = 1 (all perturbed), gamma = 0.5: the second gradient on 2 of the 4 examples."""
    g = X.T @ (X @ V0 - Y) / 4
    increase = _losses(V0 + ESAM_RHO * g / g.norm()) - _losses(V0)
    assert increase.topk(2).indices.sort().values.tolist() == [2, 3]  # by hand: 1.06, 2.65
    assert _losses(V0).topk(2).indices.sort().values.tolist() == [1, 3]  # not the largest loss
    v, loss, calls = _esam(beta=1.0, gamma=0.5)
    assert calls == [None, None, [2, 3]]  # at w, at w + e without gradients, the chosen two
    torch.testing.assert_close(v, _esam_by_hand(torch.ones(3), 1.0, [2, 3]))
    torch.testing.assert_close(loss, _losses(V0).mean())


def test_esam_weight_perturbation_uses_the_seeded_bernoulli_mask():
    """beta = 0.5, gamma = 1 (no selection, no extra pass): e_hat = m * e / beta."""
    mask = torch.rand(3, generator=torch.Generator().manual_seed(0)) < 0.5
    assert mask.tolist() == [True, False, True]
    v, _, calls = _esam(beta=0.5, gamma=1.0, seed=0)
    assert calls == [None, None]
    torch.testing.assert_close(v, _esam_by_hand(mask.double(), 0.5, [0, 1, 2, 3]))
    v_both, _, _ = _esam(beta=0.5, gamma=0.5, seed=0)
    assert not torch.allclose(v_both, v)


def test_esam_perturbs_a_fraction_beta_scaled_by_one_over_beta():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(20_000, dtype=torch.float64))
    w0 = w.detach().clone()
    opt = ESAM([w], torch.optim.SGD, rho=RHO, beta=0.6, lr=LR)
    w.grad = torch.randn_like(w)
    w.grad[:1000] = 0  # masked entries: never perturbed
    opt.first_step()
    moved = (w - w0).detach()
    e = RHO * w.grad / w.grad.norm()
    perturbed = moved != 0
    assert perturbed.double().mean() == pytest.approx(0.6 * 19 / 20, abs=0.01)
    assert not perturbed[:1000].any()
    torch.testing.assert_close(moved[perturbed], e[perturbed] / 0.6)
    opt.restore()
    torch.testing.assert_close(w.detach(), w0)
    assert torch.equal(w[:1000].detach(), w0[:1000])


def test_esam_checks_its_arguments_and_closure():
    w = nn.Parameter(W0.clone())
    for bad in (dict(beta=0.0), dict(gamma=1.5)):
        with pytest.raises(ValueError, match="must be in"):
            ESAM([w], torch.optim.SGD, lr=LR, **bad)
    opt = ESAM([w], torch.optim.SGD, lr=LR)
    with pytest.raises(ValueError, match="per-example"):
        opt.step(lambda indices=None: 0.5 * w @ A @ w)
    with pytest.raises(ValueError, match="closure"):
        opt.step()


# ---------------------------------------------------------------- SAM-ON

class _Net(nn.Module):
    """A Linear, a LayerNorm under Hugging Face's name, a Linear named so as to fool a test by
    name, a BatchNorm and a GroupNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(2, 4)
        self.LayerNorm = nn.LayerNorm(4)
        self.norm_proj = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.gn(self.bn(self.norm_proj(self.LayerNorm(self.dense(x))))))


NORM_NAMES = ["LayerNorm.weight", "LayerNorm.bias", "bn.weight", "bn.bias", "gn.weight", "gn.bias"]


def test_norm_parameters_are_chosen_by_module_type():
    net = _Net()
    assert list(norm_parameters(net)) == NORM_NAMES
    net.gn.weight.requires_grad_(False)
    assert "gn.weight" not in norm_parameters(net)
    with pytest.raises(ValueError, match="no trainable normalization"):
        sam_on(nn.Sequential(nn.Linear(2, 2)), torch.optim.SGD, lr=LR)


def _net_and_data():
    torch.manual_seed(0)
    net = _Net().double().eval()  # eval: BatchNorm uses its running statistics, a fixed map
    with torch.no_grad():
        for m in (net.LayerNorm, net.bn, net.gn):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
    return net, torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)


def _mse(net, params, x, y):
    return (functional_call(net, params, (x,)) - y).square().mean()


def test_sam_on_perturbs_only_the_norm_layers_with_their_own_norm():
    net, x, y = _net_and_data()
    start = {n: p.detach().clone().requires_grad_() for n, p in net.named_parameters()}
    rho = 0.3
    g = dict(zip(start, torch.autograd.grad(_mse(net, start, x, y), list(start.values()))))
    norm_g = torch.stack([g[n].norm() for n in NORM_NAMES]).norm()
    perturbed = {n: (w + (rho * g[n] / norm_g if n in NORM_NAMES else 0)).detach().requires_grad_()
                 for n, w in start.items()}
    g_s = torch.autograd.grad(_mse(net, perturbed, x, y), list(perturbed.values()))
    expected = {n: w.detach() - LR * gs for (n, w), gs in zip(start.items(), g_s)}

    opt = sam_on(net, torch.optim.SGD, rho=rho, lr=LR)

    def closure():
        opt.zero_grad()
        loss = (net(x) - y).square().mean()
        loss.backward()
        return loss

    opt.step(closure)
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name])
    assert sum(p.numel() for g_ in opt.param_groups for p in g_["params"]) == sum(
        p.numel() for p in net.parameters())  # every parameter is stepped


# ---------------------------------------------------------------- masks hold

VARIANTS = {
    "k-step": lambda m: KStepSAM(m.parameters(), torch.optim.Adam, rho=0.5, k=2, lr=0.05),
    "looksam": lambda m: LookSAM(m.parameters(), torch.optim.Adam, rho=0.5, k=3, lr=0.05),
    "esam": lambda m: ESAM(m.parameters(), torch.optim.Adam, rho=0.5, lr=0.05),
    "sam-on": lambda m: sam_on(m, torch.optim.Adam, rho=0.5, lr=0.05),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pruned_weights_stay_zero_under_every_variant(variant):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 16),
                          nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    masks = magnitude_masks(prunable_weights(model), 0.5)
    opt = VARIANTS[variant](model)
    Masker(model, masks)  # gradient hooks only: no variant perturbs a zero-gradient entry
    before = {n: w.detach().clone() for n, w in prunable_weights(model).items()}

    def closure(indices=None):
        xb, yb = (x, y) if indices is None else (x[indices], y[indices])
        losses = nn.functional.cross_entropy(model(xb), yb, reduction="none")
        if variant == "esam":
            return losses
        opt.zero_grad()
        losses.mean().backward()
        return losses.mean()

    for _ in range(6):
        opt.step(closure)
    assert sparsity_report(model)["sparsity"] == 0.5
    weights = prunable_weights(model)
    assert all(not torch.equal(weights[n][masks[n]], before[n][masks[n]]) for n in masks)


@pytest.mark.parametrize("make", ["ksam", "looksam"])
def test_a_closure_that_does_not_zero_the_gradients_gives_the_same_steps(make):
    """davda54/sam's README closure calls backward without zeroing: the variants zero first."""
    from flatcomp.sam_variants import KStepSAM, LookSAM

    def run(zeroing: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        kind = KStepSAM if make == "ksam" else LookSAM
        extra = {} if make == "ksam" else {"alpha": 0.7}
        opt = kind(model.parameters(), torch.optim.Adam, rho=0.05, k=2, lr=1e-2, **extra)
        x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))

        def closure():
            if zeroing:
                opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss
        for _ in range(5):
            opt.step(closure)
        return [p.detach().clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(run(True), run(False)))
