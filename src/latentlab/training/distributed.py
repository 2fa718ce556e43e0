"""torch.distributed under torchrun: process-group setup and the few collectives the trainer uses.

Under ``torchrun --nproc-per-node N`` every process has RANK, WORLD_SIZE and LOCAL_RANK in its
environment; :func:`init_from_env` starts the process group (NCCL on CUDA, gloo on the CPU) from
them. Without torchrun nothing happens and every function here is a no-op for one process.

A lost peer never hangs the job: every collective waits at most :func:`timeout_s` seconds
(``LATENTLAB_DIST_TIMEOUT``, default 120), and a peer that dies outright closes its sockets, which
the others see at once. Either way the survivors raise :class:`~latentlab.errors.DistributedError`
(see :func:`peer_errors`), and torchrun stops the rest of the job.
"""

from __future__ import annotations

import atexit
import datetime
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError, DistributedError

__all__ = [
    "DistInfo",
    "init_from_env",
    "info",
    "env_local_rank",
    "all_reduce_sum",
    "is_main_process",
    "timeout_s",
    "peer_errors",
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
]

#: Environment variable: seconds a collective waits for a lost peer before the job fails.
TIMEOUT_ENV = "LATENTLAB_DIST_TIMEOUT"
#: Long enough for a peer's torch.compile or a large checkpoint write, short enough to notice a hang.
DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1


def timeout_s() -> float:
    """Seconds a collective waits for the other processes: ``$LATENTLAB_DIST_TIMEOUT`` or 120."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds > 0; set it to e.g. 120.")
    return value


def _env_world() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer; launch with torchrun.") from None


def env_local_rank() -> int | None:
    """LOCAL_RANK when this process is one of several launched by torchrun, else None."""
    if _env_world() <= 1:
        return None
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_from_env(device_type: str | None = None) -> DistInfo:
    """Start the process group if torchrun launched several processes and none is started yet.

    Parameters
    ----------
    device_type : "cuda" picks NCCL, anything else gloo; None picks from ``torch.cuda.is_available()``.

    Returns
    -------
    DistInfo of this process (rank 0 of 1 without torchrun).

    Example
    -------
    >>> from latentlab.training.distributed import init_from_env
    >>> init_from_env("cpu")  # outside torchrun: nothing to start
    DistInfo(rank=0, world=1, local_rank=0)
    """
    world = _env_world()
    if world > 1 and dist.is_available() and not dist.is_initialized():
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ConfigError(
                f"WORLD_SIZE={world} but {', '.join(missing)} is not set; start several processes "
                "with torchrun (torchrun --nproc-per-node N ...), which sets them."
            )
        if device_type is None:
            device_type = "cuda" if torch.cuda.is_available() else "cpu"
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s()))
        atexit.register(_shutdown)
    return info()


def _shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # pragma: no cover - a broken group at exit: nothing left to do
            pass


def info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def is_main_process() -> bool:
    """True on rank 0 (and without torchrun): the process that writes files and prints.

    Before the process group is started, the rank torchrun gave in the environment decides.
    """
    d = info()
    if d.active:
        return d.rank == 0
    if _env_world() > 1:
        return int(os.environ.get("RANK", "0")) == 0
    return True


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the processes, in place; returns ``t`` (unchanged for one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


_COMM_MARKERS = ("gloo", "nccl", "connection", "timed out", "timeout", "broken pipe", "socket", "peer")


def _is_comm_error(exc: BaseException) -> bool:
    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    text = str(exc).lower()
    return any(m in text for m in _COMM_MARKERS)


@contextmanager
def peer_errors(hint: str = ""):
    """Turn a collective that failed because a peer died or stalled into a DistributedError.

    ``hint`` is appended to the message (e.g. where the last checkpoint is). A no-op for one process.
    """
    try:
        yield
    except DistributedError:
        raise
    except RuntimeError as exc:
        d = info()
        if not d.active or not _is_comm_error(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = re.sub(r"^\[[^\]]*\]\s*", "", first)  # the backend's source location
        first = first.split(" This is typically caused")[0].strip().rstrip(".")  # gloo's generic advice
        raise DistributedError(
            f"rank {d.rank} of {d.world} lost contact with the other training processes ({first}). "
            f"Another process died or stalled for more than {timeout_s():g} s ({TIMEOUT_ENV}); its "
            f"own log says why.{(' ' + hint) if hint else ''}"
        ) from exc
