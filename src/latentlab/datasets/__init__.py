"""Data sources: the embedded digits, binarized MNIST, MNIST IDX files, arrays, tables and images."""

from __future__ import annotations

from .core import Dataset, load_digits

__all__ = ["Dataset", "load_digits"]
