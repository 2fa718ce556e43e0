"""Defaults that do not mislead: a random test split for data on disk too (read lazily, by index),
every command saying how the split was made, reconstruct on the test split, report examples at
random, the comparison naming its feature space, --labels in every syntax --data takes."""

import gzip
import json
import os

import numpy as np
import pytest
import torch

from latentlab import api, cli, load
from latentlab.datasets import load as load_source
from latentlab.datasets import read_labels, split_data
from latentlab.errors import DataError
from latentlab.memmap import RowReader, RowSubset, open_npy
from latentlab.report import example_rows
from latentlab.training.data import ArrayData

TINY = ["--epochs", "1", "--hidden", "16", "--eval-k", "10"]


def run(capsys, *argv, code=0):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == code, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    return out, err


@pytest.fixture
def sorted_digits(tmp_path, digits):
    """The digits sorted by class, as a memory-mapped .npy file (the 9s last), with their labels."""
    order = np.argsort(digits.target, kind="stable")
    X, y = digits.data[order][:600], digits.target[order][:600]  # classes 0 to 3
    np.save(tmp_path / "sorted.npy", X)
    np.save(tmp_path / "sorted_y.npy", y)
    return tmp_path / "sorted.npy", X, y


# --------------------------------------------------------------------------- the split of data on disk
def test_a_memory_mapped_file_is_split_at_random_and_stays_on_disk(sorted_digits):
    path, X, y = sorted_digits
    ds = load_source(str(path))
    parts = split_data(ds, 0.1, 0)
    train, test = parts["train"].data, parts["test"].data
    assert isinstance(train, RowSubset) and isinstance(test, RowSubset)  # index arrays, not copies
    assert isinstance(train.base, np.memmap) and str(train.base.filename) == str(path.resolve())
    assert len(test) == 60 and len(train) == 540
    rows = test.rows
    assert set(rows).isdisjoint(train.rows) and rows.max() > 500 and rows.min() < 100  # from all over the file
    np.testing.assert_array_equal(np.asarray(test), X[rows])
    # the same rows as in memory: the split does not depend on where the data lives
    mem = split_data(load_source("digits"), 0.1, 0)  # 1797 rows: another permutation, same rule
    assert len(mem["test"]) == 180


def test_fit_on_a_random_split_of_a_file_reads_it_by_positioned_reads(sorted_digits, monkeypatch, tmp_path):
    """api.fit on a class-sorted .npy: the test split holds every class, the model trains and is
    measured from the file, and no split is ever read into memory whole."""
    import latentlab.memmap as mm

    path, X, y = sorted_digits

    def whole(self, *a, **k):
        raise AssertionError("a split of the file was read into memory whole")

    reads = []
    real = os.preadv

    def preadv(fd, buffers, offset):
        got = real(fd, buffers, offset)
        reads.append(got)
        return got

    monkeypatch.setattr(RowSubset, "__array__", whole)
    monkeypatch.setattr(mm.os, "preadv", preadv)
    monkeypatch.setattr("latentlab.validation.chunk_rows", lambda arr, target_bytes=0: 64)  # whole-data passes
    monkeypatch.setattr("latentlab.models.neural._EVAL_BATCH", 100)
    monkeypatch.setattr("latentlab.evaluation.metrics._BATCH", 100)  # its reconstruction error: 400 rows a block
    cfg = api.RunConfig("vae", str(path), {"latent_dim": 2, "hidden": (16,), "epochs": 2, "batch_size": 50}, eval_k=5)
    r = api.fit(cfg, tmp_path / "run")
    assert r.metrics["n_test"] == 60 and np.isfinite(r.metrics["log_likelihood"])
    test_rows = r.test.data.rows
    assert len(np.unique(y[test_rows])) == 4  # every class; the last rows would all be 3s
    row = 64 * 4  # float32 rows
    assert reads and max(reads) <= 400 * row < 540 * row  # batches and chunks, never a whole split
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["data"]["split"] == "random rows held out: 60 test (test fraction 0.1, split seed 0), 540 train"


def test_a_row_subset_trains_exactly_as_its_rows_in_memory(tmp_path, rng):
    from latentlab import VAE

    X = (rng.random((300, 12)) < 0.3).astype(np.uint8)
    np.save(tmp_path / "x.npy", X)
    rows = np.sort(rng.permutation(300)[:200])
    sub = RowSubset(open_npy(tmp_path / "x.npy"), rows)
    assert RowReader.of(sub) is not None and all(r is not None for r in ArrayData([sub], torch.device("cpu"))._readers)
    kw = dict(latent_dim=2, hidden=(8,), epochs=2, batch_size=32, verbose=False)
    a, b = VAE(**kw).fit(sub), VAE(**kw).fit(X[rows].astype(np.float32))
    for k, v in a.module_.state_dict().items():
        assert torch.equal(v, b.module_.state_dict()[k])
    np.testing.assert_array_equal(a.transform(sub), b.transform(X[rows]))
    # composed and reordered subsets read the right rows
    again = RowSubset(sub, [5, 1, 3])
    np.testing.assert_array_equal(np.asarray(again), X[rows[[5, 1, 3]]])
    np.testing.assert_array_equal(RowReader.of(again).read(np.arange(3)), X[rows[[5, 1, 3]]])


# --------------------------------------------------------------------------- every command says how
def test_commands_say_how_the_split_was_made(tmp_path, capsys, sorted_digits):
    path, _, _ = sorted_digits
    d = tmp_path / "ae"
    out, _ = run(capsys, "fit", "ae", "--data", path, "--latent-dim", "2", *TINY, "--out", d)
    line = "split: random rows held out: 60 test (test fraction 0.1, split seed 0), 540 train"
    assert line in out.splitlines()
    assert json.loads((d / "run.json").read_text())["data"]["split"] == line[len("split: "):]
    out, _ = run(capsys, "evaluate", d, "--k", "5")
    assert line in out.splitlines()
    out, _ = run(capsys, "reconstruct", d, "--out", tmp_path / "r.npy")  # default: the test split
    assert f"{line}; rows used: test" in out and len(np.load(tmp_path / "r.npy")) == 60
    out, _ = run(capsys, "encode", d, "--out", tmp_path / "z.npy")
    assert f"{line}; rows used: all" in out and len(np.load(tmp_path / "z.npy")) == 600
    out, _ = run(capsys, "fit", "pca", "--data", path, "--test-fraction", "0", "--out", tmp_path / "p")
    assert "split: no test split (test fraction 0): all 600 rows train" in out
    out, _ = run(capsys, "evaluate", d, "--data", "digits", "--k", "5", "--json")
    assert json.loads(out)["how_split"] == "another source, without a split of its own: all 1797 rows"


def test_reconstruct_defaults_to_the_test_split_in_python(tmp_path):
    r = api.fit(api.RunConfig("pca", "digits", {"latent_dim": 2}), tmp_path / "p")
    X, R = api.reconstruct(tmp_path / "p")
    assert len(X) == len(R) == 180
    np.testing.assert_array_equal(X, r.test.data)
    assert len(api.reconstruct(tmp_path / "p", split="all")[0]) == 1797


def test_report_examples_are_random_rows_of_the_test_split(tmp_path, sorted_digits):
    path, X, y = sorted_digits
    api.fit(api.RunConfig("pca", str(path), {"latent_dim": 2}), tmp_path / "p")
    run_ = api.open_run(tmp_path / "p", labels=None)
    Xe, ye = example_rows(run_)
    assert Xe.shape == (60, 64) and ye is None  # the file has no labels
    test_rows = run_.test.data.rows
    # each example is a test row, and the first ten are not the first ten test rows in file order
    pos = [int(np.flatnonzero((X[test_rows] == x).all(1))[0]) for x in Xe[:10]]
    assert sorted(pos) != list(range(10)) and len(set(y[test_rows][pos])) > 1
    again, _ = example_rows(run_)
    np.testing.assert_array_equal(Xe, again)  # seeded


# --------------------------------------------------------------------------- the comparison's notes
def test_compare_names_the_feature_space_it_used(tmp_path, capsys, sorted_digits, monkeypatch):
    _, X, y = sorted_digits
    monkeypatch.setattr("latentlab.report.write_report", lambda out, runs, **kw: out / "index.html")  # figures: not here
    np.save(tmp_path / "x.npy", X[::3])  # 200 rows: 180 train, 20 test
    np.save(tmp_path / "y.npy", y[::3])
    args = ["compare", "--data", tmp_path / "x.npy", "--epochs", "1", "--hidden", "8", "--eval-k", "2", "--out"]
    out, _ = run(capsys, *args, tmp_path / "pca")  # no labels: the data's principal components
    assert "principal components (pca, " in out and "digit" not in out and "classifier" not in out
    assert "split: random rows held out: 20 test" in out
    out, _ = run(capsys, *args, tmp_path / "clf", "--labels", tmp_path / "y.npy")
    assert "a classifier " in out and "trained on the training labels" in out and "digit" not in out
    info = json.loads((tmp_path / "clf" / "vae" / "run.json").read_text())
    assert info["config"]["labels"] == str((tmp_path / "y.npy").resolve())
    # the report reopens the runs with their labels (the latent scatter is coloured by them)
    reopened = api.open_run(tmp_path / "clf" / "vae")
    assert reopened.test.target is not None and len(reopened.test.target) == 20


# --------------------------------------------------------------------------- --labels in every syntax
def test_labels_in_every_syntax_data_takes(tmp_path):
    y = np.arange(12) % 3
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "many.npz", y=y, side=np.ones((12, 2)))
    np.savez(tmp_path / "splits.npz", train=y[:8], valid=y[8:10], test=y[10:])
    (tmp_path / "y.csv").write_text("label\n" + "\n".join(map(str, y)) + "\n")
    idx = bytes([0, 0, 8, 1]) + (12).to_bytes(4, "big") + y.astype(np.uint8).tobytes()  # IDX: ubyte, 1-D, 12
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx)
    for spec in ("y.npy", "many.npz:y", "splits.npz", "y.csv", "t10k-labels-idx1-ubyte.gz"):
        np.testing.assert_array_equal(read_labels(str(tmp_path / spec)), y, err_msg=spec)
    assert read_labels(str(tmp_path / "many.npz:side")).shape == (12, 2)
    with pytest.raises(DataError, match="several arrays .*pick the labels with"):
        read_labels(str(tmp_path / "many.npz"))
    with pytest.raises(DataError, match="has no array 'nope'"):
        read_labels(str(tmp_path / "many.npz:nope"))
    with pytest.raises(DataError, match="names a data source, not labels"):
        read_labels("digits")


def test_cvae_takes_labels_from_an_npz_key(tmp_path, capsys, digits):
    np.save(tmp_path / "x.npy", digits.data[:200])
    np.savez(tmp_path / "lab.npz", digit=digits.target[:200], other=np.zeros(200))
    d = tmp_path / "c"
    run(capsys, "fit", "cvae", "--data", tmp_path / "x.npy", "--labels", f"{tmp_path / 'lab.npz'}:digit", *TINY, "--out", d)
    info = json.loads((d / "run.json").read_text())
    assert info["config"]["labels"] == f"{(tmp_path / 'lab.npz').resolve()}:digit"
    assert list(load(d).classes_) == sorted(set(digits.target[:200]))
