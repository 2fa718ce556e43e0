"""Batches gathered by index from arrays in memory, on the device, or memory-mapped on disk.

No DataLoader: for arrays that are already tensors, a batch is one ``index_select`` (plus a copy
to the device), which is what makes the training loop fast on small models. Memory-mapped NumPy
arrays (``np.load(path, mmap_mode="r")``, :func:`open_npy`, or a folder of shards) are read batch
by batch, in their stored dtype (uint8 stays uint8 on disk), and converted on the device, so data
larger than memory trains with a bounded resident set (see :mod:`latentlab.memmap`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..memmap import Releaser, RowReader, RowSubset, ShardedArray, on_disk, open_npy

__all__ = ["ArrayData", "ShardedArray", "open_npy", "placement", "epoch_permutation"]


def placement(nbytes: int, device: torch.device) -> str:
    """Where an in-memory array of ``nbytes`` lives for training on ``device``.

    Returns
    -------
    "device" : copied to the GPU once, when it takes less than a quarter of the GPU's free memory
        (the rest is left to the model, its activations and the optimiser);
    "pinned" : in page-locked host memory, each batch copied to the GPU asynchronously;
    "host" : ordinary host memory (training on the CPU).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return "device" if nbytes < free // 4 else "pinned"
    if device.type == "mps":
        # Apple GPUs share memory with the CPU: a copy on the device is one less per batch.
        limit = torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
        return "device" if nbytes < limit // 4 else "host"
    return "host"


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The example order of one epoch: a function of (seed, epoch) alone, so resuming reproduces it."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch * 7_919 + 12_345) % (2**63))
    return torch.randperm(n, generator=g)


def _read_rows(a, idx: np.ndarray, reader: RowReader | None) -> np.ndarray:
    """a[idx] for a memory-mapped array, read in file order and returned in the order asked."""
    order = np.argsort(idx, kind="stable")
    rows = idx[order]
    if reader is not None:
        b = reader.read(rows)
    elif len(rows) and np.all(np.diff(rows) == 1):  # a contiguous range: one slice
        b = np.asarray(a[rows[0] : rows[-1] + 1])
    else:
        b = a.take(rows) if isinstance(a, (ShardedArray, RowSubset)) else np.take(a, rows, axis=0)
    out = np.empty((len(idx), *a.shape[1:]), dtype=a.dtype)
    out[order] = b  # the same batch, row for row, as from memory: training does not depend on storage
    return out


def _is_mapped(a) -> bool:
    return on_disk(a)


class ArrayData:
    """One or more aligned arrays (x, and optionally a condition y) gathered into device batches.

    Parameters
    ----------
    arrays : sequence of np.ndarray / torch.Tensor / np.memmap / ShardedArray / RowSubset
        Same length along axis 0. In-memory arrays become tensors (on the device itself when it is
        a GPU and they fit in a quarter of its free memory, else in pinned host memory);
        memory-mapped arrays stay on disk and are read per batch.
    device : torch.device
    dtype : torch.dtype
        Floating dtype of the batches (integer arrays such as class labels stay int64).
    index : 1-D integer array or None
        The rows of ``arrays`` that make up this dataset (a train or validation split without a
        copy); None uses every row.
    offset, scale : array-like or None
        An affine map applied to each gathered x batch on the device: (x - offset) / scale
        (the estimator's feature scaling), so that stored data is never copied to be scaled.
    shape : tuple or None
        Shape of one x example as the model wants it (e.g. flat (F,) or (C, H, W)).
    """

    def __init__(
        self,
        arrays: Sequence,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        *,
        index=None,
        offset=None,
        scale=None,
        shape: tuple[int, ...] | None = None,
    ):
        self.device = torch.device(device)
        self.dtype = dtype
        self.index = None if index is None else torch.as_tensor(np.asarray(index), dtype=torch.int64)
        self.n = len(arrays[0]) if self.index is None else len(self.index)
        self.shape = tuple(shape) if shape is not None else None
        self.offset = None if offset is None else torch.as_tensor(np.asarray(offset), dtype=dtype, device=self.device)
        self.scale = None if scale is None else torch.as_tensor(np.asarray(scale), dtype=dtype, device=self.device)
        self.arrays = []
        self.mapped = []
        self.placements = []
        for a in arrays:
            if len(a) != len(arrays[0]):
                raise ValueError("all arrays must have the same number of examples")
            if _is_mapped(a):
                self.arrays.append(a)
                self.mapped.append(True)
                self.placements.append("mapped")
                continue
            t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
            t = t.contiguous()
            if t.is_floating_point() and t.dtype != dtype:
                t = t.to(dtype)
            where = placement(t.numel() * t.element_size(), self.device)
            if where == "device":
                t = t.to(self.device)
            elif where == "pinned":
                t = t.pin_memory()
            self.arrays.append(t)
            self.mapped.append(False)
            self.placements.append(where)
        # Batches of mapped arrays are read with pread (see latentlab.memmap.RowReader), which
        # keeps them out of the resident set; where that is impossible, through the map, whose
        # pages are then released as reading goes.
        self._readers = [RowReader.of(a) if m else None for a, m in zip(self.arrays, self.mapped)]
        self._release = Releaser([a for a, m, r in zip(self.arrays, self.mapped, self._readers) if m and r is None])
        self._pin = self.device.type == "cuda"

    def __len__(self) -> int:
        return self.n

    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The batch at indices ``idx`` (a CPU int64 tensor), as tensors on the device."""
        if self.index is not None:
            idx = self.index.index_select(0, idx)
        out = []
        for a, mapped, reader in zip(self.arrays, self.mapped, self._readers):
            if mapped:
                b = _read_rows(a, idx.numpy(), reader)
                t = torch.from_numpy(b)  # stored dtype: uint8 moves as uint8
                if self._pin:  # page-locked staging (cached by torch), so the copy overlaps compute
                    t = t.pin_memory()
                out.append(t.to(self.device, non_blocking=True))
            else:
                src_idx = idx.to(a.device) if a.device != idx.device else idx
                t = a.index_select(0, src_idx)
                if t.device != self.device:
                    t = t.to(self.device, non_blocking=True)
                out.append(t)
        if self._release.maps:
            self._release()
        x = out[0]
        if x.dtype != self.dtype:
            x = x.to(self.dtype)
        if self.offset is not None:
            x = ((x.reshape(x.shape[0], -1) - self.offset) / self.scale).reshape(x.shape)
        if self.shape is not None and tuple(x.shape[1:]) != self.shape:
            x = x.reshape(x.shape[0], *self.shape)
        out[0] = x
        return tuple(out)

    def slices(self, batch_size: int, rank: int = 0, world: int = 1):
        """In-order batches for evaluation, this rank's share (every world-th batch)."""
        for k, start in enumerate(range(0, self.n, batch_size)):
            if k % world == rank:
                yield self.gather(torch.arange(start, min(start + batch_size, self.n)))
