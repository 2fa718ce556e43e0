"""Every data source loads from small files made here; bad files give latentlab's own errors."""

import gzip
import struct

import numpy as np
import pytest
from conftest import mnist_path

from latentlab.datasets import load, load_binarized_mnist, load_mnist, read_amat, read_idx
from latentlab.datasets import load_table
from latentlab.errors import DataError, DataTypeError
from latentlab.training.data import ShardedArray


# ------------------------------------------------------------------ small files in the public formats
def write_idx(path, arr: np.ndarray, gz: bool = True):
    """An IDX file (MNIST's format): 0, 0, type 0x08 (ubyte), ndim, big-endian sizes, data."""
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = head + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_amat(path, arr: np.ndarray):
    np.savetxt(path, arr, fmt="%d")
    return path


def make_idx_folder(folder, n_train=12, n_test=5, side=4, seed=0, gz=True):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        img = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        lab = rng.integers(0, 10, size=n, dtype=np.uint8)
        sfx = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{sfx}", img, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{sfx}", lab, gz)
        out[prefix] = (img, lab)
    return out


def make_amat_folder(folder, sizes=(10, 4, 3), side=4, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in zip(("train", "valid", "test"), sizes):
        a = rng.integers(0, 2, size=(n, side * side))
        write_amat(folder / f"binarized_mnist_{split}.amat", a)
        out[split] = a
    return out


# ------------------------------------------------------------------ named sources
def test_digits_is_the_default():
    d = load()
    assert d.data.shape == (1797, 64) and d.image_shape == (8, 8) and d.kind == "image"
    assert d.target.shape == (1797,)


def test_amat_folder_and_file(tmp_path):
    parts = make_amat_folder(tmp_path / "bm")
    d = load(str(tmp_path / "bm"))
    assert d.kind == "binary" and d.data.shape == (10, 16) and d.image_shape == (4, 4)
    np.testing.assert_array_equal(d.data, parts["train"])
    np.testing.assert_array_equal(d.splits["test"].data, parts["test"])
    assert d.splits["valid"].data.shape == (4, 16)
    one = load(str(tmp_path / "bm" / "binarized_mnist_valid.amat"))
    np.testing.assert_array_equal(one.data, parts["valid"])


def test_amat_reader_matches_the_public_layout(tmp_path):
    # The public files: one space between values, a newline after each row; read without parsing.
    a = np.random.default_rng(1).integers(0, 2, size=(7, 784)).astype(np.uint8)
    text = "\n".join(" ".join(map(str, r)) for r in a) + "\n"
    (tmp_path / "x.amat").write_text(text)
    np.testing.assert_array_equal(read_amat(tmp_path / "x.amat"), a)


@pytest.mark.parametrize(
    "content, msg",
    [("0 1 2\n1 0 1\n", "other than 0 and 1"), ("0 1 1\n1 0\n", "different lengths"), ("0 a 1\n", "not numbers"), ("", "empty")],
)
def test_bad_amat(tmp_path, content, msg):
    (tmp_path / "bad.amat").write_text(content)
    with pytest.raises(DataError, match=msg):
        load(str(tmp_path / "bad.amat"))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder(tmp_path, gz):
    parts = make_idx_folder(tmp_path / "m", gz=gz)
    d = load(str(tmp_path / "m"))
    img, lab = parts["train"]
    assert d.kind == "image" and d.data.dtype == np.float32 and d.image_shape == (4, 4)
    np.testing.assert_allclose(d.data, img.reshape(len(img), -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.target, lab)
    assert d.splits["test"].data.shape == (5, 16)


def test_idx_single_file_and_reader(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = write_idx(tmp_path / "x-idx3-ubyte", arr, gz=False)
    np.testing.assert_array_equal(read_idx(p), arr)
    d = load(str(p))
    assert d.image_shape == (3, 4) and d.data.max() <= 1.0


def test_truncated_and_foreign_idx(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = write_idx(tmp_path / "x-idx3-ubyte", arr, gz=False)
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(p)
    (tmp_path / "y-idx3-ubyte").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "y-idx3-ubyte")
    (tmp_path / "z-idx3-ubyte.gz").write_bytes(b"\x1f\x8b broken gzip")
    with pytest.raises(DataError, match="corrupt"):
        read_idx(tmp_path / "z-idx3-ubyte.gz")


def test_named_sources_from_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path))
    make_idx_folder(tmp_path / "mnist", seed=1)
    make_idx_folder(tmp_path / "fashion-mnist", n_train=8, seed=2)
    make_amat_folder(tmp_path / "binarized-mnist")
    assert load("mnist").data.shape == (12, 16)
    assert load("fashion-mnist").data.shape == (8, 16)
    bm = load("binarized-mnist")
    assert bm.data.shape == (10, 16) and set(bm.splits) == {"valid", "test"}


def test_binarized_mnist_npz_layout(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {s: np.asfortranarray(rng.integers(0, 2, size=(n, 16)).astype(np.uint8)) for s, n in (("train", 9), ("valid", 3), ("test", 4))}
    np.savez(tmp_path / "binarized_mnist.npz", **arrays)
    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path))
    d = load("binarized-mnist")
    assert d.name == "binarized-mnist" and d.kind == "binary" and d.data.flags.c_contiguous
    np.testing.assert_array_equal(d.splits["test"].data, arrays["test"])


def test_named_source_missing_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path))
    with pytest.raises(DataError, match="was not found in"):
        load_mnist("mnist", download=False)
    with pytest.raises(DataError, match="binarized-mnist was not found"):
        load_binarized_mnist(download=False)
    with pytest.raises(DataError, match="does not hold the files"):
        load_mnist("mnist", tmp_path, download=False)


def test_unknown_source():
    with pytest.raises(DataError, match="neither a known name nor an existing path"):
        load("no-such-thing")


# ------------------------------------------------------------------ the user's own files
def test_npy_is_memory_mapped(tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    d = load(str(tmp_path / "x.npy"))
    assert isinstance(d.data, np.memmap) and d.kind == "tabular"
    np.testing.assert_array_equal(np.asarray(d.data), X)


def test_npy_kinds(tmp_path):
    np.save(tmp_path / "b.npy", np.random.default_rng(0).integers(0, 2, size=(6, 5)).astype(np.float32))
    np.save(tmp_path / "img.npy", np.full((3, 4, 5), 255, dtype=np.uint8))
    assert load(str(tmp_path / "b.npy")).kind == "binary"
    img = load(str(tmp_path / "img.npy"))
    assert img.image_shape == (4, 5) and img.data.shape == (3, 20) and float(img.data.max()) == 1.0


def test_npz_keys_and_splits(tmp_path):
    a, b = np.ones((4, 3)), np.zeros((5, 3))
    np.savez(tmp_path / "two.npz", a=a, b=b)
    np.savez(tmp_path / "one.npz", only=a)
    np.savez(tmp_path / "split.npz", train=b, test=a)
    assert load(f"{tmp_path}/two.npz:b").data.shape == (5, 3)
    assert load(str(tmp_path / "one.npz")).data.shape == (4, 3)
    s = load(str(tmp_path / "split.npz"))
    assert s.data.shape == (5, 3) and s.splits["test"].data.shape == (4, 3)
    with pytest.raises(DataError, match=r"holds several arrays \['a', 'b'\]; pick one"):
        load(str(tmp_path / "two.npz"))
    with pytest.raises(DataError, match="has no array 'c'"):
        load(f"{tmp_path}/two.npz:c")


def test_csv_with_header_and_tsv_without(tmp_path):
    (tmp_path / "t.csv").write_text("height,weight,age\n1.5,60,30\n1.8,80,41\n1.6,,25\n")
    d = load(str(tmp_path / "t.csv"))
    assert d.feature_names == ["height", "weight", "age"] and d.kind == "tabular"
    assert d.data.shape == (3, 3) and np.isnan(d.data[2, 1])
    (tmp_path / "t.tsv").write_text("1\t2\n3\t4\n")
    t = load(str(tmp_path / "t.tsv"))
    assert t.feature_names is None
    np.testing.assert_array_equal(t.data, [[1, 2], [3, 4]])


def test_csv_names_the_non_numeric_column(tmp_path):
    """A text column makes a mixed-type table (tests/test_tables.py); where numbers are needed
    (numeric_only, as for a labels matrix) it is an error that names it."""
    (tmp_path / "t.csv").write_text("a,city,b\n1,Paris,2\n3,Rome,4\n")
    assert load(str(tmp_path / "t.csv")).kind == "mixed"
    with pytest.raises(DataTypeError, match=r"non-numeric column\(s\) 'city' \(e.g. 'Paris' on line 2\)"):
        load_table(tmp_path / "t.csv", numeric_only=True)
    (tmp_path / "r.csv").write_text("1,2\n3\n")
    with pytest.raises(DataError, match="line 2 has 1 fields but the table has 2"):
        load(str(tmp_path / "r.csv"))


def test_folder_of_npy_shards(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(n, 4)).astype(np.float32) for n in (5, 7, 3)]
    for i, p in enumerate(parts):
        np.save(tmp_path / f"part-{i}.npy", p)
    d = load(str(tmp_path))
    assert isinstance(d.data, ShardedArray) and d.data.shape == (15, 4)
    np.testing.assert_array_equal(d.data[np.arange(15)], np.concatenate(parts))


def _png(path, arr, mode="L"):
    from PIL import Image

    Image.fromarray(arr, mode=mode).save(path)


def test_image_folder_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            _png(tmp_path / cls / f"{i}.png", rng.integers(0, 256, size=(6, 5), dtype=np.uint8))
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, size=(6, 5), dtype=np.uint8)).save(tmp_path / "dog" / "x.jpg")
    d = load(str(tmp_path))
    assert d.image_shape == (6, 5) and d.data.shape == (7, 30) and d.kind == "image"
    assert 0.0 <= d.data.min() and d.data.max() <= 1.0
    assert d.info["classes"] == ["cat", "dog"] and list(d.target) == [0, 0, 0, 1, 1, 1, 1]


def test_sixteen_bit_grey_images(tmp_path):
    from PIL import Image

    (tmp_path / "g").mkdir()
    for i, v in enumerate((0, 32768, 65535)):
        Image.fromarray(np.full((3, 3), v, dtype=np.uint16)).save(tmp_path / "g" / f"{i}.png")
    d = load(str(tmp_path / "g"))
    np.testing.assert_allclose(d.data[:, 0], [0.0, 32768 / 65535, 1.0], rtol=1e-6)


def test_colour_images_and_mixed_sizes(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "c").mkdir()
    for i in range(2):
        _png(tmp_path / "c" / f"{i}.png", rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8), "RGB")
    assert load(str(tmp_path / "c")).image_shape == (3, 4, 4)
    (tmp_path / "m").mkdir()
    _png(tmp_path / "m" / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "m" / "b.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(DataError, match="different sizes: a.png is 4x4 but b.png is 4x5; resize"):
        load(str(tmp_path / "m"))


def test_unreadable_image_and_unknown_type(tmp_path):
    (tmp_path / "i").mkdir()
    (tmp_path / "i" / "a.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="not a readable image"):
        load(str(tmp_path / "i"))
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match="does not read"):
        load(str(tmp_path / "x.parquet"))


@pytest.mark.mnist
def test_the_real_binarized_mnist(monkeypatch):
    p = mnist_path()
    if p is None:
        pytest.skip("binarized_mnist.npz not found (set LATENTLAB_DATA or put it in ../shared/data)")
    monkeypatch.setenv("LATENTLAB_DATA", str(p))
    d = load("binarized-mnist")
    assert d.data.shape == (50000, 784) and d.image_shape == (28, 28)
    assert d.splits["valid"].data.shape == (10000, 784) and d.splits["test"].data.shape == (10000, 784)
    assert d.kind == "binary"
