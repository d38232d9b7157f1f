"""Several processes, one run: the process group, this process's device, and the collectives.

Stage: learn (distributed training). Input: torchrun's environment (``WORLD_SIZE``,
``LOCAL_RANK``) and the ``--device`` setting. Output: a :class:`Dist` (rank, world size) and the
``torch.device`` of this process. One process (``WORLD_SIZE`` unset or 1) needs no process group
and every helper here is then a no-op; otherwise NCCL joins CUDA processes and gloo CPU processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    """This process's place in the run: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the one process that writes files and logs."""
        return self.rank == 0


def init(device_pref: str) -> tuple[Dist, torch.device]:
    """Process group from torchrun's environment (``WORLD_SIZE`` > 1), and this process's device.

    ``device_pref`` is ``auto`` (``cuda:LOCAL_RANK`` where CUDA is available, else the CPU), ``cpu``,
    ``cuda`` or ``cuda:N``. ``ValueError`` (one line) where CUDA is asked for and missing, or where
    this process's GPU index is beyond the GPUs torch sees.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_pref == "auto":
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_pref)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda was asked for, but torch sees no CUDA GPU")
        if device.type == "cuda" and world > 1:
            device = torch.device(f"cuda:{local}")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"this process wants {device} but torch sees {torch.cuda.device_count()} GPU(s); start at "
            "most that many processes per machine (torchrun --nproc_per_node) or train on --device cpu"
        )
    if world <= 1:
        return Dist(), device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local), device


def shutdown(ddp: Dist) -> None:
    """Leave the process group (if this run made one)."""
    if ddp.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def sum_all(x: torch.Tensor, ddp: Dist, device: torch.device) -> torch.Tensor:
    """``x`` summed over all processes (on ``x``'s device; the collective runs on ``device``)."""
    if ddp.world <= 1:
        return x
    y = x.to(device)
    dist.all_reduce(y)
    return y.to(x.device)


def any_process(flag: bool, ddp: Dist, device: torch.device) -> bool:
    """Whether ``flag`` is true in any process (so that every process stops at the same step)."""
    if ddp.world <= 1:
        return bool(flag)
    t = sum_all(torch.tensor([1.0 if flag else 0.0], device=device), ddp, device)
    return bool(t.item() > 0)


def checksum(model: torch.nn.Module) -> float:
    """Sum of all parameters in float64: a fingerprint of the weights."""
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def check_replicas(model: torch.nn.Module, ddp: Dist, device: torch.device) -> None:
    """``RuntimeError`` unless all processes hold the same weights (DDP keeps them in step)."""
    if ddp.world <= 1:
        return
    mine = torch.tensor([checksum(model)], dtype=torch.float64, device=device)
    all_ = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(all_, mine)
    values = [float(t) for t in all_]
    if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
        raise RuntimeError(f"DDP replicas diverged: parameter checksums {values}")
