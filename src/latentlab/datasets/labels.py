"""Labels for a data set: from a file (``.npy``, ``.csv``), from a column of a table, or the
source's own; the condition of a conditional model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .core import Dataset
from .files import check_separator, labels_from_text, load_table
from .sources import load

__all__ = ["read_labels", "attach_labels", "load_dataset"]


def read_labels(path: str | Path, n: int | None = None) -> np.ndarray:
    """Labels from a file: ``.npy`` (an array (n,) of labels or (n, m) of side inputs; never
    unpickled), or ``.csv``/``.tsv``/``.txt`` (one column: labels, numbers or text; several
    columns: an (n, m) matrix of numbers; a header row is detected as for data tables). With
    ``n`` (the rows of the data), a one-column text file of ``n + 1`` lines has a header: its first
    line is not a label. NaN or infinite labels are refused."""
    from ..io import check_regular_file

    path = Path(path)
    if not path.exists():
        raise DataError(f"labels file {path} does not exist; pass --labels FILE.npy or FILE.csv with one label per row.")
    check_regular_file(path, "labels")
    if path.is_dir():
        raise DataError(f"labels file {path} is a folder; pass --labels FILE.npy or FILE.csv with one label per row.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            y = np.load(path, allow_pickle=False)
        except Exception as exc:  # NumPy raises many types on damaged or object arrays
            raise DataError(f"{path} is not a readable .npy array ({exc}); save the labels with np.save.") from None
    elif suffix in (".csv", ".tsv", ".txt"):
        import csv

        delim = "\t" if suffix == ".tsv" else ","
        try:
            text = path.read_text("utf-8-sig")
            rows = [r for r in csv.reader(text.splitlines(), delimiter=delim) if r and any(c.strip() for c in r)]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{path} could not be read as text ({exc}); pass a UTF-8 .csv file.") from None
        check_separator(path, text, rows, delim)
        if not rows:
            raise DataError(f"labels file {path} is empty; give one label per row of the data.")
        if len(rows[0]) > 1:
            y = load_table(path, delimiter=delim).data
        else:
            cells = [r[0] for r in rows]
            if n is not None and len(cells) == n + 1 and cells[0].strip() not in {c.strip() for c in cells[1:]}:
                cells = cells[1:]  # one line more than the data has rows, and a first line unlike the rest: a header
            y = labels_from_text(cells, str(path))
            if y.dtype.kind == "U" and len(cells) > 1 and labels_from_text(cells[1:], str(path)).dtype.kind != "U":
                y = labels_from_text(cells[1:], str(path))  # a header over numeric labels
    else:
        raise DataError(f"labels file {path.name}: unknown type {suffix or '(none)'}; use .npy or .csv.")
    if y.ndim not in (1, 2) or y.shape[0] == 0:
        raise DataError(f"{path} holds an array of shape {y.shape}; labels are (n,) or side inputs (n, m).")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        bad = ~np.isfinite(y.reshape(len(y), -1)).all(axis=1)
        raise DataError(f"labels file {path} holds {int(bad.sum())} NaN or infinite label(s), the first for row "
                        f"{int(np.argmax(bad))}; give every row a finite label (or side input).")
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
