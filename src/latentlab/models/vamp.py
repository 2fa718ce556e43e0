"""The VampPrior (Tomczak & Welling, 2018): a prior that is a mixture of variational posteriors.

p(z) = (1/K) sum_k q(z | u_k), where u_1..u_K are learned pseudo-inputs that live in the data
space and pass through the same encoder as the data. The prior is learned with the model, so
the aggregate posterior and the prior can meet (the "holes" a N(0, I) prior leaves), at the
cost of a Monte-Carlo KL: log q(z|x) - log p(z) at z ~ q(z|x) replaces the closed form.

Initialisation: the pseudo-inputs start as K random training examples (scaled as the model
sees them; drawn with the estimator's seed, from the training rows only). Tomczak & Welling
start them at noise (N(0.05, 0.01) through a hard tanh); starting at data gives the mixture
posteriors in the data's region from the first step. The pseudo-inputs are then free
parameters, not constrained to the data's range: the encoder is just evaluated there.
"""

from __future__ import annotations

import numpy as np
import torch

from ..nn.modules import VampPrior, VampPriorVAEModule
from ..objectives import ImportanceWeightedBound
from ..validation import check_int
from .iwae import BoundScoreMixin
from . import constraints
from .registry import register
from .vae import VAE

__all__ = ["VampPriorVAE", "PseudoInputsMixin"]


class PseudoInputsMixin:
    """Initialise the pseudo-inputs of a VampPrior from random training examples."""

    def _prepare_build(self, A, train_rows):
        super()._prepare_build(A, train_rows)
        if not self._uses_vamp():
            return
        rows = np.arange(A.shape[0]) if train_rows is None else np.asarray(train_rows)
        K = int(self.n_pseudo_inputs)
        rng = np.random.default_rng(self.seed)
        pick = np.sort(rng.choice(rows, size=K, replace=K > len(rows)))
        u = self._apply_scaler(np.asarray(A[pick], dtype=np.float32))
        self._pseudo_init = torch.from_numpy(np.ascontiguousarray(u)).reshape(K, *self._module_shape())

    def _init_pseudo_inputs(self, prior: VampPrior) -> None:
        init = getattr(self, "_pseudo_init", None)
        if init is not None:
            with torch.no_grad():
                prior.pseudo_inputs.copy_(init)

    def _fit(self, X, cond, **kw):
        try:
            return super()._fit(X, cond, **kw)
        finally:
            self.__dict__.pop("_pseudo_init", None)

    def _uses_vamp(self) -> bool:
        return True


@register("vamp", order=4)
class VampPriorVAE(PseudoInputsMixin, BoundScoreMixin, VAE):
    """A VAE with the VampPrior: p(z) = (1/K) sum_k q(z | u_k) over K learned pseudo-inputs.

    The pseudo-inputs start as ``n_pseudo_inputs`` random training examples (see the module
    docstring). ``sample`` draws from the mixture; the training loss is the negative ELBO with
    a Monte-Carlo KL, log q(z|x) - log p(z) at z ~ q(z|x) (or, with k > 1, the importance-
    weighted bound under the same prior).

    Parameters
    ----------
    n_pseudo_inputs : int
        K, the number of mixture components (Tomczak & Welling use 500 on MNIST).
    k : int
        Importance samples in the training bound; 1 (default) is the ELBO.
    c, mc_samples, warmup_epochs : as for :class:`IWAE` (c weights log p(z) - log q(z|x)).
    free_bits : float
        Must be 0 (the KL has no closed form).
    latent_dim, hidden, activation, architecture, channels, encoder, decoder, likelihood, sigma, scale, epochs,
    batch_size, lr, optimizer, weight_decay, lr_schedule, patience, tol, validation_fraction,
    grad_clip, ema, seed, device, threads, compile, verbose, checkpoint_dir :
        as for :class:`VAE`.

    Attributes
    ----------
    module_ : VampPriorVAEModule; ``module_.prior.pseudo_inputs`` (K, *S) in model space.
    history_ : per epoch: train_/val_ loss, iw_bound, rec, kl (Monte-Carlo), elbo; lr, time_s.

    Example
    -------
    >>> import numpy as np
    >>> from latentlab import VampPriorVAE
    >>> from latentlab.datasets import load_digits
    >>> X = (load_digits().data > 0.5).astype(np.float32)
    >>> vamp = VampPriorVAE(latent_dim=4, n_pseudo_inputs=20, hidden=(64,), epochs=2, verbose=False).fit(X)
    >>> vamp.sample(3, seed=0).shape, vamp.module_.prior.pseudo_inputs.shape
    ((3, 64), torch.Size([20, 64]))
    """

    _parameter_constraints = {**VAE._parameter_constraints, "n_pseudo_inputs": constraints.POSITIVE_INT,
                              "k": constraints.POSITIVE_INT}

    def __init__(
        self,
        latent_dim: int = 2,
        n_pseudo_inputs: int = 500,
        k: int = 1,
        hidden=(256, 128),
        activation: str = "relu",
        architecture: str = "mlp",
        channels=(32, 64),
        encoder=None,
        decoder=None,
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

    def _validate_params(self):
        super()._validate_params()
        check_int(self.n_pseudo_inputs, "n_pseudo_inputs")
        self._check_no_free_bits()

    def _build_module(self):
        d = int(self.latent_dim)
        enc, dec = self._networks(2 * d, d)
        module = VampPriorVAEModule(enc, dec, self._make_likelihood(), d, int(self.n_pseudo_inputs), self._module_shape())
        self._init_pseudo_inputs(module.prior)
        return module

    def _objective(self):
        return ImportanceWeightedBound(self.k, self.mc_samples, self.c, self.warmup_epochs)
