"""The autoencoder's reconstruction loss and the VAE's ELBO (c, Monte-Carlo samples, warm-up,
free bits), with the fused fast path where the model qualifies.

Every loss is summed over features (and latent dimensions) and averaged over examples: the
numbers are nats per example.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..validation import check_float, check_int
from . import fused
from .base import Objective

__all__ = ["ReconstructionLoss", "ELBO", "elbo_terms", "kl_weight", "check_weighting"]


@dataclass(frozen=True)
class ReconstructionLoss(Objective):
    """The autoencoder's loss: -log p(x | decoder(encoder(x))), or the squared error.

    The module must provide ``reconstruction_loss(x, out) -> (B,)``.
    """

    def __call__(self, module, batch, progress: float = 0.0):
        x = batch[0]
        rec = module.reconstruction_loss(x, module(x)).mean()
        return rec, {"loss": rec, "rec": rec}


def check_weighting(c, mc_samples, warmup_epochs) -> None:
    """The settings every objective with a weighted KL shares: c >= 0, mc_samples >= 1, warm-up >= 0."""
    check_float(c, "c", low=0.0, low_inclusive=True)
    check_int(mc_samples, "mc_samples")
    check_float(warmup_epochs, "warmup_epochs", low=0.0, low_inclusive=True)


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
    post = module.encode(x, cond)
    z = post.rsample(None if mc_samples == 1 else mc_samples, generator=generator)  # (B, D) or (L, B, D)
    out = module.decode(z, cond)
    log_px = module.likelihood.log_prob(x, out)  # (B,) or (L, B)
    rec = -(log_px if mc_samples == 1 else log_px.mean(0))
    return rec, post.kl_per_dim()


@dataclass(frozen=True)
class ELBO(Objective):
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
        Use the fused step of :mod:`latentlab.objectives.fused` when the model qualifies (MLP with
        ReLU/tanh, Bernoulli likelihood, one sample, no free bits): same numbers, less time.
    """

    c: float = 1.0
    mc_samples: int = 1
    warmup_epochs: float = 0.0
    free_bits: float = 0.0
    fast: bool = True

    def __post_init__(self):
        check_weighting(self.c, self.mc_samples, self.warmup_epochs)
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

    def scheduled_weights(self, progress: float) -> dict[str, float]:
        """``{"kl_weight": w}``: c times the warm-up ramp at ``progress`` (epochs)."""
        return {"kl_weight": kl_weight(self.c, self.warmup_epochs, progress)}

    def step(self, module, forward, *, fast: bool):
        """The fused step where it applies (``fast``, ``self.fast`` and a qualifying module, see
        :mod:`latentlab.objectives.fused`): loss and gradients in place, no autograd graph;
        otherwise autograd through ``forward``."""
        if not (fast and self.fast and fused.supports(module, None, self.mc_samples, self.free_bits)):
            return super().step(module, forward, fast=fast)
        return _FusedELBOStep(fused.fused_step(module, lambda p: kl_weight(self.c, self.warmup_epochs, p)))


class _FusedELBOStep:
    """:func:`latentlab.objectives.fused.fused_step` with the ELBO's terms; writes the gradients
    into the flat buffer's views (``flat = True``)."""

    flat = True

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, batch, progress):
        if len(batch) > 1:
            raise ValueError("the fused ELBO step takes unconditional batches only")
        loss, rec, kl = self.inner(batch[0], progress)
        return loss, {"loss": loss, "rec": rec, "kl": kl, "elbo": -(rec + kl)}
