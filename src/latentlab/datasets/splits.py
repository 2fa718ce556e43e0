"""Splitting a data set: its own train/valid/test where the source has them, else a held-out share."""

from __future__ import annotations

import numpy as np

from ..memmap import ShardedArray
from .core import Dataset

__all__ = ["subset", "split_data"]


def _rows(arr, sel):
    """Rows of ``arr``: a slice stays a view (and a memory map stays on disk), an index copies."""
    if arr is None:
        return None
    if isinstance(arr, ShardedArray) and isinstance(sel, slice):
        start, stop, _ = sel.indices(len(arr))
        parts = []
        for k, s in enumerate(arr.shards):
            lo, hi = int(arr.offsets[k]), int(arr.offsets[k + 1])
            a, b = max(start, lo), min(stop, hi)
            if a < b:
                parts.append(s[a - lo : b - lo])
        return ShardedArray(parts)
    if isinstance(arr, ShardedArray):
        return arr.take(np.asarray(sel))
    return arr[sel]


def subset(ds: Dataset, sel) -> Dataset:
    """The rows ``sel`` (a slice or an index array) of a Dataset, without its splits."""
    return Dataset(
        data=_rows(ds.data, sel),
        target=_rows(ds.target, sel),
        images=_rows(ds.images, sel),
        kind=ds.kind,
        name=ds.name,
        feature_names=ds.feature_names,
        info=dict(ds.info),
    )


def split_data(ds: Dataset, test_fraction: float = 0.1, seed: int = 0) -> dict[str, Dataset | None]:
    """{"all", "train", "valid", "test"} -> Dataset (or None): the source's own splits where it
    has them, else a held-out ``test_fraction`` (random rows for in-memory data, the last rows
    for memory-mapped data)."""
    whole = subset(ds, slice(None))
    out: dict[str, Dataset | None] = {"all": whole, "train": whole, "valid": ds.splits.get("valid"), "test": ds.splits.get("test")}
    if out["test"] is None and test_fraction > 0:
        n = len(ds)
        n_test = int(round(n * test_fraction))
        if n - n_test < 2 or n_test < 1:
            return out
        if isinstance(ds.data, (np.memmap, ShardedArray)):
            out["train"], out["test"] = subset(ds, slice(0, n - n_test)), subset(ds, slice(n - n_test, n))
        else:
            perm = np.random.default_rng(seed).permutation(n)
            out["train"], out["test"] = subset(ds, np.sort(perm[n_test:])), subset(ds, np.sort(perm[:n_test]))
    return out
