"""What the evaluation functions share: the network behind a model, the scaling's Jacobian, checks."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..validation import as_array

__all__ = ["log_jacobian", "module_of", "standard_error", "data_array", "flat_input", "n_examples"]


def module_of(model, what: str):
    """The fitted network of an estimator that has importance weights (a VAE or one of its
    variants), or an error that says which models ``what`` needs."""
    model._check_is_fitted()
    if "importance_weights" not in model.capabilities:
        raise ConfigError(
            f"{what} needs a model with a posterior q(z|x) and a density p(x) (a VAE or one of its "
            f"variants); {type(model).__name__} has none. For PCA use evaluate() or "
            "model.score_samples (its probabilistic-PCA likelihood is exact)."
        )
    return model.module_


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
