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
        The budget: at most this many passes over the training data. Training stops earlier when
        it has converged (see ``patience`` and ``tol``); when the budget runs out first, the
        estimator warns with scikit-learn's ``ConvergenceWarning``.
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
        The stopping rule's window (scikit-learn's ``n_iter_no_change``): training has converged
        when the best monitored loss of the last ``patience`` epochs improves on the best before
        them by less than ``tol`` (relative). The monitored loss is the validation loss when
        there is a validation split (the best epoch's weights are then restored), else the
        training loss. None trains for all ``epochs``, with no stopping rule and no warning.
    tol : float
        Relative improvement of the monitored loss over ``patience`` epochs below which training
        has converged (0: any improvement counts).
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
        which often generalise better than the last iterate (default 0.999; None turns it off).
    threads : int or None
        CPU threads to train on, fixed for the run (``torch.set_num_threads``, restored after).
        None follows the free cores: at most the process's count (torch's default, one per core,
        or ``torch.set_num_threads``), fewer while other programs hold cores; with
        ``OMP_NUM_THREADS`` set, that count, fixed. See :mod:`latentlab.threads`.
    """

    epochs: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    patience: int | None = 10
    tol: float = 1e-5
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    progress: bool | None = None
    checkpoint_every: int = 1
    ema: float | None = 0.999
    threads: int | None = None

    def __post_init__(self):
        check_int(self.epochs, "epochs")
        check_int(self.batch_size, "batch_size")
        check_float(self.lr, "lr")
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_float(self.weight_decay, "weight_decay", low=0.0, low_inclusive=True)
        check_choice(self.lr_schedule, "lr_schedule", LR_SCHEDULES)
        check_int(self.patience, "patience", allow_none=True)
        check_float(self.tol, "tol", low=0.0, low_inclusive=True)
        check_float(self.grad_clip, "grad_clip", allow_none=True)
        check_seed(self.seed)
        check_int(self.checkpoint_every, "checkpoint_every")
        check_int(self.threads, "threads", allow_none=True)
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
