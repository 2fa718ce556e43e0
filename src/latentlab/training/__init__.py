"""The training loop and what it needs: batches, checkpoints, optimisers, devices, torchrun;
callbacks and the loggers (TensorBoard, MLflow) that follow it."""

from .callbacks import Callback, FitInfo, HistoryFile
from .data import ArrayData, ShardedArray
from .device import resolve_device
from .loggers import MLflowLogger, TensorBoardLogger
from .trainer import TrainResult, train

__all__ = ["train", "TrainResult", "ArrayData", "ShardedArray", "resolve_device", "Callback", "FitInfo", "HistoryFile",
           "TensorBoardLogger", "MLflowLogger"]
