"""p(x|z) for a mixed-type table: one distribution per column, summed into one log-likelihood.

The decoder outputs one value per encoded feature (:class:`latentlab.tables.TableCodec`):

- a numeric column (standardized): a Gaussian with the decoder's mean and a learned standard
  deviation of its own (columns differ in how well z predicts them);
- a 0/1 column: a Bernoulli on the decoder's logit;
- a categorical column: a categorical distribution over its one-hot block, the softmax of the
  decoder's block of logits; log p = log softmax at the observed category.

All in nats, summed over the columns: the log-likelihood of the encoded row (its numeric columns
in standardized units; the estimator's scaling Jacobian turns that into the table's own units).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, DataError
from .distributions import LOG_2PI, Likelihood

__all__ = ["MixedTable"]


class MixedTable(Likelihood):
    """Gaussian numeric, Bernoulli 0/1 and categorical (softmax) columns of a table, summed.

    Parameters
    ----------
    blocks : list of (kind, first, stop)
        Each column's features in the encoded row: kind "numeric" (one feature), "binary" (one)
        or "categorical" (its one-hot block), as ``TableCodec.blocks()`` gives them.
    sigma : float or {"learned", "learned_per_feature"}
        The numeric columns' standard deviation: fixed, or learned (one per column either way).
    init_var : array of shape (n_numeric,), optional
        Variance of each numeric column in the training data: the learned sigma starts at its
        square root.

    Example
    -------
    >>> import torch
    >>> lik = MixedTable([("numeric", 0, 1), ("categorical", 1, 4), ("binary", 4, 5)])
    >>> x = torch.tensor([[0.3, 0.0, 1.0, 0.0, 1.0]])
    >>> lik.log_prob(x, torch.zeros(1, 5)).shape
    torch.Size([1])
    """

    name = "mixed"

    def __init__(self, blocks, sigma="learned", init_var=None):
        super().__init__()
        self.blocks = [(str(k), int(a), int(b)) for k, a, b in blocks]
        kinds = {k for k, _, _ in self.blocks}
        if not kinds <= {"numeric", "binary", "categorical"} or not self.blocks:
            raise ConfigError(f"a mixed likelihood needs column blocks of kind numeric, binary or categorical; got {sorted(kinds)}.")
        self.width = max(b for _, _, b in self.blocks)
        num = [a for k, a, _ in self.blocks if k == "numeric"]
        self.register_buffer("numeric", torch.tensor(num, dtype=torch.long), persistent=False)
        self.register_buffer("binary", torch.tensor([a for k, a, _ in self.blocks if k == "binary"], dtype=torch.long), persistent=False)
        self.categorical = [(a, b) for k, a, b in self.blocks if k == "categorical"]
        self.sigma_mode = "fixed" if not isinstance(sigma, str) else "learned"
        if self.sigma_mode == "fixed":
            if not float(sigma) > 0:
                raise ConfigError(f"sigma must be > 0, 'learned' or 'learned_per_feature'; got {sigma!r}.")
            self.register_buffer("log_sigma", torch.full((len(num),), math.log(float(sigma))))
        elif sigma in ("learned", "learned_per_feature"):
            init = torch.zeros(len(num))
            if init_var is not None and len(num):
                v = torch.as_tensor(np.asarray(init_var, dtype=np.float64)).reshape(-1)
                init = (0.5 * torch.log(v.clamp(min=max(float(v.mean()) * 1e-2, 1e-8)))).float()
            self.log_sigma = nn.Parameter(init)
        else:
            raise ConfigError(f"sigma must be a positive number, 'learned' or 'learned_per_feature'; got {sigma!r}.")

    def log_prob(self, x, out):
        # out: (..., B, F) decoder outputs; x: (B, F) encoded rows, broadcast over leading dims.
        nd = out.dim() - (x.dim() - 1)
        o = out.reshape(*out.shape[:nd], -1)
        xf = x.reshape(x.shape[0], -1).to(o.dtype)
        lp = torch.zeros(o.shape[:-1], dtype=o.dtype, device=o.device)
        if len(self.numeric):
            ls = self.log_sigma
            z = (xf[:, self.numeric] - o[..., self.numeric]) * torch.exp(-ls)
            lp = lp + (-0.5 * z.pow(2) - ls - 0.5 * LOG_2PI).sum(-1)
        if len(self.binary):
            logits = o[..., self.binary]
            lp = lp + (logits * xf[:, self.binary] - F.softplus(logits)).sum(-1)
        for a, b in self.categorical:
            lp = lp + (F.log_softmax(o[..., a:b], dim=-1) * xf[:, a:b]).sum(-1)
        return lp

    def mean(self, out):
        """E[x|z] per encoded feature: the Gaussian means, the 0/1 probabilities, each category's
        probability."""
        m = out.clone()
        if len(self.binary):
            m[..., self.binary] = torch.sigmoid(out[..., self.binary])
        for a, b in self.categorical:
            m[..., a:b] = torch.softmax(out[..., a:b], dim=-1)
        return m

    def sample(self, out, generator=None):
        """x ~ p(x|z): Gaussian draws, 0/1 draws, one category drawn per block (one-hot)."""
        s = out.clone()
        if len(self.numeric):
            eps = torch.randn(out[..., self.numeric].shape, generator=generator, device=out.device, dtype=out.dtype)
            s[..., self.numeric] = out[..., self.numeric] + torch.exp(self.log_sigma) * eps
        if len(self.binary):
            s[..., self.binary] = torch.bernoulli(torch.sigmoid(out[..., self.binary]), generator=generator)
        for a, b in self.categorical:
            p = torch.softmax(out[..., a:b], dim=-1)
            flat = p.reshape(-1, b - a)
            pick = torch.multinomial(flat, 1, generator=generator).reshape(p.shape[:-1])
            s[..., a:b] = F.one_hot(pick, b - a).to(out.dtype)
        return s

    def check(self, x) -> None:
        """The encoded rows must have 0/1 binary features and exactly one 1 in each one-hot block."""
        x = np.asarray(x).reshape(len(x), -1)
        if x.shape[1] != self.width:
            raise DataError(f"likelihood='mixed' expects {self.width} encoded features, got {x.shape[1]}.")
        b = self.binary.cpu().numpy()
        if len(b) and not np.all((x[:, b] == 0) | (x[:, b] == 1)):
            raise DataError("likelihood='mixed': a 0/1 column holds other values; pass the table as it was fitted.")
        for a, c in self.categorical:
            blk = x[:, a:c]
            if not (np.all((blk == 0) | (blk == 1)) and np.all(blk.sum(1) == 1)):
                raise DataError("likelihood='mixed': a one-hot block is not one-hot; pass the table itself, not a changed encoding.")

    @property
    def sigma(self) -> torch.Tensor:
        return torch.exp(self.log_sigma.detach())

    def extra_repr(self) -> str:
        kinds = [k for k, _, _ in self.blocks]
        return (f"mixed: {kinds.count('numeric')} Gaussian, {kinds.count('binary')} Bernoulli, "
                f"{kinds.count('categorical')} categorical column(s)")
