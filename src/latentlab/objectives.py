"""Training objectives: plain callables handed to the trainer.

An objective is called as ``objective(module, batch, progress)`` where ``batch`` is a tuple of
tensors whose first entry is x (B, *F) and ``progress`` is the training time in epochs (a float,
for warm-up schedules). It returns ``(loss, terms)``: the scalar to minimise and a dict of
detached-able scalar tensors that the trainer averages per epoch and records in the history.

Every loss is summed over features (and latent dimensions) and averaged over examples: the
numbers are nats per example.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch

from ._validation import check_float, check_int
from .models import fused

__all__ = ["ReconstructionLoss", "ELBO", "ImportanceWeightedBound", "elbo_terms", "iw_bound", "kl_weight"]


@dataclass(frozen=True)
class ReconstructionLoss:
    """The autoencoder's loss: -log p(x | decoder(encoder(x))), or the squared error.

    The module must provide ``reconstruction_loss(x, out) -> (B,)``.
    """

    def __call__(self, module, batch, progress: float = 0.0):
        x = batch[0]
        rec = module.reconstruction_loss(x, module(x)).mean()
        return rec, {"loss": rec, "rec": rec}


def kl_weight(c: float, warmup_epochs: float, progress: float) -> float:
    """The weight on the KL term: c, ramped linearly from 0 over the first ``warmup_epochs``."""
    if warmup_epochs <= 0:
        return c
    return c * min(1.0, progress / warmup_epochs)


def elbo_terms(module, x: torch.Tensor, mc_samples: int = 1, generator=None, cond=None):
    """The two terms of the ELBO for a batch, per example.

    Returns ``rec`` (B,), the Monte-Carlo estimate of -E_q[log p(x|z)] over ``mc_samples`` draws of
    z = mu + sigma * eps, and ``kl_per_dim`` (B, D), KL(q(z|x) || N(0, I)) per latent dimension in
    closed form. The ELBO per example is ``-(rec + kl_per_dim.sum(-1))``.
    """
    post = module.encode(x) if cond is None else module.encode(x, cond)
    z = post.rsample(None if mc_samples == 1 else mc_samples, generator=generator)  # (B, D) or (L, B, D)
    out = module.decode(z) if cond is None else module.decode(z, cond)
    log_px = module.likelihood.log_prob(x, out)  # (B,) or (L, B)
    rec = -(log_px if mc_samples == 1 else log_px.mean(0))
    return rec, post.kl_per_dim()


@dataclass(frozen=True)
class ELBO:
    """The VAE objective, -E_q[log p(x|z)] + c * KL(q(z|x) || N(0, I)), per example.

    Parameters
    ----------
    c : float
        Weight on the KL term; c = 1 is the negative ELBO, c != 1 the beta-VAE.
    mc_samples : int
        Monte-Carlo samples of z per example (L).
    warmup_epochs : float
        The KL weight rises linearly from 0 to c over this many epochs (0: no warm-up).
    free_bits : float
        Nats per latent dimension below which the (batch-averaged) KL of that dimension is not
        penalised (Kingma et al., 2016); 0 turns it off. Only the training loss changes: the
        reported ``kl`` and ``elbo`` terms are always the true ones.
    fast : bool
        Use the fused step of :mod:`latentlab.models.fused` when the model qualifies (MLP with
        ReLU/tanh, Bernoulli likelihood, one sample, no free bits): same numbers, less time.
    """

    c: float = 1.0
    mc_samples: int = 1
    warmup_epochs: float = 0.0
    free_bits: float = 0.0
    fast: bool = True

    def __post_init__(self):
        check_float(self.c, "c", low=0.0, low_inclusive=True)
        check_int(self.mc_samples, "mc_samples")
        check_float(self.warmup_epochs, "warmup_epochs", low=0.0, low_inclusive=True)
        check_float(self.free_bits, "free_bits", low=0.0, low_inclusive=True)

    def __call__(self, module, batch, progress: float = 0.0):
        x = batch[0]
        cond = batch[1] if len(batch) > 1 else None
        if (
            self.fast
            and cond is None
            and not isinstance(progress, torch.Tensor)
            and not torch.compiler.is_compiling()
            and fused.supports(module, x, self.mc_samples, self.free_bits)
        ):
            w = kl_weight(self.c, self.warmup_epochs, progress)
            loss, rec, kl = fused.fused_bernoulli_elbo(module, x, w)
            return loss, {"loss": loss, "rec": rec, "kl": kl, "elbo": -(rec + kl)}
        rec, kl_d = elbo_terms(module, x, self.mc_samples, cond=cond)
        rec_mean = rec.mean()
        kl_mean = kl_d.sum(-1).mean()
        if self.free_bits > 0:
            kl_train = torch.clamp(kl_d.mean(0), min=self.free_bits).sum()
        else:
            kl_train = kl_mean
        w = kl_weight(self.c, self.warmup_epochs, progress)
        loss = rec_mean + w * kl_train
        return loss, {"loss": loss, "rec": rec_mean, "kl": kl_mean, "elbo": -(rec_mean + kl_mean)}

    def fused_step(self, module):
        """A step that computes the loss and writes each parameter's gradient in place, or None
        when the module does not qualify (see :mod:`latentlab.models.fused`). The trainer uses it
        on one process, with the parameters in one flat buffer."""
        if not self.fast or not fused.supports(module, None, self.mc_samples, self.free_bits):
            return None
        inner = fused.fused_step(module, lambda p: kl_weight(self.c, self.warmup_epochs, p))

        def step(batch, progress):
            if len(batch) > 1:
                raise ValueError("the fused ELBO step takes unconditional batches only")
            loss, rec, kl = inner(batch[0], progress)
            return loss, {"loss": loss, "rec": rec, "kl": kl, "elbo": -(rec + kl)}

        return step


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
    return (torch.logsumexp(groups, dim=1) - math.log(k)).mean(0)


@dataclass(frozen=True)
class ImportanceWeightedBound:
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
        check_int(self.mc_samples, "mc_samples")
        check_float(self.c, "c", low=0.0, low_inclusive=True)
        check_float(self.warmup_epochs, "warmup_epochs", low=0.0, low_inclusive=True)

    def __call__(self, module, batch, progress: float = 0.0):
        x = batch[0]
        kw = {"cond": batch[1]} if len(batch) > 1 else {}
        log_px, log_pz, log_qz = module.log_weight_terms(x, self.mc_samples * self.k, **kw)  # (L*k, B)
        log_ratio = log_pz - log_qz
        w = kl_weight(self.c, self.warmup_epochs, progress)
        loss = -iw_bound(log_px + w * log_ratio, self.k).mean()
        with torch.no_grad():
            bound = iw_bound(log_px + log_ratio, self.k).mean()
            rec = -log_px.mean()
            kl = -log_ratio.mean()
        return loss, {"loss": loss, "iw_bound": bound, "rec": rec, "kl": kl, "elbo": -(rec + kl)}
