"""A two-parameter loss with one sharp and one flat minimum: the book's picture of flatness.

The loss is a valley along x whose floor holds two equally deep minima, one in a narrow gorge
and one in a wide basin. With u = x - x0 and v = y - y0 (the valley centred at (x0, y0)),

    L(x, y) = h (u^2 - 1)^2  +  1/2 k(u) v^2,
    k(u)    = k_flat + (k_sharp - k_flat) / (1 + exp(u / tau)).

The first term is a double well along the floor: minima at u = -1 and u = +1, both with L = 0,
separated by a barrier of height h at u = 0. The second term is the valley's wall: its stiffness
k(u) is about k_sharp on the left and about k_flat on the right. So the two minima are equally
deep and equally curved along the floor (d^2L/du^2 = 8h), and differ only across it: the left one
is sharp, the right one flat. At a minimum the Hessian is diagonal, H = diag(8h, k(+-1)).

"Sharp" and "flat" follow Hochreiter & Schmidhuber (1997, "Flat Minima", Neural Computation 9(1))
and Keskar et al. (2017, "On Large-Batch Training for Deep Learning: Generalization Gap and
Sharp Minima", ICLR): a minimum is flat when the loss stays low in a large neighbourhood of it,
which near the minimum means a Hessian with small eigenvalues (small trace).

SAM (Foret et al. 2021, "Sharpness-Aware Minimization for Efficiently Improving
Generalization", ICLR) steps with the gradient taken at w + rho g / ||g||. In this valley that
point lies on the wall, where the gradient has a component along the floor,
dL/du = V'(u) + 1/2 k'(u) (v + e_v)^2, and k' < 0 everywhere: the wall pushes SAM toward the
wide end. Once rho is large enough, the push beats the barrier and SAM leaves the sharp minimum.

The minima sit at an arbitrary offset (x0, y0) = (0.23, 0.37), so that no coordinate lies on a
quantization grid (no weight of a real network does either), and so that the two minima are
rounded by exactly the same perturbation for any grid step that divides 2.

Everything runs in float64 and is deterministic: random draws come from seeded generators.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from flatcomp.sam import SAM

DTYPE = torch.float64
CENTER = (0.23, 0.37)  # (x0, y0): the saddle between the two minima
BARRIER = 0.5  # h: the height of the saddle above the minima
K_SHARP, K_FLAT = 40.0, 2.0  # the wall's stiffness far to the left and far to the right
TAU = 0.3  # how fast the stiffness changes along the floor
LR, RHO, STEPS = 0.02, 0.3, 300  # the chapter's step size, SAM radius and number of steps
BASIN_RADIUS = 0.3  # an end point closer than this to a minimum has converged to it

Point = Sequence[float] | np.ndarray | torch.Tensor


def _tensor(w: Point) -> torch.Tensor:
    return torch.as_tensor(w, dtype=DTYPE)


def stiffness(u: torch.Tensor) -> torch.Tensor:
    """k(u): the curvature across the valley at position u along its floor."""
    return K_FLAT + (K_SHARP - K_FLAT) * torch.sigmoid(-u / TAU)


def loss(w: torch.Tensor) -> torch.Tensor:
    """L(w) for w of shape (..., 2): one point (2,), a batch (n, 2) or a grid (n, m, 2)."""
    u = w[..., 0] - CENTER[0]
    v = w[..., 1] - CENTER[1]
    return BARRIER * (u**2 - 1) ** 2 + 0.5 * stiffness(u) * v**2


def minima() -> dict[str, torch.Tensor]:
    """The two minima, {"sharp": (x0 - 1, y0), "flat": (x0 + 1, y0)}, both at L = 0."""
    x0, y0 = CENTER
    return {"sharp": torch.tensor([x0 - 1.0, y0], dtype=DTYPE),
            "flat": torch.tensor([x0 + 1.0, y0], dtype=DTYPE)}


def landscape(n: int = 241, xlim: tuple[float, float] | None = None,
              ylim: tuple[float, float] | None = None) -> tuple[np.ndarray, ...]:
    """(X, Y, L) on an n x n grid, for contour plots. Defaults: the box that start_grid covers."""
    xlim = xlim or (CENTER[0] - 2.2, CENTER[0] + 2.2)
    ylim = ylim or (CENTER[1] - 1.6, CENTER[1] + 1.6)
    xs = torch.linspace(*xlim, n, dtype=DTYPE)
    ys = torch.linspace(*ylim, n, dtype=DTYPE)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    return grid[..., 0].numpy(), grid[..., 1].numpy(), loss(grid).numpy()


def cross_sections(half_width: float = 0.8,
                   n: int = 161) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The loss across the valley through each minimum: {name: (y - y0, L)}."""
    d = torch.linspace(-half_width, half_width, n, dtype=DTYPE)
    return {name: (d.numpy(), loss(m + torch.stack([torch.zeros_like(d), d], dim=-1)).numpy())
            for name, m in minima().items()}


def hessian_at(point: Point) -> torch.Tensor:
    """The 2 x 2 Hessian of L at a point, by automatic differentiation."""
    return torch.autograd.functional.hessian(loss, _tensor(point))


def minima_table() -> pd.DataFrame:
    """Where the minima are, how deep, and how curved.

    At both minima the Hessian is diagonal, so its eigenvalues are the curvatures along the
    valley (H_11 = 8h) and across it (H_22 = k(u*)). The last column is how far one may step
    across the valley before the loss reaches the saddle's height h: sqrt(2 h / H_22)."""
    rows = {}
    for name, m in minima().items():
        h = hessian_at(m)
        rows[name] = {"w1": m[0].item(), "w2": m[1].item(), "loss": loss(m).item(),
                      "H_11 (along)": h[0, 0].item(), "H_22 (across)": h[1, 1].item(),
                      "H_12": h[0, 1].item(), "trace H": torch.trace(h).item(),
                      "half-width across": (2 * BARRIER / h[1, 1]).sqrt().item()}
    return pd.DataFrame(rows).T


def trajectory(start: Point, optimizer: str = "gd", lr: float = LR, rho: float = RHO,
               steps: int = STEPS, adaptive: bool = False) -> np.ndarray:
    """The path of plain gradient descent ("gd") or SAM ("sam") from start: shape (steps + 1, 2).

    GD is torch.optim.SGD; SAM is flatcomp.sam.SAM with SGD as its base, so each SAM step is
    w <- w - lr * grad L(w + e), e = rho * g / ||g||, g = grad L(w) (Foret et al. 2021);
    adaptive=True gives ASAM, e = rho * w^2 g / ||w g|| (Kwon et al. 2021).
    """
    w = torch.nn.Parameter(_tensor(start).clone())
    if optimizer == "gd":
        opt = torch.optim.SGD([w], lr=lr)
    elif optimizer == "sam":
        opt = SAM([w], torch.optim.SGD, rho=rho, adaptive=adaptive, lr=lr)
    else:
        raise ValueError(f"optimizer must be 'gd' or 'sam', got {optimizer!r}")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss(w)
        value.backward()
        return value

    path = [w.detach().clone()]
    for _ in range(steps):
        opt.step(closure)
        path.append(w.detach().clone())
    return torch.stack(path).numpy()


def _grad(w: torch.Tensor) -> torch.Tensor:
    w = w.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(w).sum(), w)
    return g


def descend(starts: torch.Tensor, lr: float = LR, rho: float = 0.0, steps: int = STEPS,
            adaptive: bool = False) -> torch.Tensor:
    """End points of GD (rho = 0) or SAM from many starts at once, shape (n, 2) -> (n, 2).

    The same update as ``trajectory`` (tests check they agree), written for a batch: SAM's
    normalisation ||g|| is per start, so a batch cannot share one SAM optimizer, whose norm runs
    over all of its parameters together.
    """
    w = starts.to(DTYPE).clone()
    for _ in range(steps):
        g = _grad(w)
        if rho > 0:  # the operations of SAM.first_step and second_step, in the same order
            norm = ((w.abs() if adaptive else 1.0) * g).norm(dim=-1, keepdim=True)
            e = (w.square() if adaptive else 1.0) * g * (rho / (norm + 1e-12))
            w = w + e
            g = _grad(w)
            w = w - e
        w = w - lr * g
    return w


def start_grid(n: int = 20) -> torch.Tensor:
    """n x n starting points on a regular grid over the box around both minima, shape (n^2, 2).

    n is even so that no start falls exactly on the saddle, where the gradient is zero."""
    xs = torch.linspace(CENTER[0] - 2.0, CENTER[0] + 2.0, n, dtype=DTYPE)
    ys = torch.linspace(CENTER[1] - 1.5, CENTER[1] + 1.5, n, dtype=DTYPE)
    return torch.cartesian_prod(xs, ys)


def basin_of(points: torch.Tensor) -> np.ndarray:
    """For each end point, "sharp" or "flat" if it lies within BASIN_RADIUS of that minimum,
    else "neither"."""
    m = minima()
    near_sharp = (points - m["sharp"]).norm(dim=-1) < BASIN_RADIUS
    near_flat = (points - m["flat"]).norm(dim=-1) < BASIN_RADIUS
    return np.where(near_sharp.numpy(), "sharp", np.where(near_flat.numpy(), "flat", "neither"))


def basins(rho: float = 0.0, n: int = 20, lr: float = LR, steps: int = STEPS,
           adaptive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(starts, where each ends) over start_grid(n), for GD (rho = 0) or SAM."""
    starts = start_grid(n)
    return starts.numpy(), basin_of(descend(starts, lr, rho, steps, adaptive))


def basin_counts(rhos: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5), n: int = 20,
                 lr: float = LR, steps: int = STEPS, adaptive: bool = False) -> pd.DataFrame:
    """How many of the n^2 grid starts end in each minimum, per rho (rho = 0 is plain GD),
    and how far the end points that reach the flat minimum sit from it (SAM hovers near it)."""
    rows = {}
    for rho in rhos:
        ends = descend(start_grid(n), lr, rho, steps, adaptive)
        where = basin_of(ends)
        flat = ends[torch.from_numpy(where == "flat")]
        rows[rho] = {"sharp": int((where == "sharp").sum()), "flat": int((where == "flat").sum()),
                     "neither": int((where == "neither").sum()),
                     "flat (%)": 100.0 * (where == "flat").mean(),
                     "max distance to flat min": (flat - minima()["flat"]).norm(dim=-1).max().item()
                     if len(flat) else float("nan")}
    counts = pd.DataFrame(rows).T.rename_axis("rho")
    return counts.astype({"sharp": int, "flat": int, "neither": int})


def noise_test(point: Point, sigmas: Sequence[float] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
               samples: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """Loss increase under isotropic Gaussian weight noise, predicted and measured.

    Second order around a minimum (where the gradient vanishes): L(w + d) - L(w) ~ 1/2 d^T H d.
    For d ~ N(0, sigma^2 I), E[d^T H d] = sigma^2 tr(H), so E[Delta L] ~ 1/2 sigma^2 tr(H).
    Measured: the mean of L(w + d) - L(w) over `samples` draws. The same seed gives the same
    directions for every point and sigma (common random numbers), so differences between
    minima are not sampling noise.
    """
    w = _tensor(point)
    trace = torch.trace(hessian_at(w)).item()
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, 2, generator=gen, dtype=DTYPE)
    rows = []
    for sigma in sigmas:
        increase = loss(w + sigma * z) - loss(w)
        rows.append({"sigma": sigma, "predicted": 0.5 * sigma**2 * trace,
                     "measured": increase.mean().item(),
                     "stderr": (increase.std() / samples**0.5).item(),
                     "measured / predicted": increase.mean().item() / (0.5 * sigma**2 * trace)})
    return pd.DataFrame(rows).set_index("sigma")


def quantize(w: torch.Tensor, step: float, offset: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Round every coordinate to the nearest point of the grid offset + step * Z."""
    return offset + step * torch.round((w - offset) / step)


def quantize_test(point: Point, steps: Sequence[float] = (0.02, 0.05, 0.1, 0.2, 0.5),
                  offsets: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """Loss increase when the coordinates of a point are rounded to a grid of step Delta.

    Rounding moves each coordinate by at most Delta / 2. On the grid through 0 that move d is
    one fixed vector; its second-order cost is 1/2 d^T H d. Over grids shifted by a uniform
    random offset the move is uniform on [-Delta/2, Delta/2] per coordinate, variance Delta^2/12,
    so E[Delta L] ~ 1/2 (Delta^2 / 12) tr(H): the noise test with sigma^2 = Delta^2 / 12.
    """
    w = _tensor(point)
    h = hessian_at(w)
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(offsets, 2, generator=gen, dtype=DTYPE)
    rows = []
    for step in steps:
        q = quantize(w, step)
        d = q - w
        shifted = loss(quantize(w, step, step * u)) - loss(w)
        rows.append({"step": step, "move w1": d[0].item(), "move w2": d[1].item(),
                     "increase": (loss(q) - loss(w)).item(),
                     "predicted": (0.5 * d @ h @ d).item(),
                     "increase, random grid": shifted.mean().item(),
                     "predicted, random grid": 0.5 * step**2 / 12 * torch.trace(h).item()})
    return pd.DataFrame(rows).set_index("step")


def prune_test(point: Point) -> dict[str, float]:
    """Magnitude pruning of the toy: zero the smaller coordinate, d = -w on it.

    Returns the pruned coordinate, the move, the loss increase and its second-order prediction."""
    w = _tensor(point)
    i = int(w.abs().argmin())
    d = torch.zeros_like(w)
    d[i] = -w[i]
    return {"pruned": ("w1", "w2")[i], "move": d[i].item(), "increase": (loss(w + d) - loss(w)).item(),
            "predicted": (0.5 * d @ hessian_at(w) @ d).item()}
