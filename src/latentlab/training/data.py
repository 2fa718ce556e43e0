"""Batches gathered by index from arrays in memory, on the device, or memory-mapped on disk.

No DataLoader: for arrays that are already tensors, a batch is one ``index_select`` (plus a copy
to the device), which is what makes the training loop fast on small models. Memory-mapped NumPy
arrays (``np.load(path, mmap_mode="r")``, or a list of shards) are read batch by batch, so data
larger than memory trains with a bounded resident set.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["ArrayData", "ShardedArray", "epoch_permutation"]


class ShardedArray:
    """Several arrays (e.g. memory-mapped ``.npy`` shards) seen as one along axis 0."""

    def __init__(self, shards: Sequence[np.ndarray]):
        if not shards:
            raise ValueError("ShardedArray needs at least one shard")
        tail = shards[0].shape[1:]
        for s in shards:
            if s.shape[1:] != tail:
                from ..errors import DataError

                raise DataError(
                    f"shards have different example shapes {tail} and {s.shape[1:]}; every shard "
                    "must hold examples of one shape."
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


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The example order of one epoch: a function of (seed, epoch) alone, so resuming reproduces it."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch * 7_919 + 12_345) % (2**63))
    return torch.randperm(n, generator=g)


def _is_mapped(a) -> bool:
    return isinstance(a, (np.memmap, ShardedArray))


class ArrayData:
    """One or more aligned arrays (x, and optionally a condition y) gathered into device batches.

    Parameters
    ----------
    arrays : sequence of np.ndarray / torch.Tensor / np.memmap / ShardedArray
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
        for a in arrays:
            if len(a) != len(arrays[0]):
                raise ValueError("all arrays must have the same number of examples")
            if _is_mapped(a):
                self.arrays.append(a)
                self.mapped.append(True)
                continue
            t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
            t = t.contiguous()
            if t.is_floating_point() and t.dtype != dtype:
                t = t.to(dtype)
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                if t.numel() * t.element_size() < free // 4:
                    t = t.to(self.device)
                else:
                    t = t.pin_memory()
            self.arrays.append(t)
            self.mapped.append(False)

    def __len__(self) -> int:
        return self.n

    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The batch at indices ``idx`` (a CPU int64 tensor), as tensors on the device."""
        if self.index is not None:
            idx = self.index.index_select(0, idx)
        out = []
        for a, mapped in zip(self.arrays, self.mapped):
            if mapped:
                i = np.sort(idx.numpy())  # sequential reads; batch order does not matter to a mean
                b = a.take(i) if isinstance(a, ShardedArray) else np.take(a, i, axis=0)
                t = torch.from_numpy(np.ascontiguousarray(b))
                out.append(t.to(self.device, non_blocking=True))
            else:
                src_idx = idx.to(a.device) if a.device != idx.device else idx
                t = a.index_select(0, src_idx)
                if t.device != self.device:
                    t = t.to(self.device, non_blocking=True)
                out.append(t)
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
