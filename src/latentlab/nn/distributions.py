"""The diagonal Gaussian posterior q(z|x) and the decoder likelihoods p(x|z).

All log-densities are in nats and summed over the event (latent or feature) dimensions, so a
``log_prob`` of a batch has shape ``(..., B)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError

LOG_2PI = math.log(2.0 * math.pi)

__all__ = [
    "DiagonalGaussian",
    "standard_normal_log_prob",
    "diagonal_gaussian_mixture_log_prob",
    "logsumexp",
    "Likelihood",
    "Bernoulli",
    "Gaussian",
    "ContinuousBernoulli",
    "make_likelihood",
    "LIKELIHOODS",
]


#: Softmax weights below this get no gradient in :func:`logsumexp` (2^-64, about 5e-20).
TINY_WEIGHT = 2.0 ** -64


class _LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim):
        out = torch.logsumexp(x, dim)
        ctx.dim = dim
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        w = torch.sub(x, out.unsqueeze(ctx.dim)).exp_()
        w.masked_fill_(w < TINY_WEIGHT, 0.0)
        return w.mul_(g.unsqueeze(ctx.dim)), None


def logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.logsumexp(x, dim)``, whose gradient, the softmax weights, has the weights below
    2^-64 set to 0.

    The weights of a group sum to 1, so this changes the gradient by less than n * 2^-64 of its
    size (n terms), far below float32's resolution of 2^-24. What it removes are subnormal
    numbers: an importance weight of exp(-100) (often, in an IWAE's k samples or a VampPrior's
    500 components) is below float32's smallest normal number, 2^-126, and every product the
    backward pass makes with it stays subnormal; CPUs compute on those through slow microcode,
    and an IWAE k = 50 training step measured 2.6x slower for it (issue 17). The forward value is
    torch's, unchanged.

    >>> import torch
    >>> x = torch.tensor([0.0, -200.0], requires_grad=True)
    >>> logsumexp(x, 0).backward(); x.grad.tolist()
    [1.0, 0.0]
    """
    dim = dim % x.dim() if x.dim() else 0
    if torch.is_grad_enabled() and x.requires_grad:
        return _LogSumExp.apply(x, dim)
    return torch.logsumexp(x, dim)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension. z: (..., D) -> (...)."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)


def diagonal_gaussian_mixture_log_prob(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k N(z; mean_k, diag(exp(logvar_k))), an equally weighted mixture.

    z: (..., D); mean, logvar: (K, D) -> (...). The squared distances to all K components are
    two matrix products, sum_d z_d^2 / v_kd - 2 z_d m_kd / v_kd + m_kd^2 / v_kd (as in
    scikit-learn's diagonal Gaussian mixture), so memory is O(N K), not O(N K D).

    >>> import torch
    >>> z = torch.zeros(3, 2); m = torch.zeros(4, 2); lv = torch.zeros(4, 2)
    >>> torch.allclose(diagonal_gaussian_mixture_log_prob(z, m, lv), standard_normal_log_prob(z))
    True
    """
    lead, d = z.shape[:-1], z.shape[-1]
    zf = z.reshape(-1, d)  # (N, D)
    prec = torch.exp(-logvar)  # (K, D)
    sq = (zf * zf) @ prec.T - 2.0 * zf @ (mean * prec).T + (mean * mean * prec).sum(-1)  # (N, K)
    comp = -0.5 * (sq + logvar.sum(-1) + d * LOG_2PI)
    return (logsumexp(comp, -1) - math.log(mean.shape[0])).reshape(lead)


class DiagonalGaussian:
    """q(z|x) = N(mean, diag(exp(logvar))), the encoder's output.

    Parameters
    ----------
    mean, logvar : Tensor of shape (B, D)
    """

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean
        self.logvar = logvar

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def rsample(self, n: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterized samples z = mean + std * eps, eps ~ N(0, I).

        Returns (B, D) when ``n`` is None, else (n, B, D). Gradients flow to mean and logvar.
        """
        shape = self.mean.shape if n is None else (n, *self.mean.shape)
        eps = torch.randn(shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) summed over D. z: (..., B, D) -> (..., B)."""
        return -0.5 * (
            ((z - self.mean).pow(2) * torch.exp(-self.logvar) + self.logvar).sum(-1)
            + self.mean.shape[-1] * LOG_2PI
        )

    def kl_per_dim(self) -> torch.Tensor:
        """KL(q || N(0, I)) per latent dimension in closed form: 0.5 (mu^2 + var - log var - 1). (B, D)."""
        return 0.5 * (self.mean.pow(2) + self.var - self.logvar - 1.0)

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) summed over D. (B,)."""
        return self.kl_per_dim().sum(-1)

    def entropy(self) -> torch.Tensor:
        """Differential entropy, summed over D. (B,)."""
        return 0.5 * (self.logvar + 1.0 + LOG_2PI).sum(-1)


class Likelihood(nn.Module):
    """The decoder's distribution p(x|z), given the decoder's output ``out``: subclass it for a
    likelihood of your own, and pass an instance as ``likelihood=`` (the VAE family) or ``loss=``
    (the Autoencoder).

    The contract (x is a batch as the networks take it, (B, *S); ``out`` the decoder's output for
    it, (..., B, *S), where ``...`` are sample dimensions, e.g. the k draws of z of an
    importance-weighted bound; x broadcasts over them):

    - ``log_prob(x, out)`` -> (..., B): log p(x|z) in nats, summed over the features of each example;
    - ``mean(out)`` -> (..., B, *S): E[x|z] in data space (what ``inverse_transform`` returns);
    - ``sample(out, generator=None)`` -> (..., B, *S): a draw x ~ p(x|z);
    - ``check(x)``: raise :class:`latentlab.errors.DataError` if the NumPy array ``x`` (a chunk of the
      scaled training data, (n, *input_shape)) lies outside the support; nothing otherwise.

    A likelihood may have parameters (a learned scale): they train with the networks and are saved
    with the model. ``name`` is what ``likelihood_`` records (the class name when empty). The
    shapes of ``log_prob`` and ``mean`` are checked on the first training batch.

    Example
    -------
    >>> import torch
    >>> class Laplace(Likelihood):
    ...     name = "laplace"
    ...     def log_prob(self, x, out):
    ...         return -((x - out).abs() + math.log(2)).flatten(-x.dim() + 1).sum(-1)
    ...     def mean(self, out):
    ...         return out
    ...     def sample(self, out, generator=None):
    ...         u = torch.rand(out.shape, generator=generator) - 0.5
    ...         return out - u.sign() * torch.log1p(-2 * u.abs())
    >>> Laplace().log_prob(torch.zeros(4, 3), torch.zeros(5, 4, 3)).shape
    torch.Size([5, 4])
    """

    name = ""

    def log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """log p(x | out) summed over the features: (..., B)."""
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """E[x | out], shaped like ``out``."""
        raise NotImplementedError

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A draw x ~ p(x | out), shaped like ``out``."""
        raise NotImplementedError  # pragma: no cover

    def check(self, x) -> None:
        """Raise DataError if the numpy array ``x`` lies outside this likelihood's support."""

    def extra_repr(self) -> str:
        return self.name


def _flat(t: torch.Tensor, batch_dims: int) -> torch.Tensor:
    return t.reshape(*t.shape[:batch_dims], -1)


_SP_ROWS = 512  # rows per block: a (512, F) float32 block stays in a core's cache


def _product_group(f: int) -> int:
    """The largest divisor of f up to 120 (0 if under 16): groups whose product cannot underflow."""
    for g in range(min(f, 120), 15, -1):
        if f % g == 0:
            return g
    return 0


def softplus_sum(logits: torch.Tensor) -> torch.Tensor:
    """sum_j softplus(l_j) over the last dimension; outside autograd on a CPU about twice as fast as
    ``F.softplus(l).sum(-1)`` (1.9 against 4.2 ns a value on one thread of the development
    machine), which is what the importance-sampled likelihood spends its non-GEMM time on.
    softplus(l) = max(l, 0) - log sigmoid(|l|), and
    sum_j max(l_j, 0) = (sum l + sum |l|) / 2, so one log per group of up to 120 pixels replaces
    one per pixel: sigmoid(|l|) lies in [1/2, 1), a product of 120 such factors stays above
    2^-120, a normal float32. Rows go in cache-sized blocks. Gradients, GPUs (where softplus is
    one fused kernel already), other dtypes and non-finite logits take the plain formula."""
    f = logits.shape[-1]
    g = _product_group(f)
    if ((torch.is_grad_enabled() and logits.requires_grad) or g == 0 or logits.dtype != torch.float32
            or logits.device.type != "cpu"):
        return F.softplus(logits).sum(-1)
    lf = logits.reshape(-1, f)
    out = torch.empty(lf.shape[0], dtype=lf.dtype, device=lf.device)
    for i in range(0, lf.shape[0], _SP_ROWS):
        blk = lf[i:i + _SP_ROWS]
        a = blk.abs()
        half = blk.sum(-1).add_(a.sum(-1)).mul_(0.5)
        logp = a.sigmoid_().view(blk.shape[0], f // g, g).prod(-1).log_().sum(-1)
        torch.sub(half, logp, out=out[i:i + _SP_ROWS])
    if not bool(torch.isfinite(out).all()):  # an infinite or NaN logit: the plain formula decides
        return F.softplus(logits).sum(-1)
    return out.view(logits.shape[:-1])


class _BernoulliLogProb(torch.autograd.Function):
    """sum_j [x_j l_j - softplus(l_j)] over F for logits (..., B, F) and data (B, F), as one graph
    node. Forward: the contraction against x and :func:`softplus_sum` (its fast form: no graph is
    recorded inside). Backward, from the logits kept: d/dl = x - sigmoid(l), scaled by the incoming
    gradient in place, one (..., B, F) tensor in all; autograd would make four (the einsum's
    expanded gradient, softplus's, and their sum) and pass over them twice as often. Checked
    against the plain formula's autograd in tests/test_fast_paths.py."""

    @staticmethod
    def forward(ctx, lf, xf):
        ctx.save_for_backward(lf, xf)
        return torch.einsum("...bf,bf->...b", lf, xf) - softplus_sum(lf)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        lf, xf = ctx.saved_tensors
        grad_l = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_l = torch.sigmoid(lf).sub_(xf).mul_(g.unsqueeze(-1)).neg_()
        if ctx.needs_input_grad[1]:
            grad_x = torch.einsum("...bf,...b->bf", lf, g)
        return grad_l, grad_x


class Bernoulli(Likelihood):
    """Bernoulli on logits, for binary data: log p = x l - softplus(l) = -BCE(logits, x), summed over features."""

    name = "bernoulli"

    def log_prob(self, x, out):
        # out: (..., B, *F) logits; x: (B, *F) broadcast over leading sample dims.
        # log p = sum_j [x_j l_j - softplus(l_j)]: the x.l term is one contraction against x
        # (never expanded to out's shape), the softplus sum is softplus_sum's. That matters for the
        # importance-sampled likelihood (K samples per example), where this is most of the time
        # that is not matrix multiplies (benchmarks/is_eval.py).
        nd = out.dim() - (x.dim() - 1)  # batch dims of the result (sample dims, then B)
        lf = _flat(out, nd)  # (..., B, F)
        xf = x.reshape(x.shape[0], -1).to(lf.dtype)  # (B, F)
        if torch.is_grad_enabled() and (lf.requires_grad or xf.requires_grad):
            return _BernoulliLogProb.apply(lf, xf)  # the gradient in one pass (see its docstring)
        return torch.einsum("...bf,bf->...b", lf, xf) - softplus_sum(lf)

    def mean(self, out):
        return torch.sigmoid(out)

    def sample(self, out, generator=None):
        return torch.bernoulli(torch.sigmoid(out), generator=generator)

    def check(self, x):
        from ..errors import DataError
        import numpy as np

        bad = (x != 0) & (x != 1)
        if np.any(bad):
            n = int(bad.sum())
            raise DataError(
                f"likelihood='bernoulli' needs binary data (0 or 1), but {n} value(s) are not 0 or 1 "
                f"(e.g. {float(x[bad][0]):g}); use likelihood='continuous_bernoulli' for values in "
                "[0, 1], or 'gaussian' for real values."
            )


class ContinuousBernoulli(Likelihood):
    """The continuous Bernoulli of Loaiza-Ganem & Cunningham (2019), for data in [0, 1].

    log p(x | lambda) = x log(lambda) + (1 - x) log(1 - lambda) + log C(lambda), with the normalizer
    C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) (and 2 at lambda = 1/2), computed on logits.
    """

    name = "continuous_bernoulli"
    _eps = 1e-3  # half-width of the window around lambda = 1/2 where a Taylor expansion is used

    def _log_norm(self, logits):
        lam = torch.sigmoid(logits)
        near = (lam - 0.5).abs() < self._eps
        safe = torch.where(near, torch.full_like(lam, 0.25), lam)
        # Far from 1/2: log(2 artanh(1 - 2l) / (1 - 2l)) = log(|log(l) - log(1 - l)| / |1 - 2l|)
        # and log(l) - log(1 - l) is the logit itself.
        safe_logits = torch.where(near, torch.zeros_like(logits) + math.log(1 / 3), logits)
        far = torch.log(safe_logits.abs()) - torch.log((1.0 - 2.0 * safe).abs())
        # Near 1/2: log 2 + (4/3) d^2 + (104/45) d^4, d = l - 1/2.
        d2 = (lam - 0.5).pow(2)
        taylor = math.log(2.0) + (4.0 / 3.0) * d2 + (104.0 / 45.0) * d2.pow(2)
        return torch.where(near, taylor, far)

    def log_prob(self, x, out):
        nd = out.dim() - (x.dim() - 1)  # batch dims of the result, counted before x is expanded
        x = x.expand_as(out) if x.shape != out.shape else x
        lp = -F.binary_cross_entropy_with_logits(out, x, reduction="none") + self._log_norm(out)
        return _flat(lp, nd).sum(-1)

    def mean(self, out):
        lam = torch.sigmoid(out)
        near = (lam - 0.5).abs() < self._eps
        safe = torch.where(near, torch.full_like(lam, 0.25), lam)
        safe_logits = torch.where(near, torch.zeros_like(out) + math.log(1 / 3), out)
        # E[x] = l / (2l - 1) + 1 / (2 artanh(1 - 2l)), and 2 artanh(1 - 2l) = -logit.
        m = safe / (2.0 * safe - 1.0) - 1.0 / safe_logits
        d = lam - 0.5  # near 1/2: E[x] = 1/2 + d/3 + 16 d^3 / 45 + O(d^5)
        return torch.where(near, 0.5 + (1.0 / 3.0 + (16.0 / 45.0) * d.pow(2)) * d, m)

    def sample(self, out, generator=None):
        # Inverse CDF: F^-1(u) = log(1 + u (2l - 1)/(1 - l)) / log(l / (1 - l)), for l != 1/2.
        lam = torch.sigmoid(out).clamp(1e-6, 1 - 1e-6)
        u = torch.rand(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        near = (lam - 0.5).abs() < self._eps
        safe = torch.where(near, torch.full_like(lam, 0.25), lam)
        x = torch.log1p(u * (2 * safe - 1) / (1 - safe)) / (torch.log(safe) - torch.log1p(-safe))
        return torch.where(near, u, x).clamp(0.0, 1.0)

    def check(self, x):
        from ..errors import DataError
        import numpy as np

        lo, hi = float(np.min(x)), float(np.max(x))
        if lo < 0 or hi > 1:
            raise DataError(
                f"likelihood='continuous_bernoulli' needs values in [0, 1], but they range over "
                f"[{lo:g}, {hi:g}]; rescale to [0, 1] (scale='minmax') or use likelihood='gaussian'."
            )


class Gaussian(Likelihood):
    """Gaussian with mean from the decoder and a standard deviation that is fixed or learned.

    Parameters
    ----------
    sigma : float or {"learned", "learned_per_feature"}
        A fixed standard deviation, one learned value for all features, or one per feature.
    n_features : int
        Needed for ``"learned_per_feature"``.
    init_var : array of shape (n_features,), optional
        Per-feature variance of the training data. A learned sigma starts at its square root
        (the maximum-likelihood sigma of a decoder that ignores z) rather than at 1, which on
        data of small variance would make ignoring z (posterior collapse) the better deal.
    """

    name = "gaussian"

    def __init__(self, sigma=1.0, n_features: int | None = None, init_var=None):
        super().__init__()
        self.sigma_mode = "fixed" if not isinstance(sigma, str) else sigma
        if self.sigma_mode == "fixed":
            if not float(sigma) > 0:
                raise ConfigError(f"sigma must be > 0, 'learned' or 'learned_per_feature'; got {sigma!r}.")
            self.register_buffer("log_sigma", torch.tensor(math.log(float(sigma))))
        elif self.sigma_mode == "learned":
            init = 0.0
            if init_var is not None:
                init = 0.5 * math.log(max(float(torch.as_tensor(init_var).double().mean()), 1e-8))
            self.log_sigma = nn.Parameter(torch.full((), init))
        elif self.sigma_mode == "learned_per_feature":
            if n_features is None:
                raise ConfigError("sigma='learned_per_feature' needs the number of features.")
            init = torch.zeros(n_features)
            if init_var is not None:
                v = torch.as_tensor(init_var, dtype=torch.float64).reshape(-1)
                floor = max(float(v.mean()) * 1e-2, 1e-8)  # constant features must not start at 0
                init = (0.5 * torch.log(v.clamp(min=floor))).float()
            self.log_sigma = nn.Parameter(init)
        else:
            raise ConfigError(
                f"sigma must be a positive number, 'learned' or 'learned_per_feature'; got {sigma!r}."
            )

    def log_prob(self, x, out):
        nd = out.dim() - (x.dim() - 1)
        flat_out = _flat(out, nd)
        flat_x = x.reshape(x.shape[0], -1)
        ls = self.log_sigma  # () or (F,), broadcasts against (..., B, F)
        z = (flat_x - flat_out) * torch.exp(-ls)
        return (-0.5 * z.pow(2) - ls - 0.5 * LOG_2PI).sum(-1)

    def mean(self, out):
        return out

    def sample(self, out, generator=None):
        eps = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        ls = self.log_sigma
        if ls.dim() == 1:
            ls = ls.reshape(out.shape[-(out.dim() - 1) :])  # (F,) -> the feature shape of out
        return out + torch.exp(ls) * eps

    @property
    def sigma(self) -> torch.Tensor:
        return torch.exp(self.log_sigma.detach())

    def extra_repr(self) -> str:
        return f"gaussian, sigma={self.sigma_mode if self.sigma_mode != 'fixed' else float(self.sigma)}"


LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian")


def make_likelihood(name: str, sigma=1.0, n_features: int | None = None, init_var=None) -> Likelihood:
    """Build a likelihood by name: 'bernoulli', 'continuous_bernoulli' or 'gaussian'."""
    if name == "bernoulli":
        return Bernoulli()
    if name == "continuous_bernoulli":
        return ContinuousBernoulli()
    if name == "gaussian":
        return Gaussian(sigma, n_features, init_var)
    raise ConfigError(f"likelihood must be one of {', '.join(map(repr, LIKELIHOODS))}; got {name!r}.")
