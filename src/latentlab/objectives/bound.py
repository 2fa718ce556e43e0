"""The importance-weighted bound of Burda et al. (2016), and the objective built on it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..nn.distributions import logsumexp
from ..validation import check_int
from .base import Objective
from .elbo import check_weighting, kl_weight

__all__ = ["iw_bound", "ImportanceWeightedBound"]


def iw_bound(log_w: torch.Tensor, k: int) -> torch.Tensor:
    """The importance-weighted bound of Burda et al. from log-weights, per example.

    ``log_w`` has shape (L * k, B): L independent groups of k weights (the group index
    varies slowest). Each group gives logsumexp_k log w - log k; the L groups are averaged.
    Returns (B,). With k = 1 this is the Monte-Carlo ELBO, the mean of ``log_w``.

    >>> import torch
    >>> lw = torch.tensor([[0.0], [2.0]])
    >>> float(iw_bound(lw, 2)) > float(lw.mean())   # Jensen: above the ELBO of the same samples
    True
    """
    n, b = log_w.shape
    groups = log_w.reshape(n // k, k, b)
    return (logsumexp(groups, 1) - math.log(k)).mean(0)  # its gradient without subnormal weights


@dataclass(frozen=True)
class ImportanceWeightedBound(Objective):
    """The importance-weighted bound (IWAE; Burda et al., 2016) as a loss, per example.

    With log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x), the bound is
    logsumexp_k log w_k - log k: the ELBO at k = 1, tightening towards log p(x) as k grows.
    The loss is its negative, averaged over ``mc_samples`` independent groups of k samples
    and over the batch. The module provides ``log_weight_terms(x, n, cond=...)``, so any prior
    (N(0, I), a VampPrior, a hierarchy) works; the KL term is a Monte-Carlo estimate.

    Parameters
    ----------
    k : int
        Importance samples per bound (k = 1: the Monte-Carlo ELBO).
    mc_samples : int
        Independent groups of k samples averaged (L); the cost is L * k decoder passes.
    c : float
        Weight on log p(z) - log q(z|x) inside each log-weight (c = 1: the bound itself);
        below 1 during warm-up, as the annealed bound.
    warmup_epochs : float
        The weight rises linearly from 0 to c over this many epochs.

    Terms reported per epoch (nats per example): ``loss``; ``iw_bound``, the bound itself
    (c = 1); ``rec`` = -E[log p(x|z)]; ``kl`` = E[log q(z|x) - log p(z)], a Monte-Carlo
    estimate; ``elbo`` = -(rec + kl), which never exceeds ``iw_bound`` for the same samples.
    """

    k: int = 1
    mc_samples: int = 1
    c: float = 1.0
    warmup_epochs: float = 0.0

    def __post_init__(self):
        check_int(self.k, "k")
        check_weighting(self.c, self.mc_samples, self.warmup_epochs)

    def scheduled_weights(self, progress: float) -> dict[str, float]:
        """``{"kl_weight": w}``: c times the warm-up ramp at ``progress`` (epochs)."""
        return {"kl_weight": kl_weight(self.c, self.warmup_epochs, progress)}

    def __call__(self, module, batch, progress: float = 0.0):
        x = batch[0]
        cond = batch[1] if len(batch) > 1 else None
        log_px, log_pz, log_qz = module.log_weight_terms(x, self.mc_samples * self.k, cond=cond)  # (L*k, B)
        log_ratio = log_pz - log_qz
        w = kl_weight(self.c, self.warmup_epochs, progress)
        loss = -iw_bound(log_px + w * log_ratio, self.k).mean()
        with torch.no_grad():
            bound = iw_bound(log_px + log_ratio, self.k).mean()
            rec = -log_px.mean()
            kl = -log_ratio.mean()
        return loss, {"loss": loss, "iw_bound": bound, "rec": rec, "kl": kl, "elbo": -(rec + kl)}
