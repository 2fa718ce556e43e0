"""Encoder and decoder bodies: a multilayer perceptron and a convolutional pair for images.

``activation="gated"`` makes every hidden layer a gated one, h = (W x + b) * sigmoid(V x + c)
(Dauphin et al., 2017), as in Tomczak & Welling's VAE and VampPrior networks: one layer with
twice the outputs, split into the values and their gates (:class:`Gated`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}

GATED = "gated"
#: Every activation a network can use: the elementwise ones and "gated" layers.
ACTIVATION_NAMES = (*ACTIVATIONS, GATED)

__all__ = ["ACTIVATIONS", "ACTIVATION_NAMES", "GATED", "Gated", "MLP", "ConvEncoder", "ConvDecoder", "BatchFlatten",
           "activation", "hidden_layer", "orthogonal_init"]


def activation(name: str) -> nn.Module:
    """The elementwise activation ``name`` (a gated layer is a layer, see :func:`hidden_layer`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(
            f"activation must be one of {', '.join(map(repr, ACTIVATION_NAMES))}; got {name!r}."
        ) from None


class Gated(nn.Module):
    """A gated layer: ``inner`` maps to 2 m channels (last dimension, or dim 1 for images), split into
    values a and gates g; the output is a * sigmoid(g), m channels."""

    def __init__(self, inner: nn.Module, dim: int = -1):
        super().__init__()
        self.inner = inner
        self.dim = dim

    def forward(self, x):
        a, g = self.inner(x).chunk(2, dim=self.dim)
        return a * torch.sigmoid(g)


def hidden_layer(a: int, b: int, act: str) -> list[nn.Module]:
    """One hidden dense layer a -> b: Linear then the activation, or a gated layer."""
    if act == GATED:
        return [Gated(nn.Linear(a, 2 * b))]
    return [nn.Linear(a, b), activation(act)]


def _conv_layer(c: int, ch: int, act: str, **kw) -> list[nn.Module]:
    if act == GATED:
        return [Gated(nn.Conv2d(c, 2 * ch, kernel_size=3, **kw), dim=1)]
    return [nn.Conv2d(c, ch, kernel_size=3, **kw), activation(act)]


def orthogonal_init(module: nn.Module) -> nn.Module:
    """Orthogonal weights (gain 1) and zero biases for every Linear layer of ``module``.

    Measured against PyTorch's default (uniform, scaled by fan-in) on the embedded digits: a linear
    autoencoder starts with a product D E that already reconstructs a k-dimensional subspace, so
    gradient descent only has to rotate it (instead of first escaping the saddle at 0), and the
    deep AE and the VAE end no worse (BENCHMARKS.md, "Optimisation defaults").
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class MLP(nn.Sequential):
    """Linear layers with an activation between them, none after the last (unless ``final_act``:
    then the last layer is a hidden layer too). Weights start orthogonal (:func:`orthogonal_init`).

    ``MLP(784, (400,), 40)`` maps (..., 784) -> (..., 40); ``hidden=()`` is a single linear map.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, act: str = "relu",
                 final_act: bool = False):
        layers: list[nn.Module] = []
        sizes = [in_features, *hidden]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += hidden_layer(a, b, act)
        if final_act:
            layers += hidden_layer(sizes[-1], out_features, act)
        else:
            layers.append(nn.Linear(sizes[-1], out_features))
        super().__init__(*layers)
        orthogonal_init(self)


def _conv_sizes(hw: tuple[int, int], n: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 convolution (kernel 3, padding 1): ceil(s / 2)."""
    sizes = [hw]
    for _ in range(n):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


class ConvEncoder(nn.Module):
    """Stride-2 convolutions, then dense layers: (B, C, H, W) -> (B, out_features)."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        channels: Sequence[int],
        hidden: Sequence[int],
        out_features: int,
        act: str = "relu",
        final_act: bool = False,
    ):
        super().__init__()
        c, h, w = input_shape
        convs: list[nn.Module] = []
        for ch in channels:
            convs += _conv_layer(c, ch, act, stride=2, padding=1)
            c = ch
        self.convs = nn.Sequential(*convs)
        hl, wl = _conv_sizes((h, w), len(channels))[-1]
        self.head = MLP(c * hl * wl, hidden, out_features, act, final_act=final_act)

    def forward(self, x):
        return self.head(self.convs(x).flatten(1))


class ConvDecoder(nn.Module):
    """Dense layers, then nearest upsampling + 3x3 convolutions back to exactly (C, H, W).

    (B, in_features) -> (B, C, H, W). Upsampling to the encoder's recorded sizes (rather than
    transposed convolutions) gives the exact output size for any H, W and avoids checkerboards.
    """

    def __init__(
        self,
        in_features: int,
        output_shape: tuple[int, int, int],
        channels: Sequence[int],
        hidden: Sequence[int],
        act: str = "relu",
    ):
        super().__init__()
        c_out, h, w = output_shape
        channels = list(channels)
        sizes = _conv_sizes((h, w), len(channels))  # [(H, W), ..., (h_L, w_L)]
        c_last = channels[-1] if channels else c_out
        self.start_shape = (c_last, *sizes[-1])
        gated = act == GATED and bool(channels)  # a gated last dense layer stands for the activation after it
        self.head = MLP(in_features, hidden, c_last * sizes[-1][0] * sizes[-1][1], act, final_act=gated)
        self.head_act = activation(act) if channels and not gated else nn.Identity()
        ups: list[nn.Module] = []
        rev = channels[::-1]  # [c_L, ..., c_1]
        for i, ch in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else c_out
            ups.append(nn.Upsample(size=sizes[len(rev) - 1 - i], mode="nearest"))
            if i + 1 < len(rev):
                ups += _conv_layer(ch, nxt, act, padding=1)
            else:
                ups.append(nn.Conv2d(ch, nxt, kernel_size=3, padding=1))
        self.ups = nn.Sequential(*ups)

    def forward(self, z):
        lead = z.shape[:-1]
        h = self.head_act(self.head(z.reshape(-1, z.shape[-1])))
        out = self.ups(h.view(-1, *self.start_shape))
        return out.view(*lead, *out.shape[1:])


class BatchFlatten(nn.Module):
    """A network of (B, D) -> (B, *S) run on (..., D): the leading dimensions are flattened into one
    batch and restored on the output, (..., D) -> (..., *S).

    latentlab wraps your own decoder in it, so that a decoder written for one batch of codes also
    decodes the (k, B, D) samples of an importance-weighted bound. The network is ``.net``.

    >>> import torch
    >>> BatchFlatten(nn.Linear(3, 5))(torch.zeros(4, 2, 3)).shape
    torch.Size([4, 2, 5])
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z):
        if z.dim() == 2:
            return self.net(z)
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*z.shape[:-1], *out.shape[1:])
