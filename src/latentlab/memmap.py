"""Data on disk with a bounded resident set: batches by positioned reads, passes through the map.

Pages of a memory-mapped file that the process has touched count in its resident set (RSS) until
the kernel reclaims them, and on Linux a read through the map maps the whole page-cache folio
around it (often far more than the row asked for). The kernel can drop clean file pages under
memory pressure, but a memory limit or a monitor sees the RSS first. So:

- Batches (shuffled rows, or in-order slices for evaluation) are read by :class:`RowReader` with
  ``os.preadv`` from the file behind the np.memmap: nothing is mapped, and the RSS does not grow
  with the data.
- Whole-data passes through the map (scaling statistics, finiteness checks, PCA's covariance,
  see ``latentlab.validation.iter_chunks``) call a :class:`Releaser`, which drops the mapped
  data pages (``madvise(MADV_DONTNEED)``; they stay in the page cache and on disk) whenever the
  process's resident file-backed memory has grown by more than ``$LATENTLAB_MMAP_RESIDENT_MB``
  MiB (default 256) since the last release.
"""

from __future__ import annotations

import mmap
import os
import re
import weakref
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import DataError

__all__ = ["ShardedArray", "open_npy", "Releaser", "RowReader", "maps_of", "resident_file_bytes", "resident_budget"]

BUDGET_ENV = "LATENTLAB_MMAP_RESIDENT_MB"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_budget() -> int:
    """Bytes of mapped data allowed to stay resident between releases."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return 256 << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb > 0:
        from .errors import ConfigError

        raise ConfigError(f"{BUDGET_ENV}={raw!r} is not a number of MiB > 0; set it to e.g. 256.")
    return int(mb * (1 << 20))


def resident_file_bytes() -> int | None:
    """Resident file-backed (shared) memory of this process, from /proc/self/statm; None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[2]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def maps_of(a: Any) -> list[mmap.mmap]:
    """The read-only or shared mmaps behind a np.memmap, or behind each shard of a ShardedArray.

    Private copy-on-write maps (mode "c") are left out: dropping their pages would lose writes.
    """
    if hasattr(a, "shards"):
        return [m for s in a.shards for m in maps_of(s)]
    m = getattr(a, "_mmap", None)
    if m is None or getattr(a, "mode", "r") == "c" or not hasattr(m, "madvise"):
        return []
    return [m]


class Releaser:
    """Call after reading from ``arrays``: drops their mapped pages once the budget is exceeded."""

    def __init__(self, arrays: Iterable[Any], budget: int | None = None):
        self.maps = [m for a in arrays for m in maps_of(a)]
        self.budget = resident_budget() if budget is None else budget
        self.releases = 0
        self._base = resident_file_bytes() if self.maps else None

    def __call__(self) -> None:
        if self._base is None:
            return
        now = resident_file_bytes()
        if now is None or now - self._base <= self.budget:
            return
        advice = getattr(mmap, "MADV_DONTNEED", None)
        for m in self.maps:
            try:
                m.madvise(advice)
            except (OSError, ValueError, TypeError):  # a closed map, or a platform without the advice
                pass
        self.releases += 1
        self._base = resident_file_bytes() or self._base  # what is left is not our data


class RowReader:
    """Rows of memory-mapped arrays read with positioned reads (``os.preadv``) from their files.

    Reading a shuffled batch through the map faults in, and leaves mapped, the whole page-cache
    folio around every row: on Linux 6.x, 1,024 random rows of 784 bytes mapped 695 MiB of a
    784 MiB file, so an epoch makes the whole file resident. ``pread`` copies the same bytes out
    of the page cache (and the file) into the batch without mapping anything, so the resident set
    does not grow with the data. The array stays the user's np.memmap; this is how its rows are
    fetched. Runs of consecutive rows are read with one call.

    Use :meth:`of`, which returns None when the array cannot be read this way (not a file map,
    a private copy-on-write map, rows not contiguous, no ``os.preadv``); then read through the map.
    """

    _MAX_OPEN = 128

    def __init__(self, parts, shape, dtype):
        # parts: (first row, number of rows, file name, file position of the first row)
        self.parts = parts
        self.starts = np.array([p[0] for p in parts] + [shape[0]], dtype=np.int64)
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(self.dtype.itemsize * int(np.prod(self.shape[1:])))
        self._fds: dict[int, int] = {}
        self._finalizer = weakref.finalize(self, _close_all, self._fds)

    @classmethod
    def of(cls, a) -> "RowReader | None":
        if not hasattr(os, "preadv"):
            return None
        shards = getattr(a, "shards", None)
        parts, row0 = [], 0
        for s in shards if shards is not None else [a]:
            pos = _file_position(s)
            if pos is None:
                return None
            parts.append((row0, s.shape[0], s.filename, pos))
            row0 += s.shape[0]
        return cls(parts, a.shape, a.dtype)

    def _fd(self, k: int) -> int:
        fd = self._fds.get(k)
        if fd is None:
            if len(self._fds) >= self._MAX_OPEN:
                _close_all(self._fds)
            fd = self._fds[k] = os.open(self.parts[k][2], os.O_RDONLY)
        return fd

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` (sorted ascending), as a new array of shape (len(rows), *shape[1:])."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        if not len(rows):
            return out
        rows = np.asarray(rows, dtype=np.int64)
        if rows[0] < 0 or rows[-1] >= self.shape[0]:
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        part = np.searchsorted(self.starts, rows, side="right") - 1
        cut = np.flatnonzero((np.diff(rows) != 1) | (np.diff(part) != 0)) + 1
        buf = memoryview(out.reshape(-1).view(np.uint8))
        rb = self.row_bytes
        for lo, hi in zip(np.r_[0, cut].tolist(), np.r_[cut, len(rows)].tolist()):
            k = int(part[lo])
            first, _, name, pos0 = self.parts[k]
            view, where = buf[lo * rb : hi * rb], pos0 + (int(rows[lo]) - first) * rb
            while len(view):
                got = os.preadv(self._fd(k), [view], where)
                if got <= 0:
                    raise DataError(f"{name} ended before row {int(rows[lo])}: the file is truncated; write it again.")
                view, where = view[got:], where + got
        return out


def _close_all(fds: dict) -> None:
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


def _file_position(a) -> int | None:
    """File position of row 0 of a C-ordered np.memmap (a view of one included), or None."""
    m, name = getattr(a, "_mmap", None), getattr(a, "filename", None)
    if m is None or name is None or getattr(a, "mode", "r") == "c" or not a.flags.c_contiguous:
        return None
    try:
        base = np.frombuffer(m, dtype=np.uint8).ctypes.data  # where the map starts in memory
    except (ValueError, TypeError):  # a closed map
        return None
    # np.memmap maps from the offset rounded down to the allocation granularity; views keep .offset.
    start = a.offset - a.offset % mmap.ALLOCATIONGRANULARITY
    return int(a.ctypes.data - base + start)


class ShardedArray:
    """Several arrays (e.g. memory-mapped ``.npy`` shards) seen as one along axis 0."""

    def __init__(self, shards: Sequence[np.ndarray]):
        if not shards:
            raise DataError("ShardedArray needs at least one shard; pass a list of arrays.")
        tail = shards[0].shape[1:]
        for s in shards:
            if s.shape[1:] != tail:
                raise DataError(
                    f"shards have different example shapes {tail} and {s.shape[1:]}; every shard "
                    "must hold examples of one shape."
                )
            if s.dtype != shards[0].dtype:
                raise DataError(
                    f"shards have different dtypes {shards[0].dtype} and {s.dtype}; save every "
                    "shard with one dtype."
                )
        self.shards = list(shards)
        self.offsets = np.cumsum([0] + [s.shape[0] for s in shards])
        self.shape = (int(self.offsets[-1]), *tail)
        self.dtype = shards[0].dtype
        self.ndim = len(self.shape)

    def __len__(self):
        return self.shape[0]

    def take(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        for k in np.unique(which):
            sel = which == k
            out[sel] = self.shards[k][idx[sel] - self.offsets[k]]
        return out

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.take(np.arange(*key.indices(self.shape[0])))
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([key]))[0]
        return self.take(np.asarray(key))

    def __array__(self, dtype=None, copy=None):
        a = self.take(np.arange(self.shape[0]))
        return a.astype(dtype) if dtype is not None else a

    def reshape(self, n: int, *shape: int) -> "ShardedArray":
        """The same rows with examples of another shape (no data is read)."""
        if n != self.shape[0]:
            raise ValueError(f"cannot change the number of rows of a ShardedArray ({self.shape[0]} -> {n})")
        return ShardedArray([s.reshape(s.shape[0], *shape) for s in self.shards])


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def open_npy(path: str | os.PathLike) -> np.ndarray | ShardedArray:
    """Open a ``.npy`` file memory-mapped, or a folder of ``.npy`` shards as one dataset.

    Nothing is read but the headers: batches are gathered from the map later. Shards are
    concatenated along axis 0 in natural name order (``part2`` before ``part10``) and must share
    the example shape and dtype. A Fortran-ordered file is mapped too, but row access to it is
    slow; re-save it with ``np.save(path, np.ascontiguousarray(a))``.

    Parameters
    ----------
    path : a ``.npy`` file or a directory holding ``*.npy`` files

    Returns
    -------
    np.memmap of shape (n, *example_shape), or ShardedArray for a folder.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> for k in range(3):
    ...     np.save(os.path.join(d, f"part{k}.npy"), np.full((4, 2), k, np.uint8))
    >>> X = open_npy(d)
    >>> X.shape, X.dtype, X[[0, 11]].tolist()
    ((12, 2), dtype('uint8'), [[0, 0], [2, 2]])
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.npy"), key=_natural_key)
        if not files:
            raise DataError(f"{p} is a folder without .npy files; put the shards there as .npy files.")
        arrays = [open_npy(f) for f in files]
        return arrays[0] if len(arrays) == 1 else ShardedArray(arrays)
    if not p.exists():
        raise DataError(f"{p} does not exist; give a .npy file or a folder of .npy shards.")
    from .io import check_regular_file

    check_regular_file(p)
    try:
        a = np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # a damaged header makes NumPy's parser raise many types (SyntaxError, TokenError, ...)
        raise DataError(
            f"{p} is not a readable .npy file ({exc}); write it with np.save, or check that it is "
            "complete."
        ) from None
    if not isinstance(a, np.ndarray) or a.dtype == object:
        raise DataError(f"{p} does not hold a numeric array; write one with np.save.")
    if a.ndim < 2:
        raise DataError(
            f"{p} holds an array of shape {a.shape}; expected (n_samples, n_features) or images "
            "(n, H, W) / (n, C, H, W)."
        )
    return a
