"""The torch modules behind the estimators: networks wired into encoders, decoders and priors.

No scikit-learn here: a module maps tensors to tensors and distributions. The estimators in
:mod:`latentlab.models` build them, train them with an objective from :mod:`latentlab.objectives`,
and run them in batches.

Every module has one signature, so that objectives and the evaluation never ask which class
they hold: ``encode(x, cond=None)``, ``decode(z, cond=None)``, and for the latent-variable models
``log_weight_terms(x, k, generator=None, posterior=None, cond=None)``,
``log_importance_weights(...)``, ``prior_log_prob(z)`` and ``sample_prior(n, ...)``. ``cond`` is
the condition of a conditional model; the others ignore it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import DataError, LatentlabError
from .distributions import DiagonalGaussian, diagonal_gaussian_mixture_log_prob, standard_normal_log_prob

__all__ = [
    "AEModule",
    "VAEModule",
    "VampPrior",
    "VampPriorVAEModule",
    "HierarchicalPosterior",
    "HierarchicalVAEModule",
    "ConditionalVAEModule",
]


class AEModule(nn.Module):
    """encoder: x (B, *S) -> z (B, K); decoder: z (..., K) -> out (..., *S).

    With ``likelihood=None`` the loss is the squared error summed over features and ``out`` is
    the reconstruction; otherwise ``out`` holds the likelihood's parameters (e.g. logits).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood

    def encode(self, x, cond=None):
        return self.encoder(x)

    def decode(self, z, cond=None):
        return self.decoder(z)

    def forward(self, x, cond=None):
        return self.decoder(self.encoder(x))

    def reconstruction_loss(self, x, out):
        """Per example (B,): squared error summed over features, or -log p(x | out) in nats."""
        if self.likelihood is None:
            return (out - x).pow(2).reshape(x.shape[0], -1).sum(-1)
        return -self.likelihood.log_prob(x, out)

    def mean(self, out):
        return out if self.likelihood is None else self.likelihood.mean(out)


class VAEModule(nn.Module):
    """encoder: x (B, *S) -> (B, 2K) split into mean and log-variance; decoder: z (..., K) -> out (..., *S)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: nn.Module, latent_dim: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim

    @property
    def has_standard_prior(self) -> bool:
        """Whether p(z) is N(0, I) (this class's own ``prior_log_prob``), so that KL(q(z|x) || p(z))
        has a closed form per dimension."""
        return type(self).prior_log_prob is VAEModule.prior_log_prob

    def encode(self, x, cond=None) -> DiagonalGaussian:
        mean, logvar = self.encoder(x).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z, cond=None):
        return self.decoder(z)

    def forward(self, x, cond=None):
        """Decoder output for one reparameterized sample of z per example."""
        return self.decode(self.encode(x, cond).rsample(), cond)

    def prior_log_prob(self, z):
        """log p(z) for the N(0, I) prior, summed over D. z: (..., D) -> (...)."""
        return standard_normal_log_prob(z)

    def sample_prior(self, n: int, generator=None, device=None, cond=None):
        """n draws of z ~ p(z), (n, D)."""
        dev = device if device is not None else next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator, device=dev)

    def log_weight_terms(self, x, k: int, generator=None, posterior=None, cond=None):
        """The three parts of the log importance weights, each (k, B), for z_k ~ q(z|x):
        ``(log p(x|z_k), log p(z_k), log q(z_k|x))``.

        Objectives that report the reconstruction and a Monte-Carlo KL, or weight the KL
        (warm-up), use the parts; :meth:`log_importance_weights` is their sum.
        """
        q = posterior if posterior is not None else self.encode(x, cond)
        z = q.rsample(k, generator=generator)  # (k, B, D)
        log_px = self.likelihood.log_prob(x, self.decode(z, cond))  # (k, B)
        return log_px, self.prior_log_prob(z), q.log_prob(z)

    def log_importance_weights(self, x, k: int, generator=None, posterior=None, cond=None):
        """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) with z_k ~ q(z|x); (k, B).

        logsumexp over k minus log k is the importance-weighted bound (Burda et al.), which is
        the ELBO at k = 1 and tends to log p(x) as k grows. Gradients flow (reparameterized).
        """
        log_px, log_pz, log_qz = self.log_weight_terms(x, k, generator=generator, posterior=posterior, cond=cond)
        return log_px + log_pz - log_qz


# ---------------------------------------------------------------------------------------- VampPrior
class VampPrior(nn.Module):
    """p(z) = (1/K) sum_k q(z | u_k) with K learned pseudo-inputs u of shape (K, *S).

    The encoder that defines q is passed to each call (it belongs to the model, and the prior
    must follow it as it trains): ``encode(u) -> DiagonalGaussian`` with mean (K, D).

    Example
    -------
    >>> import torch
    >>> from latentlab.nn.distributions import DiagonalGaussian
    >>> prior = VampPrior(3, (5,))
    >>> enc = lambda u: DiagonalGaussian(u[:, :2], torch.zeros(len(u), 2))
    >>> prior.log_prob(torch.zeros(7, 2), enc).shape, prior.sample(4, enc).shape
    (torch.Size([7]), torch.Size([4, 2]))
    """

    def __init__(self, n_components: int, input_shape: tuple[int, ...]):
        super().__init__()
        self.pseudo_inputs = nn.Parameter(torch.zeros(n_components, *input_shape))

    def components(self, encode) -> DiagonalGaussian:
        """The K mixture components q(z | u_k): mean and log-variance of shape (K, D)."""
        return encode(self.pseudo_inputs)

    def log_prob(self, z: torch.Tensor, encode) -> torch.Tensor:
        """log p(z), z: (..., D) -> (...)."""
        q = self.components(encode)
        return diagonal_gaussian_mixture_log_prob(z, q.mean, q.logvar)

    def sample(self, n: int, encode, generator=None) -> torch.Tensor:
        """n draws of z ~ p(z): pick a component uniformly, then z ~ q(z | u_k). (n, D)."""
        q = self.components(encode)
        dev = q.mean.device
        idx = torch.randint(q.mean.shape[0], (n,), generator=generator, device=dev)
        eps = torch.randn(n, q.mean.shape[-1], generator=generator, device=dev, dtype=q.mean.dtype)
        return q.mean[idx] + q.std[idx] * eps


class VampPriorVAEModule(VAEModule):
    """A VAEModule whose prior is a :class:`VampPrior` over its own encoder's posteriors."""

    def __init__(self, encoder, decoder, likelihood, latent_dim: int, n_pseudo_inputs: int, input_shape):
        super().__init__(encoder, decoder, likelihood, latent_dim)
        self.prior = VampPrior(n_pseudo_inputs, tuple(input_shape))

    def prior_log_prob(self, z):
        """log p(z) under the VampPrior, z: (..., D) -> (...)."""
        return self.prior.log_prob(z, self.encode)

    def sample_prior(self, n: int, generator=None, device=None, cond=None):
        """n draws of z ~ p(z), (n, D) (on the model's device)."""
        return self.prior.sample(n, self.encode, generator=generator)


# ---------------------------------------------------------------------------------------- two layers
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

    def encode(self, x, cond=None) -> HierarchicalPosterior:
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

    def sample_prior(self, n: int, generator=None, device=None, cond=None):
        """n ancestral draws z2 ~ p(z2), z1 ~ p(z1 | z2), as [z1 | z2] (n, D1 + D2)."""
        if self.top_prior is None:
            dev = device if device is not None else next(self.parameters()).device
            z2 = torch.randn(n, self.d2, generator=generator, device=dev)
        else:
            z2 = self.top_prior.sample(n, self.encode_top, generator=generator)
        z1 = self.prior_z1(z2).rsample(generator=generator)
        return torch.cat([z1, z2], -1)

    def log_weight_terms(self, x, k: int, generator=None, posterior=None, cond=None):
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


# ---------------------------------------------------------------------------------------- conditional
class ConditionalVAEModule(VAEModule):
    """encoder: [x, y] -> (B, 2D); decoder: [z, y] (..., D + m) -> out (..., *S).

    ``cond`` is, for a categorical condition with m classes, class indices (B,) (int) or a
    one-hot / soft label matrix (B, m); for a continuous condition, a float matrix (B, m).
    """

    def __init__(self, encoder, decoder, likelihood, latent_dim: int, n_cond: int, categorical: bool):
        super().__init__(encoder, decoder, likelihood, latent_dim)
        self.n_cond = n_cond
        self.categorical = categorical

    def cond_features(self, cond: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """The condition as the networks take it: (B, m) floats."""
        if cond is None:
            raise DataError(
                "this conditional VAE needs the condition y (cond=...) for every example; pass the "
                "labels or side inputs the model was trained with."
            )
        if self.categorical and not cond.is_floating_point():
            return F.one_hot(cond.reshape(-1).long(), self.n_cond).to(dtype)
        c = cond.to(dtype)
        return c.reshape(c.shape[0], -1)

    def encode(self, x, cond=None):
        c = self.cond_features(cond, x.dtype)
        if x.dim() == 2:
            inp = torch.cat([x, c], -1)
        else:  # images (B, C, H, W): the condition as constant channels
            inp = torch.cat([x, c[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        return super().encode(inp)

    def decode(self, z, cond=None):
        c = self.cond_features(cond, z.dtype)
        return self.decoder(torch.cat([z, c.expand(*z.shape[:-1], c.shape[-1])], -1))
