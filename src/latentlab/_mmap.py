"""A bounded resident set for memory-mapped data.

Pages of a memory-mapped file that the process has touched count in its resident set (RSS) until
the kernel reclaims them, and on Linux a single read maps a whole page-cache folio (often tens of
KiB around the row asked for). An epoch of shuffled batches over a mapped file would so end with
the whole file resident. The kernel can drop clean file pages under memory pressure, but a
memory limit (a cgroup, a batch scheduler) sees the RSS first. :class:`Releaser` therefore
watches the process's resident file-backed memory and, once it has grown by more than a budget
since the last release, tells the kernel that the mapped data pages are not needed
(``madvise(MADV_DONTNEED)``; the data stays in the page cache and on disk, a later read maps it
again). The budget is ``$LATENTLAB_MMAP_RESIDENT_MB`` MiB (default 256).
"""

from __future__ import annotations

import mmap
import os
from typing import Any, Iterable

__all__ = ["Releaser", "maps_of", "resident_file_bytes", "resident_budget"]

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
