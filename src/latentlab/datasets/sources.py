"""One entry point for every data source: a name or a path in, a :class:`Dataset` out."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from ..io import check_regular_file
from .core import Dataset, load_digits
from .files import IMAGE_SUFFIXES, as_dataset, load_images, load_npy, load_npz, load_shards, load_table
from .mnist import load_binarized_mnist, load_mnist, read_amat, read_idx, square_images

__all__ = ["load", "NAMED_SOURCES", "describe_sources", "split_spec", "absolute_spec"]

NAMED_SOURCES = {
    "digits": "scikit-learn's 8x8 digits, embedded (1797 images, labels)",
    "binarized-mnist": "Larochelle & Murray's static binarization of MNIST (train/valid/test)",
    "mnist": "MNIST, the public IDX files (60000 + 10000 images, labels)",
    "fashion-mnist": "Fashion-MNIST, the public IDX files (60000 + 10000 images, labels)",
}


def describe_sources() -> str:
    """A short text listing the accepted sources (for help messages)."""
    named = "; ".join(f"{k}: {v}" for k, v in NAMED_SOURCES.items())
    return (
        f"{named}; or a path: FILE.npy (memory-mapped), FILE.npz[:KEY], FILE.csv / FILE.tsv, "
        "FILE.amat, an IDX file, a folder of .npy shards, or a folder of PNG/JPEG images."
    )


def split_spec(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """``FILE.npz:KEY`` -> (FILE.npz, KEY); any other source -> (its path, None). A path that
    exists as given is never split (a file may have a colon in its name)."""
    spec = os.fspath(spec)
    path = Path(spec)
    if not path.exists() and ":" in spec:
        head, _, tail = spec.rpartition(":")
        if Path(head).suffix.lower() == ".npz":
            return Path(head), tail
    return path, None


def absolute_spec(spec: str | os.PathLike) -> str:
    """Named sources stay names; paths become absolute (``FILE.npz:KEY`` keeps its key), so that a
    run reopens its data from any working directory."""
    spec = os.fspath(spec)
    if spec in NAMED_SOURCES:
        return spec
    path, key = split_spec(spec)
    return str(path.resolve()) if key is None else f"{path.resolve()}:{key}"


def load(source: str | os.PathLike = "digits", *, download: bool = True) -> Dataset:
    """Load a data source by name or path.

    Parameters
    ----------
    source : str or path
        "digits" (embedded), "binarized-mnist", "mnist", "fashion-mnist" (found in
        ``$LATENTLAB_DATA`` or ``~/.cache/latentlab``, else downloaded with checksums checked);
        or a path: ``.npy`` (memory-mapped), ``.npz`` (``PATH:KEY`` picks an array; keys
        train/valid/test become splits), ``.csv`` / ``.tsv`` (numbers; header detected),
        ``.amat``, an IDX file (``*-ubyte``, gzipped or not), a folder of ``.npy`` shards, a
        folder of PNG/JPEG images (subfolders become labels), or a folder holding the
        binarized-MNIST ``.amat`` files or the MNIST IDX files.
    download : allow downloading named sources that are not found locally.

    Returns
    -------
    Dataset: ``data`` (n, n_features); images in [0, 1] (kind "image" or "binary"); tables
    unscaled (kind "tabular": the command line standardizes them through the estimator's
    ``scale="standard"``, which is saved with the model).

    Example
    -------
    >>> from latentlab.datasets import load
    >>> load("digits").data.shape
    (1797, 64)
    """
    spec = os.fspath(source)
    if spec == "digits":
        return load_digits()
    if spec == "binarized-mnist":
        return load_binarized_mnist(download=download)
    if spec in ("mnist", "fashion-mnist"):
        return load_mnist(spec, download=download)
    path, key = split_spec(spec)
    if not path.exists():
        raise DataError(
            f"data source {spec!r} is neither a known name nor an existing path; use one of "
            f"{', '.join(NAMED_SOURCES)}, or the path of a file or folder."
        )
    check_regular_file(path)  # a FIFO or a device is refused before it is opened (it could block, or never end)
    suffix = path.suffix.lower()
    if path.is_dir():
        return _load_folder(path)
    if suffix == ".npy":
        return load_npy(path)
    if suffix == ".npz":
        ds = load_npz(path, key)
        return ds
    if suffix in (".csv", ".tsv", ".tab", ".txt"):
        return load_table(path)
    if suffix == ".amat":
        a = read_amat(path)
        return Dataset(data=a, images=square_images(a), kind="binary", name=str(path))
    if "ubyte" in path.name or suffix in (".idx", ".gz"):
        arr = read_idx(path)
        return as_dataset(arr, str(path))
    if suffix in IMAGE_SUFFIXES:
        raise DataError(f"{path} is one image; pass the folder that holds the images.")
    raise DataError(
        f"{path} has a file type latentlab does not read ({suffix or 'no suffix'}); use .npy, .npz, "
        ".csv, .tsv, .amat, an IDX file, or a folder of .npy shards or images."
    )


def _load_folder(path: Path) -> Dataset:
    names = {p.name for p in path.iterdir()}
    if {f"binarized_mnist_{s}.amat" for s in ("train", "valid", "test")} <= names or "binarized_mnist.npz" in names:
        return load_binarized_mnist(path)
    if any(n.startswith("train-images-idx3-ubyte") for n in names):
        ds = load_mnist("mnist", path)
        ds.name = str(path)
        return ds
    if any(n.lower().endswith(".npy") for n in names):
        return load_shards(path)
    return load_images(path)
