"""MNIST, Fashion-MNIST (IDX files) and the statically binarized MNIST (``.amat`` files).

Each is found, in order: at a path the user gives; in the data folders (``$LATENTLAB_DATA``, then
``~/.cache/latentlab``); or downloaded into the cache from its public address, with the published
checksum checked. Base URLs and checksums live in :data:`RESOURCES` and can be passed in, so tests
serve small files from a local server.

Checksums: the IDX files have the MD5s that torchvision publishes for them; the ``.amat`` files
the SHA-256s that TensorFlow Datasets publishes (the project's ``binarized_mnist.npz`` reproduces
those three files byte for byte).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .core import Dataset
from .download import cache_dir, download

__all__ = ["RESOURCES", "Resource", "read_idx", "read_amat", "load_binarized_mnist", "load_mnist", "data_dirs"]


@dataclass(frozen=True)
class Resource:
    """A public data set made of files: where to download them and their checksums."""

    name: str
    base_url: str
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # file name -> (algorithm, digest)


RESOURCES: dict[str, Resource] = {
    "binarized-mnist": Resource(
        "binarized-mnist",
        "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
        {
            "binarized_mnist_train.amat": ("sha256", "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
            "binarized_mnist_valid.amat": ("sha256", "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
            "binarized_mnist_test.amat": ("sha256", "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
        },
    ),
    "mnist": Resource(
        "mnist",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "train-labels-idx1-ubyte.gz": ("md5", "d53e105ee54ea40749a09fcbcd1e9432"),
            "t10k-images-idx3-ubyte.gz": ("md5", "9fb629c4189551a2d022fa330f9573f3"),
            "t10k-labels-idx1-ubyte.gz": ("md5", "ec29112dd5afa0611ce80d1b7f02629c"),
        },
    ),
    "fashion-mnist": Resource(
        "fashion-mnist",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "train-labels-idx1-ubyte.gz": ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
            "t10k-images-idx3-ubyte.gz": ("md5", "bef4ecab320f06d8554ea6380940ec79"),
            "t10k-labels-idx1-ubyte.gz": ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
        },
    ),
}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def data_dirs() -> list[Path]:
    """The folders searched for named data sets: ``$LATENTLAB_DATA`` (a folder, or the folder of a
    file) and the download cache."""
    out = []
    env = os.environ.get("LATENTLAB_DATA")
    if env:
        p = Path(env).expanduser()
        out.append(p.parent if p.is_file() else p)
    c = cache_dir()
    if c not in out:
        out.append(c)
    return out


def _read_bytes(path: Path) -> bytes:
    """The bytes of ``path`` (gunzipped for ``.gz``), refused before they pass the size limit of
    data read whole (``LATENTLAB_MAX_TEXT_MB``): a small .gz can decompress to gigabytes."""
    from ..io import check_regular_file
    from ..limits import check_text_size, limit

    check_regular_file(path)
    cap = int(limit("LATENTLAB_MAX_TEXT_MB") * (1 << 20))
    try:
        check_text_size(path, path.stat().st_size)
        if path.suffix != ".gz":
            return path.read_bytes()
        parts, total = [], 0
        with gzip.open(path, "rb") as f:
            while block := f.read(1 << 24):
                total += len(block)
                if total > cap:
                    check_text_size(f"{path} (decompressed)", total)
                parts.append(block)
        return b"".join(parts)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path} could not be read ({exc}); the file is truncated or corrupt: download it again.") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (MNIST's format; gzipped or not) into an array of its stored shape.

    Example: ``read_idx("train-images-idx3-ubyte.gz")`` is uint8 of shape (60000, 28, 28).
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number); pass MNIST's IDX files, gzipped or not.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (its header is incomplete); download it again.")
    shape = tuple(int(x) for x in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    need = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != need:
        raise DataError(
            f"{path} holds {len(raw) - header} bytes of data but its header promises {need} "
            f"(shape {shape}); the file is truncated or corrupt: download it again."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_amat(path: str | os.PathLike) -> np.ndarray:
    """Read a binarized-MNIST ``.amat`` text file (one image a line, 0/1 separated by spaces)
    into uint8 of shape (n, n_features)."""
    path = Path(path)
    raw = _read_bytes(path)
    lines = raw.split(b"\n", 1)
    width = len(lines[0].split())
    if width == 0:
        raise DataError(f"{path} is empty; download it again.")
    # The public files have exactly one space between values: read them as bytes, no parsing.
    stride = 2 * width
    buf = np.frombuffer(raw, np.uint8)
    if len(buf) % stride == 0:
        rows = buf.reshape(-1, stride)
        vals = rows[:, 0::2]
        if (rows[:, 1::2][:, :-1] == ord(" ")).all() and (rows[:, -1] == ord("\n")).all() and ((vals == 48) | (vals == 49)).all():
            return (vals - 48).astype(np.uint8)
    try:
        arr = np.array(raw.split(), dtype=np.float64)
    except ValueError:
        raise DataError(f"{path} holds values that are not numbers; an .amat file holds 0/1 values separated by spaces.") from None
    if arr.size % width:
        raise DataError(
            f"{path} has rows of different lengths (the first has {width} values); the file is "
            "truncated or corrupt: download it again."
        )
    arr = arr.reshape(-1, width)
    if not np.isin(arr, (0.0, 1.0)).all():
        raise DataError(f"{path} holds values other than 0 and 1; binarized MNIST is binary.")
    return arr.astype(np.uint8)


def square_images(a: np.ndarray) -> np.ndarray | None:
    """(n, F) -> (n, s, s) when F is a square number (28 x 28 for MNIST), else None."""
    side = int(round(a.shape[1] ** 0.5))
    return a.reshape(len(a), side, side) if side * side == a.shape[1] else None


def _find(res: Resource, names: list[str], where: Path | None) -> Path | None:
    """The first folder (of ``where`` and the data folders, each also with a ``res.name``
    subfolder) that holds every file in ``names`` (each also accepted without ``.gz``)."""
    candidates = [where] if where is not None else []
    for d in data_dirs():
        candidates += [d / res.name, d]
    for d in candidates:
        if d is not None and all(_present(d, n) is not None for n in names):
            return d
    return None


def _present(folder: Path, name: str) -> Path | None:
    for n in (name, name[:-3] if name.endswith(".gz") else name + ".gz"):
        if (folder / n).is_file():
            return folder / n
    return None


def _fetch(res: Resource, names: list[str], base_url: str | None, checksums: dict | None, allow_download: bool) -> Path:
    target = data_dirs()[0] / res.name
    if not allow_download:
        raise DataError(
            f"{res.name} was not found in {', '.join(str(d) for d in data_dirs())}; put the files "
            f"{', '.join(names)} there (or in a '{res.name}' folder inside), or pass --data PATH."
        )
    base = base_url or res.base_url
    sums = checksums if checksums is not None else res.files
    for n in names:
        if _present(target, n) is None:
            url = base.rstrip("/") + "/" + n
            download(url, target / n, sums.get(n))
    return target


def _dataset_dir(res: Resource, names: list[str], path, base_url, checksums, allow_download) -> Path:
    where = Path(path) if path is not None else None
    found = _find(res, names, where)
    if found is None and where is not None:
        raise DataError(f"{where} does not hold the files {', '.join(names)} of {res.name}; check the path.")
    return found if found is not None else _fetch(res, names, base_url, checksums, allow_download)


def load_binarized_mnist(path=None, *, base_url: str | None = None, checksums=None, download: bool = True) -> Dataset:
    """The statically binarized MNIST of Larochelle & Murray (2011): 50,000 / 10,000 / 10,000
    binary 28x28 images, no labels.

    Parameters
    ----------
    path : folder holding ``binarized_mnist_{train,valid,test}.amat``, an ``.npz`` with keys
        train/valid/test, or None to look in the data folders and download if needed.
    base_url, checksums : override the download address and the expected checksums.
    download : allow downloading when the files are not found.

    Returns
    -------
    Dataset of kind "binary": ``data`` (50000, 784) is the training set; ``splits`` has "valid"
    and "test".
    """
    npz = _binarized_npz(path)
    if npz is not None:
        from .files import load_npz

        ds = load_npz(npz)
        for part in (ds, *ds.splits.values()):
            part.images = square_images(part.data)
            part.name = "binarized-mnist"
        return ds
    res = RESOURCES["binarized-mnist"]
    names = list(res.files)
    d = _dataset_dir(res, names, path, base_url, checksums, download)
    parts = {s: read_amat(_present(d, f"binarized_mnist_{s}.amat")) for s in ("train", "valid", "test")}

    def mk(a):
        return Dataset(data=a, images=square_images(a), kind="binary", name="binarized-mnist")

    ds = mk(parts["train"])
    ds.splits = {"valid": mk(parts["valid"]), "test": mk(parts["test"])}
    return ds


def _binarized_npz(path) -> Path | None:
    """The project's ``binarized_mnist.npz`` layout (keys train/valid/test), where it is."""
    if path is not None:
        p = Path(path)
        if p.suffix == ".npz":
            return p
        return p / "binarized_mnist.npz" if (p / "binarized_mnist.npz").is_file() else None
    env = os.environ.get("LATENTLAB_DATA")
    if env and Path(env).suffix == ".npz" and Path(env).is_file():
        return Path(env)
    for d in data_dirs():
        for cand in (d / "binarized_mnist.npz", d / "binarized-mnist" / "binarized_mnist.npz"):
            if cand.is_file():
                return cand
    return None


def load_mnist(name: str = "mnist", path=None, *, base_url: str | None = None, checksums=None, download: bool = True) -> Dataset:
    """MNIST or Fashion-MNIST from the public IDX files: 60,000 training and 10,000 test 28x28
    images in [0, 1], with labels.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    path, base_url, checksums, download : as for :func:`load_binarized_mnist` (``path`` is a
        folder holding the four IDX files, gzipped or not).

    Returns
    -------
    Dataset of kind "image": ``data`` (60000, 784) float32, ``target`` the labels, ``splits["test"]``.
    """
    res = RESOURCES[name]
    names = list(res.files)
    d = _dataset_dir(res, names, path, base_url, checksums, download)

    def part(prefix):
        img = read_idx(_present(d, f"{prefix}-images-idx3-ubyte.gz"))
        lab = read_idx(_present(d, f"{prefix}-labels-idx1-ubyte.gz"))
        if img.ndim != 3 or lab.ndim != 1 or len(img) != len(lab):
            raise DataError(
                f"the {prefix} IDX files in {d} do not fit together (images {img.shape}, labels "
                f"{lab.shape}); download them again."
            )
        data = np.ascontiguousarray(img.reshape(len(img), -1), dtype=np.float32) / np.float32(255.0)
        return Dataset(data=data, target=lab.astype(np.int64), images=data.reshape(img.shape), kind="image", name=name)

    ds = part("train")
    ds.splits = {"test": part("t10k")}
    return ds
