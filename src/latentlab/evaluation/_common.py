"""What the evaluation functions share: model-ready batches, the scaling's Jacobian, checks."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._validation import as_array
from ..errors import ConfigError, DataError

__all__ = ["model_batches", "log_jacobian", "module_of", "accepts_cond", "check_cond"]


def module_of(model, what: str):
    """The fitted network of an estimator, or an error that says which models ``what`` needs."""
    model._check_is_fitted()
    module = getattr(model, "module_", None)
    if module is None or not hasattr(module, "log_importance_weights"):
        raise ConfigError(
            f"{what} needs a model with a posterior q(z|x) and a density p(x) (a VAE or one of its "
            f"variants); {type(model).__name__} has none. For PCA use evaluate() or "
            "model.score_samples (its probabilistic-PCA likelihood is exact)."
        )
    return module


def accepts_cond(module) -> bool:
    """Whether the module's ``log_importance_weights`` takes a condition (a conditional model)."""
    import inspect

    try:
        return "cond" in inspect.signature(module.log_importance_weights).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


def check_cond(cond, n: int):
    """The condition as an array with one row per example, or None."""
    if cond is None:
        return None
    c = cond.detach().cpu().numpy() if isinstance(cond, torch.Tensor) else np.asarray(cond)
    if c.ndim == 0 or c.shape[0] != n:
        raise DataError(
            f"the condition (y) has {0 if c.ndim == 0 else c.shape[0]} row(s) but X has {n}; pass "
            "one label or side input per example."
        )
    return c


def model_batches(model, X, batch_size: int, cond=None):
    """Batches of X as the model's networks take them: checked, scaled, shaped, on its device.

    Yields ``(start, x, c)``: the index of the batch's first example, x (B, *S) float32, and
    the condition's rows (or None).
    """
    A = model._check_X(X, reset=False)
    if cond is not None:
        # A conditional estimator turns labels into what its networks take (class indices...).
        to_cond = getattr(model, "_cond_array", None)
        cond = to_cond(cond, A.shape[0]) if to_cond is not None else check_cond(cond, A.shape[0])
    arrays = [A] if cond is None else [A, cond]
    data = model._data(arrays, model._device())
    start = 0
    for batch in data.slices(batch_size):
        yield start, batch[0], (batch[1] if len(batch) > 1 else None)
        start += len(batch[0])


def n_examples(model, X) -> int:
    return int(model._check_X(X, reset=False).shape[0])


def log_jacobian(model) -> float:
    """log |d scaled / d x|, summed over features, of the estimator's input scaling.

    Densities are computed on the scaled data (x - offset) / factor; adding this term gives the
    density of the data in its own units, so models fitted with different scalings compare.
    """
    factor = getattr(model, "scale_factor_", None)
    if factor is None:
        return 0.0
    return -float(np.sum(np.log(np.asarray(factor, dtype=np.float64))))


def data_array(model, X) -> np.ndarray:
    """X checked against the model, flat (n, F) float64, in the data's own units."""
    A = model._check_X(X, reset=False)
    return np.asarray(A, dtype=np.float64).reshape(A.shape[0], -1)


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of ``values`` (n,), with the n - 1 denominator."""
    n = len(values)
    return float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def flat_input(X, name: str = "X") -> np.ndarray:
    A = as_array(X, name=name, dtype=np.float64)
    return A.reshape(A.shape[0], -1)
