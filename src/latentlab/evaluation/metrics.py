"""Per-model metrics: reconstruction, ELBO and its terms, log-likelihood, bits per dimension,
per-dimension KL and active units, for PCA, autoencoders and VAEs in one table."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from .._validation import check_float, check_int
from ..errors import ConfigError
from ..models.distributions import DiagonalGaussian
from ._common import accepts_cond, check_cond, log_jacobian, model_batches, module_of, standard_error
from .likelihood import log_likelihood

__all__ = ["evaluate", "active_units", "kl_per_dim", "has_standard_normal_prior"]

_BATCH = 1024


def has_standard_normal_prior(module) -> bool:
    """Whether the module's prior is N(0, I) (its ``prior_log_prob`` is the plain VAE's), so that
    KL(q(z|x) || p(z)) has a closed form per dimension."""
    from ..models.vae import VAEModule

    fn = getattr(type(module), "prior_log_prob", None)
    return fn is VAEModule.prior_log_prob


def _encode(module, x, c):
    return module.encode(x) if c is None else module.encode(x, c)


def _decode(module, z, c):
    return module.decode(z) if c is None else module.decode(z, c)


def _cond_for(module, cond):
    return cond if cond is not None and accepts_cond(module) else None


@torch.no_grad()
def _posterior_means(model, X, cond=None) -> np.ndarray:
    module = module_of(model, "active_units")
    module.eval()
    cond = _cond_for(module, cond)
    out = []
    for _, x, c in model_batches(model, X, _BATCH, cond):
        q = _encode(module, x, c)
        if not hasattr(q, "mean"):
            raise ConfigError(
                f"{type(model).__name__}'s posterior has no mean; active units need q(z|x) with a mean."
            )
        out.append(q.mean.double().cpu())
    return torch.cat(out).numpy()


def active_units(model, X, threshold: float = 0.01, *, cond=None) -> tuple[int, np.ndarray]:
    """The number of active latent units (Burda et al., 2016), and each unit's activity.

    Unit u's activity is A_u = Var_x( E_{q(z|x)}[z_u] ), the variance over the data of its
    posterior mean; the unit is active when A_u > ``threshold`` (0.01 in the paper). A unit that
    the decoder ignores has q(z_u|x) = N(0, 1) for every x (its KL is zero), so A_u ~ 0.

    Parameters
    ----------
    model : a fitted VAE (or variant); X : array (n, ...) of held-out data; threshold : float
    cond : condition rows for a conditional model.

    Returns
    -------
    (count, activity) with activity an ndarray of shape (latent_dim,).

    Example
    -------
    >>> from latentlab import VAE
    >>> from latentlab.datasets import load_digits
    >>> from latentlab.evaluation import active_units
    >>> X = load_digits().data
    >>> n, a = active_units(VAE(latent_dim=8, hidden=(32,), epochs=3, verbose=False).fit(X), X)
    >>> a.shape, 0 <= n <= 8
    ((8,), True)
    """
    threshold = check_float(threshold, "threshold", low=0.0, low_inclusive=True)
    means = _posterior_means(model, X, cond)
    if means.shape[0] < 2:
        raise ConfigError("active_units needs at least 2 examples to measure a variance.")
    activity = means.var(axis=0, ddof=1)
    return int((activity > threshold).sum()), activity


@torch.no_grad()
def kl_per_dim(model, X, *, cond=None) -> np.ndarray:
    """KL(q(z_d|x) || N(0, 1)) per latent dimension, averaged over X, in nats: (latent_dim,).

    Defined for models whose prior is N(0, I) (its KL splits over dimensions in closed form).
    """
    module = module_of(model, "kl_per_dim")
    module.eval()
    if not has_standard_normal_prior(module):
        raise ConfigError(
            f"kl_per_dim needs the N(0, I) prior, whose KL splits over dimensions; "
            f"{type(model).__name__} has another prior. Use evaluate(), which reports its total KL."
        )
    cond = _cond_for(module, cond)
    total, n = None, 0
    for _, x, c in model_batches(model, X, _BATCH, cond):
        kd = _encode(module, x, c).kl_per_dim().double().sum(0)
        total = kd if total is None else total + kd
        n += x.shape[0]
    return (total / n).cpu().numpy()


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


@torch.no_grad()
def _vae_pass(model, module, X, cond, seed: int):
    """One pass over X: reconstruction errors, closed-form or Monte-Carlo KL, posterior means."""
    dev = model._device()
    factor = getattr(model, "scale_factor_", None)
    factor = None if factor is None else torch.as_tensor(factor, dtype=torch.float32, device=dev)
    standard = has_standard_normal_prior(module)
    g = torch.Generator(device=dev)
    g.manual_seed(int(seed) + 1)
    sq, rec_nll, kl, kld, means = [], [], [], [], []
    for _, x, c in model_batches(model, X, _BATCH, cond):
        q = _encode(module, x, c)
        mean = q.mean
        out = _decode(module, mean, c)
        x_hat = module.likelihood.mean(out)
        diff = _flat(x - x_hat)
        if factor is not None:
            diff = diff * factor  # back to the data's units
        sq.append(diff.pow(2).mean(-1).double().cpu())
        rec_nll.append(-module.likelihood.log_prob(x, out).double().cpu())
        means.append(mean.double().cpu())
        if standard and isinstance(q, DiagonalGaussian):
            kd = q.kl_per_dim().double()
            kld.append(kd.cpu())
            kl.append(kd.sum(-1).cpu())
        elif hasattr(q, "rsample") and hasattr(q, "log_prob") and hasattr(module, "prior_log_prob"):
            # Another prior (a mixture, a hierarchy): KL = E_q[log q(z|x) - log p(z)], 64 draws of z.
            z = q.rsample(64, generator=g)
            kl.append((q.log_prob(z) - module.prior_log_prob(z)).mean(0).double().cpu())
    res = {
        "sq": torch.cat(sq).numpy(),
        "rec_nll": torch.cat(rec_nll).numpy(),
        "means": torch.cat(means).numpy(),
        "kl": torch.cat(kl).numpy() if kl else None,
        "kl_per_dim": torch.cat(kld).numpy() if kld else None,
    }
    return res


def _pca_metrics(model, X) -> dict:
    A = model._check_X(X, reset=False)
    Xf = np.asarray(A, dtype=np.float64).reshape(A.shape[0], -1)
    R = np.asarray(model.reconstruct(X) if hasattr(model, "reconstruct") else model.inverse_transform(model.transform(X)),
                   dtype=np.float64).reshape(A.shape[0], -1)
    F = Xf.shape[1]
    out = {"reconstruction_mse": float(np.mean((Xf - R) ** 2))}
    s2 = float(model.noise_variance_)
    if s2 > 0:
        # Probabilistic PCA's noise model, N(x; x_hat, s2 I), on the scaled data; then the Jacobian.
        factor = getattr(model, "scale_factor_", None)
        d = (Xf - R) if factor is None else (Xf - R) / np.asarray(factor, dtype=np.float64)
        nll = 0.5 * (d**2).sum(1) / s2 + 0.5 * F * math.log(2 * math.pi * s2) - log_jacobian(model)
        out["reconstruction_nll"] = float(nll.mean())
        ll = log_likelihood(model, X)
        out.update(
            log_likelihood=ll.mean,
            log_likelihood_se=ll.se,
            log_likelihood_method="exact (probabilistic PCA)",
            bits_per_dim=-ll.mean / (F * math.log(2)),
        )
    return out


@torch.no_grad()
def _ae_metrics(model, X) -> dict:
    module = model.module_
    module.eval()
    dev = model._device()
    factor = getattr(model, "scale_factor_", None)
    factor = None if factor is None else torch.as_tensor(factor, dtype=torch.float32, device=dev)
    sq, nll = [], []
    for _, x, _c in model_batches(model, X, _BATCH):
        out = module(x)
        diff = _flat(x - module.mean(out))
        if factor is not None:
            diff = diff * factor
        sq.append(diff.pow(2).mean(-1).double().cpu())
        if module.likelihood is not None:
            nll.append(-module.likelihood.log_prob(x, out).double().cpu())
    res = {"reconstruction_mse": float(torch.cat(sq).mean())}
    if nll:
        res["reconstruction_nll"] = float(torch.cat(nll).mean()) - log_jacobian(model)
    return res


def evaluate(model, X, *, y=None, k: int = 1000, seed: int = 0) -> dict:
    """Every metric that applies to ``model`` on held-out data X, as a JSON-ready dict.

    Keys (nats per example unless stated; densities are of the data in its own units, i.e.
    with the input scaling's Jacobian):

    - ``model``, ``n_examples``, ``n_features``, ``latent_dim``, ``seconds``
    - ``reconstruction_mse``: mean squared error per feature of the reconstruction (for a VAE,
      decoded posterior means E[x|z = E_q z]), in data units.
    - ``reconstruction_nll``: -log p(x | decoder(code)) where the model has a likelihood (VAE;
      autoencoder trained on a likelihood loss; PCA under its noise model N(x_hat, s2 I)).
    - ``elbo``, ``elbo_se``, ``rec``, ``kl``: the ELBO = -(rec + kl), with rec = -E_q log p(x|z)
      and kl = KL(q(z|x) || p(z)) (closed form for the N(0, I) prior, else 64 Monte-Carlo
      draws); ``elbo`` is the mean of the K log-weights of the likelihood estimate, ``rec`` is
      -(elbo + kl), so the three add up exactly. VAE family only.
    - ``log_likelihood``, ``log_likelihood_se``, ``log_likelihood_method``: log p(x), importance
      sampled with ``k`` samples (VAE) or exact (PCA, probabilistic PCA), and its standard error
      over the examples.
    - ``bits_per_dim``: -log_likelihood / (n_features ln 2).
    - ``kl_per_dim`` (list, N(0, I) prior only) and ``active_units`` (Burda et al.'s covariance
      criterion, threshold 0.01), with ``active_unit_threshold``.

    Parameters
    ----------
    model : fitted PCA, Autoencoder, VAE (or variant)
    X : held-out data, (n, ...)
    y : condition of a conditional model (ignored by unconditional ones)
    k : importance samples per example for the log-likelihood
    seed : seeds every random draw; same seed, same numbers.

    Example
    -------
    >>> from latentlab import PCA
    >>> from latentlab.datasets import load_digits
    >>> from latentlab.evaluation import evaluate
    >>> X = load_digits().data
    >>> m = evaluate(PCA(latent_dim=8).fit(X[:1000]), X[1000:])
    >>> sorted(m)[:3]
    ['bits_per_dim', 'latent_dim', 'log_likelihood']
    """
    t0 = time.perf_counter()
    k = check_int(k, "k")
    seed = check_int(seed, "seed", low=0)
    model._check_is_fitted()
    A = model._check_X(X, reset=False)
    n, F = int(A.shape[0]), int(np.prod(A.shape[1:]))
    res: dict = {"model": type(model).__name__, "n_examples": n, "n_features": F, "latent_dim": int(model.latent_dim)}
    from ..models.autoencoder import Autoencoder
    from ..models.pca import PCA

    if isinstance(model, PCA):
        res.update(_pca_metrics(model, A))
    elif isinstance(model, Autoencoder):
        res.update(_ae_metrics(model, A))
    else:
        module = module_of(model, "evaluate")
        was_training = module.training
        module.eval()
        try:
            cond = _cond_for(module, y)
            p = _vae_pass(model, module, A, cond, seed)
            ll = log_likelihood(model, A, k, cond=cond, seed=seed)
        finally:
            module.train(was_training)
        jac = log_jacobian(model)
        res["reconstruction_mse"] = float(p["sq"].mean())
        res["reconstruction_nll"] = float(p["rec_nll"].mean()) - jac
        elbo = ll.elbo_per_example
        res["elbo"] = float(elbo.mean())
        res["elbo_se"] = standard_error(elbo)
        if p["kl"] is not None:
            res["kl"] = float(p["kl"].mean())
            res["rec"] = -(res["elbo"] + res["kl"])
        res["log_likelihood"] = ll.mean
        res["log_likelihood_se"] = ll.se
        res["log_likelihood_method"] = f"importance sampling, K={k}"
        res["k"] = k
        res["bits_per_dim"] = -ll.mean / (F * math.log(2))
        if p["kl_per_dim"] is not None:
            res["kl_per_dim"] = [float(v) for v in p["kl_per_dim"].mean(0)]
        if n >= 2:
            activity = p["means"].var(axis=0, ddof=1)
            res["active_units"] = int((activity > 0.01).sum())
            res["active_unit_threshold"] = 0.01
    res["seconds"] = time.perf_counter() - t0
    return res
