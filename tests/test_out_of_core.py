"""Data larger than memory: .npy files memory-mapped, folders of shards, batches read from the map."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentlab import PCA, VAE, Autoencoder
from latentlab.validation import as_array
from latentlab.errors import DataError
from latentlab.training import ShardedArray
from latentlab.training import data as data_mod
from latentlab.training.data import ArrayData, open_npy

REPO = Path(__file__).resolve().parents[1]


def _params(est):
    return {k: v.clone() for k, v in est.module_.state_dict().items()}


@pytest.fixture
def shards(tmp_path, rng):
    """Binary uint8 data (300, 10) saved as 11 shards of uneven sizes, named part0 ... part10."""
    X = (rng.random((300, 10)) < 0.3).astype(np.uint8)
    cuts = [0, 7, 40, 41, 90, 150, 151, 200, 230, 260, 299, 300]
    d = tmp_path / "shards"
    d.mkdir()
    for k, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
        np.save(d / f"part{k}.npy", X[lo:hi])
    return X, d


# --------------------------------------------------------------------------- opening
def test_open_npy_maps_a_file_in_its_stored_dtype(tmp_path, rng):
    X = rng.integers(0, 255, size=(50, 3, 4), dtype=np.uint8)
    np.save(tmp_path / "x.npy", X)
    m = open_npy(tmp_path / "x.npy")
    assert isinstance(m, np.memmap) and m.dtype == np.uint8 and m.shape == (50, 3, 4)
    np.testing.assert_array_equal(m, X)


def test_a_folder_of_shards_is_one_dataset_in_natural_name_order(shards):
    X, d = shards
    S = open_npy(d)
    assert isinstance(S, ShardedArray) and S.shape == X.shape and S.dtype == np.uint8 and len(S.shards) == 11
    assert all(isinstance(s, np.memmap) for s in S.shards)  # part10 is last, not after part1
    idx = np.random.default_rng(1).permutation(300)[:64]
    np.testing.assert_array_equal(S.take(idx), X[idx])
    np.testing.assert_array_equal(S[35:45], X[35:45])
    np.testing.assert_array_equal(S.reshape(300, 2, 5)[[3, 299]], X[[3, 299]].reshape(2, 2, 5))


def test_open_npy_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(DataError, match="does not exist; give a .npy file or a folder of .npy shards"):
        open_npy(tmp_path / "nope.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder without .npy files"):
        open_npy(tmp_path / "empty")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="not a readable .npy file .*write it with np.save"):
        open_npy(tmp_path / "bad.npy")
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(DataError, match=r"shape \(5,\); expected \(n_samples, n_features\)"):
        open_npy(tmp_path / "flat.npy")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "a.npy", np.zeros((3, 4), np.uint8))
    np.save(mixed / "b.npy", np.zeros((3, 5), np.uint8))
    with pytest.raises(DataError, match=r"different example shapes \(4,\) and \(5,\)"):
        open_npy(mixed)
    np.save(mixed / "b.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(DataError, match="different dtypes uint8 and float32; save every shard with one dtype"):
        open_npy(mixed)


def test_input_checks_keep_mapped_data_mapped_whatever_its_dtype(tmp_path, shards):
    for dt in (np.uint8, np.float16, np.float64):
        np.save(tmp_path / "x.npy", np.ones((20, 3), dt))
        m = np.load(tmp_path / "x.npy", mmap_mode="r")
        assert as_array(m) is m  # not copied into memory as float32
    _, d = shards
    S = open_npy(d)
    assert as_array(S) is S
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((20, 3), np.float32)))
    fortran = np.load(tmp_path / "f.npy", mmap_mode="r")
    assert not isinstance(as_array(fortran), np.memmap)  # column-major rows are scattered: copied once
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [0.0, 1.0]], np.float32))
    with pytest.raises(DataError, match="1 NaN or infinite value"):
        as_array(np.load(tmp_path / "nan.npy", mmap_mode="r"))


# --------------------------------------------------------------------------- training from the map
def test_training_on_a_memmap_equals_training_in_memory(tmp_path, rng):
    """Batches gathered from the map are row for row the in-memory batches: same weights, bit for bit."""
    X = (rng.random((400, 16)) < 0.3).astype(np.uint8)
    np.save(tmp_path / "x.npy", X)
    m = open_npy(tmp_path / "x.npy")
    for cls in (VAE, Autoencoder):
        kw = dict(latent_dim=2, hidden=(16,), epochs=2, batch_size=32, verbose=False)
        a, b = cls(**kw).fit(m), cls(**kw).fit(X.astype(np.float32))
        pa, pb = _params(a), _params(b)
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
        np.testing.assert_array_equal(a.transform(m), b.transform(X))
        np.testing.assert_allclose(a.score(m), b.score(X), rtol=1e-6)


def test_fit_transform_score_read_sharded_data_in_bounded_pieces(shards, monkeypatch):
    """Instrumented reads: every read from the shards is a batch or a chunk, never the whole set."""
    X, d = shards
    reads = []
    real_take = ShardedArray.take

    def take(self, idx):
        reads.append(len(idx))
        return real_take(self, idx)

    def whole(self, *a, **k):
        raise AssertionError("the whole sharded dataset was loaded into memory")

    monkeypatch.setattr(ShardedArray, "take", take)
    monkeypatch.setattr(ShardedArray, "__array__", whole)
    monkeypatch.setattr("latentlab.validation.chunk_rows", lambda arr, target_bytes=0: 64)  # whole-data passes
    monkeypatch.setattr("latentlab.models.neural._EVAL_BATCH", 100)  # transform and score
    S = open_npy(d)
    ae = Autoencoder(latent_dim=2, hidden=(8,), epochs=2, batch_size=16, verbose=False).fit(S)
    assert ae.transform(S).shape == (300, 2) and np.isfinite(ae.score(S))
    vae = VAE(latent_dim=2, hidden=(8,), epochs=1, batch_size=16, verbose=False).fit(S)
    assert vae.likelihood_ == "bernoulli" and np.isfinite(vae.score(S))
    pca = PCA(latent_dim=3).fit(S)
    ref = PCA(latent_dim=3).fit(X)
    np.testing.assert_allclose(pca.components_, ref.components_, atol=1e-10)
    np.testing.assert_allclose(pca.transform(S), ref.transform(X), atol=1e-10)
    np.testing.assert_allclose(pca.score(S), ref.score(X), rtol=1e-10)
    assert reads and max(reads) <= 64 < len(X)  # whole-data passes, in chunks through the maps
    # batches are read from the shards' files with pread (counted in the memmap test below)
    assert all(r is not None for r in ArrayData([S], torch.device("cpu"))._readers)


def test_pca_on_a_memmap_matches_pca_in_memory(tmp_path, spectrum_data):
    np.save(tmp_path / "x.npy", spectrum_data)
    m = open_npy(tmp_path / "x.npy")
    for kw in (dict(), dict(whiten=True, scale="standard")):
        a, b = PCA(latent_dim=3, **kw).fit(m), PCA(latent_dim=3, **kw).fit(spectrum_data)
        np.testing.assert_allclose(a.components_, b.components_, atol=1e-9)
        np.testing.assert_allclose(a.explained_variance_, b.explained_variance_, rtol=1e-10)
        np.testing.assert_allclose(a.noise_variance_, b.noise_variance_, rtol=1e-9)
        np.testing.assert_allclose(a.transform(m), b.transform(spectrum_data), atol=1e-9)
        np.testing.assert_allclose(a.score_samples(m), b.score_samples(spectrum_data), rtol=1e-9)


_RSS_JOB = r"""
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
from latentlab import VAE
from latentlab.training.data import open_npy

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

X = open_npy(sys.argv[1])
if sys.argv[2] == "split":  # the training split of a random split: an index into the map
    from latentlab.datasets import load, split_data
    X = split_data(load(sys.argv[1]), 0.1, 0)["train"].data
kw = dict(latent_dim=2, hidden=(16,), epochs=1, batch_size=1024, validation_fraction=0.0, patience=None, verbose=False)
warm = VAE(**kw).fit(np.asarray(X[:4096]))  # torch's one-time allocations happen here, not below
warm.transform(X[:4096]), warm.score(X[:4096])
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM, the peak resident set, to the current one
base = status("VmRSS")
vae = VAE(**kw).fit(X)
Z = vae.transform(X)
s = vae.score(X)
print(json.dumps({"base": base, "peak": status("VmHWM"), "n_codes": len(Z), "score": s}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc/self/clear_refs")
@pytest.mark.parametrize("rows", ["whole", "split"])
def test_fit_transform_score_on_a_memmap_keep_the_resident_set_well_under_the_data(tmp_path, rows):
    """A cold 128 MiB file read whole by fit (twice: statistics, then an epoch), transform and
    score: the peak resident set may grow by at most a third of it (measured: 16 to 24 MiB, with
    a 16 MiB release budget for mapped pages; the rest is index arrays and batch temporaries).
    Reading the batches through the map instead made the whole file resident. The same for the
    training split of a random split (90% of the rows, an index into the map)."""
    n, f = 1 << 19, 256
    path = tmp_path / "big.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": (n, f)})
        rng = np.random.default_rng(0)
        for _ in range(0, n, 32768):
            (rng.random((32768, f), dtype=np.float32) < 0.2).astype(np.uint8).tofile(fh)
        fh.flush()
        os.fsync(fh.fileno())
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # cold, as data larger than RAM is
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "LATENTLAB_MMAP_RESIDENT_MB": "16"}
    run = subprocess.run([sys.executable, "-c", _RSS_JOB, str(path), rows], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["n_codes"] == (n if rows == "whole" else n - round(n * 0.1)) and np.isfinite(r["score"])
    data_bytes = n * f
    assert r["peak"] - r["base"] < data_bytes / 3, (r, data_bytes)


def test_batches_from_a_memmap_are_read_with_pread_in_batch_sized_pieces(tmp_path, rng, monkeypatch):
    """Instrumented reads: every byte of every batch comes from positioned reads of the file,
    in pieces no larger than a batch, and each epoch reads each training row once."""
    import latentlab.memmap as mm

    X = (rng.random((1000, 24)) < 0.3).astype(np.uint8)
    np.save(tmp_path / "x.npy", X)
    reads = []
    real = os.preadv

    def preadv(fd, buffers, offset):
        got = real(fd, buffers, offset)
        reads.append(got)
        return got

    monkeypatch.setattr(mm.os, "preadv", preadv)
    monkeypatch.setattr("latentlab.models.neural._EVAL_BATCH", 100)
    m = open_npy(tmp_path / "x.npy")
    ae = Autoencoder(latent_dim=2, hidden=(8,), epochs=2, batch_size=50, validation_fraction=0.0, patience=None, verbose=False)
    ae.fit(m)
    # Two epochs, each row once, and one pass (of up to 5000 rows: here all) keeping the training codes
    # that the fitted samplers (sampler="gmm") start from.
    assert sum(reads) == 3 * 1000 * 24
    assert max(reads) <= 50 * 24
    reads.clear()
    ae.transform(m)
    assert sum(reads) == 1000 * 24 and max(reads) <= 100 * 24
    sliced = m[300:700]  # a view of the map: positions are found from its data pointer
    reads.clear()
    np.testing.assert_array_equal(ae.transform(sliced), ae.transform(X[300:700]))
    assert sum(reads) == 400 * 24
