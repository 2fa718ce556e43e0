"""Data sources: the embedded digits, binarized MNIST, MNIST IDX files, arrays, tables and images.

``load(source)`` takes a name ("digits", "binarized-mnist", "mnist", "fashion-mnist") or a path
and returns a :class:`Dataset`; the command line's ``--data SOURCE`` goes through it.
"""

from __future__ import annotations

from .core import Dataset, load_digits
from .download import cache_dir, download
from .files import load_images, load_npy, load_npz, load_shards, load_table
from .mnist import RESOURCES, load_binarized_mnist, load_mnist, read_amat, read_idx
from .labels import attach_labels, load_dataset, read_labels
from .sources import NAMED_SOURCES, absolute_spec, load, split_spec
from .splits import split_data, subset
from ..memmap import ShardedArray, open_npy

__all__ = [
    "Dataset",
    "load",
    "load_digits",
    "load_binarized_mnist",
    "load_mnist",
    "load_npy",
    "open_npy",
    "ShardedArray",
    "load_npz",
    "load_table",
    "load_shards",
    "load_images",
    "read_amat",
    "read_idx",
    "download",
    "cache_dir",
    "RESOURCES",
    "NAMED_SOURCES",
    "split_spec",
    "absolute_spec",
    "split_data",
    "subset",
    "read_labels",
    "attach_labels",
    "load_dataset",
]
