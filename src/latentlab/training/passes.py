"""Sums over batches and processes: the objective's terms on held-out data (the validation pass),
and the decisions every torchrun process must take together."""

from __future__ import annotations

import math

import torch

from . import distributed
from .data import ArrayData

__all__ = ["evaluate_objective", "agree", "with_count"]


def agree(loss: torch.Tensor, interrupted: bool, device) -> tuple[bool, bool]:
    """(any process's loss is not finite, any process was interrupted), the same on every process."""
    flags = torch.stack(
        [(~torch.isfinite(loss.detach())).to(torch.float64), torch.tensor(float(interrupted), dtype=torch.float64, device=device)]
    )
    bad, stop = distributed.all_reduce_sum(flags).tolist()
    return bad > 0, stop > 0


def with_count(acc: torch.Tensor, count: int) -> torch.Tensor:
    return torch.cat([acc, torch.tensor([count], dtype=torch.float64, device=acc.device)])


@torch.no_grad()
def evaluate_objective(module, objective, data: ArrayData, batch_size: int, names=None) -> dict[str, float]:
    """The objective's terms averaged over ``data`` (warm-up finished), in eval mode.

    Under torchrun each process evaluates its share and the sums are all-reduced.
    """
    was_training = module.training
    module.eval()
    dinfo = distributed.info()
    acc, count = None, 0
    for batch in data.slices(batch_size, dinfo.rank, dinfo.world):
        _, terms = objective(module, batch, math.inf)
        names = names or list(terms)
        vals = torch.stack([terms[k].detach() for k in names]).to(torch.float64) * len(batch[0])
        acc = vals if acc is None else acc + vals
        count += len(batch[0])
    if names is None:
        module.train(was_training)
        return {}
    if acc is None:
        acc = torch.zeros(len(names), dtype=torch.float64, device=data.device)
    tot = distributed.all_reduce_sum(with_count(acc, count))
    module.train(was_training)
    return {k: float(v / tot[-1]) for k, v in zip(names, tot[:-1])}
