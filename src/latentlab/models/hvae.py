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

import torch
from torch import nn

from .._validation import check_choice, check_hidden, check_int
from ..errors import ConfigError, LatentlabError
from ..objectives import ImportanceWeightedBound
from .base import register
from .distributions import DiagonalGaussian, standard_normal_log_prob
from .iwae import _BoundScore
from .networks import MLP, ConvDecoder, ConvEncoder, activation
from .vae import VAE, VAEModule
from .vamp import VampPrior, _PseudoInputs

__all__ = ["HierarchicalVAE", "HierarchicalVAEModule", "HierarchicalPosterior"]

PRIORS = ("standard", "vamp")


def _gaussian(params: torch.Tensor) -> DiagonalGaussian:
    mean, logvar = params.chunk(2, dim=-1)
    return DiagonalGaussian(mean, logvar)


class HierarchicalPosterior(DiagonalGaussian):
    """q(z1, z2 | x) = q(z1 | x, z2) q(z2 | x) over z = [z1 | z2] of shape (..., B, D1 + D2).

    ``rsample`` draws ancestrally (z2, then z1 given it) and ``log_prob`` is the joint density,
    so the object stands wherever a posterior is used for sampling and densities.

    ``mean`` and ``std`` (the codes ``transform`` returns) are those of q(z2|x) and of
    q(z1 | x, z2 = E[z2|x]): z1's moments at the mean of z2, which is the exact mean of z2 but
    only an approximation to E[z1|x]. There is no closed-form KL to a prior: ``kl_per_dim``
    raises; use the module's ``log_weight_terms`` (Monte Carlo).
    """

    def __init__(self, q2: DiagonalGaussian, features: torch.Tensor, q1_given):
        self.q2 = q2
        self.features = features
        self._q1_given = q1_given
        self._at_mean = None

    def q1(self, z2: torch.Tensor) -> DiagonalGaussian:
        """q(z1 | x, z2) for z2 of shape (..., B, D2)."""
        return self._q1_given(self.features, z2)

    def _moments(self):
        if self._at_mean is None:
            q1 = self.q1(self.q2.mean)
            self._at_mean = (torch.cat([q1.mean, self.q2.mean], -1), torch.cat([q1.logvar, self.q2.logvar], -1))
        return self._at_mean

    @property
    def mean(self):
        return self._moments()[0]

    @property
    def logvar(self):
        return self._moments()[1]

    def rsample(self, n: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        z2 = self.q2.rsample(n, generator=generator)  # (n, B, D2) or (B, D2)
        z1 = self.q1(z2).rsample(generator=generator)
        return torch.cat([z1, z2], -1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        d2 = self.q2.mean.shape[-1]
        z1, z2 = z[..., :-d2], z[..., -d2:]
        return self.q1(z2).log_prob(z1) + self.q2.log_prob(z2)

    def kl_per_dim(self):
        raise LatentlabError(
            "the two-layer posterior has no closed-form KL to a standard normal prior (its prior "
            "p(z1|z2) p(z2) is learned); estimate the KL by Monte Carlo with "
            "module.log_weight_terms(x, k), as the objectives and the evaluation do."
        )

    def entropy(self):
        raise LatentlabError("the two-layer posterior's entropy has no closed form; estimate -E[log q].")


class HierarchicalVAEModule(VAEModule):
    """Networks of the two-layer model. Codes z = [z1 | z2] have ``latent_dim`` = D1 + D2.

    body: x (B, *S) -> h (B, H); q2_head: h -> 2 D2; q1_net: [h, z2] -> 2 D1;
    p1_net: z2 -> 2 D1; decoder: [z1, z2] (..., D1 + D2) -> out (..., *S).
    """

    def __init__(self, body, q2_head, q1_net, p1_net, decoder, likelihood, d1: int, d2: int,
                 n_pseudo_inputs: int = 0, input_shape=None):
        super().__init__(body, decoder, likelihood, d1 + d2)
        self.q2_head = q2_head
        self.q1_net = q1_net
        self.p1_net = p1_net
        self.d1, self.d2 = d1, d2
        self.top_prior = VampPrior(n_pseudo_inputs, tuple(input_shape)) if n_pseudo_inputs else None

    def _q1_given(self, h, z2):
        h = h.expand(*z2.shape[:-1], h.shape[-1])  # (B, H) -> (..., B, H)
        return _gaussian(self.q1_net(torch.cat([h, z2], -1)))

    def encode_top(self, x) -> DiagonalGaussian:
        """q(z2 | x), mean (B, D2): the VampPrior's components on z2 are this at the pseudo-inputs."""
        return _gaussian(self.q2_head(self.encoder(x)))

    def encode(self, x) -> HierarchicalPosterior:
        h = self.encoder(x)
        return HierarchicalPosterior(_gaussian(self.q2_head(h)), h, self._q1_given)

    def prior_z1(self, z2) -> DiagonalGaussian:
        """p(z1 | z2) for z2 of shape (..., D2)."""
        return _gaussian(self.p1_net(z2))

    def top_log_prob(self, z2):
        """log p(z2): N(0, I) or the VampPrior. (..., D2) -> (...)."""
        if self.top_prior is None:
            return standard_normal_log_prob(z2)
        return self.top_prior.log_prob(z2, self.encode_top)

    def prior_log_prob(self, z):
        """log p(z1, z2) = log p(z1 | z2) + log p(z2) for z = [z1 | z2], (..., D1 + D2) -> (...)."""
        z1, z2 = z[..., : self.d1], z[..., self.d1 :]
        return self.prior_z1(z2).log_prob(z1) + self.top_log_prob(z2)

    def sample_prior(self, n: int, generator=None, device=None):
        """n ancestral draws z2 ~ p(z2), z1 ~ p(z1 | z2), as [z1 | z2] (n, D1 + D2)."""
        if self.top_prior is None:
            dev = device if device is not None else next(self.parameters()).device
            z2 = torch.randn(n, self.d2, generator=generator, device=dev)
        else:
            z2 = self.top_prior.sample(n, self.encode_top, generator=generator)
        z1 = self.prior_z1(z2).rsample(generator=generator)
        return torch.cat([z1, z2], -1)

    def log_weight_terms(self, x, k: int, generator=None, posterior=None):
        """(log p(x|z1,z2), log p(z1|z2) + log p(z2), log q(z1|x,z2) + log q(z2|x)), each (k, B),
        for k ancestral draws of (z2, z1) from q; one pass of q(z1|x, z2) serves both the draw
        and its density."""
        q = posterior if posterior is not None else self.encode(x)
        z2 = q.q2.rsample(k, generator=generator)  # (k, B, D2)
        q1 = q.q1(z2)
        z1 = q1.rsample(generator=generator)  # (k, B, D1)
        log_px = self.likelihood.log_prob(x, self.decode(torch.cat([z1, z2], -1)))
        log_pz = self.prior_z1(z2).log_prob(z1) + self.top_log_prob(z2)
        log_qz = q1.log_prob(z1) + q.q2.log_prob(z2)
        return log_px, log_pz, log_qz


@register
class HierarchicalVAE(_PseudoInputs, _BoundScore, VAE):
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
    optimizer, weight_decay, lr_schedule, patience, validation_fraction, grad_clip, ema,
    seed, device, compile, verbose, checkpoint_dir : as for :class:`VAE`.

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
        epochs: int = 100,
        batch_size: int = 128,
        lr: float = 1e-3,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        patience: int | None = 10,
        validation_fraction: float = 0.1,
        grad_clip: float | None = None,
        ema: float | None = None,
        seed: int = 0,
        device: str = "auto",
        compile: bool = False,
        verbose: bool | None = None,
        checkpoint_dir=None,
    ):
        self.latent_dim = latent_dim
        self.latent_dim2 = latent_dim2
        self.prior = prior
        self.n_pseudo_inputs = n_pseudo_inputs
        self.k = k
        self.hidden = hidden
        self.activation = activation
        self.architecture = architecture
        self.channels = channels
        self.likelihood = likelihood
        self.sigma = sigma
        self.c = c
        self.mc_samples = mc_samples
        self.warmup_epochs = warmup_epochs
        self.free_bits = free_bits
        self.scale = scale
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.grad_clip = grad_clip
        self.ema = ema
        self.seed = seed
        self.device = device
        self.compile = compile
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir

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
        check_int(self.k, "k")
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
        if self.architecture == "mlp":
            body = MLP(shape[0], hidden[:-1], H, act)
            decoder = MLP(d1 + d2, hidden[::-1], shape[0], act)
        else:
            channels = check_hidden(self.channels, "channels")
            body = ConvEncoder(shape, channels, hidden[:-1], H, act)
            decoder = ConvDecoder(d1 + d2, shape, channels, hidden[::-1], act)
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
