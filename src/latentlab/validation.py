"""Checks at the boundary: data and settings are validated once, with messages that name the fix."""

from __future__ import annotations

import numbers
from typing import Any, Iterable

import numpy as np
import torch

from .errors import ConfigError, DataError, DataTypeError
from .memmap import on_disk


def as_array(X: Any, *, name: str = "X", dtype=np.float32, min_samples: int = 1) -> np.ndarray:
    """Turn array-like data into a C-contiguous NumPy array of ``dtype`` and check it.

    Accepts NumPy arrays, torch tensors, nested lists, and data on disk: a C-ordered ``np.memmap``
    (``np.load(path, mmap_mode="r")``), a :class:`~latentlab.training.ShardedArray` or a
    :class:`~latentlab.memmap.RowSubset` of either (a random split of it) is returned
    as it is, whatever its numeric dtype (e.g. uint8), so data larger than memory is never loaded
    whole: the estimators read and convert it batch by batch. Raises :class:`DataError` for
    non-numeric, empty, too-small or non-finite data.
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # scipy.sparse, without importing it
        raise DataTypeError(
            f"{name} is a sparse matrix, and sparse input is not supported; convert it with "
            f"{name}.toarray() (the networks and PCA here work on dense arrays)."
        )
    if on_disk(X):
        arr = X
    else:
        try:
            arr = np.asarray(X)
        except (ValueError, TypeError) as exc:
            raise DataError(
                f"{name} could not be read as a numeric array ({exc}); pass a NumPy array, a torch "
                "tensor, or a list of equal-length rows."
            ) from None
    if arr.dtype == object:
        try:
            arr = arr.astype(dtype)
        except (TypeError, ValueError) as exc:
            raise DataTypeError(
                f"{name} holds values that are not numbers ({exc}); convert every value to a "
                "number first (a table with text columns fits as a pandas DataFrame or a NumPy structured array)."
            ) from None
    if np.iscomplexobj(arr):
        raise DataTypeError(f"Complex data not supported: {name} has dtype {arr.dtype}; pass real numbers.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataTypeError(
            f"{name} has dtype {arr.dtype}, which is not numeric; convert it to numbers first "
            "(a table with text columns fits as a pandas DataFrame or a NumPy structured array)."
        )
    if arr.ndim < 2:
        raise DataError(
            f"{name} has shape {arr.shape}; expected 2-D (n_samples, n_features) or images "
            "(n, H, W) / (n, C, H, W). Reshape your data: x.reshape(1, -1) for a single example, "
            "x.reshape(-1, 1) for a single feature."
        )
    if arr.ndim > 4:
        raise DataError(f"{name} has {arr.ndim} dimensions; at most 4 (n, C, H, W) are supported.")
    if arr.shape[0] < min_samples:
        what = "is empty (0 samples)" if arr.shape[0] == 0 else f"has {arr.shape[0]} sample(s)"
        raise DataError(f"{name} {what}; at least {min_samples} are needed here: pass {min_samples} or more examples (rows).")
    if int(np.prod(arr.shape[1:])) == 0:
        raise DataError(
            f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required; "
            "check that the columns were read."
        )
    if not on_disk(arr) or isinstance(arr, np.memmap) and not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=dtype)
    check_finite(arr, name=name)
    return arr


def chunk_rows(arr, target_bytes: int = 1 << 23) -> int:
    """Rows per chunk so that one chunk of ``arr`` in float64 takes about ``target_bytes`` (8 MiB).

    Whole-data passes (scaling statistics, finiteness, PCA's covariance) walk arrays in such
    chunks, so that a memory-mapped array larger than memory is never resident at once.
    """
    row = 8 * max(1, int(np.prod(arr.shape[1:])))
    return max(1, target_bytes // row)


def iter_chunks(A, chunk: int | None = None, dtype=None):
    """Yield ``(start, block)`` over the rows of A, ``block = A[start : start + chunk]`` as an array.

    ``chunk`` defaults to :func:`chunk_rows`. When A is memory-mapped (np.memmap or ShardedArray),
    its pages are released as the walk goes (see :mod:`latentlab.memmap`), so one pass over data
    larger than memory keeps a bounded resident set.

    Example
    -------
    >>> import numpy as np
    >>> [(s, b.shape) for s, b in iter_chunks(np.zeros((5, 2)), chunk=2)]
    [(0, (2, 2)), (2, (2, 2)), (4, (1, 2))]
    """
    from .memmap import Releaser

    chunk = chunk or chunk_rows(A)
    release = Releaser([A])
    for start in range(0, A.shape[0], chunk):
        yield start, np.asarray(A[start : start + chunk], dtype=dtype)
        release()


def check_finite(arr: np.ndarray, *, name: str = "X", chunk: int | None = None) -> None:
    """Raise :class:`DataError` with the count and first row of NaN or infinite values."""
    if not np.issubdtype(arr.dtype, np.floating):
        return
    bad_total, first = 0, None
    for start, block in iter_chunks(arr, chunk):
        block = block.reshape(block.shape[0], -1)
        bad = ~np.isfinite(block)
        n = int(bad.sum())
        if n and first is None:
            first = start + int(np.argmax(bad.any(axis=1)))
        bad_total += n
    if bad_total:
        raise DataError(
            f"{name} contains {bad_total} NaN or infinite value(s), the first in row {first}; "
            "remove or impute them before fitting."
        )


def check_int(value: Any, name: str, *, low: int = 1, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}.")
    return int(value)


def check_float(
    value: Any,
    name: str,
    *,
    low: float = 0.0,
    high: float = float("inf"),
    low_inclusive: bool = False,
    high_inclusive: bool = True,
    allow_none: bool = False,
) -> float | None:
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = (value >= low if low_inclusive else value > low) and (
            value <= high if high_inclusive else value < high
        )
    if not ok:
        lo = "[" if low_inclusive else "("
        hi = "]" if high_inclusive else ")"
        raise ConfigError(f"{name} must be a number in {lo}{low}, {high}{hi}, got {value!r}.")
    return float(value)


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return value


def check_hidden(hidden: Any, name: str = "hidden") -> tuple[int, ...]:
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    try:
        out = tuple(hidden)
    except TypeError:
        raise ConfigError(f"{name} must be a tuple of layer sizes such as (256, 128), got {hidden!r}.") from None
    for h in out:
        check_int(h, f"each size in {name}")
    return tuple(int(h) for h in out)
