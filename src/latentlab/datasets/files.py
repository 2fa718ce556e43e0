"""Data from the user's own files: ``.npy`` (memory-mapped), ``.npz``, ``.csv``/``.tsv``, a folder
of ``.npy`` shards, or a folder of PNG/JPEG images."""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np

from ..limits import human_bytes, limit
from ..validation import iter_chunks
from ..errors import DataError, DataTypeError
from ..memmap import ShardedArray, open_npy
from .core import Dataset

__all__ = ["load_npy", "load_npz", "load_table", "load_shards", "load_images", "infer_kind", "as_dataset", "labels_from_text", "IMAGE_SUFFIXES",
           "check_separator"]

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
    if arr.ndim > 4:
        raise DataError(
            f"{name} holds an array of shape {arr.shape} ({arr.ndim} dimensions); latentlab reads tables (n, n_features) "
            "and images (n, H, W) or (n, C, H, W): reshape it, e.g. x.reshape(len(x), -1) for a table, and save it again."
        )
    if arr.dtype.kind not in "biuf":
        raise DataTypeError(f"{name} holds values of dtype {arr.dtype}, which are not numbers; save a numeric array.")
    if arr.ndim >= 3 and arr.dtype.kind in "iu":
        top = 255.0 if arr.dtype.itemsize == 1 else float(np.iinfo(arr.dtype).max)
        arr = np.asarray(arr, dtype=np.float32) / np.float32(top)
    kind = infer_kind(arr)
    n = arr.shape[0]
    images = arr if arr.ndim >= 3 else None
    if isinstance(arr, (np.memmap, ShardedArray)) or arr.ndim == 2:
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
            _check_npz_sizes(path, z)
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


def _check_npz_sizes(path: Path, z) -> None:
    """Refuse, from the arrays' headers and before anything is decompressed, an archive whose
    arrays would not fit in ``LATENTLAB_MAX_TEXT_MB`` (a small .npz can decompress to gigabytes)."""
    total = 0
    fmt = np.lib.format
    for name in z.zip.namelist():
        if not name.endswith(".npy"):
            continue
        with z.zip.open(name) as f:
            version = fmt.read_magic(f)
            shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
        total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    cap = limit("LATENTLAB_MAX_TEXT_MB") * (1 << 20)
    if total > cap:
        raise DataError(
            f"{path} holds arrays of {human_bytes(total)} once decompressed, above the limit of {human_bytes(cap)} for "
            "data loaded whole (LATENTLAB_MAX_TEXT_MB); save the arrays as .npy files (memory-mapped), or raise the limit."
        )


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


#: Separators a table may use instead of the one its suffix says, and their names.
_SEPARATORS = {",": "commas (',')", ";": "semicolons (';')", "\t": "tabs", "|": "vertical bars ('|')"}


def check_separator(path: Path, text: str, rows: list, delimiter: str) -> None:
    """A DataError naming the separator when every row read as one field but the lines are
    consistently split by another separator (a semicolon-separated .csv, a tab-separated one...)."""
    if any(len(r) > 1 for r in rows[:50]):
        return
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    for sep, name in _SEPARATORS.items():
        if sep == delimiter:
            continue
        counts = {ln.count(sep) for ln in lines}
        if lines and len(counts) == 1 and counts.pop() >= 1:
            fix = ("give it the .tsv suffix" if sep == "\t" else
                   "save it with commas as a .csv (or tabs as a .tsv); decimal commas must become points")
            raise DataError(
                f"{path} is separated by {name}, and a {path.suffix or 'table'} file is read with "
                f"{_SEPARATORS.get(delimiter, repr(delimiter))} as its separator: {fix}."
            )


def _read_rows(path: Path, delimiter: str) -> tuple[list[list[str]], list[int]]:
    """The non-blank rows of a text table and the line of the file each ends on (1-based)."""
    from ..io import check_regular_file
    from ..limits import check_text_size

    check_regular_file(path)
    try:
        check_text_size(path, path.stat().st_size)
        text = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} could not be read as text ({exc}); pass a UTF-8 .csv or .tsv file.") from None
    rows, lines = [], []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        for r in reader:
            if r and any(c.strip() for c in r):
                rows.append(r)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num} cannot be read as a table ({exc}); fix that line.") from None
    check_separator(path, text, rows, delimiter)
    return rows, lines


def _check_cells(path: Path, rows: list, lines: list, names: list[str], header: bool) -> str | None:
    """A DataError for an empty column (a trailing separator); for empty or non-finite cells, the
    message that names the first one's line in the file and its column (None if there is none)."""
    width = len(names)
    for j in range(width):
        if all(not r[j].strip() for r in rows):
            where = f"column {names[j]!r}" if header and names[j] else f"column {j + 1}" + (" (the last)" if j == width - 1 else "")
            hint = " - a trailing separator at the end of each line? remove it" if j == width - 1 else "; fill it in or remove it"
            raise DataError(f"{path}: {where} is empty on every line{hint}.")
    bad = [(lines[i], j, c.strip()) for i, r in enumerate(rows) for j, c in enumerate(r)
           if not c.strip() or c.strip().lower().lstrip("+-") in ("nan", "inf", "infinity")]
    if not bad:
        return None
    line, j, c = bad[0]
    what = "is empty" if not c else f"holds {c!r}"
    more = f" ({len(bad)} such cells in all, on lines {', '.join(str(b[0]) for b in bad[:5])}{', ...' if len(bad) > 5 else ''})" if len(bad) > 1 else ""
    return (f"{path}: line {line}, column {names[j]!r} {what}{more}; latentlab needs a finite number in every cell: "
            "fill them in (impute), or remove those rows.")


def load_table(path: str | os.PathLike, delimiter: str | None = None, *, label_column: str | None = None) -> Dataset:
    """A ``.csv`` or ``.tsv`` table of numbers: one example a row. A first row with any
    non-number is taken as the header. Any column holding text is named in the error; so is a
    column empty on every line (a trailing separator), and a file separated by another separator
    than its suffix says. An empty cell (or nan, inf) is a missing value, NaN in ``data``: the
    first one's line in the file and its column are in ``info["missing"]``, the message that a
    fit (:func:`latentlab.runs.check_data`) gives before it starts.

    ``label_column`` names a header column that holds labels (numbers or text): it is removed
    from the features and returned as ``target`` (see :func:`labels_from_text`).
    """
    path = Path(path)
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    rows, lines = _read_rows(path, delimiter)
    if not rows:
        raise DataError(f"{path} has no rows; it is empty: write one example per line.")
    header = None
    if not all(_is_number(c) or not c.strip() for c in rows[0]):
        header, rows, lines = [c.strip() for c in rows[0]], rows[1:], lines[1:]
    if not rows:
        raise DataError(f"{path} has a header but no data rows; add one example per line below it.")
    width = len(header) if header is not None else len(rows[0])
    for r, line in zip(rows, lines):
        if len(r) != width:
            hint = f" (a trailing {delimiter!r} at the end of the line?)" if len(r) == width + 1 and not r[-1].strip() else ""
            raise DataError(f"{path}: line {line} has {len(r)} fields but the table has {width}{hint}; fix that line.")
    target = None
    if label_column is not None:
        if header is None or label_column not in header:
            have = f"its columns are {', '.join(map(repr, header))}" if header is not None else "it has no header row"
            raise DataError(f"{path} has no column {label_column!r} ({have}); name the label column as its header says.")
        j = header.index(label_column)
        empty = next((line for r, line in zip(rows, lines) if not r[j].strip()), None)
        if empty is not None:
            raise DataError(f"{path}: line {empty}, column {label_column!r} (the labels) is empty; give every row a label.")
        target = labels_from_text([r[j] for r in rows], f"{path}, column {label_column!r}")
        header = header[:j] + header[j + 1 :]
        rows = [r[:j] + r[j + 1 :] for r in rows]
        width -= 1
        if width == 0:
            raise DataError(f"{path} has no feature columns besides the label column {label_column!r}.")
    names = header if header is not None else [f"column {j + 1}" for j in range(width)]
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
                bad.setdefault(j, (lines[i], c))
    if bad:
        cols = ", ".join(f"{names[j]!r} (e.g. {v!r} on line {line})" for j, (line, v) in bad.items())
        hint = ""
        if any(_is_number(v.replace(",", ".")) for _, v in bad.values()):
            hint = " (decimal commas? write decimal points)"
        raise DataTypeError(
            f"{path} has non-numeric column(s) {cols}{hint}; drop them or encode them as numbers (e.g. one-hot) first."
        )
    missing = _check_cells(path, rows, lines, names, header is not None)
    if target is not None and target.dtype.kind == "f" and not np.isfinite(target).all():
        i = int(np.argmax(~np.isfinite(target)))
        raise DataError(f"{path}: line {lines[i]}, column {label_column!r} (the labels) holds {target[i]}; give every row a finite label.")
    huge = np.abs(values) > np.finfo(np.float32).max
    if huge.any():
        i, j = (int(a[0]) for a in np.nonzero(huge))
        raise DataError(f"{path}: line {lines[i]}, column {names[j]!r} holds {rows[i][j].strip()}, beyond the range of "
                        "32-bit floats (3.4e38) that the models compute in; rescale that column.")
    ds = Dataset(data=values.astype(np.float32), target=target, kind="tabular", name=str(path), feature_names=header)
    if missing is not None:
        ds.info["missing"] = missing  # reported by latentlab.runs.check_data before a fit
    return ds


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


def _check_pixels(f: Path, size: tuple[int, int], max_pixels: float, n: int) -> None:
    """Refuse, before decoding, an image over ``LATENTLAB_MAX_IMAGE_PIXELS``, or a folder whose
    images would not fit in ``LATENTLAB_MAX_TEXT_MB`` once decoded (float32, grey at least)."""
    w, h = size
    if w * h > max_pixels:
        raise DataError(
            f"{f} is {w}x{h} pixels ({w * h}), above the limit of {int(max_pixels)} pixels an image "
            "(LATENTLAB_MAX_IMAGE_PIXELS; a small file can decode to gigabytes): resize the images, or raise the limit."
        )
    need, cap = float(n) * w * h * 4, limit("LATENTLAB_MAX_TEXT_MB") * (1 << 20)
    if need > cap:
        raise DataError(
            f"the {n} images of {w}x{h} pixels in {f.parent} would take {human_bytes(need)} once decoded, above the limit of "
            f"{human_bytes(cap)} for data loaded whole (LATENTLAB_MAX_TEXT_MB); resize them, or save them as .npy shards "
            "(memory-mapped)."
        )


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
    max_pixels = limit("LATENTLAB_MAX_IMAGE_PIXELS")
    for f in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, by our own limit
                im = Image.open(f)
            with im:
                _check_pixels(f, im.size, max_pixels, len(files))
                im.load()
                mode = im.mode
                colour = colour or mode not in ("1", "L", "LA", "I", "I;16", "F", "P") or (mode == "P" and "RGB" in im.palette.mode)
                sizes.setdefault(im.size, f)
                arrays.append(im.copy())
        except Image.DecompressionBombError as exc:
            raise DataError(f"{f} decodes to an image too large to load ({exc}); resize it (LATENTLAB_MAX_IMAGE_PIXELS "
                            f"allows {int(max_pixels)} pixels an image).") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
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
