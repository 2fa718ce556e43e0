"""Per-model metrics: reconstruction, ELBO and its terms, log-likelihood, bits per dimension,
per-dimension KL and active units, for PCA, autoencoders and VAEs in one table."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..errors import ConfigError
from ..nn.distributions import DiagonalGaussian
from ..validation import check_float, check_int
from ._common import log_jacobian, module_of, standard_error
from .likelihood import log_likelihood

__all__ = ["evaluate", "active_units", "kl_per_dim"]

_BATCH = 1024


@torch.no_grad()
def _posterior_means(model, X, cond=None) -> np.ndarray:
    module = module_of(model, "active_units")
    module.eval()
    out = []
    for _, x, c in model.iter_batches(X, cond, _BATCH):
        q = module.encode(x, c)
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
    if "closed_form_kl" not in model.capabilities:
        raise ConfigError(
            f"kl_per_dim needs the N(0, I) prior, whose KL splits over dimensions; "
            f"{type(model).__name__} has another prior. Use evaluate(), which reports its total KL."
        )
    total, n = None, 0
    for _, x, c in model.iter_batches(X, cond, _BATCH):
        kd = module.encode(x, c).kl_per_dim().double().sum(0)
        total = kd if total is None else total + kd
        n += x.shape[0]
    return (total / n).cpu().numpy()


@torch.no_grad()
def _posterior_pass(model, module, X, cond, seed: int):
    """One pass over the posteriors of X: closed-form or Monte-Carlo KL, posterior means."""
    standard = "closed_form_kl" in model.capabilities
    g = torch.Generator(device=model._device())
    g.manual_seed(int(seed) + 1)
    kl, kld, means = [], [], []
    for _, x, c in model.iter_batches(X, cond, _BATCH):
        q = module.encode(x, c)
        means.append(q.mean.double().cpu())
        if standard and isinstance(q, DiagonalGaussian):
            kd = q.kl_per_dim().double()
            kld.append(kd.cpu())
            kl.append(kd.sum(-1).cpu())
        else:
            # Another prior (a mixture, a hierarchy): KL = E_q[log q(z|x) - log p(z)], 64 draws of z.
            z = q.rsample(64, generator=g)
            kl.append((q.log_prob(z) - module.prior_log_prob(z)).mean(0).double().cpu())
    return {
        "means": torch.cat(means).numpy(),
        "kl": torch.cat(kl).numpy(),
        "kl_per_dim": torch.cat(kld).numpy() if kld else None,
    }


def _reconstruction_mse(model, A, y) -> float:
    """Mean squared error per feature of ``model.reconstruct``, in the data's units."""
    n = A.shape[0]
    y = None if y is None else np.asarray(y)
    sq = 0.0
    for start in range(0, n, _BATCH * 4):
        block = np.asarray(A[start : start + _BATCH * 4], dtype=np.float64)
        yb = None if y is None else y[start : start + _BATCH * 4]
        R = np.asarray(model.reconstruct(block, yb), dtype=np.float64)
        sq += float(((block.reshape(len(block), -1) - R.reshape(len(block), -1)) ** 2).sum())
    return sq / (n * int(np.prod(A.shape[1:])))


def _table_reconstruction(model, A, y) -> dict:
    """For a mixed-type table: how well the decoded table matches, column by column. The numeric
    columns' root-mean-square error in units of each column's standard deviation (the model's
    standardization), and the share of categorical and 0/1 cells decoded to the right value."""
    codec = model.table_
    num = codec.numeric_features()
    exact = [(k, a, b) for k, a, b in codec.blocks() if k != "numeric"]
    n = A.shape[0]
    y = None if y is None else np.asarray(y)
    sq, hits = 0.0, 0
    for start in range(0, n, _BATCH * 4):
        block = np.asarray(A[start : start + _BATCH * 4], dtype=np.float64)
        yb = None if y is None else y[start : start + _BATCH * 4]
        R = codec.encode(model.reconstruct(block, yb)).astype(np.float64)
        if len(num):
            sq += float((((R[:, num] - block[:, num]) / model.scale_factor_[num]) ** 2).sum())
        for k, a, b in exact:
            hits += int((R[:, a:b].argmax(1) == block[:, a:b].argmax(1)).sum() if k == "categorical" else (R[:, a] == block[:, a]).sum())
    out = {}
    if len(num):
        out["reconstruction_nrmse"] = math.sqrt(sq / (n * len(num)))
    if exact:
        out["reconstruction_accuracy"] = hits / (n * len(exact))
    return out


def _density_metrics(model, A, y, k: int, seed: int) -> dict:
    """The ELBO and its terms, the importance-sampled log-likelihood and the active units."""
    module = module_of(model, "evaluate")
    was_training = module.training
    module.eval()
    try:
        p = _posterior_pass(model, module, A, y, seed)
        ll = log_likelihood(model, A, k, cond=y, seed=seed)
    finally:
        module.train(was_training)
    res: dict = {}
    elbo = ll.elbo_per_example
    res["elbo"] = float(elbo.mean())
    res["elbo_se"] = standard_error(elbo)
    res["kl"] = float(p["kl"].mean())
    res["rec"] = -(res["elbo"] + res["kl"])
    res["log_likelihood"] = ll.mean
    res["log_likelihood_se"] = ll.se
    res["log_likelihood_method"] = f"importance sampling, K={k}"
    res["k"] = k
    if p["kl_per_dim"] is not None:
        res["kl_per_dim"] = [float(v) for v in p["kl_per_dim"].mean(0)]
    if A.shape[0] >= 2:
        activity = p["means"].var(axis=0, ddof=1)
        res["active_units"] = int((activity > 0.01).sum())
        res["active_unit_threshold"] = 0.01
    return res


def evaluate(model, X, *, y=None, k: int = 1000, seed: int = 0) -> dict:
    """Every metric that applies to ``model`` on held-out data X, as a JSON-ready dict.

    Keys (nats per example unless stated; densities are of the data in its own units, i.e.
    with the input scaling's Jacobian):

    - ``model``, ``n_examples``, ``n_features``, ``latent_dim``, ``seconds``
    - ``reconstruction_mse``: mean squared error per feature of the reconstruction (for a VAE,
      decoded posterior means E[x|z = E_q z]), in data units. For a mixed-type table instead
      ``reconstruction_nrmse`` (its numeric columns' root-mean-square error, in standard
      deviations of each) and ``reconstruction_accuracy`` (the share of its categorical and 0/1
      cells decoded right).
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
    caps = model.capabilities
    y = y if model.conditional else None  # labels given to an unconditional model: nothing to condition on
    res: dict = {"model": type(model).__name__, "n_examples": n, "n_features": F, "latent_dim": int(model.latent_dim)}
    if getattr(model, "table_", None) is not None:
        res.update(_table_reconstruction(model, A, y))
    else:
        res["reconstruction_mse"] = _reconstruction_mse(model, A, y)
    jac = log_jacobian(model)
    if "reconstruction_nll" in caps:
        res["reconstruction_nll"] = float(np.mean(model.reconstruction_nll(A, y), dtype=np.float64)) - jac
    ll = None
    if "exact_likelihood" in caps:
        ll = log_likelihood(model, A)
        res.update(log_likelihood=ll.mean, log_likelihood_se=ll.se,
                   log_likelihood_method="exact")
    if "importance_weights" in caps:
        res.update(_density_metrics(model, A, y, k, seed))
    if "log_likelihood" in res:
        res["bits_per_dim"] = -res["log_likelihood"] / (F * math.log(2))
    res["seconds"] = time.perf_counter() - t0
    return res
