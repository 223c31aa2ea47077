"""Cheaper sharpness-aware minimisers, each behind SAM's ``step(closure)`` (:mod:`flatcomp.sam`).

SAM costs two forward-backward passes per step. The variants here spend less:

* :class:`KStepSAM`: a SAM step every k-th call, a plain base step otherwise (the naive baseline);
* :class:`LookSAM` (Liu et al., CVPR 2022): every k-th call a SAM step, in between the plain
  gradient plus the remembered part of the SAM gradient that is orthogonal to it;
* :class:`ESAM` (Du et al., ICLR 2022): perturb a random fraction of the weights, and take the
  second gradient on the examples whose loss the perturbation raised most;
* :func:`sam_on` (Mueller et al., NeurIPS 2023): perturb only the normalization layers.

Like SAM, none perturbs an entry whose gradient is exactly zero, so a pruned weight whose gradient
is masked (:class:`flatcomp.pruning.Masker`) stays exactly zero. Call counters and LookSAM's
remembered direction are not part of ``state_dict()``: a resumed run starts with a SAM step.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from flatcomp.sam import SAM

__all__ = ["ESAM", "KStepSAM", "LookSAM", "NORM_LAYERS", "norm_parameters", "sam_on"]


def _plain_step(optimizer: SAM, closure: Callable[[], torch.Tensor] | None,
                extra: Callable[[], None] = lambda: None) -> torch.Tensor:
    """One pass, ``extra()`` on the gradients, then the base optimizer's step at w. The gradients
    are zeroed first, so a closure that does not zero them itself gives the same step."""
    if closure is None:
        raise ValueError(f"{type(optimizer).__name__} needs a closure: step(closure)")
    optimizer.zero_grad(set_to_none=True)
    with torch.enable_grad():
        loss = closure()
    extra()
    optimizer.base_optimizer.step()
    return loss


def _check_every(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")


class KStepSAM(SAM):
    """SAM on calls 0, k, 2k, ...; on the others one pass and a plain base step,

        w <- base_step(w, grad L(w + e(w)))   if t mod k = 0,   else   w <- base_step(w, grad L(w)).

    The naive way to pay for SAM only every k steps: (k + 1) / k passes per step on average.
    """

    def __init__(self, params: Iterable, base_optimizer: type[torch.optim.Optimizer],
                 rho: float = 0.05, k: int = 5, adaptive: bool = False, **base_kwargs) -> None:
        _check_every(k)
        super().__init__(params, base_optimizer, rho=rho, adaptive=adaptive, **base_kwargs)
        self.k, self.calls = k, 0

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """``closure`` as for :meth:`SAM.step`."""
        sam_call = self.calls % self.k == 0
        loss = self._two_passes(closure) if sam_call else _plain_step(self, closure)
        self.calls += 1
        return loss


class LookSAM(SAM):
    """LookSAM (Liu, Mai, Chen, Hsieh and You, CVPR 2022, "Towards Efficient and Scalable
    Sharpness-Aware Minimization", Algorithm 1).

    On calls 0, k, 2k, ... a SAM step with g_s = grad L(w + e(w)), remembering the part of g_s
    orthogonal to the plain gradient g = grad L(w) (inner products and norms over all parameters):

        g_v = g_s - (g . g_s / ||g||^2) g.

    On the other calls one pass gives g at the current w, and the base optimizer steps with

        g + alpha * (||g|| / ||g_v||) * g_v.

    The paper's defaults: k = 5, alpha = 0.7.
    """

    def __init__(self, params: Iterable, base_optimizer: type[torch.optim.Optimizer],
                 rho: float = 0.05, k: int = 5, alpha: float = 0.7, adaptive: bool = False,
                 **base_kwargs) -> None:
        _check_every(k)
        super().__init__(params, base_optimizer, rho=rho, adaptive=adaptive, **base_kwargs)
        self.k, self.alpha, self.calls = k, alpha, 0

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """``closure`` as for :meth:`SAM.step`."""
        sam_call = self.calls % self.k == 0
        loss = self._sam_step(closure) if sam_call else _plain_step(self, closure, self._look)
        self.calls += 1
        return loss

    def _sam_step(self, closure: Callable[[], torch.Tensor] | None) -> torch.Tensor:
        self.zero_grad(set_to_none=True)  # whether or not the closure zeroes them
        loss = self._forked(closure)
        g = {p: p.grad.clone() for p in self._with_grad()}
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            closure()
        self._remember_orthogonal(g)
        self.second_step()
        return loss

    @torch.no_grad()
    def _remember_orthogonal(self, g: dict[torch.Tensor, torch.Tensor]) -> None:
        """g_v = g_s - (g . g_s / ||g||^2) g, with g_s the gradients now held."""
        pairs = [(p, g[p], p.grad) for p in self._with_grad() if p in g]
        device = self._device()
        dot = sum((a * b).sum().to(device) for _, a, b in pairs)
        square = sum(a.square().sum().to(device) for _, a, _ in pairs)
        coef = dot / square if square > 0 else 0.0  # g = 0: the whole of g_s is orthogonal
        for p, a, b in pairs:
            self.state[p]["g_v"] = b - coef * a

    @torch.no_grad()
    def _look(self) -> None:
        """grad <- g + alpha * (||g|| / ||g_v||) * g_v (nothing added while g_v = 0)."""
        params = [p for p in self._with_grad() if "g_v" in self.state[p]]
        if not params:
            return
        device = self._device()
        norm_g = torch.stack([p.grad.norm().to(device) for p in params]).norm()
        norm_v = torch.stack([self.state[p]["g_v"].norm().to(device) for p in params]).norm()
        scale = self.alpha * norm_g / (norm_v + 1e-12)
        for p in params:
            p.grad.add_(self.state[p]["g_v"] * scale.to(p.device))

    def _with_grad(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]


class ESAM(SAM):
    """ESAM (Du, Yan, Feng, Zhou, Zhen, Goh and Tan, ICLR 2022, "Efficient Sharpness-aware
    Minimization for Improved Training of Neural Networks"), both of its parts:

    * stochastic weight perturbation: only a random fraction beta of the entries is perturbed,
      scaled by 1 / beta so that the expected perturbation is SAM's,
          e_hat = m * e(w) / beta,   m_i ~ Bernoulli(beta) independently per entry;
    * sharpness-sensitive data selection: after the first pass, one forward pass without
      gradients at w + e_hat gives every example's loss; the second gradient is the mean over
      the ceil(gamma * n) examples with the largest increase l_i(w + e_hat) - l_i(w),
          w <- base_step(w, grad (1/|S|) sum_{i in S} l_i(w + e_hat)).

    The paper's defaults: beta = 0.6, gamma = 0.5; gamma = 1 skips the extra forward pass.

    **The closure** returns the *per-example* losses and neither zeroes gradients nor calls
    backward (ESAM does both): ``closure(indices=None)`` gives the 1-d tensor of the losses of
    the whole batch, ``closure(indices)`` those of the examples at ``indices`` (a long tensor):

        def closure(indices=None):
            xb, yb = (x, y) if indices is None else (x[indices], y[indices])
            return F.cross_entropy(model(xb), yb, reduction="none")

    The first two passes draw the same dropout mask (as in :meth:`SAM.step`). ``generator``
    (one per device, seeded with ``seed``) draws m, so a run is reproducible.
    """

    def __init__(self, params: Iterable, base_optimizer: type[torch.optim.Optimizer],
                 rho: float = 0.05, beta: float = 0.6, gamma: float = 0.5,
                 adaptive: bool = False, seed: int = 0, **base_kwargs) -> None:
        for name, value in (("beta", beta), ("gamma", gamma)):
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        super().__init__(params, base_optimizer, rho=rho, adaptive=adaptive, **base_kwargs)
        self.beta, self.gamma, self.seed = beta, gamma, seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def step(self, closure: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        """One ESAM step; ``closure(indices=None)`` returns per-example losses (see above).
        Returns the mean loss at w."""
        self.zero_grad()
        with torch.enable_grad():
            losses = self._forked(closure)
            _check_losses(losses)
            losses.mean().backward()
        self.first_step()
        chosen = self._select(closure, losses.detach())
        self.zero_grad()
        with torch.enable_grad():
            closure(chosen).mean().backward()
        self.second_step()
        return losses.detach().mean()

    def _perturbation(self, p: torch.Tensor, group: dict, scale: torch.Tensor) -> torch.Tensor:
        """e_hat = m * e(w) / beta, m_i ~ Bernoulli(beta): ``first_step`` moves to w + e_hat."""
        keep = torch.rand(p.shape, generator=self._generator(p.device), device=p.device)
        return super()._perturbation(p, group, scale) * (keep < self.beta) / self.beta

    @torch.no_grad()
    def _select(self, closure: Callable[..., torch.Tensor], before: torch.Tensor
                ) -> torch.Tensor | None:
        """The indices of the ceil(gamma n) largest l_i(w + e_hat) - l_i(w); None for all."""
        count = math.ceil(self.gamma * before.numel())
        if count >= before.numel():
            return None
        increase = self._forked(closure).detach() - before
        return increase.topk(count).indices.sort().values

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device).manual_seed(self.seed)
        return self._generators[device]


def _check_losses(losses: torch.Tensor) -> None:
    if losses.dim() != 1:
        raise ValueError("ESAM's closure must return the per-example losses, a 1-d tensor (e.g. "
                         f"reduction='none'), got shape {tuple(losses.shape)}")


# ---------------------------------------------------------------- SAM-ON

NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


def norm_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable parameters of every normalization layer of ``model`` (an instance of one of
    ``NORM_LAYERS`` or a subclass), keyed by name, in model order.

    Selected by module type, not by name: Hugging Face calls BERT's layers ``LayerNorm``, which
    a test such as ``'norm' in name`` misses.
    """
    names = {id(p): name for name, p in model.named_parameters()}
    found = {}
    for module in model.modules():
        if isinstance(module, NORM_LAYERS):
            for p in module.parameters(recurse=False):
                if p.requires_grad and id(p) in names:
                    found[names[id(p)]] = p
    return found


def sam_on(model: nn.Module, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05,
           adaptive: bool = False, **base_kwargs) -> SAM:
    """SAM-ON (Mueller, Vlaar, Rolnick and Hein, NeurIPS 2023, "Normalization Layers Are All
    That Sharpness-Aware Minimization Needs"): a SAM whose perturbation touches only the
    normalization parameters N (:func:`norm_parameters`), with the norm over them alone,

        e_N = rho * g_N / ||g_N||,  e = 0 elsewhere;  w <- base_step(w, grad L(w + e)),

    while the base optimizer steps every trainable parameter. The perturbed set is small, so
    tune ``rho`` anew rather than reusing SAM's.
    """
    norm = norm_parameters(model)
    if not norm:
        raise ValueError(f"{type(model).__name__} has no trainable normalization layer "
                         f"({', '.join(c.__name__ for c in NORM_LAYERS)})")
    ids = {id(p) for p in norm.values()}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": list(norm.values())}] + ([{"params": rest, "perturb": False}] if rest
                                                   else [])
    return SAM(groups, base_optimizer, rho=rho, adaptive=adaptive, **base_kwargs)
