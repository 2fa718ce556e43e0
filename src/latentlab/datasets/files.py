"""Data from the user's own files: ``.npy`` (memory-mapped), ``.npz``, ``.csv``/``.tsv``, a folder
of ``.npy`` shards, or a folder of PNG/JPEG images."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from ..validation import iter_chunks
from ..errors import DataError, DataTypeError
from ..memmap import on_disk, open_npy
from .core import Dataset

__all__ = ["load_npy", "load_npz", "load_table", "load_shards", "load_images", "infer_kind", "as_dataset", "labels_from_text", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def infer_kind(arr) -> str:
    """"binary" when every value is 0 or 1, "image" for (n, H, W) / (n, C, H, W) arrays, else
    "tabular". Reads ``arr`` in chunks, so a memory map stays on disk."""
    n = arr.shape[0]
    binary = True
    for _, b in iter_chunks(arr):  # a memory map's pages are released as the pass goes
        if not ((b == 0) | (b == 1)).all():  # np.isin warns on NaN (a cast to the integers' type)
            binary = False
            break
    if binary and n:
        return "binary"
    return "image" if len(arr.shape) >= 3 else "tabular"


def as_dataset(arr, name: str, *, target=None, feature_names=None) -> Dataset:
    """A Dataset around ``arr`` (n, ...); integer images are scaled to [0, 1] (a copy)."""
    if arr.ndim < 2:
        raise DataError(
            f"{name} holds an array of shape {arr.shape}; expected (n_samples, n_features) or images "
            "(n, H, W) / (n, C, H, W). Reshape it and save it again."
        )
    if arr.dtype.kind not in "biuf":
        raise DataTypeError(f"{name} holds values of dtype {arr.dtype}, which are not numbers; save a numeric array.")
    if arr.ndim >= 3 and arr.dtype.kind in "iu":
        top = 255.0 if arr.dtype.itemsize == 1 else float(np.iinfo(arr.dtype).max)
        arr = np.asarray(arr, dtype=np.float32) / np.float32(top)
    kind = infer_kind(arr)
    n = arr.shape[0]
    images = arr if arr.ndim >= 3 else None
    if on_disk(arr) or arr.ndim == 2:
        data = arr if arr.ndim == 2 else arr.reshape(n, -1)
    else:
        data = arr.reshape(n, -1)
    return Dataset(data=data, target=target, images=images, kind=kind, name=name, feature_names=feature_names)


def load_npy(path: str | os.PathLike) -> Dataset:
    """An ``.npy`` file, memory-mapped (``np.load(path, mmap_mode="r")``): the data stays on disk
    and is read as it is used. Shape (n, n_features), or images (n, H, W) / (n, C, H, W)."""
    path = Path(path)
    return as_dataset(open_npy(path), str(path))


def load_npz(path: str | os.PathLike, key: str | None = None) -> Dataset:
    """An ``.npz`` archive: the array ``key``, or its only array, or its train/valid/test arrays
    as predefined splits (then ``data`` is "train")."""
    path = Path(path)
    try:
        # The file is opened here, not by np.load, which leaks its handle when the archive is damaged.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            keys = list(z.files)
            if key is not None:
                if key not in keys:
                    raise DataError(f"{path} has no array {key!r}; its arrays are {keys}: pick one with {path}:KEY.")
                return as_dataset(np.ascontiguousarray(z[key]), f"{path}:{key}")
            if len(keys) == 1:
                return as_dataset(np.ascontiguousarray(z[keys[0]]), str(path))
            if "train" in keys:
                ds = as_dataset(np.ascontiguousarray(z["train"]), str(path))
                for s in ("valid", "test"):
                    if s in keys:
                        ds.splits[s] = as_dataset(np.ascontiguousarray(z[s]), f"{path}:{s}")
                return ds
    except DataError:
        raise
    except Exception as exc:  # zipfile, zlib and NumPy's header parser raise many types on damaged files
        raise DataError(f"{path} is not a readable .npz file ({exc}); it is truncated or corrupt, or holds objects: write it again with np.savez, numbers only.") from None
    raise DataError(f"{path} holds several arrays {keys}; pick one with {path}:KEY (e.g. {path}:{keys[0]}).")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def labels_from_text(cells, what: str) -> np.ndarray:
    """Labels read as text -> an array: int64 when every cell is an integer, float64 when every
    cell is a number, else the strings themselves. An empty cell is an error naming ``what``."""
    cells = [c.strip() for c in cells]
    for i, c in enumerate(cells):
        if not c:
            raise DataError(f"{what}: label {i} is empty; give every row a label.")
    if all(_is_number(c) for c in cells):
        values = np.array([float(c) for c in cells])
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            return values.astype(np.int64)
        return values
    return np.array(cells, dtype=str)


def load_table(path: str | os.PathLike, delimiter: str | None = None, *, label_column: str | None = None,
               numeric_only: bool = False) -> Dataset:
    """A ``.csv`` or ``.tsv`` table: one example a row. A first row with any non-number is taken
    as the header. An empty cell is a missing value (an error at fit).

    A table of numbers gives ``data`` (n, n_columns) float32, kind "tabular". A table with text
    (categorical) columns, which needs a header, gives a NumPy structured array, one record a
    row (text columns as text, numbers as int64 or float64), kind "mixed": the estimators
    encode it (:class:`latentlab.tables.TableCodec`). With ``numeric_only`` a text column is an
    error that names it.

    ``label_column`` names a header column that holds labels (numbers or text): it is removed
    from the features and returned as ``target`` (see :func:`labels_from_text`).
    """
    path = Path(path)
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        text = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} could not be read as text ({exc}); pass a UTF-8 .csv or .tsv file.") from None
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path} has no rows; it is empty: write one example per line.")
    header = None
    if not all(_is_number(c) or not c.strip() for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise DataError(f"{path} has a header but no data rows; add one example per line below it.")
    width = len(header) if header is not None else len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            line = i + (2 if header is not None else 1)
            raise DataError(f"{path}: line {line} has {len(r)} fields but the table has {width}; fix that line.")
    target = None
    if label_column is not None:
        if header is None or label_column not in header:
            have = f"its columns are {', '.join(map(repr, header))}" if header is not None else "it has no header row"
            raise DataError(f"{path} has no column {label_column!r} ({have}); name the label column as its header says.")
        j = header.index(label_column)
        target = labels_from_text([r[j] for r in rows], f"{path}, column {label_column!r}")
        header = header[:j] + header[j + 1 :]
        rows = [r[:j] + r[j + 1 :] for r in rows]
        width -= 1
        if width == 0:
            raise DataError(f"{path} has no feature columns besides the label column {label_column!r}.")
    names = header if header is not None else [f"column {j}" for j in range(width)]
    bad: dict[int, tuple[int, str]] = {}
    values = np.empty((len(rows), width), dtype=np.float64)
    for i, r in enumerate(rows):
        for j, c in enumerate(r):
            c = c.strip()
            if not c:
                values[i, j] = math.nan
                continue
            try:
                values[i, j] = float(c)
            except ValueError:
                bad.setdefault(j, (i, c))
    if bad:
        if header is None:
            cols = ", ".join(f"{names[j]!r} (e.g. {v!r} on line {i + 1})" for j, (i, v) in bad.items())
            raise DataTypeError(
                f"{path} has text in column(s) {cols} and no header row; a table with text (categorical) columns "
                "needs a header naming its columns: add one."
            )
        if not numeric_only:
            return Dataset(data=_mixed_records(rows, header, values, set(bad)), target=target, kind="mixed",
                           name=str(path), feature_names=header)
        cols = ", ".join(f"{names[j]!r} (e.g. {v!r} on line {i + 2})" for j, (i, v) in bad.items())
        raise DataTypeError(f"{path} has non-numeric column(s) {cols}; here every column must hold numbers.")
    return Dataset(data=values.astype(np.float32), target=target, kind="tabular", name=str(path), feature_names=header)


def _mixed_records(rows, header, values, text_cols) -> np.ndarray:
    """A table with text columns as a structured array (one record a row): text columns as text
    (an empty cell stays empty: a missing value, an error at fit), numeric columns as int64 when
    every cell is an integer, else float64 (an empty cell: NaN)."""
    fields = []
    for j, name in enumerate(header):
        if j in text_cols:
            fields.append((name, f"U{max(1, max(len(r[j].strip()) for r in rows))}"))
        else:
            col = values[:, j]
            integral = np.all(np.isfinite(col)) and np.all(col == np.round(col)) and np.all(np.abs(col) < 2**53)
            fields.append((name, np.int64 if integral else np.float64))
    out = np.empty(len(rows), dtype=fields)
    for j, name in enumerate(header):
        out[name] = [r[j].strip() for r in rows] if j in text_cols else values[:, j]
    return out


def load_shards(folder: str | os.PathLike) -> Dataset:
    """A folder of ``.npy`` shards (in natural name order), each memory-mapped, seen as one data set."""
    folder = Path(folder)
    arr = open_npy(folder)  # np.memmap for one shard, ShardedArray for several
    kind = infer_kind(arr)
    if arr.ndim >= 3:
        raise DataError(
            f"the shards in {folder} hold images of shape {arr.shape[1:]}; save them flattened, as "
            "(n, n_features), to train from shards."
        )
    return Dataset(data=arr, kind=kind, name=str(folder))


def load_images(folder: str | os.PathLike) -> Dataset:
    """A folder of PNG/JPEG images of one size, scaled to [0, 1]. Images in subfolders are
    labelled by the subfolder's name (``target`` holds the index of the sorted names, and
    ``info["classes"]`` the names). Grey images give (n, H, W); colour ones (n, 3, H, W).
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{folder} holds no .png or .jpg images.")
    classes = sorted({p.parent.relative_to(folder).as_posix() for p in files} - {"."})
    arrays, sizes = [], {}
    colour = False
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                mode = im.mode
                colour = colour or mode not in ("1", "L", "LA", "I", "I;16", "F", "P") or (mode == "P" and "RGB" in im.palette.mode)
                sizes.setdefault(im.size, f)
                arrays.append(im.copy())
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise DataError(f"{f} is not a readable image ({exc}); remove it or replace it.") from None
        if len(sizes) > 1:
            (s1, f1), (s2, f2) = list(sizes.items())[:2]
            raise DataError(
                f"the images in {folder} have different sizes: {f1.name} is {s1[0]}x{s1[1]} but "
                f"{f2.name} is {s2[0]}x{s2[1]}; resize them to one size first."
            )
    out = []
    for im in arrays:
        if not colour and im.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey PNGs keep their depth
            a = np.asarray(im, dtype=np.float32) / np.float32(65535.0)
        else:
            a = np.asarray(im.convert("RGB" if colour else "L"), dtype=np.float32) / np.float32(255.0)
        out.append(a.transpose(2, 0, 1) if colour else a)
    images = np.ascontiguousarray(np.stack(out))
    target = None
    if classes:
        index = {c: i for i, c in enumerate(classes)}
        rel = [p.parent.relative_to(folder).as_posix() for p in files]
        if "." not in rel:
            target = np.array([index[r] for r in rel], dtype=np.int64)
    ds = Dataset(
        data=images.reshape(len(images), -1),
        target=target,
        images=images,
        kind="image",
        name=str(folder),
    )
    ds.kind = infer_kind(images) if infer_kind(images) == "binary" else "image"
    if target is not None:
        ds.info["classes"] = classes
    ds.info["files"] = [str(p.relative_to(folder)) for p in files]
    return ds
