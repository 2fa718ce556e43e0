"""The Dataset record and the embedded default data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Dataset", "load_digits"]


@dataclass
class Dataset:
    """Data with what latentlab needs to know about it.

    Attributes
    ----------
    data : ndarray of shape (n, n_features), float32
        Flat examples (images flattened row-major).
    target : ndarray of shape (n,) or None
        Labels, when the source has them.
    images : ndarray of shape (n, H, W) or (n, C, H, W), or None
        The same examples as images, for image sources (a view of ``data``).
    kind : {"image", "binary", "tabular"}
        Images in [0, 1], binary images (0/1), or a table (standardized by the command line).
    name : str
    feature_names : list of str or None
    splits : dict of name -> Dataset
        Predefined splits ("valid", "test") where the source has them; ``data`` is then "train".
    """

    data: np.ndarray
    target: np.ndarray | None = None
    images: np.ndarray | None = None
    kind: str = "tabular"
    name: str = ""
    feature_names: list[str] | None = None
    splits: dict[str, "Dataset"] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        return None if self.images is None else tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.data)


def load_digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), scaled to [0, 1].

    Embedded in scikit-learn, so it needs no download. ``data`` is (1797, 64) float32,
    ``images`` (1797, 8, 8), ``target`` the digit.

    Example
    -------
    >>> from latentlab.datasets import load_digits
    >>> d = load_digits()
    >>> d.data.shape, d.images.shape, float(d.data.max())
    ((1797, 64), (1797, 8, 8), 1.0)
    """
    from sklearn.datasets import load_digits as _sk_digits

    raw = _sk_digits()
    data = np.ascontiguousarray(raw.data / 16.0, dtype=np.float32)
    return Dataset(
        data=data,
        target=raw.target.astype(np.int64),
        images=data.reshape(-1, 8, 8),
        kind="image",
        name="digits",
    )
