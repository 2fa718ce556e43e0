"""Training settings as a frozen dataclass that round-trips through JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .limits import check_seed
from .validation import check_choice, check_float, check_int
from .errors import ConfigError

__all__ = ["TrainConfig", "OPTIMIZERS", "LR_SCHEDULES"]

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "plateau")


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained; the estimators build one from their parameters.

    Parameters
    ----------
    epochs : int
        Upper bound on passes over the training data.
    batch_size : int
        Examples per gradient step (per process under torchrun).
    lr : float
        Learning rate.
    optimizer : {"adam", "adamw", "sgd"}
        "sgd" uses momentum 0.9.
    weight_decay : float
        L2 penalty (decoupled for "adamw").
    lr_schedule : {"constant", "cosine", "plateau"}
        "cosine" anneals to 0 over ``epochs``; "plateau" halves the rate when the validation loss
        has not improved for ``max(1, patience // 2)`` epochs.
    patience : int or None
        Stop when the validation loss has not improved for this many epochs; the best weights are
        restored. None trains for all ``epochs``.
    grad_clip : float or None
        Clip the global gradient norm to this value before each step (e.g. 1.0); a remedy when
        training diverges. None (default): no clipping.
    seed : int
        Seeds the weight initialisation, the batch order and the noise; a CPU run is repeatable.
    device : str
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps".
    compile : bool
        Compile the loss computation with ``torch.compile`` (faster steps, slower start).
    progress : bool or None
        Show a progress bar on stderr; None shows it only when stderr is a terminal.
    checkpoint_every : int
        Write the checkpoint every this many epochs (when a checkpoint path is given).
    ema : float or None
        Keep an exponential moving average of the weights with this decay (e.g. 0.999; Polyak
        averaging): validation, early stopping and the returned model use the averaged weights,
        which often generalise better than the last iterate. None (default) turns it off.
    """

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    patience: int | None = 10
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    progress: bool | None = None
    checkpoint_every: int = 1
    ema: float | None = None

    def __post_init__(self):
        check_int(self.epochs, "epochs")
        check_int(self.batch_size, "batch_size")
        check_float(self.lr, "lr")
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_float(self.weight_decay, "weight_decay", low=0.0, low_inclusive=True)
        check_choice(self.lr_schedule, "lr_schedule", LR_SCHEDULES)
        check_int(self.patience, "patience", allow_none=True)
        check_float(self.grad_clip, "grad_clip", allow_none=True)
        check_seed(self.seed)
        check_int(self.checkpoint_every, "checkpoint_every")
        check_float(self.ema, "ema", low=0.0, high=1.0, high_inclusive=False, allow_none=True)
        if not isinstance(self.device, str):
            raise ConfigError(f"device must be a string such as 'auto', 'cpu' or 'cuda'; got {self.device!r}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; known: {sorted(names)}.")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls.from_dict(json.loads(text))
