"""The training loop and what it needs: batches, checkpoints, torchrun."""

from .data import ArrayData, ShardedArray
from .trainer import TrainResult, resolve_device, train

__all__ = ["train", "TrainResult", "ArrayData", "ShardedArray", "resolve_device"]
