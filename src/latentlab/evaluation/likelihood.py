"""The importance-sampled log-likelihood, log p(x), of a latent-variable model.

    log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,   z_k ~ q(z|x)

(Burda et al., 2016; the estimate behind every published MNIST likelihood, with K = 5000). By
Jensen's inequality its expectation is a lower bound on log p(x) that rises with K to log p(x);
K = 1 gives the ELBO. The model provides the log-weights through its module's
``log_importance_weights(x, k, generator=None, posterior=None)``, so any prior, likelihood or
conditioning works.

The computation streams over chunks of K (a running logsumexp in float64) and over batches of
examples, so memory is bounded by one decoder call whatever K and n are. The random numbers are
a function of (seed, example index, sample index) alone: the chunking changes the speed and the
memory, never the number.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..limits import check_samples, check_seed
from ..validation import check_int
from ..errors import LatentlabError
from ..nn.distributions import DiagonalGaussian
from ._common import log_jacobian, module_of, standard_error

__all__ = ["LogLikelihood", "log_likelihood", "noise_tiles", "default_sizes", "TILE_K", "TILE_N"]

# The random stream is cut into tiles of TILE_N consecutive examples x TILE_K consecutive
# samples; each tile has its own seed. Chunks and batches are made of whole tiles by default
# (any other size still gives the same numbers, at the cost of drawing partly unused tiles).
TILE_K = 64
TILE_N = 16
_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """The splitmix64 finaliser: a bijection of 64-bit integers that scrambles every bit."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


def _tile_seed(seed: int, block: int, tile: int) -> int:
    h = _mix64((int(seed) + 0x9E3779B97F4A7C15) & _MASK64)
    h = _mix64((h ^ int(block)) + 0x632BE59BD9B4E019 & _MASK64)
    h = _mix64((h ^ int(tile)) + 0x8CB92BA72F3D8DD7 & _MASK64)
    return h >> 1  # torch seeds are < 2**63


def noise_tiles(seed: int, n0: int, n1: int, k0: int, k1: int, dim: int, *, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Standard normal draws eps[k, i] for samples k0..k1-1 of examples n0..n1-1: (k1-k0, n1-n0, dim).

    Each value depends on (seed, i, k) alone, not on the range asked for, so any chunking of the
    samples and the examples sees the same numbers.

    Example
    -------
    >>> a = noise_tiles(0, 0, 40, 0, 200, 3)
    >>> b = noise_tiles(0, 5, 7, 100, 130, 3)
    >>> bool(torch.equal(a[100:130, 5:7], b))
    True
    """
    dev = torch.device(device)
    b0, b1 = n0 // TILE_N, (n1 - 1) // TILE_N + 1
    t0, t1 = k0 // TILE_K, (k1 - 1) // TILE_K + 1
    full = torch.empty((t1 - t0) * TILE_K, (b1 - b0) * TILE_N, dim, device=dev, dtype=dtype)
    g = torch.Generator(device=dev)
    for t in range(t0, t1):
        for b in range(b0, b1):
            g.manual_seed(_tile_seed(seed, b, t))
            # Drawn contiguous, then copied: the values must not depend on the destination's layout.
            tile = torch.randn(TILE_K, TILE_N, dim, generator=g, device=dev, dtype=dtype)
            full[(t - t0) * TILE_K : (t - t0 + 1) * TILE_K, (b - b0) * TILE_N : (b - b0 + 1) * TILE_N] = tile
    return full[k0 - t0 * TILE_K : k1 - t0 * TILE_K, n0 - b0 * TILE_N : n1 - b0 * TILE_N]


class _PresampledGaussian(DiagonalGaussian):
    """q(z|x) whose draws are given: rsample(k) returns mean + std * eps for the stored eps (k, B, D)."""

    def __init__(self, q: DiagonalGaussian, eps: torch.Tensor):
        super().__init__(q.mean, q.logvar)
        self._std = q.std
        self._eps = eps

    def rsample(self, n=None, generator=None):
        if n is None or n != self._eps.shape[0]:
            raise LatentlabError(
                "internal: the module asked q(z|x) for a number of samples other than the one "
                "the evaluation drew; its log_importance_weights must call posterior.rsample(k)."
            )
        return torch.addcmul(self.mean, self._std, self._eps)


@dataclass(frozen=True)
class LogLikelihood:
    """An importance-sampled (or exact) log-likelihood, in nats.

    Attributes
    ----------
    mean : float
        Mean of ``per_example``: the log-likelihood per example (negate it for the "NLL").
    se : float
        Standard error of that mean over the examples (sd / sqrt(n)); it also holds the
        Monte-Carlo noise of each example's estimate.
    per_example : ndarray of shape (n,)
        log p(x_i) for each example, in the data's own units (the scaling's Jacobian included).
    k : int or None
        Importance samples per example; None when the value is exact (probabilistic PCA).
    elbo_per_example : ndarray of shape (n,) or None
        The mean of the K log-weights of each example: an unbiased estimate of its ELBO.
    seconds : float
        Wall time of the computation.
    """

    mean: float
    se: float
    per_example: np.ndarray = field(repr=False)
    k: int | None
    elbo_per_example: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0

    @property
    def nll(self) -> float:
        """-mean, the negative log-likelihood that papers report (nats per example)."""
        return -self.mean

    @property
    def elbo(self) -> float | None:
        return None if self.elbo_per_example is None else float(np.mean(self.elbo_per_example))

    def __float__(self) -> float:
        return self.mean


def default_sizes(device: torch.device, k: int, n: int, chunk_size, batch_size) -> tuple[int, int]:
    # Rows per decoder call: enough for the matrix multiplies to run at full rate, few enough
    # that the (rows, features) temporaries stay in cache on a CPU. On the development CPU
    # (16 MiB L3) 2048 rows evaluate 3-12% faster than 4096 and no slower than 1024
    # (`python benchmarks/is_eval.py --rows-ab 4096,2048,1024`, in BENCHMARKS.md).
    rows = 2048 if device.type == "cpu" else 131072
    if batch_size is None:
        batch_size = min(max(TILE_N, (n + TILE_N - 1) // TILE_N * TILE_N), 2 * TILE_N)
    if chunk_size is None:
        chunk_size = max(TILE_K, rows // batch_size // TILE_K * TILE_K)
        chunk_size = min(chunk_size, (k + TILE_K - 1) // TILE_K * TILE_K)
    return check_int(chunk_size, "chunk_size"), check_int(batch_size, "batch_size")


class _Stream:
    """Running logsumexp and mean of log-weights, per example, in float64."""

    def __init__(self, b: int, device):
        self.m = torch.full((b,), -math.inf, dtype=torch.float64, device=device)
        self.s = torch.zeros(b, dtype=torch.float64, device=device)
        self.total = torch.zeros(b, dtype=torch.float64, device=device)

    def add(self, lw: torch.Tensor) -> None:  # lw: (k, B)
        lw = lw.to(torch.float64)
        new_m = torch.maximum(self.m, lw.max(0).values)
        safe = torch.where(torch.isfinite(new_m), new_m, torch.zeros_like(new_m))
        self.s = self.s * torch.exp(self.m - safe) + torch.exp(lw - safe).sum(0)
        self.m = new_m
        self.total += lw.sum(0)

    def result(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.m + torch.log(self.s) - math.log(k), self.total / k


@torch.no_grad()
def log_likelihood(model, X, k: int = 1000, *, cond=None, seed: int = 0, chunk_size=None, batch_size=None) -> LogLikelihood:
    """Importance-sampled log p(x) of each example of X, with K samples from q(z|x).

    Parameters
    ----------
    model : a fitted VAE (or any latentlab estimator whose ``module_`` has
        ``log_importance_weights``), or a fitted PCA, whose probabilistic-PCA likelihood is
        exact (then ``k`` is ignored and the result's ``k`` is None).
    X : array-like of shape (n, n_features) or images (n, H, W) / (n, C, H, W)
    k : int
        Importance samples per example (K). 5000 is the literature's protocol; 1 gives the ELBO.
    cond : array-like of shape (n, ...), optional
        The condition of a conditional model, one row per example.
    seed : int
        Same seed, same number: the draws depend on (seed, example, sample) only.
    chunk_size : int, optional
        Samples per decoder call (default: about 4096 rows per call on a CPU). Memory only.
    batch_size : int, optional
        Examples per decoder call (default 32). Memory only.

    Returns
    -------
    LogLikelihood with ``mean``, ``se``, ``per_example`` (n,), ``k`` and the ELBO estimate.

    Example
    -------
    >>> from latentlab import VAE
    >>> from latentlab.datasets import load_digits
    >>> from latentlab.evaluation import log_likelihood
    >>> X = load_digits().data
    >>> vae = VAE(latent_dim=4, hidden=(32,), epochs=2, verbose=False).fit(X)
    >>> ll = log_likelihood(vae, X[:50], k=100)
    >>> ll.per_example.shape, ll.mean >= ll.elbo - 5 * ll.se
    ((50,), True)
    """
    t0 = time.perf_counter()
    model._check_is_fitted()
    if "exact_likelihood" in model.capabilities:
        per = np.asarray(model.score_samples(X), dtype=np.float64) + log_jacobian(model)
        return LogLikelihood(float(per.mean()), standard_error(per), per, None, None, time.perf_counter() - t0)

    module = module_of(model, "log_likelihood")
    k = check_samples(k)
    seed = check_seed(seed)
    A = model._check_X(X, reset=False)
    n = A.shape[0]
    if not model.conditional:
        cond = None  # labels given to an unconditional model: nothing to condition on
    device = model._device()
    chunk, bs = default_sizes(device, k, n, chunk_size, batch_size)
    was_training = module.training
    module.eval()
    try:
        ll, elbo = _run(model, module, A, k, cond, seed, chunk, bs, device)
    finally:
        module.train(was_training)
    jac = log_jacobian(model)
    per = ll.cpu().numpy() + jac
    elbo_np = elbo.cpu().numpy() + jac
    bad = ~np.isfinite(per)
    if bad.any():
        first = int(np.argmax(bad))
        why = ("the model gives them zero density, e.g. data outside the likelihood's support; evaluate "
               "on data like the training data" if np.isneginf(per[first]) else
               "the network's outputs are NaN or infinite; check the model (a diverged fit?) and the data")
        raise LatentlabError(
            f"the log-likelihood is {per[first]} for {int(bad.sum())} of {n} example(s) (the first is "
            f"row {first}): {why}."
        )
    return LogLikelihood(float(per.mean()), standard_error(per), per, k, elbo_np, time.perf_counter() - t0)


def _run(model, module, A, k, cond, seed, chunk, bs, device):
    """Presampled path: our noise goes in through ``posterior=``; the module draws nothing itself.

    If the posterior is not a plain diagonal Gaussian, or the module draws further noise (a
    second stochastic layer), every call becomes one tile of the stream with its own seeded
    generator instead: still independent of the chunk sizes, in calls of TILE_N x TILE_K rows.
    """
    lls, elbos = [], []
    probe = torch.Generator(device=device)
    probe.manual_seed(0)
    probe_state = probe.get_state()
    for start, x, c in model.iter_batches(A, cond, bs):
        q = module.encode(x, c)
        if type(q) is not DiagonalGaussian:
            return _run_tiled(model, module, A, k, cond, seed, device)
        b = x.shape[0]
        stream = _Stream(b, device)
        for k0 in range(0, k, chunk):
            kc = min(chunk, k - k0)
            eps = noise_tiles(seed, start, start + b, k0, k0 + kc, q.mean.shape[-1], device=device, dtype=q.mean.dtype)
            lw = module.log_importance_weights(x, kc, generator=probe, posterior=_PresampledGaussian(q, eps), cond=c)
            if not torch.equal(probe.get_state(), probe_state):
                return _run_tiled(model, module, A, k, cond, seed, device)
            stream.add(lw)
        ll, elbo = stream.result(k)
        lls.append(ll)
        elbos.append(elbo)
    return torch.cat(lls), torch.cat(elbos)


def _run_tiled(model, module, A, k, cond, seed, device):
    lls, elbos = [], []
    g = torch.Generator(device=device)
    for start, x, c in model.iter_batches(A, cond, TILE_N):
        stream = _Stream(x.shape[0], device)
        block = start // TILE_N
        for t, k0 in enumerate(range(0, k, TILE_K)):
            g.manual_seed(_tile_seed(seed ^ 0x5DEECE66D, block, t))
            stream.add(module.log_importance_weights(x, min(TILE_K, k - k0), generator=g, cond=c))
        ll, elbo = stream.result(k)
        lls.append(ll)
        elbos.append(elbo)
    return torch.cat(lls), torch.cat(elbos)
