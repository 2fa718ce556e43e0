"""Labels for a data set: from a file (any syntax ``--data`` takes), from a column of a table, or
the source's own; the condition of a conditional model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .core import Dataset
from .files import check_separator, labels_from_text, load_table
from .mnist import read_idx
from .sources import NAMED_SOURCES, load, split_spec

__all__ = ["read_labels", "attach_labels", "load_dataset"]


def read_labels(source: str | Path, n: int | None = None) -> np.ndarray:
    """Labels from a file, in any syntax ``--data`` takes: ``FILE.npy`` (an array (n,) of labels or
    (n, m) of side inputs; never unpickled); ``FILE.npz:KEY`` (that array), ``FILE.npz`` (its only
    array, or its train/valid/test arrays one after the other, as :func:`attach_labels` wants
    them); ``.csv``/``.tsv``/``.txt`` (one column: labels, numbers or text; several columns: an
    (n, m) matrix of numbers; a header row is detected as for data tables); an IDX file
    (``*-labels-idx1-ubyte[.gz]``); or any other file or folder :func:`latentlab.datasets.load`
    reads (a folder of ``.npy`` shards...), as an (n, m) matrix of side inputs. With ``n`` (the
    rows of the data), a one-column text file of ``n + 1`` lines has a header: its first line is
    not a label. NaN or infinite labels are refused.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "y.npz")
    >>> np.savez(path, y=np.array([0, 1, 1]), other=np.zeros(3))
    >>> read_labels(path + ":y").tolist()
    [0, 1, 1]
    """
    from ..io import check_regular_file

    spec = str(source)
    if spec in NAMED_SOURCES:
        raise DataError(f"--labels {spec}: that names a data source, not labels; pass a file of one label per row.")
    path, key = split_spec(spec)
    if not path.exists():
        raise DataError(f"labels file {path} does not exist; pass --labels FILE.npy, FILE.npz:KEY or FILE.csv with one label per row.")
    if not path.is_dir():
        check_regular_file(path, "labels")
    suffix = path.suffix.lower()
    if path.is_dir():
        y = _source_labels(spec)
    elif suffix == ".npy":
        y = _read_array(path, lambda: np.load(path, allow_pickle=False))
    elif suffix == ".npz":
        y = _read_array(path, lambda: _npz_labels(path, key))
    elif suffix in (".csv", ".tsv", ".txt"):
        y = _text_labels(path, "\t" if suffix == ".tsv" else ",", n)
    elif "ubyte" in path.name or suffix in (".idx", ".gz"):
        y = read_idx(path)
    else:
        y = _source_labels(spec)
    if y.ndim not in (1, 2) or y.shape[0] == 0:
        raise DataError(f"{spec} holds an array of shape {y.shape}; labels are (n,) or side inputs (n, m).")
    if y.dtype == object or y.dtype.kind not in "biufUS":
        raise DataError(f"{spec} holds values of dtype {y.dtype}; labels are numbers or text.")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        bad = ~np.isfinite(y.reshape(len(y), -1)).all(axis=1)
        raise DataError(f"labels file {spec} holds {int(bad.sum())} NaN or infinite label(s), the first for row "
                        f"{int(np.argmax(bad))}; give every row a finite label (or side input).")
    return y


def _source_labels(spec: str) -> np.ndarray:
    """Side inputs from any other source :func:`latentlab.datasets.load` reads, its splits in order."""
    ds = load(spec)
    parts = [ds, *(ds.splits[s] for s in ("valid", "test") if s in ds.splits)]
    return np.concatenate([np.asarray(p.data) for p in parts])


def _read_array(path: Path, read) -> np.ndarray:
    try:
        return read()
    except DataError:
        raise
    except Exception as exc:  # NumPy raises many types on damaged or object arrays
        raise DataError(f"{path} is not a readable array file ({exc}); save the labels with np.save or np.savez.") from None


def _npz_labels(path: Path, key: str | None) -> np.ndarray:
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
        keys = list(z.files)
        if key is not None:
            if key not in keys:
                raise DataError(f"{path} has no array {key!r}; its arrays are {keys}: pick one with {path}:KEY.")
            return z[key]
        if len(keys) == 1:
            return z[keys[0]]
        if "train" in keys:  # one label per row of a source with its own splits, in their order
            return np.concatenate([z[s] for s in ("train", "valid", "test") if s in keys])
    raise DataError(f"{path} holds several arrays {keys}; pick the labels with {path}:KEY (e.g. {path}:{keys[0]}).")


def _text_labels(path: Path, delim: str, n: int | None) -> np.ndarray:
    import csv

    try:
        text = path.read_text("utf-8-sig")
        rows = [r for r in csv.reader(text.splitlines(), delimiter=delim) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} could not be read as text ({exc}); pass a UTF-8 .csv file.") from None
    check_separator(path, text, rows, delim)
    if not rows:
        raise DataError(f"labels file {path} is empty; give one label per row of the data.")
    if len(rows[0]) > 1:
        return load_table(path, delimiter=delim, numeric_only=True).data
    cells = [r[0] for r in rows]
    if n is not None and len(cells) == n + 1 and cells[0].strip() not in {c.strip() for c in cells[1:]}:
        cells = cells[1:]  # one line more than the data has rows, and a first line unlike the rest: a header
    y = labels_from_text(cells, str(path))
    if y.dtype.kind == "U" and len(cells) > 1 and labels_from_text(cells[1:], str(path)).dtype.kind != "U":
        y = labels_from_text(cells[1:], str(path))  # a header over numeric labels
    return y


def attach_labels(ds: Dataset, y: np.ndarray, what: str) -> Dataset:
    """``ds`` with ``y`` as its target: one row per row of the data, then of its valid and test
    splits (in that order) where the source has its own."""
    parts = [ds, *(ds.splits[s] for s in ("valid", "test") if s in ds.splits)]
    n = sum(len(p) for p in parts)
    if y.shape[0] != n:
        where = f" ({' + '.join(f'{len(p)}' for p in parts)} in train, valid, test order)" if len(parts) > 1 else ""
        raise DataError(f"{what} has {y.shape[0]} labels but the data has {n} rows{where}; give one label per row.")
    start = 0
    for p in parts:
        p.target = y[start : start + len(p)]
        start += len(p)
    return ds


def load_dataset(data: str, *, labels: str | None = None, label_column: str | None = None) -> Dataset:
    """Load the source ``data`` (see :func:`latentlab.datasets.load`) with the condition of a
    conditional model as its ``target``: the labels in the file ``labels``, the column
    ``label_column`` of a CSV/TSV source (removed from the features), or the source's own labels.

    Example
    -------
    >>> load_dataset("digits").target[:3]
    array([0, 1, 2])
    """
    if labels is not None and label_column is not None:
        raise ConfigError("--labels and --label-column both give the condition; pass one of them.")
    if label_column is not None:
        path = Path(data)
        if path.suffix.lower() not in (".csv", ".tsv", ".tab", ".txt") or not path.is_file():
            raise DataError(
                f"--label-column names a column of a CSV/TSV file, and the data {data!r} is not one; "
                "pass the labels as a file with --labels FILE.npy|.csv instead."
            )
        return load_table(path, label_column=label_column)
    ds = load(data)
    if labels is not None:
        n = len(ds) + sum(len(ds.splits[s]) for s in ("valid", "test") if s in ds.splits)
        attach_labels(ds, read_labels(labels, n), f"labels file {labels}")
    return ds
