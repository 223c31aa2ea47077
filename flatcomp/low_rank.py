"""Low rank: replace a Linear's weight by its truncated singular value decomposition.

By Eckart and Young (1936), the best rank-r approximation of W (m x n) in the Frobenius norm keeps
the r largest singular values, W_r = U_r S_r V_r^T. Written as two Linears, x -> (S_r V_r^T) x
-> U_r (.) + b, it computes W_r x + b with r (m + n) weights instead of m n: fewer parameters and
fewer multiplications once r < m n / (m + n). Andriushchenko et al. (NeurIPS 2023) found that SAM
learns lower-rank features, which suggests that its weights may lose less to this truncation.

    small = low_rank_model(model, rank_fraction=0.25)   # every encoder Linear at a quarter rank
    parameter_count(small) < parameter_count(model)      # real factorised Linears, not zeroed S
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn


class LowRankLinear(nn.Sequential):
    """``Linear(n, r, bias=False)`` then ``Linear(r, m)``: a rank-r Linear layer."""

    def __init__(self, linear: nn.Linear, rank: int) -> None:
        if not 1 <= rank <= min(linear.in_features, linear.out_features):
            raise ValueError(f"rank {rank} is outside 1..{min(linear.in_features, linear.out_features)}"
                             f" for a {linear.out_features} x {linear.in_features} Linear")
        weight = linear.weight.detach().float()
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        down = nn.Linear(linear.in_features, rank, bias=False)
        up = nn.Linear(rank, linear.out_features, bias=linear.bias is not None)
        dtype = linear.weight.dtype
        with torch.no_grad():
            down.weight.copy_((s[:rank, None] * vh[:rank]).to(dtype))
            up.weight.copy_(u[:, :rank].to(dtype))
            if linear.bias is not None:
                up.bias.copy_(linear.bias.detach())
        super().__init__(down, up)
        self.rank = rank


def truncated_rank(linear: nn.Linear, rank_fraction: float) -> int:
    """round(fraction * min(m, n)), at least 1."""
    if not 0 < rank_fraction <= 1:
        raise ValueError(f"rank_fraction must be in (0, 1], got {rank_fraction}")
    return max(1, round(rank_fraction * min(linear.in_features, linear.out_features)))


def low_rank_model(model: nn.Module, rank_fraction: float,
                   modules: Iterable[str] | None = None) -> nn.Module:
    """A copy of ``model`` whose Linears named in ``modules`` (module names, e.g.
    ``"bert.encoder.layer.0.attention.self.query"``; default: every Linear under a module named
    ``encoder``) are :class:`LowRankLinear` at ``rank_fraction`` of their full rank. The model
    itself is left as it was. A name that is not a Linear of the model raises ``ValueError``."""
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    names = list(modules) if modules is not None else \
        [n for n in linears if ".encoder." in f".{n}."]
    unknown = [n for n in names if n not in linears]
    if unknown:
        raise ValueError(f"not Linear modules of the model: {', '.join(unknown[:5])}")
    if not names:
        raise ValueError("no Linear to truncate: the model has no module named 'encoder'; "
                         "name the Linears in modules=[...]")
    small = copy.deepcopy(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = small.get_submodule(parent_name) if parent_name else small
        linear = getattr(parent, child)
        setattr(parent, child, LowRankLinear(linear, truncated_rank(linear, rank_fraction)))
    return small


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def effective_rank(features: torch.Tensor) -> float:
    """The effective rank of a matrix of features (rows: examples), exp(H(p)) with p the singular
    values normalised to sum to one and H the Shannon entropy (Roy and Vetterli, EUSIPCO 2007):
    r for r equal singular values, less when a few dominate."""
    s = torch.linalg.svdvals(features.detach().double())
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
