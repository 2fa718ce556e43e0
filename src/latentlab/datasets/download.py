"""Downloading public data files: checksummed, atomic, and never leaving a partial file behind."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError
from ..io import atomic_open

__all__ = ["download", "file_digest", "cache_dir"]

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Where downloaded data goes: ``$LATENTLAB_DATA`` when it names a folder, else
    ``$XDG_CACHE_HOME/latentlab`` (by default ``~/.cache/latentlab``)."""
    env = os.environ.get("LATENTLAB_DATA")
    if env and not Path(env).is_file():
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "latentlab"


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, checksum: tuple[str, str] | None, *, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest``, checking ``checksum = (algorithm, hex digest)`` on the way.

    The bytes are streamed into a temporary file beside ``dest`` and hashed as they arrive; only
    when the whole file has arrived and its digest matches is it renamed to ``dest``. A failed
    transfer, a checksum mismatch or Ctrl-C leaves nothing at ``dest`` and no temporary file.

    Parameters
    ----------
    url : str
    dest : path of the file to create (its folder is created).
    checksum : (algorithm, hex digest), e.g. ("md5", "f68b...") or ("sha256", ...); None skips
        the check (only for files without a published checksum).
    timeout : seconds to wait for the server.

    Returns
    -------
    Path of the downloaded file.

    Raises
    ------
    DataError
        The server could not be reached or answered with an error, or the checksum differs.
    """
    dest = Path(dest)
    h = hashlib.new(checksum[0]) if checksum else None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_open(dest) as f:
            for block in iter(lambda: resp.read(_CHUNK), b""):
                f.write(block)
                if h is not None:
                    h.update(block)
            if h is not None and h.hexdigest() != checksum[1].lower():
                raise DataError(
                    f"the file downloaded from {url} has {checksum[0]} {h.hexdigest()}, but "
                    f"{checksum[1]} was expected; the download is corrupt or the server changed the "
                    f"file. Nothing was saved; try again, or download it yourself and check it."
                )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"could not download {url} ({reason}); check the network, or download the file "
            f"yourself and put it at {dest}."
        ) from None
    return dest
