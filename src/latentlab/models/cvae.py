"""The conditional VAE (Sohn, Lee & Yan, 2015): encoder and decoder both see a condition y.

q(z | x, y) and p(x | z, y), with the prior p(z) = N(0, I) independent of y; the loss is the
conditional ELBO, -E_q[log p(x|z,y)] + c * KL(q(z|x,y) || N(0, I)). Because the decoder gets y
for free, z is pushed to carry what y does not say (for digits: the style, not the class), and
``sample(n, y=3)`` draws threes.

The condition is a class label (one-hot inside the networks) or any side input, a float vector
per example. For convolutional networks the condition enters the encoder as constant extra
image channels and the decoder as extra inputs beside z.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .._validation import as_array, check_choice, check_hidden, check_int
from ..errors import DataError
from ..objectives import elbo_terms
from .base import register
from .networks import MLP, ConvDecoder, ConvEncoder
from .vae import VAE, VAEModule

__all__ = ["ConditionalVAE", "ConditionalVAEModule", "CONDITIONS"]

CONDITIONS = ("auto", "categorical", "continuous")
_EVAL_BATCH = 2048


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

    def forward(self, x, cond=None):
        return self.decode(self.encode(x, cond).rsample(), cond)

    def sample_prior(self, n: int, generator=None, device=None, cond=None):
        """n draws of z ~ N(0, I), (n, D); the prior does not depend on the condition."""
        return super().sample_prior(n, generator=generator, device=device)

    def log_weight_terms(self, x, k: int, generator=None, posterior=None, cond=None):
        """(log p(x|z,y), log p(z), log q(z|x,y)), each (k, B), for z_k ~ q(z|x,y)."""
        q = posterior if posterior is not None else self.encode(x, cond)
        z = q.rsample(k, generator=generator)  # (k, B, D)
        log_px = self.likelihood.log_prob(x, self.decode(z, cond))
        return log_px, self.prior_log_prob(z), q.log_prob(z)

    def log_importance_weights(self, x, k: int, generator=None, posterior=None, cond=None):
        """log p(x|z,y) + log p(z) - log q(z|x,y) for k draws z ~ q(z|x,y), (k, B): the weights of
        the conditional likelihood log p(x | y)."""
        log_px, log_pz, log_qz = self.log_weight_terms(x, k, generator=generator, posterior=posterior, cond=cond)
        return log_px + log_pz - log_qz


@register
class ConditionalVAE(VAE):
    """A VAE whose encoder and decoder are conditioned on a label or a side input y.

    ``fit(X, y)``, ``transform(X, y)``, ``inverse_transform(Z, y)``, ``sample(n, y=...)``,
    ``score(X, y)``: every method that touches the networks takes the condition. After fitting
    on class labels, y may also be given as class probabilities (n, n_classes), float rows
    summing to 1: one-hot rows are the labels, others decode between classes.

    Parameters
    ----------
    condition : {"auto", "categorical", "continuous"}
        How to read y. "auto": a 1-D y is a class label (any values: ints, strings; one-hot
        inside the networks), a 2-D y of shape (n, m) a float side input. Use "continuous" for
        a single real-valued side input given as 1-D.
    latent_dim, hidden, activation, architecture, channels, likelihood, sigma, c, mc_samples,
    warmup_epochs, free_bits, scale, epochs, batch_size, lr, optimizer, weight_decay,
    lr_schedule, patience, validation_fraction, grad_clip, ema, seed, device, compile, verbose,
    checkpoint_dir : as for :class:`VAE`.

    Attributes
    ----------
    classes_ : ndarray of the labels (categorical conditions), in the one-hot order.
    class_prior_ : ndarray, the labels' frequencies in the training data.
    n_cond_ : int, the width m of the condition inside the networks.
    condition_ : {"categorical", "continuous"}

    Example
    -------
    >>> from latentlab import ConditionalVAE
    >>> from latentlab.datasets import load_digits
    >>> d = load_digits()
    >>> cvae = ConditionalVAE(latent_dim=2, hidden=(64,), epochs=2, verbose=False).fit(d.data, d.target)
    >>> cvae.sample(4, y=7, seed=0).shape, cvae.transform(d.data[:3], d.target[:3]).shape
    ((4, 64), (3, 2))
    """

    def __init__(
        self,
        latent_dim: int = 2,
        condition: str = "auto",
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
        self.condition = condition
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

    # ------------------------------------------------------------------ the condition
    def _validate_params(self):
        super()._validate_params()
        check_choice(self.condition, "condition", CONDITIONS)

    def _fit_condition(self, y, n: int) -> None:
        if y is None:
            raise DataError(
                "ConditionalVAE.fit needs the condition: call fit(X, y) with a label per example "
                "(1-D) or a side-input vector per example (2-D, (n, m))."
            )
        arr = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
        if arr.shape[0] != n:
            raise DataError(f"y has {arr.shape[0]} rows but X has {n}; pass one condition per example.")
        kind = self.condition
        if kind == "auto":
            kind = "categorical" if arr.ndim == 1 else "continuous"
        self.condition_ = kind
        if kind == "categorical":
            if arr.ndim != 1 and not (arr.ndim == 2 and arr.shape[1] == 1):
                raise DataError(
                    f"condition='categorical' needs one label per example, y of shape (n,), but y has "
                    f"shape {arr.shape}; pass labels, or use condition='continuous' for vectors."
                )
            classes, counts = np.unique(arr.reshape(-1), return_counts=True)
            self.classes_ = classes
            self.class_prior_ = counts / counts.sum()
            self.n_cond_ = int(len(classes))
        else:
            C = as_array(arr.reshape(n, -1) if arr.ndim == 1 else arr, name="y")
            if C.ndim != 2:
                raise DataError(f"a continuous condition must be (n, m); y has shape {arr.shape}.")
            self.classes_ = None
            self.class_prior_ = None
            self.n_cond_ = int(C.shape[1])

    def _cond_array(self, y, n: int | None = None) -> np.ndarray:
        """y as the networks' batches carry it: int64 class indices (n,), or float32 (n, m)."""
        if y is None:
            raise DataError(
                f"{type(self).__name__} needs the condition y here (the labels or side inputs, one "
                "per example); pass it as the second argument."
            )
        arr = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
        if self.condition_ == "categorical" and self._soft_labels(arr):
            out = arr.astype(np.float32)  # the networks read float rows as class probabilities
        elif self.condition_ == "categorical":
            flat = arr.reshape(-1) if arr.ndim <= 1 or arr.shape[-1] == 1 else None
            if flat is None:
                raise DataError(f"y must be one label per example, shape (n,); got shape {arr.shape}.")
            if n is not None and flat.shape[0] == 1 and n != 1:
                flat = np.repeat(flat, n)
            idx = np.searchsorted(self.classes_, flat)
            idx = np.clip(idx, 0, len(self.classes_) - 1)
            bad = self.classes_[idx] != flat
            if np.any(bad):
                raise DataError(
                    f"y holds label(s) not seen in training, e.g. {flat[bad][0]!r}; known labels: "
                    f"{self.classes_.tolist()}."
                )
            out = idx.astype(np.int64)
        else:
            if arr.ndim <= 1:  # one scalar per example (m = 1), or one vector (m,) for all examples
                arr = arr.reshape(-1, 1) if self.n_cond_ == 1 else arr.reshape(1, -1)
            C = as_array(arr, name="y")
            if C.shape[1] != self.n_cond_:
                raise DataError(f"y has {C.shape[1]} column(s); the model was trained on {self.n_cond_}.")
            if n is not None and C.shape[0] == 1 and n != 1:
                C = np.repeat(C, n, axis=0)
            out = C
        if n is not None and out.shape[0] != n:
            raise DataError(f"y has {out.shape[0]} rows for {n} examples; pass one condition per example (or one for all).")
        return out

    def _soft_labels(self, arr: np.ndarray) -> bool:
        """Whether ``arr`` is a matrix of class probabilities (n, n_classes): float rows >= 0 that
        sum to 1 (one-hot rows are the labels themselves; others mix the classes)."""
        if arr.ndim != 2 or arr.shape[1] != self.n_cond_ or self.n_cond_ < 2 or arr.dtype.kind != "f":
            return False
        if not (np.all(arr >= 0) and np.allclose(arr.sum(1), 1.0, atol=1e-4)):
            raise DataError(
                f"y of shape {arr.shape} reads as class probabilities (one column per class), but its rows are "
                "not >= 0 summing to 1; pass labels (n,), or one-hot / probability rows."
            )
        return True

    def encode_condition(self, y) -> np.ndarray:
        """y as ``module_`` takes it in ``cond=``: class indices (n,) int64, or floats (n, m)."""
        self._check_is_fitted()
        return self._cond_array(y)

    # ------------------------------------------------------------------ building and fitting
    def _build_module(self):
        d, m = int(self.latent_dim), int(self.n_cond_)
        hidden = check_hidden(self.hidden, "hidden")
        shape = self._module_shape()
        if self.architecture == "mlp":
            enc = MLP(shape[0] + m, hidden, 2 * d, self.activation)
            dec = MLP(d + m, hidden[::-1], shape[0], self.activation)
        else:
            channels = check_hidden(self.channels, "channels")
            enc = ConvEncoder((shape[0] + m, *shape[1:]), channels, hidden, 2 * d, self.activation)
            dec = ConvDecoder(d + m, shape, channels, hidden[::-1], self.activation)
        return ConditionalVAEModule(enc, dec, self._make_likelihood(), d, m, self.condition_ == "categorical")

    def fit(self, X, y=None, *, X_val=None, y_val=None, resume: bool = False):
        """Train on X (n, ...) with the condition y: labels (n,) or side inputs (n, m).

        ``X_val, y_val`` give the validation data for early stopping (by default a
        ``validation_fraction`` of X is held out). Returns self.
        """
        n = len(X)
        self._fit_condition(y, n)
        C = self._cond_array(y, n)
        Cv = None
        if X_val is not None:
            Cv = self._cond_array(y_val, len(X_val))
        return self._fit(X, C, X_val=X_val, y_val=Cv, resume=resume)

    def fit_transform(self, X, y=None, **fit_params):
        return self.fit(X, y, **fit_params).transform(X, y)

    def _extra_state(self):
        state = super()._extra_state()
        state["condition"] = self.condition_
        state["n_cond"] = self.n_cond_
        if self.condition_ == "categorical":
            state["classes"] = self.classes_.tolist()
            state["class_prior"] = self.class_prior_.tolist()
        return state

    def _restore_extra(self, state):
        super()._restore_extra(state)
        self.condition_ = state["condition"]
        self.n_cond_ = int(state["n_cond"])
        if self.condition_ == "categorical":
            self.classes_ = np.asarray(state["classes"])
            self.class_prior_ = np.asarray(state["class_prior"])
        else:
            self.classes_ = self.class_prior_ = None

    # ------------------------------------------------------------------ the transformer API
    def transform(self, X, y=None, *, sample: bool = False, seed=None) -> np.ndarray:
        """Codes (n, latent_dim) of X given y: posterior means, or one draw of q(z|x,y) each."""
        A = self._check_X(X, reset=False)
        C = self._cond_array(y, A.shape[0])
        g = self._generator(seed)
        m = self.module_
        if sample:
            return self._map_batches(A, lambda b: m.encode(b[0], b[1]).rsample(generator=g), C)
        return self._map_batches(A, lambda b: m.encode(b[0], b[1]).mean, C)

    def encode(self, X, y=None) -> tuple[np.ndarray, np.ndarray]:
        """The posterior q(z|x,y): (mean, std), each (n, latent_dim)."""
        A = self._check_X(X, reset=False)
        C = self._cond_array(y, A.shape[0])
        m = self.module_
        both = self._map_batches(A, lambda b: torch.cat([(q := m.encode(b[0], b[1])).mean, q.std], -1), C)
        d = int(self.latent_dim)
        return both[:, :d], both[:, d:]

    @torch.no_grad()
    def _decode_cond(self, Z: np.ndarray, C: np.ndarray, fn) -> np.ndarray:
        self.module_.eval()
        dev = self._device()
        outs = []
        for s in range(0, Z.shape[0], _EVAL_BATCH):
            z = torch.as_tensor(Z[s : s + _EVAL_BATCH], dtype=torch.float32, device=dev)
            c = torch.as_tensor(C[s : s + _EVAL_BATCH], device=dev)
            outs.append(fn(z, c).detach().cpu())
        return torch.cat(outs).numpy() if outs else np.zeros((0, *self._module_shape()), np.float32)

    def inverse_transform(self, Z, y=None) -> np.ndarray:
        """E[x | z, y] for codes (n, latent_dim) and conditions y (one per row, or one for all)."""
        Zc = self._check_Z(Z)
        C = self._cond_array(y, Zc.shape[0])
        m = self.module_
        return self._output(self._decode_cond(Zc, C, lambda z, c: m.likelihood.mean(m.decode(z, c))))

    def reconstruct(self, X, y=None) -> np.ndarray:
        """inverse_transform(transform(X, y), y)."""
        return self.inverse_transform(self.transform(X, y), y)

    def sample(self, n: int, y=None, seed=None, *, return_latent: bool = False, mean: bool = True,
               return_y: bool = False):
        """Generate ``n`` examples from p(x | z, y), z ~ N(0, I).

        Parameters
        ----------
        n : int
        y : label, side-input vector, or one per example; None (categorical conditions only)
            draws the labels from their training frequencies, so the samples follow p(x).
        seed : int or None
            Same seed, same samples.
        return_latent : also return z (n, latent_dim).
        mean : E[x|z,y] (default), or a draw of x when False.
        return_y : also return the labels (or conditions) used, (n,) or (n, m).
        """
        self._check_is_fitted()
        n = check_int(n, "n")
        g = self._generator(seed)
        if y is None:
            if self.condition_ != "categorical":
                raise DataError("sample needs y for a model with a continuous condition: pass y=... (m,) or (n, m).")
            rng = np.random.default_rng(seed)
            y = self.classes_[rng.choice(len(self.classes_), size=n, p=self.class_prior_)]
        C = self._cond_array(y, n)
        m = self.module_
        with torch.no_grad():
            z = m.sample_prior(n, generator=g, device=self._device())
        if mean:
            fn = lambda t, c: m.likelihood.mean(m.decode(t, c))  # noqa: E731
        else:
            fn = lambda t, c: m.likelihood.sample(m.decode(t, c), generator=g)  # noqa: E731
        X = self._output(self._decode_cond(z.cpu().numpy(), C, fn))
        out = (X,)
        if return_latent:
            out += (z.cpu().numpy(),)
        if return_y:
            labels = self.classes_[C] if self.condition_ == "categorical" and C.dtype.kind == "i" else C
            out += (labels,)
        return out[0] if len(out) == 1 else out

    def score_samples(self, X, y=None, *, mc_samples: int = 1, seed=None) -> np.ndarray:
        """Conditional ELBO of each example (a lower bound on log p(x | y)), nats, (n,)."""
        A = self._check_X(X, reset=False)
        C = self._cond_array(y, A.shape[0])
        g = self._generator(self.seed if seed is None else seed)
        m = self.module_

        def elbo(b):
            rec, kl_d = elbo_terms(m, b[0], mc_samples, generator=g, cond=b[1])
            return -(rec + kl_d.sum(-1))

        return self._map_batches(A, elbo, C)

    def score(self, X, y=None) -> float:
        """Mean conditional ELBO per example in nats (higher is better)."""
        return float(np.mean(self.score_samples(X, y)))
