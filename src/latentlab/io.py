"""Files that survive crashes: atomic writes, safetensors with JSON metadata, and no pickle.

A file is written to a temporary name in the same directory, flushed and fsynced, then renamed
over the target (``os.replace`` is atomic on POSIX and Windows), and the directory is fsynced.
A process killed at any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator, Mapping

from .errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "save_tensors", "load_tensors", "read_json",
           "jsonable", "check_format"]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to stream into that appears at ``path`` only if the block succeeds.

    The data goes to a temporary file beside ``path``; on success it is fsynced and renamed over
    ``path``; on any exception (or Ctrl-C) the temporary file is removed and ``path`` is untouched.

    Example
    -------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> with atomic_open(p) as f:
    ...     _ = f.write(b"abc")
    >>> p.read_bytes()
    b'abc'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], meta: Any = None) -> None:
    """Write tensors (and a JSON-serialisable ``meta``) to one safetensors file, atomically."""
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    metadata = {"latentlab": json.dumps(meta, allow_nan=True)} if meta is not None else None
    atomic_write_bytes(path, save(flat, metadata=metadata))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Any]:
    """Read a file written by :func:`save_tensors`; never unpickles.

    Raises :class:`CheckpointError` naming the file for a missing, truncated or corrupt file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; check the path, or train a model first.")
    try:
        tensors = {}
        with safe_open(str(path), framework="pt") as f:
            raw_meta = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
        meta = json.loads(raw_meta["latentlab"]) if "latentlab" in raw_meta else None
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises several types for damaged files
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc}); it is "
            "truncated or corrupt. Restore it from a copy or retrain."
        ) from None
    return tensors, meta


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; is this a latentlab run directory?")
    try:
        return json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{path} is not valid JSON ({exc}); the file is corrupt: restore it from a copy, or save "
            "(fit) again."
        ) from None


def jsonable(v: Any) -> Any:
    """``v`` with NumPy scalars and arrays, tuples and paths turned into what ``json`` writes:
    numbers, lists, strings (dicts and lists recursively)."""
    import numpy as np

    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    return v


def check_format(record: Any, path, *, name: str, version: int, what: str) -> dict:
    """``record`` (a file's JSON header) if it is a latentlab file of format ``name`` ("latentlab-run",
    ...) and ``version``; otherwise a CheckpointError that says what the file is not, or names both
    library versions and the fix."""
    from ._version import __version__

    if not isinstance(record, dict) or record.get("format") != name:
        raise CheckpointError(f"{path} is not {what}.")
    if record.get("format_version") != version:
        kind = name.removeprefix("latentlab-")
        raise CheckpointError(
            f"{path} was written by latentlab {record.get('latentlab_version')} in {kind} format "
            f"{record.get('format_version')}; this latentlab ({__version__}) reads format {version}. "
            "Use the matching latentlab version, or fit again with this one."
        )
    return record
