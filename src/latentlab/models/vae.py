"""The variational autoencoder (Kingma & Welling, 2014).

The encoder outputs a diagonal Gaussian q(z|x) = N(g(x), diag(h(x))); z = g(x) + h(x)^(1/2) * eps
with eps ~ N(0, I) (the reparameterization); the loss per example is
-E_q[log p(x|z)] + c * KL(q(z|x) || N(0, I)), estimated with L Monte-Carlo samples of z and
minimised by stochastic gradient descent; new data comes from decoding z ~ N(0, I).

The torch module is :class:`latentlab.nn.modules.VAEModule`; this file is the estimator around
it. Its methods are written once for the VAE family: every one takes the condition y, which the
conditional VAE reads and the others ignore (``_condition_rows``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..nn.distributions import LIKELIHOODS, make_likelihood
from ..nn.modules import VAEModule
from ..objectives import ELBO, elbo_terms
from ..validation import check_choice, check_int
from . import constraints, own
from .neural import NeuralModel
from .registry import register

__all__ = ["VAE"]


def _cond(batch):
    """The condition rows of a batch (None for unconditional models)."""
    return batch[1] if len(batch) > 1 else None


@register("vae", order=2)
class VAE(NeuralModel):
    """Variational autoencoder with a diagonal Gaussian encoder and a N(0, I) prior.

    The training loss is summed over features and latent dimensions and averaged over
    examples: ``history_`` and ``score`` are in nats per example.

    Parameters
    ----------
    latent_dim : int
        Dimension of z.
    hidden, activation, architecture, channels : the networks, as for :class:`Autoencoder`.
    encoder : torch.nn.Module, ModuleSpec, str or None
        Your own encoder instead of the built-in one (None): x (B, *S) -> (B, 2 * latent_dim), the
        mean and the log-variance of q(z|x) side by side. S is one example as the built-in networks
        take it: (n_features,) with architecture="mlp", (C, H, W) with "conv" (images (n, H, W) get
        C = 1). A module is copied at fit (yours is not trained; its weights are the start); a
        :class:`latentlab.nn.ModuleSpec`, or its text "package.module:Name(k=v)", is built at fit
        (seeded) and recorded in the saved model (see :func:`latentlab.load`). The shapes are
        checked on the first batch. hidden, activation and channels do not apply to it.
    decoder : torch.nn.Module, ModuleSpec, str or None
        Your own decoder: z (B, latent_dim) -> (B, *S), the likelihood's parameters (logits for the
        Bernoulli, means for the Gaussian); latentlab runs it on (..., latent_dim) by flattening the
        leading dimensions. As for ``encoder`` otherwise.
    likelihood : {"auto", "bernoulli", "continuous_bernoulli", "gaussian", "mixed"}, or your own
        The decoder's distribution p(x|z). "auto" picks "mixed" for a mixed-type table (a
        DataFrame or CSV with text columns), "bernoulli" for binary data and a "gaussian" with
        learned sigma otherwise. Bernoulli needs 0/1 data, the continuous Bernoulli data in
        [0, 1]; a mismatch is an error that names the likelihood that fits. "mixed"
        (:class:`latentlab.nn.mixed.MixedTable`): a Gaussian for each numeric column, a Bernoulli
        for each 0/1 column, a categorical (softmax) over each text column's categories, summed.
        Your own: a :class:`latentlab.nn.Likelihood` instance, a ModuleSpec or its text.
    sigma : float or {"learned", "learned_per_feature"}
        For "gaussian": a fixed standard deviation, one learned value, or one per feature. For
        "mixed": fixed, or learned per numeric column (either string).
    c : float
        Weight on the KL term: 1 is the ELBO, other values the beta-VAE.
    mc_samples : int
        Monte-Carlo samples of z per example in the training loss.
    warmup_epochs : float
        Linear KL warm-up from 0 to c over this many epochs (0: none).
    free_bits : float
        Nats per latent dimension of KL that are not penalised (0: off).
    scale, epochs, batch_size, lr, optimizer, weight_decay, lr_schedule, patience, tol,
    validation_fraction, grad_clip, ema, seed, device, threads, compile, verbose, checkpoint_dir :
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

    _parameter_constraints = {**constraints.NETWORK, **constraints.OWN_NETWORKS, **constraints.VAE_TERMS, **constraints.SCALE,
                              **constraints.TRAINING}

    def __init__(
        self,
        latent_dim: int = 2,
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

    network_params = ("encoder", "decoder", "likelihood")

    # ------------------------------------------------------------------ building
    def _validate_params(self):
        super()._validate_params()
        if not own.is_own(self.likelihood, "likelihood"):
            check_choice(self.likelihood, "likelihood", ("auto", *LIKELIHOODS, "mixed"))
        self._objective()  # the objective checks its own settings (c, mc_samples, warm-up, ...)

    def _encoder_width(self) -> int:
        return 2 * int(self.latent_dim)

    def _check_support(self, A):
        if own.is_own(self.likelihood, "likelihood"):
            self.likelihood_ = own.likelihood_name(self._check_own_likelihood("likelihood", A))
            return
        if self.likelihood == "mixed" or self.likelihood == "auto" and getattr(self, "table_", None) is not None:
            self.likelihood_ = "mixed"
            self._mixed_likelihood(self.sigma, init=False).check(A)
            return
        if self.likelihood == "auto":
            binary = bool(np.all((A == 0) | (A == 1)))
            prev = getattr(self, "_auto_binary", True)
            self._auto_binary = prev and binary
            self.likelihood_ = "bernoulli" if self._auto_binary else "gaussian"
            return
        self.likelihood_ = self.likelihood
        make_likelihood(self.likelihood, self.sigma, self._n_model_features).check(A)

    def _fit(self, X, cond, **kw):
        self._auto_binary = True
        try:
            return super()._fit(X, cond, **kw)
        finally:
            del self._auto_binary

    def _make_likelihood(self):
        if own.is_own(self.likelihood, "likelihood"):
            return own.build_own(self.likelihood, "likelihood")
        name = self.likelihood_
        if name == "mixed":
            return self._mixed_likelihood(self.sigma)
        sigma = self.sigma if name == "gaussian" else 1.0
        init_var = self._feature_variance() if name == "gaussian" and isinstance(sigma, str) else None
        return make_likelihood(name, sigma, self._n_model_features, init_var)

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

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {"posterior", "importance_weights", "prior", "reconstruction_nll"}
        if self.module_.has_standard_prior:
            caps.add("closed_form_kl")
        if self.conditional:
            caps.add("conditional")
        return frozenset(caps)

    # ------------------------------------------------------------------ the transformer API
    def transform(self, X, y=None, *, sample: bool = False, seed=None) -> np.ndarray:
        """Codes of shape (n, code_size): the posterior means, or one sample of q(z|x) each with
        ``sample=True``. ``y``: the condition of a conditional model (ignored otherwise)."""
        A = self._check_X(X, reset=False)
        C = self._condition_rows(y, A.shape[0])
        g = self._generator(seed)
        m = self.module_
        if sample:
            return self._map_batches(A, lambda b: m.encode(b[0], _cond(b)).rsample(generator=g), C)
        return self._map_batches(A, lambda b: m.encode(b[0], _cond(b)).mean, C)

    def encode(self, X, y=None) -> tuple[np.ndarray, np.ndarray]:
        """The posterior q(z|x): (mean, std), each of shape (n, code_size)."""
        A = self._check_X(X, reset=False)
        C = self._condition_rows(y, A.shape[0])
        m = self.module_
        both = self._map_batches(A, lambda b: torch.cat([(q := m.encode(b[0], _cond(b))).mean, q.std], -1), C)
        k = self.code_size
        return both[:, :k], both[:, k:]

    def inverse_transform(self, Z, y=None) -> np.ndarray:
        """The decoder's mean E[x|z] for codes (n, code_size), shaped and scaled like the data
        (for the Bernoulli, pixel probabilities)."""
        Zc = self._check_Z(Z)
        C = self._condition_rows(y, Zc.shape[0])
        m = self.module_
        return self._output(self._decode_batches(Zc, lambda z, c: m.likelihood.mean(m.decode(z, c)), C))

    def _prior_draws(self, n: int, g) -> np.ndarray:
        with torch.no_grad():
            return self.module_.sample_prior(n, generator=g, device=self._device()).cpu().numpy()

    def _prior_latent(self, n: int, seed) -> np.ndarray:
        """``n`` draws z ~ p(z), the model's prior (N(0, I); a VampPrior's mixture; ...), (n, code_size)."""
        return self._prior_draws(n, self._generator(seed))

    def sample(self, n: int, y=None, *, seed=None, sampler: str = "prior", return_latent: bool = False,
               mean: bool = True):
        """Generate ``n`` examples by decoding z ~ p(z) (here N(0, I)).

        Parameters
        ----------
        n : int
        y : the condition of a conditional model (ignored otherwise)
        seed : int or None
            Same seed, same samples.
        sampler : {"prior", "gmm", "gaussian"}
            Where z comes from: the prior (default), or a density fitted to the training codes
            (see :meth:`latentlab.models.base.LatentModel.sample_latent`).
        return_latent : bool
            Also return the z that were decoded, (n, code_size).
        mean : bool
            Return E[x|z] (default); False draws x ~ p(x|z) as well.
        """
        self._check_is_fitted()
        n = check_int(n, "n")
        self._check_sampler(sampler)
        C = self._condition_rows(y, n)
        g = self._generator(seed)
        m = self.module_
        z = self._prior_draws(n, g) if sampler == "prior" else self.sample_latent(n, seed=seed, sampler=sampler)
        if mean:
            fn = lambda t, c: m.likelihood.mean(m.decode(t, c))  # noqa: E731
        else:
            fn = lambda t, c: m.likelihood.sample(m.decode(t, c), generator=g)  # noqa: E731
        X = self._output(self._decode_batches(z, fn, C))
        return (X, z) if return_latent else X

    def reconstruction_nll(self, X, y=None) -> np.ndarray:
        """-log p(x | z = E_q[z]) per example, nats, of the scaled data: the likelihood of the
        decoded posterior mean. (n,)."""
        A = self._check_X(X, reset=False)
        C = self._condition_rows(y, A.shape[0])
        m = self.module_

        def nll(b):
            c = _cond(b)
            return -m.likelihood.log_prob(b[0], m.decode(m.encode(b[0], c).mean, c))

        return self._map_batches(A, nll, C)

    def score_samples(self, X, y=None, *, mc_samples: int = 1, seed=None) -> np.ndarray:
        """ELBO of each example, nats, estimated with ``mc_samples`` draws of z (default seed:
        the estimator's, so the number is repeatable). Shape (n,)."""
        A = self._check_X(X, reset=False)
        C = self._condition_rows(y, A.shape[0])
        g = self._generator(self.seed if seed is None else seed)
        m = self.module_

        def elbo(b):
            rec, kl_d = elbo_terms(m, b[0], mc_samples, generator=g, cond=_cond(b))
            return -(rec + kl_d.sum(-1))

        return self._map_batches(A, elbo, C)

    def score(self, X, y=None) -> float:
        """Mean ELBO per example in nats (higher is better)."""
        return float(np.mean(self.score_samples(X, y)))
