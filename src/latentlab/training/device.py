"""Which torch device a setting means: CUDA, then Apple's MPS, then the CPU; under torchrun, this
process's GPU."""

from __future__ import annotations

import torch

from ..errors import ConfigError
from . import distributed

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for a device setting.

    ``"auto"`` picks CUDA when present, then Apple's MPS, then the CPU (under torchrun: CUDA, else
    the CPU, as MPS has no collective backend). Under torchrun a CUDA device without an index is
    this process's GPU, ``cuda:LOCAL_RANK``.

    Example
    -------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    local = distributed.env_local_rank()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local if local is not None else torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if local is None and mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a device name; use 'auto', 'cpu', 'cuda' or 'mps'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but this PyTorch sees no CUDA GPU; use device='auto' or 'cpu'.")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("device='mps' but this PyTorch sees no Apple GPU; use device='auto' or 'cpu'.")
        if local is not None:
            raise ConfigError("device='mps' cannot train under torchrun (no collective backend for MPS); use device='cpu'.")
    if dev.type == "cuda" and dev.index is None and local is not None:
        dev = torch.device("cuda", local)
    return dev

