"""The Frechet distance between two sets of feature vectors (the distance behind FID)."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..errors import DataError

__all__ = ["frechet_distance", "gaussian_frechet_distance"]


def _psd_sqrt(S: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix, by eigh."""
    w, V = scipy.linalg.eigh(S, check_finite=False)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def gaussian_frechet_distance(mu1, S1, mu2, S2) -> float:
    """Squared 2-Wasserstein (Frechet) distance between N(mu1, S1) and N(mu2, S2).

    d^2 = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1^(1/2) S2 S1^(1/2))^(1/2).

    The cross term is computed from the eigenvalues of the symmetric PSD matrix
    S1^(1/2) S2 S1^(1/2) (whose square root has the same trace as (S1 S2)^(1/2)), so it is real
    by construction: no complex parts to discard, no failure of ``sqrtm`` on singular
    covariances. Rounding can make the result a tiny negative number; it is clipped at 0.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    S1, S2 = np.asarray(S1, np.float64), np.asarray(S2, np.float64)
    r = _psd_sqrt(S1)
    M = r @ S2 @ r
    M = 0.5 * (M + M.T)
    cross = np.sqrt(np.clip(scipy.linalg.eigvalsh(M, check_finite=False), 0.0, None)).sum()
    d = mu1 - mu2
    return float(max(d @ d + np.trace(S1) + np.trace(S2) - 2.0 * cross, 0.0))


def frechet_distance(A, B) -> float:
    """Frechet distance between two sets of feature vectors, each summarised by a Gaussian.

    Fits the mean and covariance (n - 1 denominator) of each set and returns
    |mu_A - mu_B|^2 + tr(S_A + S_B - 2 (S_A^(1/2) S_B S_A^(1/2))^(1/2)), in squared feature
    units (FID is this in Inception features). It is 0 for identical sets, symmetric, and grows
    with any difference in mean or covariance. Like FID it is biased upwards for small sets:
    compare values computed with the same numbers of vectors.

    Parameters
    ----------
    A : array-like of shape (n_A, d)
    B : array-like of shape (n_B, d)

    Returns
    -------
    float >= 0

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(500, 3))
    >>> frechet_distance(A, A) < 1e-9, frechet_distance(A, A + 1.0) > 2.9
    (True, True)
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    for name, M in (("A", A), ("B", B)):
        if M.ndim != 2:
            raise DataError(f"{name} must be a 2-D array of feature vectors (n, d); it has shape {M.shape}.")
        if M.shape[0] < 2:
            raise DataError(f"{name} has {M.shape[0]} vector(s); a covariance needs at least 2.")
        if not np.all(np.isfinite(M)):
            raise DataError(f"{name} contains NaN or infinite values; the feature vectors must be finite.")
    if A.shape[1] != B.shape[1]:
        raise DataError(
            f"A has vectors of size {A.shape[1]} and B of size {B.shape[1]}; compare features from the same space."
        )
    return gaussian_frechet_distance(A.mean(0), np.cov(A, rowvar=False).reshape(A.shape[1], A.shape[1]),
                                     B.mean(0), np.cov(B, rowvar=False).reshape(B.shape[1], B.shape[1]))
