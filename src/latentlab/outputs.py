"""Results as files: arrays as ``.npy`` / ``.csv`` / image grids, figures as ``.png``; each written
atomically (:mod:`latentlab.io`)."""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError
from .io import atomic_open, atomic_write_text
from .tables import is_frame, is_table, table_to_csv, to_records

__all__ = ["write_array", "write_figure"]


def write_array(path: str | Path, X, *, image_shape=None, columns=None, ncols: int | None = None) -> Path:
    """Write ``X`` (n, n_features) by the suffix of ``path``: ``.npy``, ``.csv`` (one row per
    example, with a header), or ``.png`` (a grid of images; needs ``image_shape``). Atomic. A
    table (DataFrame or structured array) is written with its own columns and values."""
    path = Path(path)
    suffix = path.suffix.lower()
    if is_table(X) or is_frame(X):
        return _write_table(path, X)
    X = np.asarray(X)
    if suffix == ".npy":
        with atomic_open(path) as f:
            np.save(f, X, allow_pickle=False)
    elif suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        cols = list(columns) if columns is not None else [f"x{j}" for j in range(X.shape[1])]
        lines = [sep.join(cols)] + [sep.join(f"{v:.9g}" for v in row) for row in X.reshape(len(X), -1)]
        atomic_write_text(path, "\n".join(lines) + "\n")
    elif suffix == ".png":
        if image_shape is None:
            raise DataError(f"{path.name}: a PNG needs image data, and this data is a table; write .npy or .csv instead.")
        from . import plots

        write_figure(path, plots.image_grid(X, image_shape, ncols=ncols))
    else:
        raise ConfigError(f"{path.name}: unknown output type {suffix or '(none)'}; use .npy, .csv or .png.")
    return path


def _write_table(path: Path, X) -> Path:
    """A table (DataFrame or structured array) as ``.csv``/``.tsv`` (its own columns and values)
    or ``.npy`` (a structured array)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        atomic_write_text(path, table_to_csv(X, "\t" if suffix == ".tsv" else ","))
    elif suffix == ".npy":
        with atomic_open(path) as f:
            np.save(f, to_records(X), allow_pickle=False)
    elif suffix == ".png":
        raise DataError(f"{path.name}: a PNG needs image data, and this data is a table; write .csv or .npy instead.")
    else:
        raise ConfigError(f"{path.name}: unknown output type {suffix or '(none)'}; use .csv, .tsv or .npy.")
    return path


def write_figure(path: str | Path, fig, dpi: int = 100) -> Path:
    """Save a matplotlib Figure as a PNG at ``path``, atomically."""
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    with atomic_open(path) as f:
        f.write(buf.getvalue())
    return Path(path)
