"""Encoder and decoder bodies: a multilayer perceptron and a convolutional pair for images."""

from __future__ import annotations

from typing import Sequence

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

__all__ = ["ACTIVATIONS", "MLP", "ConvEncoder", "ConvDecoder", "activation"]


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(
            f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}; got {name!r}."
        ) from None


class MLP(nn.Sequential):
    """Linear layers with an activation between them, none after the last.

    ``MLP(784, (400,), 40)`` maps (..., 784) -> (..., 40); ``hidden=()`` is a single linear map.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, act: str = "relu"):
        layers: list[nn.Module] = []
        sizes = [in_features, *hidden]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), activation(act)]
        layers.append(nn.Linear(sizes[-1], out_features))
        super().__init__(*layers)


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
    ):
        super().__init__()
        c, h, w = input_shape
        convs: list[nn.Module] = []
        for ch in channels:
            convs += [nn.Conv2d(c, ch, kernel_size=3, stride=2, padding=1), activation(act)]
            c = ch
        self.convs = nn.Sequential(*convs)
        hl, wl = _conv_sizes((h, w), len(channels))[-1]
        self.head = MLP(c * hl * wl, hidden, out_features, act)

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
        self.head = MLP(in_features, hidden, c_last * sizes[-1][0] * sizes[-1][1], act)
        self.head_act = activation(act) if channels else nn.Identity()
        ups: list[nn.Module] = []
        rev = channels[::-1]  # [c_L, ..., c_1]
        for i, ch in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else c_out
            ups.append(nn.Upsample(size=sizes[len(rev) - 1 - i], mode="nearest"))
            ups.append(nn.Conv2d(ch, nxt, kernel_size=3, padding=1))
            if i + 1 < len(rev):
                ups.append(activation(act))
        self.ups = nn.Sequential(*ups)

    def forward(self, z):
        lead = z.shape[:-1]
        h = self.head_act(self.head(z.reshape(-1, z.shape[-1])))
        out = self.ups(h.view(-1, *self.start_shape))
        return out.view(*lead, *out.shape[1:])
