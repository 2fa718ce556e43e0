"""The variational autoencoder (Kingma & Welling, 2014).

The encoder outputs a diagonal Gaussian q(z|x) = N(g(x), diag(h(x))); z = g(x) + h(x)^(1/2) * eps
with eps ~ N(0, I) (the reparameterization); the loss per example is
-E_q[log p(x|z)] + c * KL(q(z|x) || N(0, I)), estimated with L Monte-Carlo samples of z and
minimised by stochastic gradient descent; new data comes from decoding z ~ N(0, I).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._validation import check_choice, check_float, check_int
from ..errors import ConfigError
from ..objectives import ELBO, elbo_terms
from .base import register
from .distributions import LIKELIHOODS, DiagonalGaussian, make_likelihood, standard_normal_log_prob
from .neural import NeuralModel

__all__ = ["VAE", "VAEModule"]


class VAEModule(nn.Module):
    """encoder: x (B, *S) -> (B, 2K) split into mean and log-variance; decoder: z (..., K) -> out (..., *S)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: nn.Module, latent_dim: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim

    def encode(self, x) -> DiagonalGaussian:
        mean, logvar = self.encoder(x).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        """Decoder output for one reparameterized sample of z per example."""
        return self.decode(self.encode(x).rsample())

    def prior_log_prob(self, z):
        """log p(z) for the N(0, I) prior, summed over D. z: (..., D) -> (...)."""
        return standard_normal_log_prob(z)

    def sample_prior(self, n: int, generator=None, device=None):
        """n draws of z ~ p(z), (n, D)."""
        dev = device if device is not None else next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator, device=dev)

    def log_weight_terms(self, x, k: int, generator=None, posterior=None):
        """The three parts of the log importance weights, each (k, B), for z_k ~ q(z|x):
        ``(log p(x|z_k), log p(z_k), log q(z_k|x))``.

        Objectives that report the reconstruction and a Monte-Carlo KL, or weight the KL
        (warm-up), use the parts; :meth:`log_importance_weights` is their sum.
        """
        q = posterior if posterior is not None else self.encode(x)
        z = q.rsample(k, generator=generator)  # (k, B, D)
        log_px = self.likelihood.log_prob(x, self.decode(z))  # (k, B)
        return log_px, self.prior_log_prob(z), q.log_prob(z)

    def log_importance_weights(self, x, k: int, generator=None, posterior=None):
        """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) with z_k ~ q(z|x); (k, B).

        logsumexp over k minus log k is the importance-weighted bound (Burda et al.), which is
        the ELBO at k = 1 and tends to log p(x) as k grows. Gradients flow (reparameterized).
        """
        log_px, log_pz, log_qz = self.log_weight_terms(x, k, generator=generator, posterior=posterior)
        return log_px + log_pz - log_qz


@register
class VAE(NeuralModel):
    """Variational autoencoder with a diagonal Gaussian encoder and a N(0, I) prior.

    The training loss is summed over features and latent dimensions and averaged over
    examples: ``history_`` and ``score`` are in nats per example.

    Parameters
    ----------
    latent_dim : int
        Dimension of z.
    hidden, activation, architecture, channels : the networks, as for :class:`Autoencoder`.
    likelihood : {"auto", "bernoulli", "continuous_bernoulli", "gaussian"}
        The decoder's distribution p(x|z). "auto" picks "bernoulli" for binary data and a
        "gaussian" with learned sigma otherwise. Bernoulli needs 0/1 data, the continuous
        Bernoulli data in [0, 1]; a mismatch is an error that names the likelihood that fits.
    sigma : float or {"learned", "learned_per_feature"}
        For "gaussian": a fixed standard deviation, one learned value, or one per feature.
    c : float
        Weight on the KL term: 1 is the ELBO, other values the beta-VAE.
    mc_samples : int
        Monte-Carlo samples of z per example in the training loss.
    warmup_epochs : float
        Linear KL warm-up from 0 to c over this many epochs (0: none).
    free_bits : float
        Nats per latent dimension of KL that are not penalised (0: off).
    scale, epochs, batch_size, lr, optimizer, weight_decay, lr_schedule, patience,
    validation_fraction, grad_clip, ema, seed, device, compile, verbose, checkpoint_dir :
        as for :class:`Autoencoder`.

    Attributes
    ----------
    module_ : VAEModule
    likelihood_ : str, the likelihood in use ("auto" resolved).
    history_ : list of dict, per epoch: train_/val_ loss, rec, kl, elbo (nats per example), lr, time_s.

    Example
    -------
    >>> from latentlab import VAE
    >>> from latentlab.datasets import load_digits
    >>> X = load_digits().data
    >>> vae = VAE(latent_dim=2, hidden=(64,), epochs=2, verbose=False).fit(X)
    >>> vae.transform(X).shape, vae.sample(5, seed=0).shape
    ((1797, 2), (5, 64))
    """

    def __init__(
        self,
        latent_dim: int = 2,
        hidden=(256, 128),
        activation: str = "relu",
        architecture: str = "mlp",
        channels=(32, 64),
        likelihood: str = "auto",
        sigma="learned",
        c: float = 1.0,
        mc_samples: int = 1,
        warmup_epochs: float = 0.0,
        free_bits: float = 0.0,
        scale=None,
        epochs: int = 100,
        batch_size: int = 128,
        lr: float = 1e-3,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        patience: int | None = 10,
        validation_fraction: float = 0.1,
        grad_clip: float | None = None,
        ema: float | None = None,
        seed: int = 0,
        device: str = "auto",
        compile: bool = False,
        verbose: bool | None = None,
        checkpoint_dir=None,
    ):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.architecture = architecture
        self.channels = channels
        self.likelihood = likelihood
        self.sigma = sigma
        self.c = c
        self.mc_samples = mc_samples
        self.warmup_epochs = warmup_epochs
        self.free_bits = free_bits
        self.scale = scale
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.grad_clip = grad_clip
        self.ema = ema
        self.seed = seed
        self.device = device
        self.compile = compile
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir

    # ------------------------------------------------------------------ building
    def _validate_params(self):
        super()._validate_params()
        check_choice(self.likelihood, "likelihood", ("auto", *LIKELIHOODS))
        check_float(self.c, "c", low=0.0, low_inclusive=True)
        check_int(self.mc_samples, "mc_samples")
        check_float(self.warmup_epochs, "warmup_epochs", low=0.0, low_inclusive=True)
        check_float(self.free_bits, "free_bits", low=0.0, low_inclusive=True)

    def _check_support(self, A):
        if self.likelihood == "auto":
            binary = bool(np.all((A == 0) | (A == 1)))
            prev = getattr(self, "_auto_binary", True)
            self._auto_binary = prev and binary
            self.likelihood_ = "bernoulli" if self._auto_binary else "gaussian"
            return
        self.likelihood_ = self.likelihood
        make_likelihood(self.likelihood, self.sigma, self.n_features_in_).check(A)

    def _fit(self, X, cond, **kw):
        self._auto_binary = True
        try:
            return super()._fit(X, cond, **kw)
        finally:
            del self._auto_binary

    def _make_likelihood(self):
        name = self.likelihood_
        sigma = self.sigma if name == "gaussian" else 1.0
        init_var = self._feature_variance() if name == "gaussian" and isinstance(sigma, str) else None
        return make_likelihood(name, sigma, self.n_features_in_, init_var)

    def _build_module(self):
        k = int(self.latent_dim)
        enc, dec = self._networks(2 * k, k)
        return VAEModule(enc, dec, self._make_likelihood(), k)

    def _objective(self):
        return ELBO(self.c, self.mc_samples, self.warmup_epochs, self.free_bits)

    def _extra_state(self):
        return {"likelihood": self.likelihood_}

    def _restore_extra(self, state):
        self.likelihood_ = state["likelihood"]

    # ------------------------------------------------------------------ the transformer API
    def transform(self, X, *, sample: bool = False, seed=None) -> np.ndarray:
        """Codes of shape (n, latent_dim): the posterior means, or one sample of q(z|x) each
        with ``sample=True``."""
        A = self._check_X(X, reset=False)
        g = self._generator(seed)
        if sample:
            return self._map_batches(A, lambda b: self.module_.encode(b[0]).rsample(generator=g))
        return self._map_batches(A, lambda b: self.module_.encode(b[0]).mean)

    def encode(self, X) -> tuple[np.ndarray, np.ndarray]:
        """The posterior q(z|x): (mean, std), each of shape (n, latent_dim)."""
        A = self._check_X(X, reset=False)
        both = self._map_batches(A, lambda b: torch.cat([(q := self.module_.encode(b[0])).mean, q.std], -1))
        k = self._n_features_out
        return both[:, :k], both[:, k:]

    def inverse_transform(self, Z) -> np.ndarray:
        """The decoder's mean E[x|z] for codes (n, latent_dim), shaped and scaled like the data
        (for the Bernoulli, pixel probabilities)."""
        Zc = self._check_Z(Z)
        m = self.module_
        return self._output(self._decode_batches(Zc, lambda z: m.likelihood.mean(m.decode(z))))

    def reconstruct(self, X) -> np.ndarray:
        """inverse_transform(transform(X)): decoded posterior means."""
        return self.inverse_transform(self.transform(X))

    def sample(self, n: int, seed=None, *, return_latent: bool = False, mean: bool = True):
        """Generate ``n`` examples by decoding z ~ p(z) (here N(0, I)).

        Parameters
        ----------
        n : int
        seed : int or None
            Same seed, same samples.
        return_latent : bool
            Also return the z that were decoded, (n, latent_dim).
        mean : bool
            Return E[x|z] (default); False draws x ~ p(x|z) as well.
        """
        self._check_is_fitted()
        n = check_int(n, "n")
        g = self._generator(seed)
        dev = self._device()
        m = self.module_
        with torch.no_grad():
            z = m.sample_prior(n, generator=g, device=dev)
        if mean:
            fn = lambda t: m.likelihood.mean(m.decode(t))  # noqa: E731
        else:
            fn = lambda t: m.likelihood.sample(m.decode(t), generator=g)  # noqa: E731
        X = self._output(self._decode_batches(z.cpu().numpy(), fn))
        return (X, z.cpu().numpy()) if return_latent else X

    def score_samples(self, X, *, mc_samples: int = 1, seed=None) -> np.ndarray:
        """ELBO of each example, nats, estimated with ``mc_samples`` draws of z (default seed:
        the estimator's, so the number is repeatable). Shape (n,)."""
        A = self._check_X(X, reset=False)
        g = self._generator(self.seed if seed is None else seed)
        m = self.module_

        def elbo(b):
            rec, kl_d = elbo_terms(m, b[0], mc_samples, generator=g)
            return -(rec + kl_d.sum(-1))

        return self._map_batches(A, elbo)

    def score(self, X, y=None) -> float:
        """Mean ELBO per example in nats (higher is better)."""
        return float(np.mean(self.score_samples(X)))
