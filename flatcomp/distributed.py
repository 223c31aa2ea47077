"""SAM under data parallelism: each worker climbs to its own worst point, the descent is shared.

With ``torch.nn.parallel.DistributedDataParallel`` (or HF ``accelerate``, which wraps it) every
backward pass all-reduces the gradients. For SAM's first pass that would make every worker climb
along the gradient of the *global* batch. Foret et al. (ICLR 2021, sec. 4.1) instead let each
accelerator perturb the weights with its own shard's gradient, ``e_i = rho g_i / ||g_i||``
("m-sharpness", m the per-worker batch), which they found generalises better, and which costs no
communication. So the first forward and backward run under ``no_sync()``; the second pass, at
``w + e_i``, all-reduces as usual, every worker's base optimizer sees the same averaged gradient
and the weights stay identical:

    model = DistributedDataParallel(model)
    optimizer = SAM(model.parameters(), torch.optim.Adam, rho=0.05, lr=2e-5)
    for x, y in loader:                        # each worker its own shard
        def closure():
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        ddp_sam_step(model, optimizer, closure)

Both passes draw the same dropout mask, as :meth:`flatcomp.sam.SAM.step` does.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from flatcomp.sam import SAM


def ddp_sam_step(model: DistributedDataParallel, optimizer: SAM,
                 closure: Callable[[], torch.Tensor]) -> torch.Tensor:
    """One SAM step on a DDP model: the first pass local (``no_sync``), the second all-reduced.
    Returns this worker's loss at ``w``."""
    devices = [p.device for p in model.parameters() if p.is_cuda][:1]
    with torch.random.fork_rng(devices=devices), model.no_sync():
        loss = closure()
    optimizer.first_step()
    closure()
    optimizer.second_step()
    return loss
