"""A fitted model's encoder and decoder as standalone torch modules in the user's units.

The estimators scale the data (``scale="standard"`` or ``"minmax"``), reshape it for their
networks, and the decoder's raw output is a likelihood's parameters (logits for the Bernoulli).
:class:`DataEncoder` and :class:`DataDecoder` fold all of that in, so that

- ``DataEncoder(x)`` takes data as the user has it, (B, *input_shape), and returns the codes
  ``transform`` returns (B, code_size) (for the VAE family the posterior means; with
  ``output="mean_logvar"`` also their log-variances);
- ``DataDecoder(z)`` returns what ``inverse_transform`` returns, (B, *input_shape): the decoder's
  mean E[x|z] (for the Bernoulli, pixel probabilities), unscaled.

A conditional model takes its condition as a second input ``c``: the (B, m) float rows its
networks read (one-hot rows in the order of ``classes_`` for class labels).

They are what :func:`latentlab.exporter.export` writes as ONNX or TorchScript and what the
explorer page (:mod:`latentlab.explorer`) runs in JavaScript. Build them with a fitted model's
``torch_modules()``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .distributions import DiagonalGaussian

__all__ = ["DataEncoder", "DataDecoder", "EncodeOf", "ENCODER_OUTPUTS", "linear"]

#: What a DataEncoder returns: a code tensor ("code": autoencoders, PCA), the posterior mean
#: ("mean"), or the posterior mean and log-variance ("mean_logvar").
ENCODER_OUTPUTS = ("code", "mean", "mean_logvar")


def _vector(v, n: int) -> torch.Tensor:
    """A float32 copy (n,) of a per-feature vector."""
    t = torch.as_tensor(v, dtype=torch.float32).reshape(-1).clone()
    if t.numel() != n:
        raise ValueError(f"a scaling vector has {t.numel()} entries for {n} features")
    return t


def linear(weight, bias) -> nn.Linear:
    """An ``nn.Linear`` with the given weight (out, in) and bias (out,), float32, no gradients."""
    W = torch.as_tensor(weight, dtype=torch.float32)
    lin = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        lin.weight.copy_(W)
        lin.bias.copy_(torch.as_tensor(bias, dtype=torch.float32).reshape(-1))
    return lin.requires_grad_(False)


class EncodeOf(nn.Module):
    """``module.encode(x, cond)`` as a forward pass (a module of :mod:`latentlab.nn.modules`)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x, c=None):
        return self.module.encode(x, c)


class _Scaling(nn.Module):
    """The estimator's per-feature scaling: scaled = (x - offset) / factor."""

    def __init__(self, n_features: int, offset=None, factor=None):
        super().__init__()
        self.register_buffer("offset", torch.zeros(n_features) if offset is None else _vector(offset, n_features))
        self.register_buffer("factor", torch.ones(n_features) if factor is None else _vector(factor, n_features))


class DataEncoder(nn.Module):
    """x (B, *input_shape) in the user's units [, c (B, m)] -> codes (B, code_size) [, log-variances].

    Parameters
    ----------
    net : nn.Module
        Called as ``net(h)`` or ``net(h, c)`` on the scaled data shaped (B, *module_shape); returns
        the codes, or a :class:`DiagonalGaussian` posterior.
    n_features, module_shape : the data's width and the shape one example has inside the networks.
    offset, factor : the estimator's scaling (None: none).
    output : one of :data:`ENCODER_OUTPUTS`.
    conditional : whether ``forward`` takes the condition ``c``.
    """

    def __init__(self, net: nn.Module, n_features: int, module_shape: Sequence[int], offset=None, factor=None,
                 output: str = "code", conditional: bool = False):
        super().__init__()
        if output not in ENCODER_OUTPUTS:
            raise ValueError(f"output must be one of {ENCODER_OUTPUTS}, got {output!r}")
        self.net = net
        self.scaling = _Scaling(n_features, offset, factor)
        self.module_shape = tuple(int(s) for s in module_shape)
        self.output = output
        self.conditional = conditional

    def forward(self, x, c=None):
        flat = (x.reshape(x.shape[0], -1) - self.scaling.offset) / self.scaling.factor
        h = flat.reshape(x.shape[0], *self.module_shape)
        q = self.net(h, c) if self.conditional else self.net(h)
        if self.output == "code":
            return q.mean if isinstance(q, DiagonalGaussian) else q
        if self.output == "mean":
            return q.mean
        return q.mean, q.logvar


class DataDecoder(nn.Module):
    """z (B, K) [, c (B, m)] -> E[x|z] (B, *input_shape), in the user's units.

    The output is ``mean(net(z))`` (or ``mean(net([z, c]))`` for a conditional model), unscaled and
    shaped like the data. ``net`` is the decoder network; ``mean`` the likelihood whose mean is
    taken (a :class:`~latentlab.nn.distributions.Likelihood`), or None for a decoder that returns
    the reconstruction itself (squared-error autoencoders, PCA).
    """

    def __init__(self, net: nn.Module, input_shape: Sequence[int], offset=None, factor=None, mean: nn.Module | None = None,
                 cond_dim: int = 0):
        super().__init__()
        self.net = net
        self.likelihood = mean
        self.input_shape = tuple(int(s) for s in input_shape)
        n = 1
        for s in self.input_shape:
            n *= s
        self.scaling = _Scaling(n, offset, factor)
        self.cond_dim = int(cond_dim)

    def forward(self, z, c=None):
        h = torch.cat([z, c.to(z.dtype)], -1) if self.cond_dim else z
        out = self.net(h)
        if self.likelihood is not None:
            out = self.likelihood.mean(out)
        flat = out.reshape(z.shape[0], -1) * self.scaling.factor + self.scaling.offset
        return flat.reshape(z.shape[0], *self.input_shape)
