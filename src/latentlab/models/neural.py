"""The part of the Autoencoder and the VAE that is about networks: build, train, run in batches."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError, DataError, DivergenceError
from ..limits import ParameterBudget, check_seed, check_step
from ..nn.mixed import MixedTable
from ..nn.networks import MLP, BatchFlatten, ConvDecoder, ConvEncoder
from ..training.callbacks import HISTORY_FILE, HistoryFile
from ..training.checkpoint import CHECKPOINT_NAME, load_module_state
from ..training.data import ArrayData
from ..training.device import resolve_device
from ..training.trainer import train
from ..validation import check_choice, check_float, check_hidden, check_int, iter_chunks
from . import own
from .base import LatentModel

__all__ = ["NeuralModel", "ARCHITECTURES"]

ARCHITECTURES = ("mlp", "conv")
_EVAL_BATCH = 2048


class NeuralModel(LatentModel):
    """Base of the estimators trained by gradient descent.

    Subclasses define ``_build_module()``, ``_objective()`` and may override ``_check_support``.
    Networks of your own come in through the parameters named in ``network_params``
    (:mod:`latentlab.models.own`).
    """

    _fitted_attr = "module_"
    #: The parameters that may hold a network of your own (a module, a ModuleSpec or its text).
    network_params: ClassVar[tuple[str, ...]] = ("encoder", "decoder")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # the networks compute in float32
        tags.non_deterministic = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"preserves_dtype": [np.float32]}

    # ------------------------------------------------------------------ configuration
    def _train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            lr_schedule=self.lr_schedule,
            patience=self.patience,
            tol=self.tol,
            grad_clip=self.grad_clip,
            seed=self.seed,
            device=self.device,
            compile=self.compile,
            progress=self.verbose,
            ema=getattr(self, "ema", None),
            threads=getattr(self, "threads", None),
        )

    def _validate_params(self) -> None:
        super()._validate_params()
        check_int(self.latent_dim, "latent_dim")
        check_hidden(self.hidden, "hidden")
        check_hidden(self.channels, "channels")
        check_choice(self.architecture, "architecture", ARCHITECTURES)
        check_float(self.validation_fraction, "validation_fraction", low=0.0, high=1.0, low_inclusive=True, high_inclusive=False)
        for name in self.network_params:
            value = getattr(self, name, None)
            if own.is_own(value, name) or (value is not None and name not in own.NAMED):
                own.check_own(value, name, type(self).__name__)

    def _own_networks(self) -> set[str]:
        """The network parameters that hold networks of your own."""
        return {n for n in self.network_params if own.is_own(getattr(self, n, None), n)}

    def _encoder_width(self) -> int:
        """The encoder's output width: the code (latent_dim); 2 * latent_dim for a Gaussian posterior."""
        return int(self.latent_dim)

    def _module_shape(self) -> tuple[int, ...]:
        """Shape of one example as the networks take it: (F,) for the MLP, (C, H, W) for conv."""
        shape = self.input_shape_
        if self.architecture == "mlp":
            return (int(np.prod(shape)),)
        if len(shape) == 1:
            raise DataError(
                f"architecture='conv' needs images, X of shape (n, H, W) or (n, C, H, W), but the "
                f"examples have shape {shape}; reshape X, or use architecture='mlp'."
            )
        return (1, *shape) if len(shape) == 2 else tuple(shape)

    def _networks(self, out_features: int, in_latent: int, extra_in: int = 0):
        """(encoder, decoder): encoder (B, *S) -> (B, out_features); decoder (..., in_latent) -> (..., *S).

        Yours where ``encoder`` / ``decoder`` hold them (a copy, or built from the spec; your decoder
        wrapped in :class:`~latentlab.nn.networks.BatchFlatten`), else the built-in ones. ``extra_in``:
        features (channels for images) of a condition that the encoder's input carries beside x.
        """
        nets = {n: own.build_own(getattr(self, n), n) for n in ("encoder", "decoder") if n in self._own_networks()}
        if len(nets) < 2:
            enc, dec = self._builtin_networks(out_features, in_latent, extra_in)
            nets.setdefault("encoder", enc)
            if "decoder" not in nets:
                return nets["encoder"], dec
        return nets["encoder"], BatchFlatten(nets["decoder"])

    def _builtin_networks(self, out_features: int, in_latent: int, extra_in: int = 0):
        hidden = check_hidden(self.hidden)
        shape = self._module_shape()
        if self.architecture == "mlp":
            F = shape[0]
            return MLP(F + extra_in, hidden, out_features, self.activation), MLP(in_latent, hidden[::-1], F, self.activation)
        channels = check_hidden(self.channels, "channels")
        enc = ConvEncoder((shape[0] + extra_in, *shape[1:]), channels, hidden, out_features, self.activation)
        dec = ConvDecoder(in_latent, shape, channels, hidden[::-1], self.activation)
        return enc, dec

    def _build_module(self) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def _objective(self):  # pragma: no cover
        raise NotImplementedError

    def _check_support(self, A) -> None:
        """Check the (scaled) training data against the model's likelihood; set ``likelihood_``."""

    def _mixed_likelihood(self, sigma, *, init: bool = True) -> MixedTable:
        """The likelihood of a mixed-type table (``likelihood="mixed"``): one distribution per
        column of ``table_``; numeric columns start at the training data's spread."""
        if getattr(self, "table_", None) is None:
            raise ConfigError(
                "likelihood='mixed' is for mixed-type tables (a DataFrame, or a CSV, with text columns); this "
                "data is an array of numbers: use 'auto', 'gaussian' or 'bernoulli'."
            )
        var = self._feature_variance() if init and isinstance(sigma, str) else None
        return MixedTable(self.table_.blocks(), sigma, None if var is None else var[self.table_.numeric_features()])

    def _check_own_likelihood(self, param: str, A):
        """Your likelihood's ``check`` on a chunk of the training data; returns the likelihood (built
        once a fit: a spec imports its code)."""
        lik = self.__dict__.get("_support_check")
        if lik is None:
            lik = self._support_check = own.build_own(getattr(self, param), param)
        lik.check(A)
        return lik

    def _prepare_build(self, A, train_rows) -> None:
        """Hook called in ``fit`` just before ``_build_module``, with the unscaled training array
        and the rows used for training (None: all): for initialisations that need data."""

    # ------------------------------------------------------------------ data plumbing
    def _data(self, arrays: Sequence, device, index=None) -> ArrayData:
        return ArrayData(
            arrays,
            device,
            index=index,
            offset=self.scale_offset_,
            scale=self.scale_factor_,
            shape=self._module_shape(),
        )

    def _feature_variance(self):
        """Per-feature variance of the scaled training data during fit (None otherwise), in chunks."""
        A = getattr(self, "_fit_data", None)
        if A is None:
            return None
        s1 = s2 = 0.0
        for chunk in self._scaled_chunks(A):
            f = chunk.reshape(len(chunk), -1).astype(np.float64)
            s1, s2 = s1 + f.sum(0), s2 + (f * f).sum(0)
        mean = s1 / A.shape[0]
        return np.maximum(s2 / A.shape[0] - mean**2, 0.0)

    def _scaled_chunks(self, A):
        """A in scaled float32 chunks of about 4 MiB (A may be memory-mapped, of any dtype)."""
        for _, block in iter_chunks(A, dtype=np.float32):
            yield self._apply_scaler(block)

    def validation_split(self, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(training rows, validation rows or None) of ``fit(X)`` on n rows: ``validation_fraction``
        of them, drawn with the estimator's seed (both sorted). PCA fitted on the training rows is
        what a linear autoencoder trained here converges to."""
        return self._split(n)

    def _split(self, n: int):
        frac = float(self.validation_fraction)
        n_val = int(round(n * frac))
        if frac <= 0 or n_val < 1 or n - n_val < 2:
            return np.arange(n), None
        perm = np.random.default_rng(self.seed).permutation(n)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, *, X_val=None, resume: bool = False, callbacks=None):
        """Train on X of shape (n, n_features), or images (n, H, W) / (n, C, H, W).

        Parameters
        ----------
        X : array-like, torch tensor, or memory-mapped array
        y : ignored (accepted for Pipeline compatibility)
        X_val : array-like, optional
            Validation data for early stopping; by default a ``validation_fraction`` of X is held out.
        resume : bool
            Continue from the checkpoint in ``checkpoint_dir`` (if one is there).
        callbacks : list of :class:`latentlab.training.Callback`, optional
            Called at the start, after each step and epoch, and at the end; one may ask to stop
            (:mod:`latentlab.training.callbacks`). With a ``checkpoint_dir``, ``history.jsonl`` is
            written there too.

        Returns
        -------
        self
        """
        return self._fit(X, None, X_val=X_val, y_val=None, resume=resume, callbacks=callbacks)

    def _fit(self, X, cond, *, X_val, y_val, resume, callbacks=None):
        self._validate_params()
        cfg = self._train_config()
        A = self._check_X(X, reset=True, min_samples=2)
        top = 0.0
        self.__dict__.pop("_support_check", None)
        for chunk in self._scaled_chunks(A):
            self._check_support(chunk)
            top = max(top, float(np.abs(chunk).max(initial=0.0)))
        self.__dict__.pop("_support_check", None)
        self._fit_data = A  # for feature_variance() while the module is built
        self._module_shape()  # fail early for conv on flat data
        device = resolve_device(cfg.device)
        arrays = [A] if cond is None else [A, cond]
        if X_val is not None:
            V = self._check_X(X_val, reset=False)
            train_idx, val_data = None, self._data([V] if y_val is None else [V, y_val], device)
        else:
            train_idx, val_idx = self._split(A.shape[0])
            val_data = None if val_idx is None else self._data(arrays, device, index=val_idx)
        train_data = self._data(arrays, device, index=train_idx)
        self._prepare_build(A, train_idx)

        ckpt, callbacks = None, list(callbacks or ())
        if self.checkpoint_dir is not None:
            ckpt = Path(self.checkpoint_dir) / CHECKPOINT_NAME
            callbacks.insert(0, HistoryFile(Path(self.checkpoint_dir) / HISTORY_FILE))
        cuda_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(cfg.seed)
            module = self._build_checked().to(device)
            self._check_own_networks(module, train_data)
            self._check_step_size(A.shape[0])
            try:
                result = train(
                    module,
                    self._objective(),
                    train_data,
                    val_data,
                    cfg,
                    checkpoint=ckpt,
                    resume=resume,
                    meta=self._checkpoint_meta(),
                    desc=type(self).__name__,
                    callbacks=callbacks,
                )
            except DivergenceError as exc:
                raise self._scale_cause(exc, top) from None
        del self._fit_data
        self.module_ = module.eval()
        self.device_ = device
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.n_epochs_ = self.n_iter_ = len(result.history)
        self.stopped_early_ = result.stopped_early or result.stopped_by_callback
        self.converged_ = result.converged or self.patience is None
        self._keep_codes(A, cond if cond is None else self._condition_labels(cond))
        if not self.converged_ and not result.stopped_by_callback:
            self._warn_not_converged()
        return self

    def _check_own_networks(self, module: nn.Module, train_data: ArrayData) -> None:
        """The first batch through your networks, shapes checked (reads 2 rows; nothing without them)."""
        mine = self._own_networks()
        if mine:
            batch = train_data.gather(torch.arange(min(2, len(train_data))))
            own.check_first_batch(self, module, batch, mine, self._encoder_width())

    def _warn_not_converged(self) -> None:
        from sklearn.exceptions import ConvergenceWarning

        hist = self.history_
        what = "validation" if hist and "val_loss" in hist[-1] else "training"
        why = (f"only {len(hist)} epoch(s) ran, and the rule compares the last patience={self.patience} with the ones before"
               if len(hist) <= self.patience else
               f"the {what} loss still improved by more than tol={self.tol:g} (relative) over the last "
               f"patience={self.patience} epochs")
        warnings.warn(ConvergenceWarning(
            f"{type(self).__name__} used its whole budget of epochs={self.epochs} before converging: {why}. "
            "Raise epochs (--epochs; `latentlab fit --resume RUN --epochs N` continues), or tol (--tol)."
        ), stacklevel=3)

    def _size_settings(self) -> str:
        """The settings that make the network large, in words (for the bound's error)."""
        names = ("hidden", "latent_dim", "latent_dim2", "n_pseudo_inputs", "channels")
        shown = [f"{k}={getattr(self, k)!r}" for k in names if hasattr(self, k) and (k != "channels" or self.architecture == "conv")]
        return ", ".join(shown) + f" on {getattr(self, 'n_features_in_', '?')} input features"

    def _build_checked(self) -> nn.Module:
        """``_build_module()``, refused before it allocates when the network would pass the
        parameter limit (:class:`latentlab.limits.ParameterBudget`)."""
        name = type(self).__name__
        with ParameterBudget(self._size_settings(), f"{'an' if name[0] in 'AEIOU' else 'a'} {name} network"):
            return self._build_module()

    def _check_step_size(self, n: int) -> None:
        """Refuse a training step whose widest layer would hold too many values: batch x samples x width."""
        batch = min(int(self.batch_size), n)
        samples = int(getattr(self, "mc_samples", 1) or 1) * int(getattr(self, "k", 1) or 1)
        width = max([int(np.prod(self.input_shape_)), *check_hidden(self.hidden), int(self.latent_dim)])
        parts = [f"batch_size={batch}"] + [f"{k}={getattr(self, k)}" for k in ("mc_samples", "k") if hasattr(self, k)]
        lower = [k for k in ("mc_samples", "k") if hasattr(self, k)] + ["batch_size", "the widest layer (hidden, latent_dim)"]
        check_step(float(batch) * samples * width, " x ".join(parts) + f" x widest layer {width}",
                   "lower " + ", ".join(lower[:-1]) + " or " + lower[-1])

    def _scale_cause(self, exc: DivergenceError, top: float) -> DivergenceError:
        """The divergence error, naming the data's scale as the cause when the values the network
        sees are far from 1 (a learning rate cannot fix that)."""
        if not top > 1e4:
            return exc
        new = DivergenceError(
            f"{exc} But the likely cause is the data's scale: the values the network trains on reach {top:.3g} "
            f"(scale={self.scale!r}), and networks train on values near 1. Fit again with scale='standard' "
            "(--scale standard), or rescale the data."
        )
        new.__dict__.update(exc.__dict__)
        new.data_scale = True
        return new

    def _checkpoint_meta(self) -> dict[str, Any]:
        state = self._base_state()
        state.update(self._extra_state())
        return {
            "class": type(self).__name__,
            "params": self._params_record(),
            "state": state,
        }

    def _extra_state(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ running the networks
    def _device(self) -> torch.device:
        dev = getattr(self, "device_", None)
        if dev is None:
            dev = self.device_ = resolve_device(self.device)
        return dev

    @torch.no_grad()
    def _map_batches(self, A, fn, cond=None) -> np.ndarray:
        """Apply ``fn(batch_tuple) -> tensor`` to model-ready batches of A; concatenate on the CPU."""
        self._check_is_fitted()
        self.module_.eval()
        data = self._data([A] if cond is None else [A, cond], self._device())
        # One output array filled batch by batch: a list of small results interleaved with each
        # batch's large temporaries fragments the heap, and the resident set then grows with n
        # (measured: +1.5 MiB per batch of 2,048 on glibc), which data on disk cannot afford.
        out, pos = None, 0
        for b in data.slices(_EVAL_BATCH):
            r = fn(b).detach().cpu().numpy()
            if out is None:
                out = np.empty((len(data), *r.shape[1:]), dtype=r.dtype)
            out[pos : pos + len(r)] = r
            pos += len(r)
        return out

    def iter_batches(self, X, y=None, batch_size: int = _EVAL_BATCH):
        """Batches of X as the networks take them: checked, scaled, shaped, on the model's device.

        Yields ``(start, x, c)``: the index of the batch's first example, x (B, *S) float32, and the
        condition's rows as the module takes them (None for an unconditional model).
        """
        A = self._check_X(X, reset=False)
        C = self._condition_rows(y, A.shape[0])
        data = self._data([A] if C is None else [A, C], self._device())
        start = 0
        for batch in data.slices(batch_size):
            yield start, batch[0], (batch[1] if len(batch) > 1 else None)
            start += len(batch[0])

    def _condition_labels(self, cond):
        """The condition rows in the form ``transform`` takes them back (conditional models)."""
        return cond

    def _condition_rows(self, y, n: int):
        """The condition as the networks' batches carry it (conditional models); None here."""
        return None

    @torch.no_grad()
    def _decode_batches(self, Z: np.ndarray, fn, C=None) -> np.ndarray:
        """``fn(z, c) -> tensor`` over batches of codes Z (and condition rows C, or None); on the CPU."""
        self.module_.eval()
        dev = self._device()
        outs = []
        for start in range(0, Z.shape[0], _EVAL_BATCH):
            z = torch.as_tensor(Z[start : start + _EVAL_BATCH], dtype=torch.float32, device=dev)
            c = None if C is None else torch.as_tensor(C[start : start + _EVAL_BATCH], device=dev)
            outs.append(fn(z, c).detach().cpu())
        return torch.cat(outs).numpy() if outs else np.zeros((0, *self._module_shape()), np.float32)

    def _generator(self, seed) -> torch.Generator | None:
        seed = check_seed(seed)
        if seed is None:
            return None
        g = torch.Generator(device=self._device())
        g.manual_seed(int(seed))
        return g

    def torch_modules(self, *, logvar: bool = False):
        """The encoder and the decoder as standalone torch modules in the user's units (see
        :meth:`LatentModel.torch_modules`): copies of ``module_`` on the CPU, float32, with the
        data scaling folded in. The encoder returns the codes ``transform`` returns (the VAE
        family: posterior means; ``logvar=True`` adds their log-variances); the decoder returns
        ``inverse_transform``'s E[x|z] (for the Bernoulli, probabilities). A conditional model's
        modules take its condition (B, m) as a second input."""
        import copy

        from ..errors import ConfigError
        from ..nn.graphs import DataDecoder, DataEncoder, EncodeOf

        self._check_is_fitted()
        posterior = "posterior" in self.capabilities
        if logvar and not posterior:
            raise ConfigError(f"an {type(self).__name__}'s codes have no posterior variance; export without logvar.")
        m = copy.deepcopy(self.module_).to(device="cpu", dtype=torch.float32).eval().requires_grad_(False)
        cond_dim = int(self.n_cond_) if self.conditional else 0
        output = "code" if not posterior else ("mean_logvar" if logvar else "mean")
        off, fac = self.scale_offset_, self.scale_factor_
        enc = DataEncoder(EncodeOf(m), self._n_model_features, self._module_shape(), off, fac, output, bool(cond_dim))
        dec = DataDecoder(m.decoder, self.input_shape_, off, fac, getattr(m, "likelihood", None), cond_dim)
        return enc.eval(), dec.eval()

    # ------------------------------------------------------------------ persistence
    def _state(self):
        state = self._base_state()
        state.update(self._extra_state())
        state["history"] = self.history_
        state["best_epoch"] = self.best_epoch_
        state["n_epochs"] = self.n_epochs_
        state["converged"] = self.converged_
        return state, dict(self.module_.state_dict())

    def _restore(self, state, tensors):
        self._restore_base(state)
        self._restore_extra(state)
        self._validate_params()
        module = self._build_checked()
        load_module_state(module, tensors, "model.safetensors")
        self.device_ = resolve_device(self.device)
        self.module_ = module.to(self.device_).eval()
        self.history_ = state.get("history", [])
        self.best_epoch_ = state.get("best_epoch")
        self.n_epochs_ = self.n_iter_ = state.get("n_epochs", len(self.history_))
        self.stopped_early_ = False
        self.converged_ = state.get("converged", True)

    def _restore_extra(self, state) -> None:
        pass

    def __getstate__(self):
        # Pickling (which scikit-learn's clone checks use) keeps tensors on the CPU.
        state = self.__dict__.copy()
        state.pop("device_", None)
        return state
