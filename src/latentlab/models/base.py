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
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin

from .._validation import as_array, check_choice, iter_chunks
from .._version import __version__
from ..errors import CheckpointError, DataError, NotFittedError, UnknownParameterError
from ..io import atomic_write_text, load_tensors, read_json, save_tensors

__all__ = ["LatentModel", "load", "register", "MODEL_FORMAT"]

MODEL_FORMAT = 1
_REGISTRY: dict[str, type] = {}
SCALES = (None, "standard", "minmax")


def register(cls):
    """Make an estimator class loadable by :func:`load` under its class name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, Path):
        return str(v)
    return v


def _unknown_parameter(cls_name: str, names: list[str], given: list[str], exc: Exception) -> UnknownParameterError:
    unknown = [k for k in given if k not in names]
    if unknown:
        k = unknown[0]
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
            raise _unknown_parameter(type(self).__name__, names, list(kwargs), exc) from None
        init(self, *args, **kwargs)

    __init__._latentlab_checked = True
    return __init__


class LatentModel(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Base class: maps X of shape (n, *input_shape) to codes (n, latent_dim) and back.

    Subclasses implement ``_fit(A, y, **kw)`` on checked, scaled data of shape (n, *input_shape),
    ``_encode(A)``, ``_decode(Z)``, and ``_state()`` / ``_restore()`` for persistence.
    """

    _tuple_params: ClassVar[tuple[str, ...]] = ()
    _fitted_attr: ClassVar[str] = "input_shape_"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_latentlab_checked", False):
            cls.__init__ = _checked_init(init)

    def set_params(self, **params):
        """Set parameters (scikit-learn's ``set_params``); an unknown name is an
        :class:`~latentlab.errors.UnknownParameterError` (a ValueError, as scikit-learn raises)."""
        names = self._get_param_names()
        given = [k.split("__", 1)[0] for k in params]
        if any(k not in names for k in given):
            raise _unknown_parameter(type(self).__name__, names, given, None)
        return super().set_params(**params)

    # ------------------------------------------------------------------ data in and out
    def _check_X(self, X, *, reset: bool, min_samples: int = 1) -> np.ndarray:
        """Checked array of shape (n, *input_shape_), not yet scaled; records shapes and fits
        the scaling when ``reset``. Memory-mapped input stays memory-mapped."""
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
        """Model-space data (n, ...) -> user space: unscaled, shaped (n, *input_shape_)."""
        A = np.asarray(A).reshape(A.shape[0], *self.input_shape_)
        return self._undo_scaler(A)

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

    @property
    def _n_features_out(self) -> int:
        return int(self.latent_dim)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def _restore(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _base_state(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape_),
            "n_features_in": self.n_features_in_,
            "scale_offset": None if self.scale_offset_ is None else self.scale_offset_.tolist(),
            "scale_factor": None if self.scale_factor_ is None else self.scale_factor_.tolist(),
        }

    def _restore_base(self, state: dict[str, Any]) -> None:
        self.input_shape_ = tuple(int(s) for s in state["input_shape"])
        self.n_features_in_ = int(state["n_features_in"])
        so, sf = state.get("scale_offset"), state.get("scale_factor")
        self.scale_offset_ = None if so is None else np.asarray(so, dtype=np.float32)
        self.scale_factor_ = None if sf is None else np.asarray(sf, dtype=np.float32)
        F = self.n_features_in_
        if F < 1 or min(self.input_shape_, default=0) < 1 or int(np.prod(self.input_shape_)) != F:
            raise CheckpointError(
                f"the saved input shape {self.input_shape_} does not give the saved {F} features; "
                "config.json is damaged: save the model again."
            )
        for name, v in (("scale_offset", self.scale_offset_), ("scale_factor", self.scale_factor_)):
            if v is not None and v.shape != (F,):
                raise CheckpointError(
                    f"the saved {name} has shape {v.shape}, but the model has {F} features; "
                    "config.json is damaged: save the model again."
                )

    def save(self, path: str | Path) -> Path:
        """Save to a directory: ``model.safetensors`` (weights) and ``config.json`` (settings,
        data scaling, history, library version). Each file is written atomically; loading never
        unpickles. Under torchrun only rank 0 writes. Returns the directory.
        """
        from ..training.distributed import is_main_process

        self._check_is_fitted()
        path = Path(path)
        if not is_main_process():
            return path
        state, tensors = self._state()
        path.mkdir(parents=True, exist_ok=True)
        save_tensors(path / "model.safetensors", tensors)
        digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
        params = {k: _jsonable(v) for k, v in self.get_params(deep=False).items()}
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
        return path


def load(path: str | Path) -> LatentModel:
    """Load an estimator saved with ``save(path)``; never unpickles.

    Raises :class:`CheckpointError` with the reason and the fix for a missing directory, a
    corrupt or mismatched file, or a model saved by an incompatible latentlab version.

    Example
    -------
    >>> from latentlab import PCA, load
    >>> import numpy as np, tempfile
    >>> X = np.random.default_rng(0).normal(size=(50, 5))
    >>> d = PCA(latent_dim=2).fit(X).save(tempfile.mkdtemp())
    >>> load(d).transform(X).shape
    (50, 2)
    """
    path = Path(path)
    if path.is_file() and path.name in ("config.json", "model.safetensors"):
        path = path.parent
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; pass the directory given to save().")
    config = read_json(path / "config.json")
    if not isinstance(config, dict) or config.get("format") != "latentlab-model":
        raise CheckpointError(f"{path / 'config.json'} is not a latentlab model configuration.")
    if config.get("format_version") != MODEL_FORMAT:
        raise CheckpointError(
            f"{path} was saved by latentlab {config.get('latentlab_version')} in model format "
            f"{config.get('format_version')}; this latentlab ({__version__}) reads format "
            f"{MODEL_FORMAT}. Load it with the matching latentlab version, or retrain."
        )
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing; the model directory is incomplete.")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if config.get("weights_sha256") not in (None, digest):
        raise CheckpointError(
            f"{weights} does not match {path / 'config.json'} (checksum differs): the two files "
            "come from different saves or one is damaged. Save the model again."
        )
    name = config.get("class")
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CheckpointError(
            f"{path} holds a model of class {name!r}, which this latentlab does not know; known: "
            f"{sorted(_REGISTRY)}."
        )
    params = config.get("params") or {}
    if not isinstance(params, dict) or not isinstance(config.get("state"), dict):
        raise CheckpointError(f"{path / 'config.json'} has no settings or state of a model; the file is damaged: save the model again.")
    try:
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items()}
        est = cls(**params)
    except TypeError as exc:
        raise CheckpointError(f"{path}: the saved settings do not fit {name} ({exc}); save the model again with this latentlab.") from None
    tensors, _ = load_tensors(weights)
    try:
        est._restore(config["state"], tensors)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, OverflowError) as exc:
        raise CheckpointError(
            f"{path}: the saved state does not fit a {name} with these settings ({type(exc).__name__}: {exc}); "
            "config.json or model.safetensors is damaged: save the model again."
        ) from None
    return est
