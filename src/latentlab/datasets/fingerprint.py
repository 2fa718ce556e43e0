"""A data set's fingerprint: its size, shape and a hash of its contents, cheap even for big
memory maps, so that a run can tell when the data it was split from has changed.

The hash covers every byte of data up to 32 MiB; above that, 257 rows spread evenly over the
data (the first and the last included), with the shape, the dtype and the labels. Rows appended,
removed or reordered, a file replaced by another, labels changed: each changes the fingerprint.

Example
-------
>>> from latentlab.datasets import load_digits
>>> fp = fingerprint(load_digits())
>>> fp["rows"], fp["shape"]
(1797, [1797, 64])
>>> describe_change(fp, {**fp, "rows": 1800, "shape": [1800, 64]})
'it had 1797 rows and has 1800 now'
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .core import Dataset

__all__ = ["fingerprint", "describe_change", "FULL_HASH_BYTES"]

#: Data up to this size is hashed whole; larger data by a sample of its rows.
FULL_HASH_BYTES = 32 << 20
_SAMPLE_ROWS = 257


def _hash_array(h, a) -> bool:
    """Feed array ``a`` (n, ...) to ``h``: whole when small, else evenly spaced rows. Returns
    whether it was sampled."""
    if a is None:
        h.update(b"none")
        return False
    shape = tuple(int(s) for s in a.shape)
    h.update(repr((shape, str(np.dtype(a.dtype)))).encode())
    n = shape[0] if shape else 0
    nbytes = int(np.prod(shape, dtype=np.float64)) * np.dtype(a.dtype).itemsize if shape else 0
    if n == 0:
        return False
    if nbytes <= FULL_HASH_BYTES:
        step = max(1, (1 << 20) // max(1, nbytes // n))  # about 1 MiB a block
        for start in range(0, n, step):
            h.update(np.ascontiguousarray(a[start : start + step]).tobytes())
        return False
    for i in np.unique(np.linspace(0, n - 1, _SAMPLE_ROWS).round().astype(np.int64)):
        h.update(np.ascontiguousarray(a[int(i)]).tobytes())
    return True


def fingerprint(ds: Dataset) -> dict[str, Any]:
    """The fingerprint of ``ds`` and of its own splits: ``rows`` (all splits together), ``shape``
    (of the main part), ``sha256`` and whether it was ``sampled``."""
    h = hashlib.sha256()
    parts = [("data", ds)] + [(name, ds.splits[name]) for name in sorted(ds.splits)]
    sampled = False
    for name, part in parts:
        h.update(name.encode())
        sampled |= _hash_array(h, part.data)
        h.update(b"target")
        if part.target is not None and np.asarray(part.target).dtype.kind in "US":
            h.update("\x00".join(map(str, np.asarray(part.target).tolist())).encode("utf-8"))
        else:
            sampled |= _hash_array(h, None if part.target is None else np.asarray(part.target))
    return {
        "rows": int(sum(len(p) for _, p in parts)),
        "shape": [int(s) for s in ds.data.shape],
        "splits": {name: len(p) for name, p in parts},
        "sha256": h.hexdigest(),
        "sampled": bool(sampled),
    }


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """What changed between two fingerprints, in words; None if nothing did."""
    if old.get("rows") != new.get("rows"):
        return f"it had {old.get('rows')} rows and has {new.get('rows')} now"
    if list(old.get("shape") or []) != list(new.get("shape") or []):
        return f"its examples had shape {tuple(old.get('shape') or ())[1:]} and have {tuple(new.get('shape') or ())[1:]} now"
    if old.get("splits") not in (None, new.get("splits")):
        return f"its splits had {old.get('splits')} rows and have {new.get('splits')} now"
    if old.get("sha256") != new.get("sha256"):
        return f"it has the same {new.get('rows')} rows, but their values (or labels) are not the same"
    return None
