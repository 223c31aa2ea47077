"""Sharpness-Aware Minimization (Foret et al., ICLR 2021) and its adaptive variant ASAM.

SAM minimises the worst loss in a ball of radius rho around the weights,

    min_w  max_{||e||_2 <= rho}  L(w + e),

with the first-order solution of the inner problem e(w) = rho * g / ||g||_2, g = grad L(w), the
norm taken over all parameters together. One step is two passes:

    first_step:   w <- w + e(w)                      (climb to the nearby worst point)
    second_step:  w <- w - e(w), then base step with grad L(w + e(w))

ASAM (Kwon et al., ICML 2021) scales the ball element-wise by |w|:
e(w) = rho * T^2 g / ||T g||_2 with T = diag(|w|).

The interface follows the widely used davda54/sam, so its ten-line training loop works as is:

    optimizer = SAM(model.parameters(), torch.optim.Adam, rho=0.05, lr=2e-5)
    loss_fn(model(x), y).backward(); optimizer.first_step(zero_grad=True)
    loss_fn(model(x), y).backward(); optimizer.second_step(zero_grad=True)

or ``optimizer.step(closure)``, which also gives both passes the same dropout mask (below). The
closure computes the loss, calls backward and returns the loss; ``step`` zeroes the gradients
before each of its two calls, so a closure may zero them too (flatcomp's do) or not (davda54's
README): the update is the two-step loop's either way. Gradients held when ``step`` is called are
dropped: the first pass recomputes g(w).

**Mixed precision.** With bf16 autocast (what :func:`flatcomp.lab.train.fine_tune` uses, on CUDA and
on CPUs with AMX) nothing changes: bf16 needs no loss scaling. With fp16 and a ``GradScaler``,
scale both backward passes; ``first_step`` may see the scaled gradient, since e(w) depends only on
its direction; then undo the perturbation and let the scaler unscale, check for inf/NaN and step
the base optimizer:

    scaler.scale(loss_fn(model(x), y)).backward()      # under torch.autocast(..., torch.float16)
    optimizer.first_step(zero_grad=True)
    scaler.scale(loss_fn(model(x), y)).backward()
    optimizer.restore()                                 # back to w, gradient of w + e(w) kept
    scaler.step(optimizer.base_optimizer)
    scaler.update()
    optimizer.zero_grad()

A first-pass gradient that overflowed (an inf or NaN norm) perturbs nothing, and the scaler skips
the step if the second pass overflows too.

Cheaper variants with the same ``step(closure)`` (SAM every k steps, LookSAM, ESAM, SAM-ON) are
in :mod:`flatcomp.sam_variants`; they zero the gradients before each closure call too.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch


class SAM(torch.optim.Optimizer):
    """SAM around any base optimizer class, e.g. ``SAM(params, torch.optim.Adam, lr=2e-5)``.

    Parameter groups may carry their own ``rho`` and ``adaptive``, and ``perturb=False`` for
    parameters that SAM leaves where they are and leaves out of ||g|| (the base optimizer still
    steps them; :func:`flatcomp.sam_variants.sam_on` uses it). Entries whose gradient is
    exactly zero (pruned weights whose gradients are masked) are not perturbed, so a pruned
    weight stays exactly zero; a parameter with no gradient is skipped.
    """

    def __init__(self, params: Iterable, base_optimizer: type[torch.optim.Optimizer],
                 rho: float = 0.05, adaptive: bool = False, **base_kwargs) -> None:
        _check_base_optimizer(base_optimizer)
        if rho < 0:
            raise ValueError(f"rho must be non-negative, got {rho}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, perturb=True, **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups  # one set of groups: schedulers see both
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move every parameter to w + e(w), remembering w (restored bit for bit: w + e - e is not
        always w in floating point, and under data parallelism each worker's e differs)."""
        grad_norm = self._grad_norm()
        if torch.isfinite(grad_norm):  # an fp16 overflow perturbs nothing (module docstring)
            for group in self._perturbed_groups():
                scale = group["rho"] / (grad_norm + 1e-12)
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    self.state[p]["w"] = p.detach().clone()
                    p.add_(self._perturbation(p, group, scale))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to w and let the base optimizer step with the gradient taken at w + e(w)."""
        self.restore()
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        """Undo ``first_step``: every parameter back to w, the gradients left as they are."""
        for group in self.param_groups:
            for p in group["params"]:
                w = self.state[p].pop("w", None)
                if w is not None:
                    p.copy_(w)

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """Both passes; returns the loss at w. ``closure`` computes the loss, calls backward and
        returns the loss; it may zero the gradients first or not, since ``step`` zeroes them
        before each call: the base step gets grad L(w + e(w)) alone, not g(w) + grad L(w + e(w))
        (nor the gradients held on entry, which are dropped). The random state is forked so that
        both passes draw the same dropout mask, as the reference JAX implementation does:
        otherwise the second gradient mixes the sharpness of the loss with the noise of a
        different sub-network."""
        return self._two_passes(closure)

    def _two_passes(self, closure: Callable[[], torch.Tensor] | None) -> torch.Tensor:
        """first_step and second_step around two closure calls, each from zeroed gradients."""
        if closure is not None:
            self.zero_grad(set_to_none=True)
        loss = self._forked(closure)
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            closure()
        self.second_step()
        return loss

    def _forked(self, closure: Callable | None, *args, **kwargs):
        """``closure(*args, **kwargs)`` with the random state forked, so that the next call draws
        the same dropout mask (in the caller's grad mode)."""
        if closure is None:
            raise ValueError(f"{type(self).__name__} needs a closure that recomputes the loss: "
                             "step(closure)")
        devices = [p.device for g in self.param_groups for p in g["params"] if p.is_cuda][:1]
        with torch.random.fork_rng(devices=devices):
            return closure(*args, **kwargs)

    def _perturbation(self, p: torch.Tensor, group: dict, scale: torch.Tensor) -> torch.Tensor:
        """e(w) for one parameter: scale * g, or scale * w^2 g for ASAM."""
        return (p.square() if group["adaptive"] else 1.0) * p.grad * scale

    def _perturbed_groups(self) -> list[dict]:
        return [group for group in self.param_groups if group.get("perturb", True)]

    def _grad_norm(self) -> torch.Tensor:
        """||g||_2 over the perturbed parameters (||T g||_2 for ASAM), on one device."""
        norms = [((p.abs() if group["adaptive"] else 1.0) * p.grad).norm(p=2).to(self._device())
                 for group in self._perturbed_groups() for p in group["params"]
                 if p.grad is not None]
        if not norms:
            return torch.tensor(0.0)
        return torch.stack(norms).norm(p=2)

    def _device(self) -> torch.device:
        return self.param_groups[0]["params"][0].device

    def state_dict(self) -> dict:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


def _check_base_optimizer(base_optimizer: object) -> None:
    """SAM builds its base optimizer itself, over its own parameter groups: it takes the class."""
    if isinstance(base_optimizer, torch.optim.Optimizer) or not callable(base_optimizer):
        raise TypeError(
            "SAM's base_optimizer must be an optimizer class such as torch.optim.SGD, got an "
            f"instance of {type(base_optimizer).__name__}: pass the class, with the base "
            "optimizer's arguments as SAM's, e.g. SAM(params, torch.optim.SGD, rho=0.05, lr=0.1)")
