"""The deterministic autoencoder: encoder and decoder networks trained on reconstruction."""

from __future__ import annotations

import numpy as np

from ..nn.distributions import LIKELIHOODS, make_likelihood
from ..nn.modules import AEModule
from ..objectives import ReconstructionLoss
from ..validation import check_choice
from . import constraints, own
from .neural import NeuralModel
from .registry import register

__all__ = ["Autoencoder", "AE_LOSSES"]

AE_LOSSES = ("mse", *LIKELIHOODS, "mixed")


@register("ae", order=1)
class Autoencoder(NeuralModel):
    """An autoencoder trained by gradient descent on its reconstruction loss.

    ``hidden=()`` gives the linear autoencoder, whose codes span the top-``latent_dim`` PCA
    subspace (though not its individual axes) when trained on squared error.

    Parameters
    ----------
    latent_dim : int
        Size of the code.
    hidden : tuple of int
        Hidden layer sizes of the encoder; the decoder mirrors them. () is linear.
    activation : str
        "relu", "elu", "gelu", "silu", "tanh", "leaky_relu", "softplus", or "gated": gated hidden
        layers h = (W x + b) * sigmoid(V x + c) (Dauphin et al.; Tomczak & Welling's networks).
    architecture : {"mlp", "conv"}
        "conv" needs images and uses ``channels`` (stride-2 convolutions) before ``hidden``.
    channels : tuple of int
        Convolution channels for ``architecture="conv"``.
    encoder : torch.nn.Module, ModuleSpec, str or None
        Your own encoder instead of the built-in one (None): x (B, *S) -> (B, latent_dim), the code.
        S is one example as the built-in networks take it: (n_features,) with architecture="mlp",
        (C, H, W) with "conv" (images (n, H, W) get C = 1). A module is copied at fit (yours is not
        trained; its weights are the start); a :class:`latentlab.nn.ModuleSpec`, or its text
        "package.module:Name(k=v)", is built at fit (seeded) and recorded in the saved model (see
        :func:`latentlab.load`). The shapes are checked on the first batch. hidden, activation and
        channels do not apply to it.
    decoder : torch.nn.Module, ModuleSpec, str or None
        Your own decoder: z (B, latent_dim) -> (B, *S), the reconstruction (for ``loss="mse"``) or
        the likelihood's parameters. As for ``encoder`` otherwise.
    loss : {"mse", "bernoulli", "continuous_bernoulli", "gaussian", "mixed"}, or your own likelihood
        Squared error summed over features, or the negative log-likelihood of the named
        decoder distribution (nats per example); "mixed" for a mixed-type table (see
        :class:`latentlab.VAE`'s ``likelihood``); or of your own :class:`latentlab.nn.Likelihood`
        (an instance, a ModuleSpec or its text).
    sigma : float or {"learned", "learned_per_feature"}
        Standard deviation for ``loss="gaussian"``.
    scale : {None, "standard", "minmax"}
        Per-feature scaling learned at fit, applied on input and undone on output.
    epochs, batch_size, lr, optimizer, weight_decay, lr_schedule, patience, tol, grad_clip, ema : training
        settings; see :class:`latentlab.TrainConfig`.
    validation_fraction : float
        Share of X held out for early stopping (ignored when ``X_val`` is passed to ``fit``).
    seed : int
        Makes a CPU run repeatable.
    device : str
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", ...
    threads : int or None
        CPU threads to train on, fixed for the run (None: follow the free cores, at most the
        process's count; OMP_NUM_THREADS fixes it too); see :mod:`latentlab.threads`.
    compile : bool
        Use ``torch.compile`` for the training step.
    verbose : bool or None
        Progress bar on stderr; None shows it only on a terminal.
    checkpoint_dir : str or None
        Where ``checkpoint.safetensors`` is written each epoch (for ``fit(..., resume=True)``).

    Attributes
    ----------
    module_ : AEModule
    history_ : list of dict, one record per epoch (train_loss, val_loss, ..., time_s).
    best_epoch_ : int
    n_epochs_, n_iter_ : int, epochs trained.
    converged_ : bool
        Whether the stopping rule ended training (see ``patience`` and ``tol``); False when the
        epoch budget ran out first (a ``ConvergenceWarning`` said so).
    n_features_in_ : int
    input_shape_ : tuple

    Example
    -------
    >>> from latentlab import Autoencoder
    >>> from latentlab.datasets import load_digits
    >>> X = load_digits().data
    >>> ae = Autoencoder(latent_dim=4, hidden=(64,), epochs=2, verbose=False).fit(X)
    >>> ae.transform(X).shape
    (1797, 4)
    """

    _parameter_constraints = {**constraints.NETWORK, **constraints.OWN_NETWORKS, "loss": [str, *constraints.OWN],
                              "sigma": constraints.VAE_TERMS["sigma"],
                              **constraints.SCALE, **constraints.TRAINING}

    def __init__(
        self,
        latent_dim: int = 2,
        hidden=(256, 128),
        activation: str = "relu",
        architecture: str = "mlp",
        channels=(32, 64),
        encoder=None,
        decoder=None,
        loss: str = "mse",
        sigma="learned",
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

    network_params = ("encoder", "decoder", "loss")

    def _validate_params(self):
        super()._validate_params()
        if not own.is_own(self.loss, "loss"):
            check_choice(self.loss, "loss", AE_LOSSES)

    def _check_support(self, A):
        if own.is_own(self.loss, "loss"):
            self._check_own_likelihood("loss", A)
        elif self.loss == "mixed":
            self._mixed_likelihood(self.sigma, init=False).check(A)
        elif self.loss != "mse":
            make_likelihood(self.loss, self.sigma, self._n_model_features).check(A)

    def _build_module(self):
        enc, dec = self._networks(int(self.latent_dim), int(self.latent_dim))
        lik = None
        if own.is_own(self.loss, "loss"):
            lik = own.build_own(self.loss, "loss")
        elif self.loss == "mixed":
            lik = self._mixed_likelihood(self.sigma)
        elif self.loss != "mse":
            init_var = self._feature_variance() if self.loss == "gaussian" and isinstance(self.sigma, str) else None
            lik = make_likelihood(self.loss, self.sigma, self._n_model_features, init_var)
        return AEModule(enc, dec, lik)

    def _objective(self):
        return ReconstructionLoss()

    # ------------------------------------------------------------------ the transformer API
    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"reconstruction_nll"} if self.loss != "mse" else ())

    def transform(self, X, y=None) -> np.ndarray:
        """Codes of shape (n, latent_dim). ``y`` is ignored."""
        A = self._check_X(X, reset=False)
        return self._map_batches(A, lambda b: self.module_.encode(b[0]))

    def inverse_transform(self, Z, y=None) -> np.ndarray:
        """Decoded data from codes (n, latent_dim), shaped and scaled like the training data. ``y``
        is ignored."""
        Zc = self._check_Z(Z)
        out = self._decode_batches(Zc, lambda z, c: self.module_.mean(self.module_.decode(z)))
        return self._output(out)

    def reconstruction_nll(self, X, y=None) -> np.ndarray:
        """-log p(x | decoder(encoder(x))) per example, nats, of the scaled data (likelihood losses
        only). (n,)."""
        A = self._check_X(X, reset=False)
        m = self.module_
        return self._map_batches(A, lambda b: -m.likelihood.log_prob(b[0], m(b[0])))

    def score_samples(self, X) -> np.ndarray:
        """Negative reconstruction loss per example (higher is better), in the model's scaled units."""
        A = self._check_X(X, reset=False)
        m = self.module_
        return -self._map_batches(A, lambda b: m.reconstruction_loss(b[0], m(b[0])))

    def score(self, X, y=None) -> float:
        """Mean of :meth:`score_samples`: minus the mean reconstruction loss."""
        return float(np.mean(self.score_samples(X)))
