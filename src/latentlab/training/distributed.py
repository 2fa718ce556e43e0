"""torch.distributed under torchrun: process-group setup and the few collectives the trainer uses.

Under ``torchrun --nproc-per-node N`` every process has RANK, WORLD_SIZE and LOCAL_RANK in its
environment; :func:`init_from_env` starts the process group (NCCL on CUDA, gloo on the CPU) from
them. Without torchrun nothing happens and every function here is a no-op for one process.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_from_env", "info", "all_reduce_sum", "is_main_process", "TIMEOUT_S"]

#: Seconds a collective waits for a lost peer before the job fails (instead of hanging).
TIMEOUT_S = int(os.environ.get("LATENTLAB_DIST_TIMEOUT", "60"))


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_from_env(device_type: str | None = None) -> DistInfo:
    """Start the process group if torchrun launched us and it is not started yet."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        if device_type is None:
            device_type = "cuda" if torch.cuda.is_available() else "cpu"
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=TIMEOUT_S))
    return info()


def info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def is_main_process() -> bool:
    return info().rank == 0


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
