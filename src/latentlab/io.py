"""Files that survive crashes: atomic writes, safetensors with JSON metadata, and no pickle.

A file is written to a temporary name in the same directory, flushed and fsynced, then renamed
over the target (``os.replace`` is atomic on POSIX and Windows), and the directory is fsynced.
A process killed at any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator, Mapping

from .errors import CheckpointError, DataError, RunInUseError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "save_tensors", "tensor_bytes", "load_tensors",
           "read_json", "jsonable", "check_format", "file_mode", "check_regular_file", "file_digest", "fsync_dir", "FolderLock"]


def file_mode() -> int:
    """The mode a new file gets from the user's umask (0o666 & ~umask): what ``open()`` would give.

    Read from /proc/self/status where the kernel shows it (no change to the process's umask, so
    no race with other threads); elsewhere by setting and restoring the umask.
    """
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def check_regular_file(path: str | os.PathLike, what: str = "data", error: type = DataError) -> Path:
    """``path`` if it is a regular file (or a folder); an ``error`` naming what it is otherwise.

    A FIFO, a socket or a device (``/dev/zero`` behind a ``.csv`` name) is refused before it is
    opened: reading one would block forever or never end.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise error(f"{path} cannot be read ({exc.strerror or exc}); check the path and its permissions.") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return path
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    raise error(
        f"{path} is {kind}, not a regular file; latentlab reads {what} from files on disk (a pipe or a device "
        "could block forever or never end): save the data to a file first and pass its path."
    )


def fsync_dir(path: Path) -> None:
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
    if path.is_dir():
        from .errors import ConfigError

        raise ConfigError(f"{path} is a folder; give the name of a file to write.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())  # mkstemp creates 0600: the file gets what open() would give it
    except (OSError, AttributeError):  # pragma: no cover - platforms without fchmod
        pass
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
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def tensor_bytes(tensors: Mapping[str, torch.Tensor], meta: Any = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` (and a JSON-serialisable ``meta``)."""
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    metadata = {"latentlab": json.dumps(meta, allow_nan=True)} if meta is not None else None
    return save(flat, metadata=metadata)


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], meta: Any = None) -> None:
    """Write tensors (and a JSON-serialisable ``meta``) to one safetensors file, atomically."""
    atomic_write_bytes(path, tensor_bytes(tensors, meta))


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
    """The JSON in ``path`` (a run.json or config.json): refused with a CheckpointError, before it is
    read, when it is not a regular file or larger than ``LATENTLAB_MAX_JSON_MB``; nesting too deep
    for the parser is a CheckpointError too, not a RecursionError."""
    from .limits import human_bytes, limit

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; is this a latentlab run directory?")
    check_regular_file(path, "settings", CheckpointError)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a JSON file; is this a latentlab run directory?")
    size, cap = path.stat().st_size, limit("LATENTLAB_MAX_JSON_MB") * (1 << 20)
    if size > cap:
        raise CheckpointError(
            f"{path} is {human_bytes(size)}, above the limit of {human_bytes(cap)} for a latentlab settings file "
            "(LATENTLAB_MAX_JSON_MB), so it is not one that latentlab wrote: restore it from a copy, or fit again."
        )
    try:
        with open(path, "rb") as f:
            text = f.read(int(cap) + 1).decode("utf-8")
        return json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{path} is nested too deeply to be a latentlab file; restore it from a copy, or fit again.") from None
    except (UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError, as are over-long numbers
        raise CheckpointError(
            f"{path} is not valid JSON ({exc}); the file is corrupt: restore it from a copy, or save "
            "(fit) again."
        ) from None


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------- locks
_HELD: dict[str, list] = {}  # lock file -> [fd, count]: a lock is re-entrant within its process


class FolderLock:
    """An exclusive lock on a folder, held by this process until :meth:`release`: the file
    ``.NAME.lock`` beside the folder, locked with ``flock`` (the kernel releases it when the process
    dies, so the lock of a killed process is free again). Its text names the holder (pid, host,
    command, time) for the error another writer gets; the holder removes it as it releases it (a
    process that opened it meanwhile sees that and locks the new one). Re-entrant within one process.

    Example
    -------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with FolderLock(d):
    ...     pass
    """

    def __init__(self, folder: str | os.PathLike, command: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder.parent / f".{self.folder.name}.lock"
        self.command = command
        self.acquired = False

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False

    def acquire(self) -> None:
        key = str(self.path.resolve()) if self.path.parent.exists() else str(self.path)
        held = _HELD.get(key)
        if held is not None:
            held[1] += 1
            self.acquired, self._key = True, key
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                _lock_fd(fd, self.path)
                if _same_file(fd, self.path):
                    break  # else the holder removed the file as it released it: lock the new one
                os.close(fd)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunInUseError(
                    f"{self.folder} is being written by another latentlab process ({holder}); wait for it to finish, "
                    "or write to another folder (--out)."
                ) from None
            except BaseException:
                os.close(fd)
                raise
        else:  # pragma: no cover - a file that changes under us a hundred times
            raise RunInUseError(f"{self.path} keeps changing; another process is taking the lock of {self.folder}.")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": self.command or " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
        _HELD[key] = [fd, 1]
        self.acquired, self._key = True, key

    def release(self) -> None:
        if not self.acquired:
            return
        self.acquired = False
        held = _HELD.get(self._key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[self._key]
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still held: a process that opened it sees it is gone, and retries
            os.close(held[0])  # closing the descriptor releases the flock


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _lock_fd(fd: int, path: Path) -> None:
    """flock(LOCK_EX | LOCK_NB) where there is one; else an O_EXCL marker with the pid."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock; the pid in the file decides
        text = os.read(fd, 4096).decode("utf-8", "replace")
        try:
            pid = int(json.loads(text)["pid"])
            os.kill(pid, 0)
            if pid != os.getpid():
                raise BlockingIOError
        except (ValueError, KeyError, TypeError, OSError):
            pass  # no holder, or a dead one: taken over
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 65536, 0).decode("utf-8"))
        return f"pid {info['pid']} on {info['host']}, since {info['since']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


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
