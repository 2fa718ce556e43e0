"""The `latentlab` command end to end: every subcommand in a subprocess on tiny data (one epoch),
its output checked; exit codes and one-line errors; Ctrl-C and --resume."""

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from latentlab import cli, load

TINY = ["--epochs", "1", "--hidden", "16"]


# One thread per subprocess: the models here are tiny, where a second thread only adds
# synchronisation (and on a busy 2-core machine, spinning: 49 ms a step instead of 3).
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def run_cli(*args, cwd=None, timeout=300, env=None):
    """`python -m latentlab ARGS` in a subprocess with this checkout's src first."""
    e = {**ENV, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "latentlab", *map(str, args)], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout
    )


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "vae"
    r = ok(run_cli("fit", "vae", "--data", "digits", "--latent-dim", "2", *TINY, "--out", d, "--json"))
    # No progress bar when stderr is not a terminal: at most one-line warnings (a 1-epoch budget does not converge).
    assert all(line.startswith("latentlab: warning: ") for line in r.stderr.splitlines()), r.stderr
    return d, json.loads(r.stdout)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(120, 2))
    # Rank 2 plus 1% noise, then columns of very different scales and offsets.
    X = (Z @ rng.normal(size=(2, 5)) + 0.01 * rng.normal(size=(120, 5))) * [1, 10, 100, 0.1, 1] + [0, 50, -20, 3, 1]
    p = tmp_path_factory.mktemp("tab") / "t.csv"
    names = ["a", "b", "c", "d", "e"]
    p.write_text(",".join(names) + "\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in X) + "\n")
    return p, X, names


# ------------------------------------------------------------------ every subcommand
@pytest.mark.parametrize("model", ["pca", "ae"])
def test_fit(tmp_path, model):
    extra = [] if model == "pca" else TINY
    r = ok(run_cli("fit", model, "--latent-dim", "3", *extra, "--out", tmp_path / "r", "--json"))
    out = json.loads(r.stdout)
    assert out["model"] == model and out["metrics"]["n_train"] == 1617 and out["metrics"]["n_test"] == 180
    assert {"config.json", "model.safetensors", "run.json"} <= {p.name for p in (tmp_path / "r").iterdir()}
    assert load(tmp_path / "r").transform(np.zeros((4, 64), np.float32)).shape == (4, 3)
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["config"]["data"] == "digits" and info["command"][:3] == ["latentlab", "fit", model]


def test_fit_vae_records_the_run(vae_run):
    d, out = vae_run
    assert (d / "checkpoint.safetensors").is_file()
    info = json.loads((d / "run.json").read_text())
    assert info["status"] == "fitted" and info["config"]["params"] == {"epochs": 1, "hidden": [16], "latent_dim": 2}
    assert info["data"]["image_shape"] == [8, 8] and out["metrics"]["epochs"] == 1
    assert len(load(d).history_) == 1


def test_evaluate(vae_run, capsys):
    d, _ = vae_run
    r = ok(run_cli("evaluate", d, "--k", "10", "--json"))
    out = json.loads(r.stdout)
    assert out["split"] == "test" and {"reconstruction_mse", "elbo", "log_likelihood", "active_units"} <= set(out["metrics"])
    info = json.loads((d / "run.json").read_text())
    assert info["evaluations"]["test"]["k"] == 10
    assert cli.main(["evaluate", str(d), "--k", "10", "--split", "train"]) == 0  # the same code, in-process
    human = capsys.readouterr().out
    assert "train split" in human and "log_likelihood" in human and "n_examples" not in human


def test_encode_csv_and_npy(vae_run, tmp_path):
    d, _ = vae_run
    ok(run_cli("encode", d, "--data", "digits", "--out", tmp_path / "z.csv"))
    lines = (tmp_path / "z.csv").read_text().splitlines()
    assert lines[0] == "z0,z1" and len(lines) == 1 + 1797 and len(lines[1].split(",")) == 2
    assert cli.main(["encode", str(d), "--split", "test", "--out", str(tmp_path / "z.npy")]) == 0
    Z = np.load(tmp_path / "z.npy")
    assert Z.shape == (180, 2)
    np.testing.assert_allclose(np.loadtxt(tmp_path / "z.csv", delimiter=",", skiprows=1)[:3], load(d).transform(load_digits_data()[:3]), rtol=1e-5, atol=1e-6)


def load_digits_data():
    from latentlab.datasets import load_digits

    return load_digits().data


def test_reconstruct_png_and_npy(vae_run, tmp_path):
    from PIL import Image

    d, _ = vae_run
    ok(run_cli("reconstruct", d, "--out", tmp_path / "r.png", "-n", "8"))
    with Image.open(tmp_path / "r.png") as im:
        assert im.size[0] > 100 and im.size[1] > 20
    assert cli.main(["reconstruct", str(d), "--split", "test", "--out", str(tmp_path / "r.npy")]) == 0
    assert np.load(tmp_path / "r.npy").shape == (180, 64)


def test_sample_and_interpolate(vae_run, tmp_path):
    d, _ = vae_run
    ok(run_cli("sample", d, "-n", "5", "--seed", "3", "--out", tmp_path / "s.npy"))
    S = np.load(tmp_path / "s.npy")
    assert S.shape == (5, 64) and np.isfinite(S).all()
    np.testing.assert_allclose(S, load(d).sample(5, seed=3).reshape(5, -1), rtol=1e-5, atol=1e-6)
    assert cli.main(["sample", str(d), "-n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    ok(run_cli("interpolate", d, "--from", "0", "--to", "7", "--steps", "6", "--out", tmp_path / "i.npy"))
    P = np.load(tmp_path / "i.npy")
    assert P.shape == (6, 64)
    m = load(d)
    X = load_digits_data()
    np.testing.assert_allclose(P[0], m.reconstruct(X[:1])[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(P[-1], m.reconstruct(X[7:8])[0], rtol=1e-4, atol=1e-5)
    assert cli.main(["interpolate", str(d), "--from", "0", "--to", "7", "--steps", "6", "--out", str(tmp_path / "i.png")]) == 0
    assert (tmp_path / "i.png").read_bytes()[:4] == b"\x89PNG"


def test_report(vae_run):
    d, _ = vae_run
    r = ok(run_cli("report", d))
    path = Path(r.stdout.strip())
    assert path == d / "index.html" and path.stat().st_size > 10_000


def test_compare_writes_four_runs_and_one_report(table, tmp_path):
    p, X, names = table
    r = ok(run_cli("compare", "--data", p, "--latent-dim", "2", *TINY, "--out", tmp_path / "c", "--json", timeout=600))
    out = json.loads(r.stdout)
    assert list(out["metrics"]) == ["PCA", "linear AE", "deep AE", "VAE"]
    assert 0.0 <= out["metrics"]["linear AE"]["max_principal_angle_deg"] <= 90.0
    assert "fd_prior" in out["metrics"]["VAE"] and "fd_standard_normal" in out["metrics"]["deep AE"]
    assert out["metrics"]["VAE"]["feature_space"].startswith("pca")  # no labels in a table: the data's PCA
    for sub in ("pca", "linear-ae", "deep-ae", "vae"):
        assert (tmp_path / "c" / sub / "run.json").is_file()
    assert load(tmp_path / "c" / "linear-ae").hidden == ()
    assert (tmp_path / "c" / "index.html").is_file() and out["report"] == str(tmp_path / "c" / "index.html")


def test_demo_quick(tmp_path):
    r = ok(run_cli("demo", "--epochs", "1", "--out", tmp_path / "demo", timeout=600))
    lines = r.stdout.splitlines()
    header = next(ln for ln in lines if "rec. MSE" in ln)
    for col in ("angle to PCA", "FD random", "FD fitted", "confidence", "ELBO", "log p(x)"):
        assert col in header
    rows = {m.group(1): ln for ln in lines if (m := re.match(r"(PCA|linear AE|deep AE|VAE|real data)\s{2,}", ln))}
    assert set(rows) == {"PCA", "linear AE", "deep AE", "VAE", "real data"}
    # Each row has its own numbers: the VAE an ELBO, the linear AE an angle, the AE and VAE a FD.
    assert len(rows["VAE"].split()) >= 6 and len(rows["linear AE"].split()) >= 5
    assert f"report: {tmp_path / 'demo' / 'index.html'}" in r.stdout
    assert (tmp_path / "demo" / "index.html").is_file()


# ------------------------------------------------------------------ tables are first-class
def test_table_in_original_units(table, tmp_path):
    p, X, names = table
    ok(run_cli("fit", "pca", "--data", p, "--latent-dim", "2", "--out", tmp_path / "t"))
    info = json.loads((tmp_path / "t" / "config.json").read_text())
    assert info["params"]["scale"] == "standard"  # tables are standardized, and the scaling saved
    run = json.loads((tmp_path / "t" / "run.json").read_text())
    assert run["config"]["data"] == str(p.resolve())  # recorded absolute: the run reopens from anywhere
    assert cli.main(["encode", str(tmp_path / "t"), "--data", str(p), "--out", str(tmp_path / "z.csv")]) == 0
    assert len((tmp_path / "z.csv").read_text().splitlines()) == 1 + len(X)
    assert cli.main(["reconstruct", str(tmp_path / "t"), "--data", str(p), "--split", "all", "--out", str(tmp_path / "r.csv")]) == 0
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].split(",") == names
    R = np.loadtxt(tmp_path / "r.csv", delimiter=",", skiprows=1)
    # Rank-2 data plus 1% noise: reconstructions are back in the table's own units, column by column.
    err = np.abs(R - X).max(0) / X.std(0)
    assert (err < 0.1).all(), err


# ------------------------------------------------------------------ errors: one line, the right status
def test_bad_usage_in_a_subprocess(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n2,\n3,y\n")  # a mixed table with a missing cell in column b
    r = run_cli("fit", "ae", "--data", tmp_path / "bad.csv", "--out", tmp_path / "x")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'b'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "vea", "--out", "x"], "invalid choice: 'vea'"),
        (["fit", "vae", "--no-such-option", "3", "--out", "x"], "unrecognized argument(s) --no-such-option 3"),
        (["fit", "vae"], "--out RUN_DIR is required"),
        (["fit"], "name a model"),
        (["fit", "pca", "--c", "1", "--out", "x"], "--c is an option of vae"),
        (["fit", "ae", "--epochs", "0", "--out", "{tmp}/e"], "The 'epochs' parameter of Autoencoder must be an int in the range [1, inf)"),
        (["fit", "ae", "--hidden", "8,x", "--out", "x"], "expected layer sizes"),
        (["fit", "vae", "--data", "nowhere.npy", "--out", "x"], "neither a known name nor an existing path"),
        (["fit", "pca", "--latent-dim", "100", "--out", "{tmp}/p"], "larger than the data allows"),
        (["evaluate", "{tmp}"], "not a run directory written by `latentlab fit --out`"),
        (["encode", "{tmp}/none", "--out", "z.csv"], "is not a directory"),
        (["sample", "{run}", "-n", "3", "--out", "{tmp}/s.txt"], "unknown output type .txt"),
        (["evaluate", "{run}", "--split", "valid"], "no 'valid' split"),
        (["interpolate", "{run}", "--from", "0", "--to", "5000", "--out", "{tmp}/i.png"], "--to 5000 is out of range"),
        (["report", "{tmp}"], "holds no run directories"),
        ([], "usage"),
    ],
)
def test_errors_are_one_line_with_status_2(argv, message, tmp_path, vae_run, capsys):
    argv = [a.format(tmp=tmp_path, run=vae_run[0]) for a in argv]
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err
    if argv:
        assert err.count("\n") == 1 and "Traceback" not in err


def test_debug_prints_the_traceback(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n2,\n3,y\n")  # a mixed table with a missing cell in column b
    assert cli.main(["--debug", "fit", "ae", "--data", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("latentlab: error:")


def test_help_everywhere(capsys):
    assert cli.main(["--help"]) == 0
    assert "latentlab demo" in capsys.readouterr().out
    for cmd in (["fit"], ["fit", "vae"], ["fit", "pca"], ["evaluate"], ["encode"], ["reconstruct"], ["sample"],
                ["interpolate"], ["compare"], ["report"], ["demo"]):
        assert cli.main([*cmd, "--help"]) == 0
        out = capsys.readouterr().out
        assert "example" in out, cmd
    assert cli.main(["fit", "vae", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--warmup-epochs" in out and "(default: 100)" in out and "--checkpoint-dir" not in out


def test_model_options_come_from_the_signatures():
    """Every constructor parameter is an option (but the three the command sets itself)."""
    import inspect

    from latentlab.models import MODELS

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["fit"]
    models = next(a for a in sub._actions if a.dest == "model").choices
    for name, cls in MODELS.items():
        flags = {o for a in models[name]._actions for o in a.option_strings}
        params = set(inspect.signature(cls).parameters) - {"latent_dim", "checkpoint_dir", "verbose"}
        assert {"--" + p.replace("_", "-") for p in params} <= flags


# ------------------------------------------------------------------ Ctrl-C and resume
def test_ctrl_c_exits_130_and_resume_continues(tmp_path, capsys):
    d = tmp_path / "r"
    e = ENV
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentlab", "fit", "vae", "--hidden", "16", "--epochs", "100000", "--patience", "none", "--out", str(d)],
        env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 120
        while not (d / "checkpoint.safetensors").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert (d / "checkpoint.safetensors").exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "fit --resume" in err and "Traceback" not in err
    from latentlab.training.trainer import read_checkpoint

    _, ck = read_checkpoint(d / "checkpoint.safetensors")
    done = ck["epoch"]
    r = ok(run_cli("fit", "--resume", d, "--epochs", done + 2, "--json"))
    hist = load(d).history_
    assert len(hist) == done + 2 and json.loads(r.stdout)["metrics"]["epochs"] == done + 2
    assert cli.main(["fit", "vae", "--resume", str(d), "--latent-dim", "5"]) == 2
    assert "fit --resume cannot change latent_dim (2 -> 5)" in capsys.readouterr().err
