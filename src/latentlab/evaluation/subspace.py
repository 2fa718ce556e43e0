"""How close two linear decoders are: the principal angles between their spans."""

from __future__ import annotations

import numpy as np

__all__ = ["principal_angle"]


def principal_angle(a, b) -> float:
    """The largest principal angle, in degrees, between the spans of two linear decoders
    (``scipy.linalg.subspace_angles``): 0 when they decode to the same subspace.

    The span is read from the decoders themselves, column j being D(e_j) - D(0), so it works
    for PCA and for a linear autoencoder alike.
    """
    from scipy.linalg import subspace_angles

    def span(m):
        k = int(m.latent_dim)
        Z = np.vstack([np.zeros((1, k)), np.eye(k)]).astype(np.float32)
        D = np.asarray(m.inverse_transform(Z), dtype=np.float64).reshape(k + 1, -1)
        return (D[1:] - D[0]).T  # (F, k)

    return float(np.degrees(subspace_angles(span(a), span(b)).max()))
