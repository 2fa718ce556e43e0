"""What every latentlab estimator shares: input checks, shapes, scaling, save and load.

Estimators follow scikit-learn: the constructor stores settings, ``fit`` does the work and
returns ``self``, fitted state ends in ``_``; they work in a Pipeline, with ``clone`` and in
``GridSearchCV`` (``score`` is higher-is-better, in nats per example wherever a density exists).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin

from ..validation import as_array, check_choice, check_int, iter_chunks
from .._version import __version__
from ..errors import CheckpointError, ConfigError, DataError, DataTypeError, InvalidParameterError, NotFittedError, UnknownParameterError
from ..io import atomic_write_bytes, atomic_write_text, fsync_dir, jsonable, tensor_bytes
from ..tables import TableCodec, is_frame, is_table, stack_rows
from ..nn.spec import network_record
from .samplers import LatentSampling

__all__ = ["LatentModel", "SCALES", "CAPABILITIES", "MODEL_FORMAT", "PENDING_WEIGHTS"]

#: The version of the saved-model format (config.json + model.safetensors) this latentlab writes and reads.
MODEL_FORMAT = 1
#: The weights of a save in progress (see :meth:`LatentModel.save`).
PENDING_WEIGHTS = ".model.safetensors.pending"
SCALES = (None, "standard", "minmax")

#: What a fitted model can be measured by (``model.capabilities``); the evaluation asks, so a model
#: without a likelihood gets the metrics that apply to it and no crash.
CAPABILITIES = {
    "reconstruction_nll": "reconstruction_nll(X, y): -log p(x | decoded code) under the model's likelihood",
    "exact_likelihood": "score_samples(X) is the exact log p(x) (probabilistic PCA)",
    "posterior": "module_.encode(x, cond) is a distribution q(z|x) with a mean (VAE family)",
    "importance_weights": "module_.log_importance_weights(x, k, ...): importance-sampled log p(x), the ELBO",
    "closed_form_kl": "the prior is N(0, I): KL(q(z|x) || p(z)) per dimension in closed form",
    "prior": "sample() draws from a prior the model was trained with (not just N(0, I) decoded)",
    "conditional": "transform, inverse_transform, sample... take the condition y",
}


def _unknown_parameter(cls_name: str, names: list[str], given: list[str], exc: Exception,
                       refused: dict[str, str] | None = None) -> UnknownParameterError:
    unknown = [k for k in given if k not in names]
    if unknown:
        k = unknown[0]
        if refused and k in refused:
            return UnknownParameterError(f"{cls_name} takes no {k}=: {refused[k]}")
        close = difflib.get_close_matches(k, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return UnknownParameterError(
            f"{cls_name} has no parameter {k!r}; {hint}its parameters are {', '.join(names)}."
        )
    return UnknownParameterError(
        f"{cls_name}: {exc}; pass settings by keyword, e.g. {cls_name}(latent_dim=2), from: {', '.join(names)}."
    )


def _checked_init(init):
    """``init`` that turns an unknown or misplaced argument into :class:`UnknownParameterError`.

    Python's own TypeError names the keyword but not the ones that exist; this names them, with
    the closest match. The signature is kept (``inspect.signature`` follows ``__wrapped__``), so
    scikit-learn's ``get_params`` and the command line's options are unchanged.
    """
    sig = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            sig.bind(self, *args, **kwargs)
        except TypeError as exc:
            names = [p for p in sig.parameters if p != "self"]
            raise _unknown_parameter(type(self).__name__, names, list(kwargs), exc, type(self).refused_params) from None
        init(self, *args, **kwargs)

    __init__._latentlab_checked = True
    return __init__


def _check_feature_names(est, X, reset: bool) -> None:
    """scikit-learn's own check of a DataFrame's column names (``validate_data(reset=...)``): sets
    ``feature_names_in_`` at fit (removes it for input without names) and afterwards raises
    scikit-learn's error for reordered, unseen or missing columns (as a :class:`DataError`)."""
    try:
        from sklearn.utils.validation import validate_data
    except ImportError:  # scikit-learn < 1.6
        def check():
            est._check_feature_names(X, reset=reset)
    else:
        def check():
            validate_data(est, X, reset=reset, skip_check_array=True, ensure_2d=False)
    try:
        check()
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _frame_values(est, X):
    """A DataFrame of numbers as an array, by scikit-learn's ``check_array`` (which knows pandas'
    nullable and extension dtypes); NaN, shapes and sizes are left to latentlab's own checks."""
    from sklearn.utils.validation import check_array

    finite = "ensure_all_finite" if "ensure_all_finite" in inspect.signature(check_array).parameters else "force_all_finite"
    try:
        return check_array(X, dtype="numeric", ensure_2d=False, allow_nd=True, ensure_min_samples=0,
                           ensure_min_features=0, estimator=est, input_name="X", **{finite: False})
    except TypeError as exc:
        raise DataTypeError(str(exc)) from None
    except ValueError as exc:
        raise DataError(str(exc)) from None


#: Methods whose output size is a parameter: name -> (the parameter, the output's width).
_BOUNDED = {
    "sample": ("n", lambda m: m._n_model_features),
    "sample_latent": ("n", lambda m: m.code_size),
    "interpolate": ("steps", lambda m: m._n_model_features),
}


def _bounded(fn, name: str):
    """``fn`` (a method of the family) that refuses an output over the limit before allocating it
    (:func:`latentlab.limits.check_output`), and an out-of-range seed; in every subclass."""
    param, width = _BOUNDED[name]
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def method(self, *args, **kwargs):
        from ..limits import check_output, check_seed

        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError:
            return fn(self, *args, **kwargs)  # Python's own error for a wrong call
        size = bound.arguments.get(param)
        if "seed" in bound.arguments:
            check_seed(bound.arguments["seed"])
        if hasattr(self, "n_features_in_") and isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0:
            check_output(int(size), width(self), f"{type(self).__name__}.{name}", param)
        return fn(self, *args, **kwargs)

    method._latentlab_bounded = True
    return method


class LatentModel(LatentSampling, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Base class: maps X of shape (n, *input_shape) to codes (n, code_size) and back.

    One method signature for the whole family (scikit-learn's ``_BasePCA`` habit), so that
    callers never ask which class they hold:

    - ``fit(X, y=None)``; ``transform(X, y=None)``; ``inverse_transform(Z, y=None)``;
      ``reconstruct(X, y=None)``;
    - ``sample(n, y=None, *, seed=None, sampler="prior", return_latent=False)``, through
      ``sample_latent``;
    - ``interpolate(x_start, x_end, steps=10, y=None, *, y_path=None)``;
    - ``code_size`` (the width of the codes) and ``capabilities`` (what the model can be
      measured by, see :data:`CAPABILITIES`).

    ``y`` is the condition of a conditional model (``conditional = True``); the others ignore it.
    Subclasses implement ``fit``, ``transform``, ``inverse_transform``, and ``_state()`` /
    ``_restore()`` for persistence; ``sample_latent`` where they have a prior other than N(0, I).
    """

    _tuple_params: ClassVar[tuple[str, ...]] = ()
    _fitted_attr: ClassVar[str] = "input_shape_"
    #: Whether transform, inverse_transform, sample, ... take a condition y.
    conditional: ClassVar[bool] = False
    #: scikit-learn's parameter constraints (:mod:`latentlab.models.constraints`), by setting.
    _parameter_constraints: ClassVar[dict] = {}
    #: The name it is registered under (``latentlab fit NAME``); set by ``models.registry.register``.
    model_name: ClassVar[str | None] = None
    #: The parameters that may hold a network or likelihood of your own (see :mod:`latentlab.models.own`).
    network_params: ClassVar[tuple[str, ...]] = ()
    #: Parameters of the family this class does not take, with the reason (named in the error).
    refused_params: ClassVar[dict[str, str]] = {}

    def _store_params(self, params: dict[str, Any]) -> None:
        """Store the constructor's arguments as attributes of the same names (scikit-learn's rule:
        ``__init__`` only stores its settings). Call as ``self._store_params(locals())``."""
        for k, v in params.items():
            if k not in ("self", "__class__"):
                setattr(self, k, v)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_latentlab_checked", False):
            cls.__init__ = _checked_init(init)
        for name in _BOUNDED:
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_latentlab_bounded", False):
                setattr(cls, name, _bounded(fn, name))

    def _validate_params(self) -> None:
        """Check the settings against ``_parameter_constraints`` (:mod:`latentlab.models.constraints`)
        with scikit-learn's own machinery: a violation is an
        :class:`~latentlab.errors.InvalidParameterError` (a ConfigError, and scikit-learn's
        InvalidParameterError) with scikit-learn's message. Subclasses add latentlab's own checks
        (choices, layer sizes, combinations) after this one."""
        from sklearn.utils._param_validation import InvalidParameterError as SkInvalid
        from sklearn.utils._param_validation import validate_parameter_constraints

        try:
            validate_parameter_constraints(self._parameter_constraints, self.get_params(deep=False),
                                           caller_name=type(self).__name__)
        except SkInvalid as exc:
            raise InvalidParameterError(str(exc)) from None

    def set_params(self, **params):
        """Set parameters (scikit-learn's ``set_params``); an unknown name is an
        :class:`~latentlab.errors.UnknownParameterError` (a ValueError, as scikit-learn raises)."""
        names = self._get_param_names()
        given = [k.split("__", 1)[0] for k in params]
        if any(k not in names for k in given):
            raise _unknown_parameter(type(self).__name__, names, given, None, self.refused_params)
        return super().set_params(**params)

    # ------------------------------------------------------------------ data in and out
    def _check_X(self, X, *, reset: bool, min_samples: int = 1) -> np.ndarray:
        """Checked array of shape (n, *input_shape_), not yet scaled; records shapes and fits
        the scaling when ``reset``. Memory-mapped input stays memory-mapped.

        A DataFrame's column names go through scikit-learn's own check (``feature_names_in_``, and
        its error for reordered or missing columns) and its values through ``check_array``; a
        mixed-type table (text columns) is encoded by its :class:`~latentlab.tables.TableCodec`
        (``table_``), fitted here at ``reset``. The rest (NaN with their count and first row,
        data on disk, images (n, H, W)) is latentlab's own :func:`~latentlab.validation.as_array`.
        """
        if reset:
            self.table_ = TableCodec.fit(X) if is_table(X) else None
        elif not hasattr(self, "input_shape_"):
            self._check_is_fitted()
        if getattr(self, "table_", None) is not None:
            return self._check_table(X, reset=reset, min_samples=min_samples)
        if reset or is_frame(X):
            _check_feature_names(self, X, reset)
        if is_frame(X):
            X = _frame_values(self, X)
        dtype = self._dtype_for(X)
        A = as_array(X, dtype=dtype, min_samples=min_samples)
        if reset:
            self.input_shape_ = tuple(int(s) for s in A.shape[1:])
            self.n_features_in_ = int(np.prod(self.input_shape_))
            check_choice(self.scale, "scale", SCALES)
            self._fit_scaler(A)
        else:
            if not hasattr(self, "input_shape_"):
                self._check_is_fitted()
            if tuple(A.shape[1:]) != self.input_shape_:
                n_feat = int(np.prod(A.shape[1:]))
                if A.ndim == 2 and n_feat != self.n_features_in_:
                    raise DataError(
                        f"X has {n_feat} features, but {type(self).__name__} is expecting "
                        f"{self.n_features_in_} features as input; pass data shaped like the "
                        f"training data, (n, {', '.join(map(str, self.input_shape_))})."
                    )
                if n_feat == self.n_features_in_:
                    A = A.reshape(A.shape[0], *self.input_shape_)
                else:
                    raise DataError(
                        f"X has examples of shape {tuple(A.shape[1:])}, but {type(self).__name__} "
                        f"was fitted on examples of shape {self.input_shape_}; pass data shaped "
                        "like the training data."
                    )
        return A

    def _check_table(self, X, *, reset: bool, min_samples: int) -> np.ndarray:
        """A mixed-type table (or its encoded matrix, which latentlab's own functions pass on)
        -> the encoded matrix (n, table_.width), float32, not yet scaled."""
        codec = self.table_
        if is_table(X) or is_frame(X):
            if is_frame(X):
                _check_feature_names(self, X, reset)
            elif reset:
                self.feature_names_in_ = np.asarray(codec.names, dtype=object)
            A = as_array(codec.encode(X), dtype=np.float32, min_samples=min_samples)
        else:
            A = as_array(X, dtype=np.float32, min_samples=min_samples)
            if A.ndim != 2 or A.shape[1] != codec.width:
                raise DataError(
                    f"X has shape {A.shape}, but {type(self).__name__} was fitted on a table of {len(codec.columns)} "
                    f"columns ({', '.join(codec.names)}), which encode into {codec.width} features; pass a table "
                    f"(a DataFrame or structured array) with those columns, or its encoded matrix (n, {codec.width})."
                )
        if reset:
            self.input_shape_ = (codec.width,)
            self.n_features_in_ = len(codec.columns)
            check_choice(self.scale, "scale", SCALES)
            self._fit_table_scaler(A)
        return A

    def _fit_table_scaler(self, A: np.ndarray) -> None:
        """The scaling of a table's numeric columns: standardized (min-max with ``scale="minmax"``),
        whatever ``scale`` says otherwise, as the networks need them on one scale; one-hot and
        0/1 features are left as they are."""
        self.scale_offset_ = self.scale_factor_ = None
        num = self.table_.numeric_features()
        if not len(num):
            return
        B = np.asarray(A[:, num], dtype=np.float64)
        offset, factor = np.zeros(A.shape[1], np.float32), np.ones(A.shape[1], np.float32)
        if self.scale == "minmax":
            lo, hi = B.min(0), B.max(0)
            offset[num], factor[num] = lo, np.where(hi > lo, hi - lo, 1.0)
        else:
            std = B.std(0)
            offset[num], factor[num] = B.mean(0), np.where(std > 1e-12, std, 1.0)
        self.scale_offset_, self.scale_factor_ = offset, factor

    @property
    def _n_model_features(self) -> int:
        """Features of one example as the model computes on them (a table's encoded width)."""
        return int(np.prod(self.input_shape_))

    def _dtype_for(self, X):
        return np.float32

    def _fit_scaler(self, A: np.ndarray, chunk: int | None = None) -> None:
        """Per-feature offset and factor, computed in chunks (A may be memory-mapped)."""
        self.scale_offset_ = self.scale_factor_ = None
        if self.scale is None:
            return
        n = A.shape[0]
        s1 = s2 = lo = hi = None
        for _, b in iter_chunks(A, chunk, dtype=np.float64):
            b = b.reshape(b.shape[0], -1)
            if s1 is None:
                s1, s2, lo, hi = b.sum(0), (b * b).sum(0), b.min(0), b.max(0)
            else:
                s1 += b.sum(0)
                s2 += (b * b).sum(0)
                lo, hi = np.minimum(lo, b.min(0)), np.maximum(hi, b.max(0))
        if self.scale == "standard":
            mean = s1 / n
            std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
            self.scale_offset_ = mean.astype(np.float32)
            self.scale_factor_ = np.where(std > 1e-12, std, 1.0).astype(np.float32)
        else:
            self.scale_offset_ = lo.astype(np.float32)
            self.scale_factor_ = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)

    def _apply_scaler(self, A: np.ndarray) -> np.ndarray:
        if getattr(self, "scale_offset_", None) is None:
            return A
        flat = (A.reshape(A.shape[0], -1) - self.scale_offset_) / self.scale_factor_
        return flat.reshape(A.shape).astype(A.dtype, copy=False)

    def _undo_scaler(self, A: np.ndarray) -> np.ndarray:
        if getattr(self, "scale_offset_", None) is None:
            return A
        flat = A.reshape(A.shape[0], -1) * self.scale_factor_ + self.scale_offset_
        return flat.reshape(A.shape).astype(A.dtype, copy=False)

    def _output(self, A: np.ndarray) -> np.ndarray:
        """Model-space data (n, ...) -> user space: unscaled, shaped (n, *input_shape_); for a
        model fitted on a mixed-type table, the table (a DataFrame if it was one, else a
        structured array) with its columns, types and category names."""
        A = np.asarray(A).reshape(A.shape[0], *self.input_shape_)
        A = self._undo_scaler(A)
        codec = getattr(self, "table_", None)
        return A if codec is None else codec.decode(A)

    def _check_Z(self, Z) -> np.ndarray:
        self._check_is_fitted()
        Zc = as_array(Z, name="Z", dtype=self._dtype_for(Z))
        if Zc.ndim != 2 or Zc.shape[1] != self._n_features_out:
            raise DataError(
                f"Z has shape {Zc.shape}; {type(self).__name__} decodes codes of shape "
                f"(n, {self._n_features_out})."
            )
        return Zc

    def _check_is_fitted(self) -> None:
        if not hasattr(self, self._fitted_attr):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(X) first, or "
                "load a saved model with latentlab.load(path)."
            )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, self._fitted_attr)

    def get_feature_names_out(self, input_features=None):
        """Names of the code's columns: the class name and an index (``vae0``, ``vae1``, ...), as
        ``set_output(transform="pandas")`` labels them. Raises NotFittedError before ``fit``."""
        self._check_is_fitted()
        return super().get_feature_names_out(input_features)

    @property
    def _n_features_out(self) -> int:  # scikit-learn's name, for get_feature_names_out
        return int(self.latent_dim)

    @property
    def code_size(self) -> int:
        """The width of the codes ``transform`` returns (latent_dim; for two stochastic layers,
        latent_dim + latent_dim2)."""
        return self._n_features_out

    @property
    def capabilities(self) -> frozenset[str]:
        """What this fitted model can be measured by: keys of :data:`CAPABILITIES`."""
        return frozenset()

    # ------------------------------------------------------------------ the family's methods
    def reconstruct(self, X, y=None) -> np.ndarray:
        """``inverse_transform(transform(X, y), y)``: shaped and scaled like X."""
        return self.inverse_transform(self.transform(X, y), y)

    def sample_latent(self, n: int, y=None, *, seed=None, sampler: str = "prior") -> np.ndarray:
        """``n`` latent points (n, code_size) to decode.

        ``sampler="prior"``: the model's prior; this base (an autoencoder, which has none) draws
        N(0, I), which it was never trained to map to data: that is where a plain autoencoder
        breaks down. ``"gmm"`` / ``"gaussian"``: a Gaussian mixture (components by BIC) / one
        Gaussian fitted to the training codes (:meth:`fit_sampler`; fitted on first use from the
        codes of up to 5000 training rows kept at fit).
        """
        self._check_is_fitted()
        n = check_int(n, "n")
        self._check_sampler(sampler)
        if sampler != "prior":
            return self.latent_density(sampler).sample(n, seed=seed)
        return self._prior_latent(n, seed)

    def _prior_latent(self, n: int, seed) -> np.ndarray:
        return np.random.default_rng(seed).standard_normal((n, self.code_size)).astype(np.float32)

    def sample(self, n: int, y=None, *, seed=None, sampler: str = "prior", return_latent: bool = False):
        """Generate ``n`` examples, (n, *input_shape): decoded latent points from ``sampler``
        (see :meth:`sample_latent`). Same seed, same samples. With ``return_latent`` also the
        latent points, (n, code_size)."""
        Z = self.sample_latent(n, y, seed=seed, sampler=sampler)
        X = self.inverse_transform(Z, y)
        return (X, Z) if return_latent else X

    def interpolate(self, x_start, x_end, steps: int = 10, y=None, *, y_path=None) -> np.ndarray:
        """Decode the straight line between the codes of two examples in ``steps`` points, ends
        included: (steps, *input_shape). ``y`` (conditional models): the two examples' conditions;
        ``y_path``: one condition to decode the whole line under."""
        steps = check_int(steps, "steps", low=2)
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        if getattr(self, "table_", None) is not None and not isinstance(x_start, np.ndarray) or is_table(x_start):
            pair = stack_rows(x_start, x_end)  # rows of a table (1-row DataFrames, records)
        else:
            pair = np.stack([np.asarray(x_start), np.asarray(x_end)])
        za, zb = np.asarray(self.transform(pair, y))  # (a DataFrame under set_output(transform="pandas"))
        Z = ((1 - t) * za[None, :] + t * zb[None, :]).astype(np.float32)
        return self.inverse_transform(Z, y_path)

    def torch_modules(self, *, logvar: bool = False):
        """The encoder and the decoder as standalone torch modules, in the user's units:
        ``(encoder, decoder)`` (:class:`latentlab.nn.graphs.DataEncoder`, ``DataDecoder``), float32,
        on the CPU, in eval mode, with copies of the weights.

        ``encoder(x)``: x (B, *input_shape) as ``transform`` takes it -> the codes ``transform``
        returns, (B, code_size) (posterior means for the VAE family; with ``logvar`` the pair
        (means, log-variances)). ``decoder(z)``: -> ``inverse_transform(z)``, (B, *input_shape).
        A conditional model's modules take the condition as a second argument, (B, m) floats
        (one-hot rows in the order of ``classes_`` for class labels). The data scaling is folded in.

        Example
        -------
        >>> import numpy as np, torch
        >>> from latentlab import PCA
        >>> X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
        >>> enc, dec = PCA(latent_dim=2).fit(X).torch_modules()
        >>> dec(enc(torch.from_numpy(X))).shape
        torch.Size([50, 4])
        """
        raise ConfigError(
            f"{type(self).__name__} has no torch form (torch_modules); export and explore work for PCA, "
            "the autoencoder and the VAE family."
        )

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def _restore(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _base_state(self) -> dict[str, Any]:
        names = getattr(self, "feature_names_in_", None)
        codec = getattr(self, "table_", None)
        return {
            "input_shape": list(self.input_shape_),
            "n_features_in": self.n_features_in_,
            "scale_offset": None if self.scale_offset_ is None else self.scale_offset_.tolist(),
            "scale_factor": None if self.scale_factor_ is None else self.scale_factor_.tolist(),
            "feature_names_in": None if names is None else [str(n) for n in names],
            "table": None if codec is None else codec.to_dict(),
        }

    def _restore_base(self, state: dict[str, Any]) -> None:
        self.input_shape_ = tuple(int(s) for s in state["input_shape"])
        self.n_features_in_ = int(state["n_features_in"])
        so, sf = state.get("scale_offset"), state.get("scale_factor")
        self.scale_offset_ = None if so is None else np.asarray(so, dtype=np.float32)
        self.scale_factor_ = None if sf is None else np.asarray(sf, dtype=np.float32)
        self.table_ = None if state.get("table") is None else TableCodec.from_dict(state["table"])
        if state.get("feature_names_in") is not None:
            self.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
        F = self._n_model_features
        expected = F if self.table_ is None else self.table_.width
        columns = F if self.table_ is None else len(self.table_.columns)
        if F < 1 or min(self.input_shape_, default=0) < 1 or F != expected or self.n_features_in_ != columns:
            raise CheckpointError(
                f"the saved input shape {self.input_shape_} does not give the saved {self.n_features_in_} features; "
                "config.json is damaged: save the model again."
            )
        for name, v in (("scale_offset", self.scale_offset_), ("scale_factor", self.scale_factor_)):
            if v is not None and v.shape != (F,):
                raise CheckpointError(
                    f"the saved {name} has shape {v.shape}, but the model has {F} features; "
                    "config.json is damaged: save the model again."
                )
            if v is not None and not (np.isfinite(v).all() and (name == "scale_offset" or (v > 0).all())):
                bad = v[~np.isfinite(v) | (v <= 0)] if name == "scale_factor" else v[~np.isfinite(v)]
                need = "finite numbers > 0" if name == "scale_factor" else "finite numbers"
                raise CheckpointError(
                    f"the saved {name} holds {float(bad[0])!r} ({len(bad)} bad value(s)); it must hold {need} (the data's "
                    "scale), else every code is non-finite: config.json is damaged: save the model again."
                )

    def _params_record(self) -> dict[str, Any]:
        """The settings as JSON values; a network of your own as its record (:mod:`latentlab.nn.spec`)."""
        return {k: jsonable(network_record(v)) for k, v in self.get_params(deep=False).items()}

    def save(self, path: str | Path) -> Path:
        """Save to a directory: ``model.safetensors`` (weights) and ``config.json`` (settings,
        data scaling, history, library version), as a unit: the weights go to
        ``.model.safetensors.pending`` first, then ``config.json`` (which names their checksum) is
        written, then the weights are renamed into place, each step atomic. A crash at any point
        leaves a loadable model, the old one or the new (:func:`latentlab.load` reads the pending
        weights when the checksum says they are the model's). Loading never unpickles. Under
        torchrun only rank 0 writes. Returns the directory.

        Networks of your own are recorded, not pickled: a module instance by its class (hand it
        back at load: ``latentlab.load(path, encoder=..., decoder=...)``), a
        :class:`~latentlab.nn.ModuleSpec` as its ``package.module:Name`` and JSON arguments (rebuilt
        by ``latentlab.load(path, trust_code=True)``); their weights are in model.safetensors.
        """
        from ..training.distributed import is_main_process

        self._check_is_fitted()
        path = Path(path)
        if not is_main_process():
            return path
        state, tensors = self._state()
        state, tensors = dict(state), dict(tensors)
        self._latent_state(state, tensors)
        path.mkdir(parents=True, exist_ok=True)
        weights = tensor_bytes(tensors)
        digest = hashlib.sha256(weights).hexdigest()
        pending = path / PENDING_WEIGHTS
        atomic_write_bytes(pending, weights)
        params = self._params_record()
        config = {
            "format": "latentlab-model",
            "format_version": MODEL_FORMAT,
            "latentlab_version": __version__,
            "class": type(self).__name__,
            "params": params,
            "state": state,
            "weights_sha256": digest,
        }
        atomic_write_text(path / "config.json", json.dumps(config, indent=2, allow_nan=True))
        os.replace(pending, path / "model.safetensors")
        fsync_dir(path)
        return path


for _name in _BOUNDED:  # the base class's own methods (subclasses' are wrapped by __init_subclass__)
    setattr(LatentModel, _name, _bounded(LatentModel.__dict__[_name], _name))
