"""Splitting a data set: its own train/valid/test where the source has them, else a held-out share."""

from __future__ import annotations

import numpy as np

from ..memmap import RowSubset, ShardedArray, on_disk
from .core import Dataset

__all__ = ["subset", "split_data", "describe_split"]


def _rows(arr, sel):
    """Rows of ``arr``: a slice stays a view; an index copies rows in memory, and of data on disk
    (np.memmap, ShardedArray) is a :class:`~latentlab.memmap.RowSubset`, which stays on disk."""
    if arr is None:
        return None
    if on_disk(arr) and not isinstance(sel, slice):
        return RowSubset(arr, sel)
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


def _n_test(ds: Dataset, test_fraction: float) -> int:
    """Rows held out at random for the test split (0: none), when the source has no test split."""
    if ds.splits.get("test") is not None or not test_fraction > 0:
        return 0
    n = len(ds)
    n_test = int(round(n * test_fraction))
    return 0 if n - n_test < 2 or n_test < 1 else n_test


def split_data(ds: Dataset, test_fraction: float = 0.1, seed: int = 0) -> dict[str, Dataset | None]:
    """{"all", "train", "valid", "test"} -> Dataset (or None): the source's own splits where it
    has them, else a held-out ``test_fraction`` of rows drawn at random (``seed``), whatever the
    storage: for data on disk the splits are index arrays into it
    (:class:`~latentlab.memmap.RowSubset`), read by positioned reads as they are used, so a file
    sorted by class still gives a test split of every class, and nothing is loaded.
    :func:`describe_split` says in words which it was."""
    whole = subset(ds, slice(None))
    out: dict[str, Dataset | None] = {"all": whole, "train": whole, "valid": ds.splits.get("valid"), "test": ds.splits.get("test")}
    n_test = _n_test(ds, test_fraction)
    if n_test:
        perm = np.random.default_rng(seed).permutation(len(ds))
        out["train"], out["test"] = subset(ds, np.sort(perm[n_test:])), subset(ds, np.sort(perm[:n_test]))
    return out


def describe_split(ds: Dataset, test_fraction: float = 0.1, seed: int = 0) -> str:
    """How :func:`split_data` splits ``ds``, in one line (printed by the commands, kept in run.json).

    Example
    -------
    >>> from latentlab.datasets import load_digits
    >>> describe_split(load_digits(), 0.1, 0)
    'random rows held out: 180 test (test fraction 0.1, split seed 0), 1617 train'
    """
    own = [s for s in ("valid", "test") if ds.splits.get(s) is not None]
    if own:
        sizes = ", ".join(f"{len(ds.splits[s])} {s}" for s in own)
        return f"the source's own split: {len(ds)} train, {sizes}"
    n_test = _n_test(ds, test_fraction)
    if n_test:
        return (f"random rows held out: {n_test} test (test fraction {test_fraction:g}, split seed {seed}), "
                f"{len(ds) - n_test} train")
    why = "test fraction 0" if not test_fraction > 0 else f"too few rows for a test fraction of {test_fraction:g}"
    return f"no test split ({why}): all {len(ds)} rows train"
