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

from ..errors import ConfigError, DataError
from ..nn.modules import ConditionalVAEModule
from ..validation import as_array, check_choice, check_int
from .registry import register
from .vae import VAE

__all__ = ["ConditionalVAE", "CONDITIONS"]

CONDITIONS = ("auto", "categorical", "continuous")


@register("cvae", order=6)
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
    latent_dim, hidden, activation, architecture, channels, encoder, decoder, likelihood, sigma, c, mc_samples,
    warmup_epochs, free_bits, scale, epochs, batch_size, lr, optimizer, weight_decay,
    lr_schedule, patience, tol, validation_fraction, grad_clip, ema, seed, device, threads, compile, verbose,
    checkpoint_dir : as for :class:`VAE`. Your own ``encoder`` takes x with the condition beside it:
        (B, n_features + m) for flat rows, (B, C + m, H, W) for images (the condition as constant
        channels); your own ``decoder`` takes [z | y], (B, latent_dim + m). m is ``n_cond_``: the
        number of classes (one-hot), or the width of a side input.

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

    conditional = True

    _parameter_constraints = {**VAE._parameter_constraints, "condition": [str]}

    def __init__(
        self,
        latent_dim: int = 2,
        condition: str = "auto",
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

    def _condition_rows(self, y, n: int):
        return self._cond_array(y, n)

    def _condition_labels(self, cond):
        return self.classes_[cond] if self.condition_ == "categorical" and cond.dtype.kind == "i" else cond

    def encode_condition(self, y) -> np.ndarray:
        """y as ``module_`` takes it in ``cond=``: class indices (n,) int64, or floats (n, m)."""
        self._check_is_fitted()
        return self._cond_array(y)

    # ------------------------------------------------------------------ building and fitting
    def _build_module(self):
        d, m = int(self.latent_dim), int(self.n_cond_)
        enc, dec = self._networks(2 * d, d + m, extra_in=m)  # the condition beside x, and beside z
        return ConditionalVAEModule(enc, dec, self._make_likelihood(), d, m, self.condition_ == "categorical")

    def fit(self, X, y=None, *, X_val=None, y_val=None, resume: bool = False, callbacks=None):
        """Train on X (n, ...) with the condition y: labels (n,) or side inputs (n, m).

        ``X_val, y_val`` give the validation data for early stopping (by default a
        ``validation_fraction`` of X is held out); ``resume`` and ``callbacks`` as for
        :meth:`VAE.fit`. Returns self.
        """
        n = len(X)
        self._fit_condition(y, n)
        C = self._cond_array(y, n)
        Cv = None
        if X_val is not None:
            Cv = self._cond_array(y_val, len(X_val))
        return self._fit(X, C, X_val=X_val, y_val=Cv, resume=resume, callbacks=callbacks)

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

    # ------------------------------------------------------------------ conditions for generation
    def condition_features(self, y) -> np.ndarray:
        """Conditions as the networks take them, (n, m) floats: one-hot rows for class labels."""
        c = self.encode_condition(y)
        if self.condition_ == "categorical" and c.dtype.kind == "i":
            return np.eye(self.n_cond_, dtype=np.float32)[c]
        return c

    def balanced_conditions(self, n: int, labels=None) -> np.ndarray:
        """The conditions of ``n`` samples: an equal share of each of ``labels`` (default: every
        class), in blocks of one label, (n,); for side inputs, the one vector ``labels`` (m,)
        repeated, (n, m)."""
        n = check_int(n, "n")
        if self.condition_ != "categorical":
            if labels is None:
                raise ConfigError(
                    f"this model is conditioned on side inputs of {self.n_cond_} number(s), so samples need one: "
                    f"pass --label v1,...,v{self.n_cond_}."
                )
            return np.repeat(np.asarray(labels, dtype=np.float32).reshape(1, -1), n, axis=0)
        labels = np.asarray(self.classes_ if labels is None else labels)
        counts = np.full(len(labels), n // len(labels)) + (np.arange(len(labels)) < n % len(labels))
        return np.repeat(labels, counts)

    def parse_condition(self, text: str) -> np.ndarray:
        """A condition given as text (``--label``): for class labels, a comma list of labels (each
        one of ``classes_``), returned as an array of them; for side inputs, the m values of one
        side input, returned as (1, m)."""
        items = [t.strip() for t in str(text).split(",") if t.strip()]
        if not items:
            raise ConfigError("--label is empty; pass a label (e.g. --label 3) or a comma list (--label 3,5).")
        if self.condition_ != "categorical":
            try:
                v = np.array([float(t) for t in items], dtype=np.float32)[None, :]
            except ValueError:
                raise ConfigError(f"--label {text!r}: this model's condition is a vector of {self.n_cond_} numbers; "
                                  f"pass them as --label v1,...,v{self.n_cond_}.") from None
            if v.shape[1] != self.n_cond_:
                raise ConfigError(f"--label gives {v.shape[1]} value(s); this model's side input has {self.n_cond_}: "
                                  f"pass --label v1,...,v{self.n_cond_}.")
            return v
        classes = np.asarray(self.classes_)
        by_text = {str(c): c for c in classes.tolist()}
        out, bad = [], []
        for t in items:
            key = t
            if t not in by_text and classes.dtype.kind in "iuf":
                try:  # "3.0" for the class 3, "3" for 3.0
                    key = next((k for k, c in by_text.items() if float(c) == float(t)), t)
                except ValueError:
                    pass
            (out if key in by_text else bad).append(by_text.get(key, t))
        if bad:
            shown = ", ".join(map(str, classes.tolist()[:20])) + (", ..." if len(classes) > 20 else "")
            raise ConfigError(f"--label {bad[0]} is not a class this model was trained on; its classes are {shown}.")
        return np.asarray(out, dtype=classes.dtype)

    # ------------------------------------------------------------------ the transformer API
    # transform(X, y), encode(X, y), inverse_transform(Z, y), score_samples(X, y) and score(X, y)
    # are the VAE's: they read the condition through _condition_rows.
    def sample(self, n: int, y=None, *, seed=None, sampler: str = "prior", return_latent: bool = False,
               mean: bool = True, return_y: bool = False):
        """Generate ``n`` examples from p(x | z, y), z ~ N(0, I).

        Parameters
        ----------
        n : int
        y : label, side-input vector, or one per example; None (categorical conditions only)
            draws the labels from their training frequencies, so the samples follow p(x).
        seed : int or None
            Same seed, same samples.
        sampler : {"prior"}
        return_latent : also return z (n, latent_dim).
        mean : E[x|z,y] (default), or a draw of x when False.
        return_y : also return the labels (or conditions) used, (n,) or (n, m).
        """
        self._check_is_fitted()
        n = check_int(n, "n")
        if y is None:
            if self.condition_ != "categorical":
                raise DataError("sample needs y for a model with a continuous condition: pass y=... (m,) or (n, m).")
            rng = np.random.default_rng(seed)
            y = self.classes_[rng.choice(len(self.classes_), size=n, p=self.class_prior_)]
        X, z = super().sample(n, y, seed=seed, sampler=sampler, return_latent=True, mean=mean)
        out = (X,)
        if return_latent:
            out += (z,)
        if return_y:
            C = self._cond_array(y, n)
            labels = self.classes_[C] if self.condition_ == "categorical" and C.dtype.kind == "i" else C
            out += (labels,)
        return out[0] if len(out) == 1 else out

    def interpolate(self, x_start, x_end, steps: int = 10, y=None, *, y_path=None) -> np.ndarray:
        """Decode the straight line between the codes of two examples, each encoded under its own
        condition (``y``: the pair of conditions), in ``steps`` points: (steps, *input_shape). The
        path is decoded under ``y_path`` when given, else under the straight line between the two
        conditions (one-hot vectors for labels: soft labels in between), so that its ends are the
        two reconstructions."""
        steps = check_int(steps, "steps", low=2)
        if y is None:
            raise DataError("interpolate needs the two examples' conditions: y=(y_start, y_end).")
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        ends = np.stack([np.asarray(v) for v in y])  # (2,) labels or (2, m) side inputs
        za, zb = self.transform(np.stack([np.asarray(x_start), np.asarray(x_end)]), ends)
        Z = ((1 - t) * za[None, :] + t * zb[None, :]).astype(np.float32)
        if y_path is not None:
            return self.inverse_transform(Z, y_path)
        ca, cb = self.condition_features(ends)
        return self.inverse_transform(Z, ((1 - t) * ca[None, :] + t * cb[None, :]).astype(np.float32))
