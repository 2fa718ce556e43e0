"""What the trainer steps with: the optimiser, the learning-rate schedule, the weight average."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..config import TrainConfig
from .flat import FlatParameters

__all__ = ["make_optimizer", "make_scheduler", "WeightAverage"]


def make_optimizer(config: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (momentum 0.9); the fused single-kernel update where this PyTorch has it."""
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    try:
        return cls(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):  # fused not built for this device / version
        return cls(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)


def make_scheduler(config: TrainConfig, opt):
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=0.5, patience=max(1, (config.patience or 10) // 2)
        )
    return None


class WeightAverage:
    """An exponential moving average of the trainable parameters (Polyak averaging).

    After each optimiser step, avg <- avg + (1 - d_t) (param - avg) with d_t =
    min(decay, (1 + t) / (10 + t)) at update t: the short warm-up keeps the average from
    remembering the initial weights for ~1/(1 - decay) steps. One ``lerp`` over the flat
    parameter buffer when training flattened, one ``_foreach_lerp_`` otherwise.
    """

    def __init__(self, module: nn.Module, decay: float, flat: FlatParameters | None):
        named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        self.params = [p for _, p in named]
        self.decay = decay
        self.updates = 0
        with torch.no_grad():
            if flat is not None:
                self.sources = [flat.param]
                self.targets = [flat.param.detach().clone()]
                self.avg = [v.view(p.shape) for v, p in zip(torch.split(self.targets[0], flat.sizes), flat.params)]
            else:
                self.sources = self.params
                self.avg = self.targets = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        torch._foreach_lerp_(self.targets, [p.detach() for p in self.sources], 1.0 - d)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"ema.{k}": v for k, v in zip(self.names, self.avg)}

    @torch.no_grad()
    def load(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        for k, v in zip(self.names, self.avg):
            v.copy_(tensors[f"ema.{k}"])
        self.updates = updates

    @torch.no_grad()
    def copy_to_params(self) -> None:
        for p, a in zip(self.params, self.avg):
            p.copy_(a)

    @contextlib.contextmanager
    def swapped_in(self):
        """The averaged weights in the module for the duration (validation, best-weight copy)."""
        backup = [p.detach().clone() for p in self.params]
        self.copy_to_params()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(self.params, backup):
                    p.copy_(b)
