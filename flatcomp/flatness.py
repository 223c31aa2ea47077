"""How flat is a minimum? Worst-case sharpness, the Hessian's top eigenvalue, trace and diagonal,
and the loss along filter-normalised random directions.

Every measurement takes a model and a loss function ``loss_fn(model) -> scalar tensor`` that
evaluates the model on FIXED batches, so that the same weights always give the same loss. For
Hugging Face models :func:`batch_loss_fn` builds one (eval mode: dropout off):

    loss_fn = batch_loss_fn([batch_1, batch_2])       # mean of model(**batch).loss
    sharpness(model, loss_fn, rho=0.05)                # max_{||e|| <= rho} L(w + e) - L(w)
    hessian_top_eigenvalue(model, loss_fn)             # lambda_max(H), power iteration
    hessian_trace(model, loss_fn)                      # tr(H), Hutchinson
    loss_line(model, loss_fn, random_direction(model, seed=0), [-1, -0.5, 0, 0.5, 1])

The parameters measured are those with ``requires_grad``, optionally restricted to a list of
names (``params=[...]``); the norm of a perturbation is taken over all of them together.

Every function leaves the model as it found it: weights and buffers bit-identical (restored from
a copy, also when ``loss_fn`` raises), each module's train/eval flag, each parameter's
``requires_grad`` and ``.grad``. The ``loss-landscapes`` package (3.0.6) does not: it leaves the
model at the last point it evaluated, with ``requires_grad`` switched off.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

LossFn = Callable[[nn.Module], torch.Tensor]
Direction = dict[str, torch.Tensor]


# ---------------------------------------------------------------- loss functions, bookkeeping

def batch_loss_fn(model_batches: list[dict]) -> LossFn:
    """``loss_fn(model) = mean_b model(**b).loss`` over a fixed list of Hugging Face batches.

    The model runs in eval mode (no dropout, so the loss is a deterministic function of the
    weights); every module's train/eval flag is put back afterwards. Batches move to the model's
    device. Gradients flow (no ``torch.no_grad``): the Hessian measurements differentiate it.
    """
    if not model_batches:
        raise ValueError("batch_loss_fn needs at least one batch")

    def loss_fn(model: nn.Module) -> torch.Tensor:
        device = next(model.parameters()).device
        with _train_flags_kept(model):
            model.eval()
            losses = [model(**{k: v.to(device) for k, v in batch.items()}).loss
                      for batch in model_batches]
        return torch.stack(losses).mean()

    return loss_fn


@contextlib.contextmanager
def _train_flags_kept(model: nn.Module) -> Iterator[None]:
    """Put back every module's ``training`` flag on exit (``model.train()`` alone would not:
    a sub-module may have been in eval mode on purpose)."""
    modules = list(model.modules())
    flags = [m.training for m in modules]
    try:
        yield
    finally:
        for module, flag in zip(modules, flags):
            module.training = flag


@contextlib.contextmanager
def _model_kept(model: nn.Module) -> Iterator[None]:
    """On exit, even by an exception: weights and buffers copied back bit for bit, gradients,
    ``requires_grad`` and train/eval flags as they were."""
    params = list(model.parameters())
    buffers = list(model.buffers())
    weights = [p.detach().clone() for p in params]
    saved_buffers = [b.detach().clone() for b in buffers]
    grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
    requires = [p.requires_grad for p in params]
    try:
        with _train_flags_kept(model):
            yield
    finally:
        with torch.no_grad():
            for p, w, g, r in zip(params, weights, grads, requires):
                p.copy_(w)
                p.grad = g
                p.requires_grad_(r)
            for b, saved in zip(buffers, saved_buffers):
                b.copy_(saved)


def _named_params(model: nn.Module, params: Sequence[str] | None = None) -> dict[str, nn.Parameter]:
    """The parameters measured: those with ``requires_grad``, restricted to ``params`` if given."""
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if params is None:
        chosen = trainable
    else:
        unknown = [n for n in params if n not in trainable]
        if unknown:
            raise ValueError(f"not trainable parameters of the model: {unknown}")
        chosen = {n: trainable[n] for n in params}
    if not chosen:
        raise ValueError("no parameters to measure (none has requires_grad)")
    return chosen


@torch.no_grad()
def _move(params: list[nn.Parameter], base: list[torch.Tensor],
          steps: Sequence[tuple[float, list[torch.Tensor]]]) -> None:
    """Set p = w + sum_k a_k d_k, always from the saved ``base`` (no drift from repeated adds)."""
    for i, (p, w) in enumerate(zip(params, base)):
        value = w.clone()
        for scale, direction in steps:
            value.add_(direction[i], alpha=scale)
        p.copy_(value)


def _dot(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(xs, ys))


def _norm(xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(_dot(xs, xs))


def _grads(outputs: torch.Tensor, params: list[torch.Tensor], create_graph: bool = False,
           retain_graph: bool | None = None) -> list[torch.Tensor]:
    """d outputs / d params; zeros for parameters the output does not depend on."""
    if not outputs.requires_grad:
        return [torch.zeros_like(p) for p in params]
    grads = torch.autograd.grad(outputs, params, create_graph=create_graph,
                                retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


# ---------------------------------------------------------------- worst-case sharpness

def sharpness(model: nn.Module, loss_fn: LossFn, rho: float = 0.05, steps: int = 5,
              step_size: float | None = None, seed: int = 0,
              params: Sequence[str] | None = None,
              masks: Mapping[str, torch.Tensor] | None = None) -> dict:
    """Worst-case sharpness in an L2 ball (Keskar et al., ICLR 2017; Foret et al., ICLR 2021):

        S_rho(w) = max_{||e||_2 <= rho} L(w + e) - L(w),

    the quantity SAM minimises (its first-order inner solution e = rho g/||g|| is one step of
    what is done here). The inner max is approximated by projected normalised gradient ascent,

        e_{t+1} = P_rho(e_t + eta * g_t / ||g_t||_2),   g_t = grad L(w + e_t),
        P_rho(e) = e * min(1, rho / ||e||_2),

    with norms over all measured parameters together, ``steps`` steps of size
    eta = ``step_size``, by default 2.5 rho / steps (Madry et al., ICLR 2018's rule for PGD: enough
    to go from the centre to the boundary and still move along it). e_0 is a seeded Gaussian of
    norm 1e-3 rho: at an exact stationary point (g = 0) the ascent could otherwise not start; away
    from one, the gradient dominates it. The reported perturbed loss is the largest loss seen at
    the iterates (all inside the ball, e = 0 included), so the result is a lower bound of S_rho and
    never negative.

    ``masks`` (``{parameter name: bool tensor}``, e.g. a lottery ticket's) keep the perturbation
    inside a subnetwork: e_0 and every g_t are zero where the mask is False, so pruned weights
    stay pruned and S_rho is the sharpness of the subnetwork.

    Returns {"sharpness", "loss": L(w), "perturbed_loss", "rho", "steps"}.
    """
    return _worst_case(model, loss_fn, rho, steps, step_size, seed, params, masks)


def adaptive_sharpness(model: nn.Module, loss_fn: LossFn, rho: float = 0.5, steps: int = 5,
                       step_size: float | None = None, seed: int = 0,
                       params: Sequence[str] | None = None,
                       masks: Mapping[str, torch.Tensor] | None = None) -> dict:
    """Adaptive worst-case sharpness (Kwon et al., ICML 2021, "ASAM"; Andriushchenko et al.,
    ICML 2023): the ball is measured in units of each weight's own size,

        S^a_rho(w) = max_{||e / |w| ||_2 <= rho} L(w + e) - L(w),

    so rescaling the weights in a way that leaves the function unchanged (a head's W_Q by a, its
    W_K by 1/a) leaves it unchanged too, which plain :func:`sharpness` is not. Computed by the
    same projected ascent as :func:`sharpness` in the scaled variable u = e / |w| (the gradient
    in u is |w| * g); a weight at exactly zero is never perturbed. Same arguments and returns."""
    return _worst_case(model, loss_fn, rho, steps, step_size, seed, params, masks, adaptive=True)


def _worst_case(model: nn.Module, loss_fn: LossFn, rho: float, steps: int,
                step_size: float | None, seed: int, params: Sequence[str] | None,
                masks: Mapping[str, torch.Tensor] | None, adaptive: bool = False) -> dict:
    """The projected ascent of :func:`sharpness`, in e, or in u = e / |w| when ``adaptive``."""
    if rho < 0 or steps < 0:
        raise ValueError(f"rho and steps must be non-negative, got rho={rho}, steps={steps}")
    eta = step_size if step_size is not None else 2.5 * rho / max(steps, 1)
    named = _named_params(model, params)
    chosen = list(named.values())
    keep = [None if masks is None or n not in masks else masks[n].to(p.device, p.dtype)
            for n, p in named.items()]
    scale = [p.detach().abs().clone() for p in chosen] if adaptive else None

    def in_subnetwork(xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [x if m is None else x * m for x, m in zip(xs, keep)]

    def scaled(xs: list[torch.Tensor]) -> list[torch.Tensor]:  # u -> e, and g -> grad in u
        return xs if scale is None else [x * t for x, t in zip(xs, scale)]

    with _model_kept(model):
        base = [p.detach().clone() for p in chosen]
        with torch.no_grad():
            loss = float(loss_fn(model))
        e = in_subnetwork(_gaussian(chosen, seed))
        e_norm = max(float(_norm(e)), 1e-30)
        e = [x * (1e-3 * rho / e_norm) for x in e]
        worst = loss
        for _ in range(steps):
            _move(chosen, base, [(1.0, scaled(e))])
            with torch.enable_grad():
                perturbed = loss_fn(model)
                g = scaled(in_subnetwork(_grads(perturbed, chosen)))
            worst = max(worst, float(perturbed.detach()))
            g_norm = float(_norm(g))
            if g_norm == 0.0:
                break
            e = [x + (eta / g_norm) * gx for x, gx in zip(e, g)]
            e_norm = max(float(_norm(e)), 1e-30)
            e = [x * min(1.0, rho / e_norm) for x in e]
        _move(chosen, base, [(1.0, scaled(e))])
        with torch.no_grad():
            worst = max(worst, float(loss_fn(model)))
    return {"sharpness": worst - loss, "loss": loss, "perturbed_loss": worst,
            "rho": rho, "steps": steps}


# ---------------------------------------------------------------- the Hessian

def _hvp_operator(model: nn.Module, loss_fn: LossFn,
                  chosen: list[nn.Parameter]) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    """v -> H v by double backward (Pearlmutter 1994): H v = grad_w (grad_w L(w) . v).

    The loss and its gradient graph are built once; each product is one more backward pass.
    Attention runs on PyTorch's plain "math" kernel: the fused ones (flash attention on the CPU,
    flash and memory-efficient on CUDA) have no second derivative.
    """
    with sdpa_kernel([SDPBackend.MATH]):
        grads = _grads(loss_fn(model), chosen, create_graph=True)

    def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
        return [h.detach() for h in _grads(_dot(grads, v), chosen, retain_graph=True)]

    return hvp


def hessian_top_eigenvalue(model: nn.Module, loss_fn: LossFn, iters: int = 20, tol: float = 1e-3,
                           seed: int = 0, params: Sequence[str] | None = None) -> dict:
    """The Hessian's dominant eigenvalue by power iteration on Hessian-vector products
    (as PyHessian does: Yao et al., "PyHessian: Neural Networks Through the Lens of the Hessian",
    IEEE BigData 2020):

        v_0 ~ N(0, I) (seeded), normalised;   lambda_k = v_k^T H v_k;   v_{k+1} = H v_k / ||H v_k||,

    stopping after ``iters`` products or once |lambda_k - lambda_{k-1}| <= tol |lambda_{k-1}|.
    The error of lambda_k shrinks like (lambda_2 / lambda_1)^(2k). Power iteration finds the
    eigenvalue of largest magnitude, which is the top one near a minimum (H nearly positive
    semi-definite); far from one it may be a negative eigenvalue.

    Returns {"eigenvalue": the last estimate, "iterations", "history": every estimate,
    "change": |last - previous| (a convergence error bar; nan after one iteration), "converged"}.
    """
    chosen = list(_named_params(model, params).values())
    history: list[float] = []
    converged = False
    with _model_kept(model), torch.enable_grad():
        hvp = _hvp_operator(model, loss_fn, chosen)
        v = _gaussian(chosen, seed)
        v_norm = _norm(v)
        v = [x / v_norm for x in v]
        for _ in range(iters):
            hv = hvp(v)
            history.append(float(_dot(v, hv)))
            hv_norm = _norm(hv)
            if hv_norm == 0:  # H v = 0: a zero Hessian along everything reached
                converged = True
                break
            v = [x / hv_norm for x in hv]
            if len(history) > 1 and abs(history[-1] - history[-2]) <= tol * abs(history[-2]):
                converged = True
                break
    change = abs(history[-1] - history[-2]) if len(history) > 1 else math.nan
    return {"eigenvalue": history[-1] if history else math.nan, "iterations": len(history),
            "history": history, "change": change, "converged": converged}


def hessian_trace(model: nn.Module, loss_fn: LossFn, samples: int = 20, seed: int = 0,
                  params: Sequence[str] | None = None) -> dict:
    """Hutchinson's estimator of the Hessian's trace (Hutchinson 1989; Avron & Toledo, JACM 2011):

        tr(H) = E_v[v^T H v],   v with independent Rademacher (+-1) entries,

    averaged over ``samples`` draws. Its variance is 2 sum_{i != j} H_ij^2: exact when H is
    diagonal. Returns {"trace": mean, "std_error": std / sqrt(n) (nan for n = 1), "samples": n,
    "estimates": every v^T H v}.
    """
    chosen = list(_named_params(model, params).values())
    estimates: list[float] = []
    with _model_kept(model), torch.enable_grad():
        hvp = _hvp_operator(model, loss_fn, chosen)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(samples):
            v = _rademacher(chosen, generator)
            estimates.append(float(_dot(v, hvp(v))))
    return {"trace": _mean(estimates), "std_error": _std_error(estimates),
            "samples": len(estimates), "estimates": estimates}


def hessian_diagonal(model: nn.Module, loss_fn: LossFn, samples: int = 20, seed: int = 0,
                     params: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Hutchinson's estimator of the Hessian's diagonal (Bekas, Kokiopoulou & Saad, Applied
    Numerical Mathematics 2007; used by HAWQ-V2 for quantization, Dong et al., NeurIPS 2020):

        diag(H) = E_v[v * (H v)],   v Rademacher,

    the mean over ``samples`` draws, per parameter name (detached, on the parameter's device).
    Exact for a diagonal H, since v_i^2 = 1.
    """
    named = _named_params(model, params)
    chosen = list(named.values())
    total = [torch.zeros_like(p) for p in chosen]
    with _model_kept(model), torch.enable_grad():
        hvp = _hvp_operator(model, loss_fn, chosen)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(samples):
            v = _rademacher(chosen, generator)
            for t, x, hx in zip(total, v, hvp(v)):
                t.add_(x * hx)
    return {name: t / max(samples, 1) for name, t in zip(named, total)}


def _gaussian(like: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """N(0, I) tensors shaped like ``like``, drawn on the CPU from a seeded generator (so the
    same seed gives the same vector on any device)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.device, p.dtype)
            for p in like]


def _rademacher(like: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    return [(torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p.device, p.dtype)
            for p in like]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _std_error(xs: list[float]) -> float:
    if len(xs) < 2:
        return math.nan
    mean = _mean(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1) / len(xs))


# ---------------------------------------------------------------- loss surfaces

def random_direction(model: nn.Module, seed: int = 0,
                     params: Sequence[str] | None = None) -> Direction:
    """A filter-normalised Gaussian direction (Li et al., "Visualizing the Loss Landscape of
    Neural Nets", NeurIPS 2018). For each filter i (row i of a weight: its slice along dim 0,
    e.g. one output unit of a Linear layer or one token of an embedding table):

        d_i = g_i * ||w_i|| / ||g_i||,   g ~ N(0, I) (seeded),

    so the direction has the scale of the weights filter by filter, and plots of different
    networks can be compared despite the scale invariance of ReLU-like nets. A filter whose weight
    norm is zero (a pruned row) gets a zero direction: no division by zero, unlike
    ``loss-landscapes`` 3.0.6, which raises ZeroDivisionError on an all-zero bias. Parameters with
    fewer than 2 dimensions (biases, LayerNorm gains and shifts) get a ZERO direction: the paper
    leaves them unperturbed.
    """
    named = _named_params(model, params)
    noise = _gaussian(list(named.values()), seed)
    return {name: _filter_normalise(g, p.detach()) for (name, p), g in zip(named.items(), noise)}


def _filter_normalise(g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if w.dim() < 2:
        return torch.zeros_like(w)
    g_rows, w_rows = g.reshape(len(g), -1), w.reshape(len(w), -1)
    g_norm, w_norm = g_rows.norm(dim=1, keepdim=True), w_rows.norm(dim=1, keepdim=True)
    scale = torch.where(g_norm > 0, w_norm / g_norm.clamp_min(torch.finfo(g.dtype).tiny),
                        torch.zeros_like(g_norm))
    return (g_rows * scale).reshape(g.shape)


def loss_line(model: nn.Module, loss_fn: LossFn, direction: Direction,
              alphas: Sequence[float]) -> list[float]:
    """The loss along a line, [L(w + a d) for a in alphas]; ``a`` may be negative or 0
    (``loss-landscapes`` only evaluates a > 0). Parameters not named in ``direction`` stay put."""
    return [row[0] for row in loss_plane(model, loss_fn, direction, {}, alphas, [0.0])]


def loss_plane(model: nn.Module, loss_fn: LossFn, d1: Direction, d2: Direction,
               alphas: Sequence[float], betas: Sequence[float]) -> list[list[float]]:
    """The loss on a plane: row i, column j is L(w + alphas[i] d1 + betas[j] d2).

    Each point is set from the saved weights (not reached by repeated in-place steps), so a = b = 0
    gives exactly L(w). Evaluated without gradients.
    """
    names = list(dict.fromkeys([*d1, *d2]))
    named = _named_params(model, names)
    chosen = list(named.values())
    first = [d1.get(n, torch.zeros_like(p)).to(p.device, p.dtype) for n, p in named.items()]
    second = [d2.get(n, torch.zeros_like(p)).to(p.device, p.dtype) for n, p in named.items()]
    surface = []
    with _model_kept(model), torch.no_grad():
        base = [p.detach().clone() for p in chosen]
        for a in alphas:
            row = []
            for b in betas:
                _move(chosen, base, [(float(a), first), (float(b), second)])
                row.append(float(loss_fn(model)))
            surface.append(row)
    return surface


def interpolate(model_a: nn.Module, model_b: nn.Module, loss_fn: LossFn, alphas: Sequence[float],
                params: Sequence[str] | None = None) -> list[float]:
    """The loss on the straight line between two models (Goodfellow et al., ICLR 2015):

        [L((1 - a) w_a + a w_b) for a in alphas],

    evaluated in ``model_a`` (whose weights are restored afterwards; ``model_b`` is only read);
    ``a`` may lie outside [0, 1]. Only the measured parameters are interpolated: buffers and
    frozen parameters stay model_a's.
    """
    named_a = _named_params(model_a, params)
    named_b = dict(model_b.named_parameters())
    for name, p in named_a.items():
        if name not in named_b or named_b[name].shape != p.shape:
            raise ValueError(f"model_b has no parameter {name!r} of shape {tuple(p.shape)}")
    chosen = list(named_a.values())
    losses = []
    with _model_kept(model_a), torch.no_grad():
        w_a = [p.detach().clone() for p in chosen]
        w_b = [named_b[n].detach().to(p.device, p.dtype) for n, p in named_a.items()]
        for a in alphas:
            for p, x, y in zip(chosen, w_a, w_b):
                p.copy_((1.0 - a) * x + a * y)
            losses.append(float(loss_fn(model_a)))
    return losses
