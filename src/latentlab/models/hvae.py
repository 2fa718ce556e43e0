"""A VAE with two stochastic layers, z1 (near the data) and z2 (on top).

Generative model:   p(x, z1, z2) = p(x | z1, z2) p(z1 | z2) p(z2)
Inference model:    q(z1, z2 | x) = q(z1 | x, z2) q(z2 | x)

This is the two-level model of Tomczak & Welling (2018, "HVAE"), not the purely bottom-up
stack of Burda et al. (q(z1|x) q(z2|z1)). The reason: in a bottom-up stack z2 sees x only
through a sample of z1, and the top layer tends to switch off (its KL is cheapest at zero);
here z2 is inferred from x directly and the decoder reads z2 as well as z1, so the top layer
carries information from the first epochs. The same inference order is what Tomczak & Welling
pair with the VampPrior on z2 (``prior="vamp"``), their best MLP model on static MNIST.

Both posteriors share one network body h(x): q(z2|x) is a linear head on h, and q(z1|x, z2)
a one-hidden-layer network on [h, z2], so the data pass is paid once per example, not once
per sample of z2. p(z1 | z2) is a network on z2 with the decoder's hidden sizes.

The log importance weights run over both layers:
log w = log p(x|z1,z2) + log p(z1|z2) + log p(z2) - log q(z1|x,z2) - log q(z2|x),
with (z1, z2) drawn ancestrally from q, so the ELBO, the importance-weighted bound and the
importance-sampled log-likelihood of the evaluation all apply unchanged.
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..nn.modules import HierarchicalVAEModule
from ..nn.networks import GATED, MLP, ConvDecoder, ConvEncoder, activation
from ..objectives import ImportanceWeightedBound
from ..validation import check_choice, check_hidden, check_int
from .iwae import BoundScoreMixin
from . import constraints
from .registry import register
from .vae import VAE
from .vamp import PseudoInputsMixin

__all__ = ["HierarchicalVAE", "PRIORS"]

PRIORS = ("standard", "vamp")


@register("hvae", order=5)
class HierarchicalVAE(PseudoInputsMixin, BoundScoreMixin, VAE):
    """A VAE with two stochastic layers: p(x|z1,z2) p(z1|z2) p(z2), q(z1|x,z2) q(z2|x).

    See the module docstring for the architecture and why. Codes are [z1 | z2]: ``transform``
    returns (n, latent_dim + latent_dim2), and ``inverse_transform`` / ``sample`` work on the
    same layout. The loss is the negative ELBO (or, with k > 1, the importance-weighted bound)
    over both layers, with Monte-Carlo KL terms.

    Parameters
    ----------
    latent_dim : int
        D1, the width of z1 (the layer next to the data).
    latent_dim2 : int or None
        D2, the width of z2 (None: same as latent_dim).
    prior : {"standard", "vamp"}
        p(z2): N(0, I), or a VampPrior with ``n_pseudo_inputs`` pseudo-inputs (started at random
        training examples, as in :class:`VampPriorVAE`).
    n_pseudo_inputs : int
        K for ``prior="vamp"``.
    k : int
        Importance samples in the training bound; 1 (default) is the ELBO.
    hidden : tuple of int, at least one layer
        The shared encoder body's layers (its output, h, has hidden[-1] units); the decoder and
        p(z1|z2) use them reversed; q(z1|x,z2) has one hidden layer of hidden[-1] units.
    c, mc_samples, warmup_epochs : as for :class:`IWAE`.
    free_bits : float
        Must be 0 (the KL terms are Monte-Carlo estimates, not per-dimension closed forms).
    activation, architecture, channels, likelihood, sigma, scale, epochs, batch_size, lr,
    optimizer, weight_decay, lr_schedule, patience, tol, validation_fraction, grad_clip, ema,
    seed, device, threads, compile, verbose, checkpoint_dir : as for :class:`VAE`.

    Example
    -------
    >>> import numpy as np
    >>> from latentlab import HierarchicalVAE
    >>> from latentlab.datasets import load_digits
    >>> X = (load_digits().data > 0.5).astype(np.float32)
    >>> hvae = HierarchicalVAE(latent_dim=4, latent_dim2=2, hidden=(64,), epochs=2, verbose=False).fit(X)
    >>> hvae.transform(X[:5]).shape, hvae.sample(3, seed=0).shape
    ((5, 6), (3, 64))
    """

    _parameter_constraints = {**{k: v for k, v in VAE._parameter_constraints.items() if k not in ("encoder", "decoder")},
                              "latent_dim2": [None, *constraints.POSITIVE_INT],
                              "prior": [str], "n_pseudo_inputs": constraints.POSITIVE_INT, "k": constraints.POSITIVE_INT}
    network_params = ("likelihood",)
    refused_params = {
        k: "it builds five networks of its own (a shared encoder body, the heads of q(z2|x) and q(z1|x, z2), "
        "p(z1|z2) and the decoder), so one encoder and one decoder do not fit it; bring your networks to VAE, "
        "IWAE, VampPriorVAE or ConditionalVAE (a likelihood of your own works here: likelihood=...)."
        for k in ("encoder", "decoder")
    }

    def __init__(
        self,
        latent_dim: int = 2,
        latent_dim2: int | None = None,
        prior: str = "standard",
        n_pseudo_inputs: int = 500,
        k: int = 1,
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

    @property
    def _d2(self) -> int:
        return int(self.latent_dim if self.latent_dim2 is None else self.latent_dim2)

    @property
    def _n_features_out(self) -> int:
        return int(self.latent_dim) + self._d2

    def _validate_params(self):
        super()._validate_params()
        if self.latent_dim2 is not None:
            check_int(self.latent_dim2, "latent_dim2")
        check_choice(self.prior, "prior", PRIORS)
        check_int(self.n_pseudo_inputs, "n_pseudo_inputs")
        self._check_no_free_bits()
        if not check_hidden(self.hidden, "hidden"):
            raise ConfigError(
                "HierarchicalVAE needs at least one hidden layer (hidden=() was given): the two "
                "posteriors share the encoder's last hidden layer; pass e.g. hidden=(256,)."
            )

    def _uses_vamp(self) -> bool:
        return self.prior == "vamp"

    def _build_module(self):
        d1, d2 = int(self.latent_dim), self._d2
        hidden = tuple(check_hidden(self.hidden, "hidden"))
        H, act = hidden[-1], self.activation
        shape = self._module_shape()
        gated = act == GATED  # the shared body ends in a hidden layer: for gated, a gated one
        if self.architecture == "mlp":
            body = MLP(shape[0], hidden[:-1], H, act, final_act=gated)
            decoder = MLP(d1 + d2, hidden[::-1], shape[0], act)
        else:
            channels = check_hidden(self.channels, "channels")
            body = ConvEncoder(shape, channels, hidden[:-1], H, act, final_act=gated)
            decoder = ConvDecoder(d1 + d2, shape, channels, hidden[::-1], act)
        if not gated:
            body = nn.Sequential(body, activation(act))
        module = HierarchicalVAEModule(
            body,
            nn.Linear(H, 2 * d2),
            MLP(H + d2, (H,), 2 * d1, act),
            MLP(d2, hidden[::-1], 2 * d1, act),
            decoder,
            self._make_likelihood(),
            d1,
            d2,
            int(self.n_pseudo_inputs) if self._uses_vamp() else 0,
            shape,
        )
        if module.top_prior is not None:
            self._init_pseudo_inputs(module.top_prior)
        return module

    def _objective(self):
        return ImportanceWeightedBound(self.k, self.mc_samples, self.c, self.warmup_epochs)
