"""The training loop and what it needs: batches, checkpoints, optimisers, devices, torchrun."""

from .data import ArrayData, ShardedArray
from .device import resolve_device
from .trainer import TrainResult, train

__all__ = ["train", "TrainResult", "ArrayData", "ShardedArray", "resolve_device"]
