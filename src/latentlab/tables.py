"""Mixed-type tables: text (categorical), numeric and 0/1 columns side by side.

A table comes as a pandas DataFrame with a column that is not numbers (pandas is imported only
when one is given) or as a NumPy structured array (what :func:`latentlab.datasets.load_table`
reads from a CSV with text columns, without pandas). Its :class:`TableCodec`, fitted once, turns
it into the matrix the networks take and back:

- a **categorical** column (text, pandas ``category``, ``bool`` as text) becomes its one-hot
  code, one feature per category (categories sorted, or a pandas categorical's own order);
- a **binary** column (numbers that are all 0 or 1, or ``bool``) stays one 0/1 feature;
- a **numeric** column stays one feature, in its own units (the estimator standardizes it).

The codec is saved with the model as JSON (no pickle), and decoding gives back the original
columns, in their order, with their types (integers rounded, 0/1 and booleans as such) and
category names.

Example
-------
>>> import numpy as np
>>> t = np.array([("a", 1.5, 0), ("b", 2.0, 1), ("a", 0.5, 1)],
...              dtype=[("kind", "U1"), ("size", "f8"), ("flag", "i8")])
>>> codec = TableCodec.fit(t)
>>> [(c["name"], c["kind"]) for c in codec.columns]
[('kind', 'categorical'), ('size', 'numeric'), ('flag', 'binary')]
>>> codec.encode(t).tolist()[0]
[1.0, 0.0, 1.5, 0.0]
>>> codec.decode(codec.encode(t))["kind"].tolist()
['a', 'b', 'a']
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import CheckpointError, DataError, DataTypeError

__all__ = ["TableCodec", "is_frame", "is_table", "table_columns", "check_missing", "make_table", "stack_rows", "table_rows", "to_records",
           "table_to_csv", "KINDS"]

KINDS = ("numeric", "binary", "categorical")


def is_frame(X) -> bool:
    """Whether X is a pandas DataFrame (checked without importing pandas)."""
    return type(X).__module__.split(".")[0] == "pandas" and hasattr(X, "columns") and hasattr(X, "dtypes")


def is_table(X) -> bool:
    """Whether X is a mixed-type table: a structured array, or a DataFrame with a column of
    anything else than numbers (text, categories, objects)."""
    if isinstance(X, np.ndarray) and X.dtype.names:
        return True
    if is_frame(X):
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        return any(not (is_numeric_dtype(t) or is_bool_dtype(t)) for t in X.dtypes)
    return False


def _is_text_kind(a: np.ndarray) -> bool:
    return a.dtype.kind in "USOb" or a.dtype == object


def table_columns(X) -> tuple[list[str], dict[str, np.ndarray], dict[str, Any]]:
    """(names, name -> 1-D column, name -> what the column was: "float", "int", "bool", "str" or
    ("category", [its categories])) of a DataFrame or structured array. Text columns come as
    object arrays whose missing cells are None."""
    names, cols, types = [], {}, {}
    if is_frame(X):
        from pandas.api.types import is_bool_dtype, is_integer_dtype, is_numeric_dtype

        for c in X.columns:
            s, name = X[c], str(c)
            if isinstance(s, type(X)):
                raise DataError(f"X has two columns named {name!r}; give every column its own name.")
            t = s.dtype
            if str(t) == "category":
                types[name] = ("category", [str(v) for v in t.categories])
                cols[name] = np.array([None if _missing(v) else str(v) for v in s.tolist()], dtype=object)
            elif is_bool_dtype(t) and not s.isna().any():
                types[name], cols[name] = "bool", s.to_numpy(dtype=np.float64)
            elif is_numeric_dtype(t) or is_bool_dtype(t):
                types[name] = "int" if is_integer_dtype(t) or is_bool_dtype(t) else "float"
                cols[name] = s.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                types[name] = "str"
                cols[name] = np.array([None if _missing(v) else str(v) for v in s.tolist()], dtype=object)
            names.append(name)
        return names, cols, types
    if not (isinstance(X, np.ndarray) and X.dtype.names):
        raise DataTypeError("a table is a pandas DataFrame or a NumPy structured array; got " + type(X).__name__ + ".")
    if X.ndim != 1:
        raise DataError(f"a structured array table is 1-D (one record a row); got shape {X.shape}.")
    for name in X.dtype.names:
        a = X[name]
        if a.ndim != 1:
            raise DataError(f"column {name!r} holds sub-arrays of shape {a.shape[1:]}; give one value per cell.")
        if a.dtype.kind == "b":
            types[name], cols[name] = "bool", a.astype(np.float64)
        elif a.dtype.kind in "iu":
            types[name], cols[name] = "int", a.astype(np.float64)
        elif a.dtype.kind == "f":
            types[name], cols[name] = "float", a.astype(np.float64)
        elif _is_text_kind(a):
            types[name] = "str"
            cols[name] = np.array([None if _missing(v) else (v.decode() if isinstance(v, bytes) else str(v)) for v in a.tolist()], dtype=object)
        else:
            raise DataTypeError(f"column {name!r} has dtype {a.dtype}; a table's columns hold numbers or text.")
        names.append(str(name))
    return names, cols, types


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()) or (
        type(v).__name__ in ("NAType", "NaTType"))


def check_missing(names, cols, what: str = "X") -> None:
    """A :class:`DataError` with the count, the columns and the first row of missing cells."""
    bad = {}
    first = None
    for name in names:
        c = cols[name]
        miss = np.array([v is None for v in c]) if c.dtype == object else ~np.isfinite(c)
        if miss.any():
            bad[name] = int(miss.sum())
            r = int(np.argmax(miss))
            first = r if first is None else min(first, r)
    if bad:
        total = sum(bad.values())
        where = ", ".join(f"{k!r} ({v})" for k, v in bad.items())
        raise DataError(
            f"{what} has {total} missing or non-finite value(s), in column(s) {where}, the first in row {first}; "
            "drop those rows (df.dropna()) or impute them before fitting."
        )


class TableCodec:
    """The encoding of one table's columns: one-hot categories, 0/1 columns, numbers.

    Attributes
    ----------
    columns : list of dict
        One per column, in order: ``name``, ``kind`` ("numeric", "binary", "categorical"),
        ``type`` (what it was: "float", "int", "bool", "str", "category") and, for categorical
        columns, ``categories`` (list of str).
    frame : bool
        Whether the table was a DataFrame (decoding gives one back; else a structured array).
    width : int
        Features of the encoded matrix.
    """

    def __init__(self, columns: list[dict], frame: bool = False):
        self.columns = columns
        self.frame = bool(frame)
        self.width = sum(len(c["categories"]) if c["kind"] == "categorical" else 1 for c in columns)

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    @classmethod
    def fit(cls, X, what: str = "X") -> "TableCodec":
        """The codec of table X (DataFrame or structured array); missing values are an error."""
        names, cols, types = table_columns(X)
        if not names:
            raise DataError(f"{what} has no columns; pass a table with at least one.")
        check_missing(names, cols, what)
        out = []
        for name in names:
            c, t = cols[name], types[name]
            if isinstance(t, tuple) or t == "str":
                cats = list(t[1]) if isinstance(t, tuple) else sorted(set(c.tolist()))
                out.append({"name": name, "kind": "categorical", "type": "category" if isinstance(t, tuple) else "str",
                            "categories": cats})
            elif t == "bool" or np.all((c == 0) | (c == 1)):
                out.append({"name": name, "kind": "binary", "type": t})
            else:
                out.append({"name": name, "kind": "numeric", "type": t})
        return cls(out, frame=is_frame(X))

    def blocks(self) -> list[tuple[str, int, int]]:
        """(kind, first, stop) of each column's features in the encoded matrix."""
        out, j = [], 0
        for c in self.columns:
            w = len(c["categories"]) if c["kind"] == "categorical" else 1
            out.append((c["kind"], j, j + w))
            j += w
        return out

    def feature_names(self) -> list[str]:
        """Names of the encoded features: the column's name, or ``name=category`` for one-hots."""
        out = []
        for c in self.columns:
            out += [f"{c['name']}={v}" for v in c["categories"]] if c["kind"] == "categorical" else [c["name"]]
        return out

    def numeric_features(self) -> np.ndarray:
        """Indices of the encoded features that are numeric columns (the ones to standardize)."""
        return np.array([a for k, a, _ in self.blocks() if k == "numeric"], dtype=np.int64)

    def encode(self, X, what: str = "X") -> np.ndarray:
        """Table X, with this codec's columns -> float32 matrix (n, width), numbers in their units."""
        names, cols, types = table_columns(X)
        if names != self.names:
            missing = [n for n in self.names if n not in names]
            extra = [n for n in names if n not in self.names]
            detail = (f"missing {missing}" if missing else "") + ("; " if missing and extra else "") + (f"unseen {extra}" if extra else "")
            raise DataError(
                f"{what} has the columns {names}, but the model was fitted on {self.names} ({detail or 'in another order'}); "
                "pass a table with the columns of the training data, in their order."
            )
        check_missing(names, cols, what)
        n = len(cols[names[0]]) if names else 0
        E = np.zeros((n, self.width), dtype=np.float32)
        for c, (kind, a, b) in zip(self.columns, self.blocks()):
            v = cols[c["name"]]
            if kind == "categorical":
                index = {cat: i for i, cat in enumerate(c["categories"])}
                codes = np.array([index.get(s, -1) for s in (str(x) for x in v.tolist())], dtype=np.int64)
                if (codes < 0).any():
                    i = int(np.argmax(codes < 0))
                    raise DataError(
                        f"{what}: column {c['name']!r} has the value {str(v[i])!r} (row {i}), which was not seen at fit; "
                        f"its categories are {c['categories']}."
                    )
                E[np.arange(n), a + codes] = 1.0
            else:
                if v.dtype == object:
                    raise DataTypeError(f"{what}: column {c['name']!r} holds text, but it held numbers at fit.")
                if kind == "binary" and not np.all((v == 0) | (v == 1)):
                    raise DataError(f"{what}: column {c['name']!r} was 0/1 at fit and now holds other values.")
                E[:, a] = v
        return E

    def decode(self, E: np.ndarray, *, frame: bool | None = None):
        """Encoded rows (n, width) -> the table: numbers (integers rounded), 0/1 at 0.5, the most
        probable category of each one-hot block. A DataFrame when the codec was fitted on one (and
        pandas is installed) or ``frame=True``, else a structured array."""
        E = np.asarray(E, dtype=np.float64).reshape(len(E), -1)
        if E.shape[1] != self.width:
            raise DataError(f"encoded rows have {E.shape[1]} features; this table encodes into {self.width}.")
        values = {}
        for c, (kind, a, b) in zip(self.columns, self.blocks()):
            if kind == "categorical":
                values[c["name"]] = np.asarray(c["categories"], dtype=object)[np.argmax(E[:, a:b], axis=1)] if len(E) else np.array([], object)
            elif kind == "binary":
                v = E[:, a] >= 0.5
                values[c["name"]] = v if c["type"] == "bool" else v.astype(np.int64 if c["type"] == "int" else np.float64)
            else:
                values[c["name"]] = np.rint(E[:, a]).astype(np.int64) if c["type"] == "int" else E[:, a].copy()
        return make_table(values, self, frame=self.frame if frame is None else frame)

    def to_dict(self) -> dict:
        return {"columns": self.columns, "frame": self.frame}

    @classmethod
    def from_dict(cls, d) -> "TableCodec":
        try:
            cols = [dict(c) for c in d["columns"]]
            for c in cols:
                if c["kind"] not in KINDS or not isinstance(c["name"], str):
                    raise ValueError(c)
                if c["kind"] == "categorical" and not (isinstance(c["categories"], list) and c["categories"]):
                    raise ValueError(c)
            return cls(cols, frame=bool(d.get("frame", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"the saved table encoding is damaged ({exc}); config.json is damaged: save the model again.") from None


def make_table(values: dict[str, np.ndarray], codec: TableCodec, *, frame: bool):
    """The columns ``values`` (name -> 1-D array) as a DataFrame (``frame``; when pandas is
    missing, a structured array) or a structured array, with the codec's column types."""
    if frame:
        try:
            import pandas as pd
        except ImportError:  # fitted on a DataFrame elsewhere, loaded without pandas
            frame = False
    if frame:
        data = {}
        for c in codec.columns:
            v = values[c["name"]]
            if c.get("type") == "category":
                data[c["name"]] = pd.Categorical(v.tolist(), categories=c["categories"])
            elif c["kind"] == "categorical":
                data[c["name"]] = pd.Series(v.tolist(), dtype=object).astype(str)  # pandas' own text dtype
            else:
                data[c["name"]] = v
        return pd.DataFrame(data)
    fields = []
    for c in codec.columns:
        v = values[c["name"]]
        if c["kind"] == "categorical":
            fields.append((c["name"], f"U{max([1, *map(len, c['categories'])])}"))
        else:
            fields.append((c["name"], v.dtype))
    out = np.empty(len(next(iter(values.values()))) if values else 0, dtype=fields)
    for c in codec.columns:
        out[c["name"]] = values[c["name"]]
    return out


def stack_rows(a, b):
    """Two rows of a table (1-row DataFrames, records of a structured array) as one 2-row table."""
    if is_frame(a):
        import pandas as pd

        return pd.concat([a, b], ignore_index=True)
    return np.concatenate([np.atleast_1d(a), np.atleast_1d(b)])


def to_records(X) -> np.ndarray:
    """A table as a structured array (a DataFrame's text columns as fixed-width text): what
    ``np.save`` writes without pickling."""
    if isinstance(X, np.ndarray) and X.dtype.names:
        return X
    names, cols, types = table_columns(X)
    fields = []
    for name in names:
        t, c = types[name], cols[name]
        if t in ("str",) or isinstance(t, tuple):
            fields.append((name, f"U{max([1, *(len(v) for v in c.tolist() if v is not None)])}"))
        else:
            fields.append((name, {"int": np.int64, "bool": np.bool_}.get(t, np.float64) if np.all(np.isfinite(c)) else np.float64))
    out = np.empty(len(cols[names[0]]) if names else 0, dtype=fields)
    for name in names:
        out[name] = ["" if v is None else v for v in cols[name].tolist()] if cols[name].dtype == object else cols[name]
    return out


def table_rows(X, rows):
    """Rows of a table (DataFrame: by position)."""
    return X.iloc[rows] if is_frame(X) else X[rows]


def table_to_csv(X, sep: str = ",") -> str:
    """A table as CSV text: a header of its column names, then one line per row (numbers with 9
    significant digits, text quoted where it has to be)."""
    import csv
    import io

    names, cols, _ = table_columns(X)
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=sep, lineterminator="\n")
    w.writerow(names)
    n = len(cols[names[0]]) if names else 0

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.9g}"
        return str(v)

    lists = [cols[name].tolist() for name in names]
    for i in range(n):
        w.writerow([cell(col[i]) for col in lists])
    return buf.getvalue()
