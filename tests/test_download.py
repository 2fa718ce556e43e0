"""Downloads against a local HTTP server on 127.0.0.1 serving small files made here: checksums
are checked, files appear atomically, and a failure leaves nothing in the cache."""

import contextlib
import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest
from conftest import mnist_path
from test_datasets import make_amat_folder, make_idx_folder

from latentlab.datasets import RESOURCES, download, load, load_binarized_mnist, load_mnist
from latentlab.errors import DataError


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()


@contextlib.contextmanager
def serve(folder):
    """Serve ``folder`` on 127.0.0.1 at a free port for the duration of the block."""
    handler = type("H", (_Quiet,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_download_checks_and_writes_atomically(tmp_path):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "a.bin").write_bytes(b"x" * 3_000_000)
    with serve(tmp_path / "srv") as (url, _):
        dest = tmp_path / "cache" / "a.bin"
        download(url + "a.bin", dest, ("md5", md5(tmp_path / "srv" / "a.bin")))
        assert dest.read_bytes() == b"x" * 3_000_000
        assert _leftovers(tmp_path / "cache") == ["a.bin"]


def test_checksum_mismatch_fails_clearly_and_leaves_nothing(tmp_path):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "a.bin").write_bytes(b"payload")
    with serve(tmp_path / "srv") as (url, _):
        with pytest.raises(DataError, match=r"has sha256 [0-9a-f]{64}, but 0{64} was expected.*Nothing was saved"):
            download(url + "a.bin", tmp_path / "cache" / "a.bin", ("sha256", "0" * 64))
    assert _leftovers(tmp_path / "cache") == []


def test_missing_file_and_unreachable_server(tmp_path):
    (tmp_path / "srv").mkdir()
    with serve(tmp_path / "srv") as (url, _):
        with pytest.raises(DataError, match="could not download .*nope.bin"):
            download(url + "nope.bin", tmp_path / "cache" / "nope.bin", None)
    with pytest.raises(DataError, match="could not download"):
        download(url + "nope.bin", tmp_path / "cache" / "nope.bin", None, timeout=2)  # server is gone
    assert _leftovers(tmp_path / "cache") == []


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_downloads_into_the_cache_once(tmp_path, monkeypatch, name):
    parts = make_idx_folder(tmp_path / "srv")
    sums = {f: ("md5", md5(tmp_path / "srv" / f)) for f in RESOURCES[name].files}
    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path / "cache"))
    with serve(tmp_path / "srv") as (url, requests):
        d = load_mnist(name, base_url=url, checksums=sums)
        assert len(requests) == 4
        assert d.data.shape == (12, 16) and d.splits["test"].data.shape == (5, 16)
        np.testing.assert_array_equal(d.target, parts["train"][1])
        assert _leftovers(tmp_path / "cache") == sorted(RESOURCES[name].files)
        again = load(name)  # found in the cache: no new request
        assert len(requests) == 4 and again.data.shape == (12, 16)


def test_binarized_mnist_download_and_mismatch(tmp_path, monkeypatch):
    make_amat_folder(tmp_path / "srv")
    files = RESOURCES["binarized-mnist"].files
    good = {f: ("sha256", hashlib.sha256((tmp_path / "srv" / f).read_bytes()).hexdigest()) for f in files}
    bad = dict(good)
    bad["binarized_mnist_valid.amat"] = ("sha256", "f" * 64)
    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path / "cache"))
    with serve(tmp_path / "srv") as (url, _):
        with pytest.raises(DataError, match="binarized_mnist_valid.amat has sha256"):
            load_binarized_mnist(base_url=url, checksums=bad)
        # The train file that came before the bad one is whole and kept; the bad one left nothing.
        assert "binarized_mnist_valid.amat" not in _leftovers(tmp_path / "cache")
        assert not [n for n in _leftovers(tmp_path / "cache") if n.endswith(".tmp")]
        d = load_binarized_mnist(base_url=url, checksums=good)
    assert d.data.shape == (10, 16) and d.splits["valid"].data.shape == (4, 16)


def test_published_checksums_are_the_ones_in_the_code():
    assert RESOURCES["mnist"].files["train-images-idx3-ubyte.gz"] == ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873")
    assert RESOURCES["fashion-mnist"].files["t10k-labels-idx1-ubyte.gz"] == ("md5", "bb300cfdad3c16e7a12a480ee83cd310")
    assert all(alg == "sha256" for alg, _ in RESOURCES["binarized-mnist"].files.values())


@pytest.mark.mnist
def test_amat_checksums_match_the_project_copy():
    """The published SHA-256s of the .amat files are those of the text the project's npz holds:
    rebuild each file byte for byte (one space between values, a newline a row) and hash it."""
    p = mnist_path()
    if p is None:
        pytest.skip("binarized_mnist.npz not found (set LATENTLAB_DATA or put it in ../shared/data)")
    with np.load(p) as z:
        for split in ("valid", "test"):
            a = np.ascontiguousarray(z[split])
            chars = np.full((len(a), 2 * a.shape[1]), ord(" "), dtype=np.uint8)
            chars[:, 0::2] = a + ord("0")
            chars[:, -1] = ord("\n")
            alg, digest = RESOURCES["binarized-mnist"].files[f"binarized_mnist_{split}.amat"]
            assert hashlib.new(alg, chars.tobytes()).hexdigest() == digest
