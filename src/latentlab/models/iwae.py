"""The importance-weighted autoencoder (Burda, Grosse & Salakhutdinov, 2016).

The model is the VAE's (Gaussian encoder, N(0, I) prior, a decoder likelihood); only the
objective changes. With log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) and z_k ~ q(z|x),
training maximises the importance-weighted bound

    L_k(x) = E[ logsumexp_k log w_k - log k ]  <=  log p(x),

which is the ELBO at k = 1 and rises monotonically towards log p(x) with k (Burda et al.,
Theorem 1). The price is k decoder passes per example and step.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..objectives import ImportanceWeightedBound, iw_bound
from ..validation import check_float, check_int
from . import constraints
from .registry import register
from .vae import VAE

__all__ = ["IWAE", "BoundScoreMixin"]

_SCORE_ELEMENTS = 1 << 16  # (examples x samples) per forward pass in score_samples


class BoundScoreMixin:
    """``score`` / ``score_samples`` as the k-sample importance-weighted bound, for the VAE
    family members whose KL has no closed form or whose objective is the bound."""

    def _check_no_free_bits(self):
        check_float(self.free_bits, "free_bits", low=0.0, low_inclusive=True)
        if self.free_bits:
            raise ConfigError(
                f"free_bits={self.free_bits!r} is not available for {type(self).__name__}: its KL term "
                "is a Monte-Carlo estimate inside the log-weights, with no per-dimension closed form to "
                "clamp. Set free_bits=0 (use warmup_epochs against posterior collapse)."
            )

    def score_samples(self, X, *, k: int | None = None, mc_samples: int = 1, seed=None) -> np.ndarray:
        """Per example (n,), in nats: the importance-weighted bound with ``k`` samples (default:
        the ``k`` the model trains with; k = 1 is the ELBO), averaged over ``mc_samples``
        independent draws. Seeded by the estimator's seed unless ``seed`` is given, so the
        number is repeatable. For the standard test log-likelihood (k = 5000) use
        :mod:`latentlab.evaluation`.
        """
        A = self._check_X(X, reset=False)
        k = int(getattr(self, "k", 1)) if k is None else check_int(k, "k")
        n_draws = check_int(mc_samples, "mc_samples") * k
        g = self._generator(self.seed if seed is None else seed)
        m = self.module_
        step = max(1, _SCORE_ELEMENTS // n_draws)

        def bound(b):
            x = b[0]
            parts = [iw_bound(m.log_importance_weights(x[i : i + step], n_draws, generator=g), k)
                     for i in range(0, len(x), step)]
            return torch.cat(parts)

        return self._map_batches(A, bound)

    def score(self, X, y=None) -> float:
        """Mean importance-weighted bound per example with the training ``k``, nats (higher is
        better); the ELBO when k = 1."""
        return float(np.mean(self.score_samples(X)))


@register("iwae", order=3)
class IWAE(BoundScoreMixin, VAE):
    """Importance-weighted autoencoder: a VAE trained on the k-sample importance-weighted bound.

    ``IWAE(k=1)`` trains on the same objective as ``VAE`` (the ELBO, with a Monte-Carlo KL
    instead of the closed form); larger k gives a tighter bound and usually a better
    log-likelihood, at k times the decoder cost per step.

    Parameters
    ----------
    k : int
        Importance samples per example in the training bound (Burda et al. use 5 and 50).
    c : float
        Weight on log p(z) - log q(z|x) inside each log-weight; 1 is the bound itself.
    mc_samples : int
        Independent k-sample bounds averaged per example (the cost is mc_samples * k passes).
    warmup_epochs : float
        c rises linearly from 0 over this many epochs (an annealed bound; 0: none).
    free_bits : float
        Must be 0 (the KL is not in closed form inside the bound).
    latent_dim, hidden, activation, architecture, channels, encoder, decoder, likelihood, sigma, scale, epochs,
    batch_size, lr, optimizer, weight_decay, lr_schedule, patience, tol, validation_fraction,
    grad_clip, ema, seed, device, threads, compile, verbose, checkpoint_dir :
        as for :class:`VAE`.

    Attributes
    ----------
    module_ : VAEModule
    history_ : list of dict, per epoch: train_/val_ loss, iw_bound (the k-sample bound), rec,
        kl (Monte-Carlo), elbo, in nats per example; lr, time_s. Early stopping watches
        val_loss, the negative bound.

    ``score`` is the mean k-sample bound (not the ELBO as for ``VAE``): the quantity trained.

    Example
    -------
    >>> import numpy as np
    >>> from latentlab import IWAE
    >>> from latentlab.datasets import load_digits
    >>> X = (load_digits().data > 0.5).astype(np.float32)
    >>> iwae = IWAE(latent_dim=4, k=5, hidden=(64,), epochs=2, verbose=False).fit(X)
    >>> iwae.score_samples(X[:3], k=50).shape
    (3,)
    """

    _parameter_constraints = {**VAE._parameter_constraints, "k": constraints.POSITIVE_INT}

    def __init__(
        self,
        latent_dim: int = 2,
        k: int = 5,
        hidden=(256, 128),
        activation: str = "relu",
        architecture: str = "mlp",
        channels=(32, 64),
        encoder=None,
        decoder=None,
        likelihood: str = "auto",
        sigma="learned",
        c: float = 1.0,
        mc_samples: int = 1,
        warmup_epochs: float = 0.0,
        free_bits: float = 0.0,
        scale=None,
        epochs: int = 1000,
        batch_size: int = 64,
        lr: float = 2e-3,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        patience: int | None = 10,
        tol: float = 1e-5,
        validation_fraction: float = 0.1,
        grad_clip: float | None = None,
        ema: float | None = 0.999,
        seed: int = 0,
        device: str = "auto",
        threads: int | None = None,
        compile: bool = False,
        verbose: bool | None = None,
        checkpoint_dir=None,
    ):
        self._store_params(locals())

    def _validate_params(self):
        super()._validate_params()
        self._check_no_free_bits()

    def _objective(self):
        return ImportanceWeightedBound(self.k, self.mc_samples, self.c, self.warmup_epochs)
