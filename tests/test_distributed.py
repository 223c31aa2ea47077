"""SAM under DDP on two CPU processes (gloo): each worker perturbs with its own gradient, the
second pass is shared, and the weights stay identical."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from flatcomp.distributed import ddp_sam_step
    from flatcomp.sam import SAM

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)  # the same start on both workers
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    model = DistributedDataParallel(net)
    optimizer = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    generator = torch.Generator().manual_seed(100 + rank)  # each worker its own shard
    x, y = torch.randn(16, 4, generator=generator), torch.randn(16, 1, generator=generator)
    grads = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]).clone())
        return loss

    for _ in range(2):
        ddp_sam_step(model, optimizer, closure)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.save({"grads": grads, "weights": weights}, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_first_pass_is_local_second_is_shared_and_weights_stay_equal(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    first, second = slice(0, None, 2), slice(1, None, 2)  # passes alternate: local, shared
    for ga, gb in zip(a["grads"][first], b["grads"][first]):
        assert not torch.allclose(ga, gb)  # each worker's own gradient: its own perturbation
    for ga, gb in zip(a["grads"][second], b["grads"][second]):
        assert torch.equal(ga, gb)  # all-reduced
    assert torch.equal(a["weights"], b["weights"])
