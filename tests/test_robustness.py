"""It keeps working and loses nothing (issue 7): bad input, divergence, crashes, Ctrl-C.

- One table of every bad input: through the API it raises latentlab's own error (a ValueError or
  TypeError) whose message names the problem and the fix; through the command line it exits with
  status 2 and one line on stderr, without a traceback.
- Divergence: a learning rate that is too high stops with the epoch, the step and the hints, and
  the last good checkpoint stays loadable; clipping gradients lets the same run finish.
- SIGKILL at random moments while a training process checkpoints leaves a loadable checkpoint
  every time, and resuming from it goes on.
- Ctrl-C on ``latentlab fit``: status 130, a checkpoint, and ``fit --resume`` ends with exactly
  the parameters of an uninterrupted run.

(The fuzzing of the file loaders is in test_untrusted_files.py.)
"""

import gzip
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

import latentlab
from latentlab import PCA, VAE, Autoencoder, api, cli
from latentlab.datasets import load_images, load_npy, load_npz, load_table, read_amat, read_idx
from latentlab.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DataTypeError,
    DivergenceError,
    LatentlabError,
    UnknownParameterError,
)
from latentlab.io import load_tensors
from latentlab.training.trainer import CHECKPOINT_NAME, read_checkpoint

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "error"}
GREY = np.random.default_rng(0).random((60, 6)).astype(np.float32)  # values in (0, 1), not binary


# ------------------------------------------------------------------ the bad inputs
@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of bad files, and a fitted PCA run in it (``run``)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("bad")
    nan = GREY.copy()
    nan[3, 1], nan[7, 2] = np.nan, np.inf
    np.save(d / "nan.npy", nan)
    np.save(d / "empty.npy", np.zeros((0, 6), np.float32))
    np.save(d / "one.npy", GREY[:1])
    np.save(d / "grey.npy", GREY)
    np.save(d / "five.npy", GREY[:, :5])
    np.save(d / "big.npy", GREY * 3)
    (d / "empty.csv").write_text("")
    (d / "text.csv").write_text("1,2,3\n1,x,2\n2,y,3\n")  # text, and no header to name the columns
    (d / "gap.csv").write_text("a,b,c\n1,x,2\n2,,3\n3,y,4\n4,x,5\n")  # a mixed table with a missing text cell
    (d / "latin1.csv").write_bytes("a,b\n1,caf\xe9\n".encode("latin-1"))
    (d / "trunc.npy").write_bytes((d / "grey.npy").read_bytes()[:150])
    np.savez(d / "x.npz", x=GREY)
    (d / "trunc.npz").write_bytes((d / "x.npz").read_bytes()[:200])
    (d / "mixed").mkdir()
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(d / "mixed" / "a.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(d / "mixed" / "b.png")
    (d / "broken").mkdir()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(d / "broken" / "a.png")
    (d / "broken" / "b.png").write_bytes((d / "broken" / "a.png").read_bytes()[:40])
    idx = bytes([0, 0, 8, 3]) + np.array([10, 4, 4], ">u4").tobytes() + bytes(100)  # promises 160 bytes
    (d / "t-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx))
    (d / "cut.amat").write_text("0 1 1 0\n1 0 0 1\n0 1\n")
    run = d / "run"
    assert cli.main(["fit", "pca", "--data", str(d / "grey.npy"), "--latent-dim", "2", "--out", str(run)]) == 0
    for name, part, cut in (("badweights", "model.safetensors", 30), ("badconfig", "config.json", 10)):
        (d / name).mkdir()
        for f in run.iterdir():
            (d / name / f.name).write_bytes(f.read_bytes())
        (d / name / part).write_bytes((run / part).read_bytes()[:cut])
    vae_run = d / "vae"
    assert cli.main(["fit", "vae", "--hidden", "4", "--epochs", "1", "--data", str(d / "grey.npy"), "--out", str(vae_run)]) == 0
    ck = vae_run / CHECKPOINT_NAME
    ck.write_bytes(ck.read_bytes()[:100])
    return d


@dataclass
class Case:
    """One bad input: the API call, the error it must raise, the message (problem ... fix), and
    the command line that feeds the same input (None where the command line cannot)."""

    id: str
    call: Callable[[Path], Any]
    error: type
    message: str
    argv: list[str] | None = None
    cli_message: str | None = None  # when the command line words it differently


def _fit(cls, X, **kw):
    def call(d):
        quiet = {} if cls is PCA else {"verbose": False}
        return cls(**quiet, **kw).fit(X(d) if callable(X) else X)

    return call


def _npy(name):
    return lambda d: np.load(d / name)


HYPER = [  # zero or negative sizes, rates, epochs: (parameter, value, message); scikit-learn's own words
    # (the estimators' parameter constraints, latentlab.models.constraints), latentlab's for the layer sizes
    ("latent_dim", 0, r"The 'latent_dim' parameter of VAE must be an int in the range \[1, inf\)\. Got 0 instead"),
    ("hidden", (8, 0), r"each size in hidden must be an integer >= 1, got 0"),
    ("epochs", 0, r"The 'epochs' parameter of VAE must be an int in the range \[1, inf\)\. Got 0 instead"),
    ("epochs", -3, r"The 'epochs' parameter of VAE must be an int in the range \[1, inf\)\. Got -3 instead"),
    ("batch_size", 0, r"The 'batch_size' parameter of VAE must be an int in the range \[1, inf\)\. Got 0 instead"),
    ("lr", 0.0, r"The 'lr' parameter of VAE must be a float in the range \(0.0, inf\)\. Got 0.0 instead"),
    ("lr", -0.1, r"The 'lr' parameter of VAE must be a float in the range \(0.0, inf\)\. Got -0.1 instead"),
    ("grad_clip", -1.0, r"The 'grad_clip' parameter of VAE must be None or a float in the range \(0.0, inf\)\. Got -1.0"),
    ("mc_samples", 0, r"The 'mc_samples' parameter of VAE must be an int in the range \[1, inf\)\. Got 0 instead"),
    ("c", -1.0, r"The 'c' parameter of VAE must be a float in the range \[0.0, inf\)\. Got -1.0 instead"),
    ("weight_decay", -1.0, r"The 'weight_decay' parameter of VAE must be a float in the range \[0.0, inf\)\. Got -1.0"),
    ("patience", 0, r"The 'patience' parameter of VAE must be None or an int in the range \[1, inf\)\. Got 0 instead"),
    ("validation_fraction", 1.0, r"The 'validation_fraction' parameter of VAE must be a float in the range \[0.0, 1.0\)\. Got 1.0"),
]


def _flag(name, value):
    v = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return [f"--{name.replace('_', '-')}", v]


CASES = [
    Case("nan-and-inf", _fit(PCA, _npy("nan.npy"), latent_dim=2), DataError,
         r"X contains 2 NaN or infinite value\(s\), the first in row 3; remove or impute them",
         ["fit", "pca", "--data", "{d}/nan.npy", "--out", "{d}/o"],
         cli_message=r"the data .*nan.npy contains 2 NaN or infinite value\(s\), the first in row 3; remove or impute them"),
    Case("empty", _fit(VAE, np.zeros((0, 6), np.float32)), DataError,
         r"X is empty \(0 samples\); at least 2 are needed here: pass 2 or more examples",
         ["fit", "vae", "--data", "{d}/empty.npy", "--out", "{d}/o"]),
    Case("empty-csv", lambda d: load_table(d / "empty.csv"), DataError, r"has no rows; it is empty: write one example per line",
         ["fit", "pca", "--data", "{d}/empty.csv", "--out", "{d}/o"]),
    Case("single-example", _fit(Autoencoder, GREY[:1]), DataError, r"X has 1 sample\(s\); at least 2 are needed here: pass 2 or more",
         ["fit", "ae", "--data", "{d}/one.npy", "--out", "{d}/o"]),
    Case("single-example-pca", _fit(PCA, GREY[:1], latent_dim=1), DataError, r"X has 1 sample\(s\).*pass 2 or more",
         ["fit", "pca", "--data", "{d}/one.npy", "--out", "{d}/o"]),
    Case("wrong-features-at-transform", lambda d: PCA(latent_dim=2).fit(GREY).transform(GREY[:, :5]), DataError,
         r"X has 5 features, but PCA is expecting 6 features as input; pass data shaped like the training data, \(n, 6\)",
         ["encode", "{d}/run", "--data", "{d}/five.npy", "--out", "{d}/z.csv"]),
    Case("wrong-code-size", lambda d: PCA(latent_dim=2).fit(GREY).inverse_transform(np.zeros((3, 5))), DataError,
         r"Z has shape \(3, 5\); PCA decodes codes of shape \(n, 2\)"),
    Case("one-dimensional", _fit(PCA, GREY[0], latent_dim=1), DataError, r"expected 2-D .*Reshape your data: x.reshape\(1, -1\)"),
    Case("text-values", _fit(PCA, [["1", "a"], ["2", "b"]], latent_dim=1), DataTypeError, r"dtype <U1, which is not numeric; convert it to numbers first"),
    Case("mixed-image-sizes", lambda d: load_images(d / "mixed"), DataError,
         r"images in .*mixed have different sizes: a.png is 6x4 but b.png is 5x5; resize them to one size",
         ["fit", "pca", "--data", "{d}/mixed", "--out", "{d}/o"]),
    Case("bernoulli-on-grey-levels", _fit(VAE, GREY, likelihood="bernoulli", epochs=1), DataError,
         r"likelihood='bernoulli' needs binary data \(0 or 1\), but \d+ value\(s\) are not.*use likelihood='continuous_bernoulli' for values in \[0, 1\]",
         ["fit", "vae", "--likelihood", "bernoulli", "--data", "{d}/grey.npy", "--out", "{d}/o"]),
    Case("continuous-bernoulli-outside-0-1", _fit(VAE, GREY * 3, likelihood="continuous_bernoulli", epochs=1), DataError,
         r"likelihood='continuous_bernoulli' needs values in \[0, 1\], but they range over .*rescale to \[0, 1\] \(scale='minmax'\) or use likelihood='gaussian'",
         ["fit", "vae", "--likelihood", "continuous_bernoulli", "--data", "{d}/big.npy", "--out", "{d}/o"]),
    Case("pca-latent-too-large", _fit(PCA, GREY, latent_dim=10), ConfigError,
         r"latent_dim=10 is larger than the data allows: X has 60 sample\(s\) and 6 feature\(s\).*choose latent_dim <= 6",
         ["fit", "pca", "--latent-dim", "10", "--data", "{d}/grey.npy", "--out", "{d}/o"],
         cli_message=r"latent_dim=10 is larger than the data allows.*choose latent_dim <= 6"),
    Case("text-column-without-header", lambda d: load_table(d / "text.csv"), DataTypeError,
         r"text.csv has text in column\(s\) 'column 2' \(e.g. 'x' on line 2\) and no header row; a table with text "
         r"\(categorical\) columns needs a header",
         ["fit", "ae", "--data", "{d}/text.csv", "--out", "{d}/o"]),
    Case("missing-cell-in-a-mixed-table", _fit(Autoencoder, lambda d: load_table(d / "gap.csv").data, epochs=1), DataError,
         r"X has 1 missing or non-finite value\(s\), in column\(s\) 'b' \(1\), the first in row 1; drop those rows "
         r"\(df.dropna\(\)\) or impute them",
         ["fit", "ae", "--data", "{d}/gap.csv", "--out", "{d}/o"],
         cli_message=r"gap.csv: line 3, column 'b' is empty; latentlab needs a value \(a number, or a text column's category\) in "
         r"every cell"),
    Case("csv-not-utf8", lambda d: load_table(d / "latin1.csv"), DataError, r"could not be read as text .*pass a UTF-8 .csv",
         ["fit", "pca", "--data", "{d}/latin1.csv", "--out", "{d}/o"]),
    Case("truncated-npy", lambda d: load_npy(d / "trunc.npy"), DataError,
         r"trunc.npy is not a readable .npy file .*write it with np.save, or check that it is complete",
         ["fit", "pca", "--data", "{d}/trunc.npy", "--out", "{d}/o"]),
    Case("truncated-npz", lambda d: load_npz(d / "trunc.npz"), DataError,
         r"trunc.npz is not a readable .npz file .*truncated or corrupt.*write it again with np.savez",
         ["fit", "pca", "--data", "{d}/trunc.npz", "--out", "{d}/o"]),
    Case("corrupt-image", lambda d: load_images(d / "broken"), DataError, r"b.png is not a readable image .*remove it or replace it",
         ["fit", "pca", "--data", "{d}/broken", "--out", "{d}/o"]),
    Case("truncated-idx", lambda d: read_idx(d / "t-images-idx3-ubyte.gz"), DataError,
         r"holds 100 bytes of data but its header promises 160 .*truncated or corrupt: download it again",
         ["fit", "pca", "--data", "{d}/t-images-idx3-ubyte.gz", "--out", "{d}/o"]),
    Case("truncated-amat", lambda d: read_amat(d / "cut.amat"), DataError, r"rows of different lengths .*truncated or corrupt: download it again",
         ["fit", "pca", "--data", "{d}/cut.amat", "--out", "{d}/o"]),
    Case("missing-file", lambda d: latentlab.datasets.load(d / "nowhere.npy"), DataError,
         r"neither a known name nor an existing path; use one of digits",
         ["fit", "pca", "--data", "{d}/nowhere.npy", "--out", "{d}/o"]),
    Case("truncated-weights", lambda d: latentlab.load(d / "badweights"), CheckpointError,
         r"model.safetensors does not match .*config.json \(checksum differs\).*Save the model again",
         ["evaluate", "{d}/badweights"]),
    Case("corrupt-config", lambda d: latentlab.load(d / "badconfig"), CheckpointError,
         r"config.json is not valid JSON .*corrupt: restore it from a copy, or save \(fit\) again",
         ["encode", "{d}/badconfig", "--out", "{d}/z.csv"]),
    Case("truncated-checkpoint", lambda d: api.resume(d / "vae"), CheckpointError,
         r"checkpoint.safetensors is not a readable safetensors file .*truncated or corrupt. Restore it from a copy or retrain",
         ["fit", "--resume", "{d}/vae"]),
    Case("not-a-model-directory", lambda d: latentlab.load(d / "mixed"), CheckpointError,
         r"config.json does not exist; is this a latentlab run directory",
         ["evaluate", "{d}/mixed"], cli_message=r"not a run directory written by `latentlab fit --out`"),
    Case("unknown-option", lambda d: VAE(latent_dmi=2), UnknownParameterError,
         r"VAE has no parameter 'latent_dmi'; did you mean 'latent_dim'\? its parameters are latent_dim, hidden",
         ["fit", "vae", "--latent-dmi", "2", "--out", "{d}/o"],
         cli_message=r"unrecognized argument\(s\) --latent-dmi 2 \(did you mean --latent-dim\?\); see 'latentlab fit vae --help'"),
    Case("unknown-option-set-params", lambda d: PCA().set_params(whitten=True), UnknownParameterError,
         r"PCA has no parameter 'whitten'; did you mean 'whiten'\?"),
    Case("unknown-option-in-run-config", lambda d: api.RunConfig("pca", "digits", {"c": 1.0}), ConfigError,
         r"pca has no setting\(s\) \['c'\]; its settings are",
         ["fit", "pca", "--c", "1", "--out", "{d}/o"], cli_message=r"--c is an option of vae"),
    Case("unknown-choice", _fit(VAE, GREY, likelihood="poisson"), ConfigError,
         r"likelihood must be one of 'auto', 'bernoulli', 'continuous_bernoulli', 'gaussian', 'mixed'; got 'poisson'",
         ["fit", "vae", "--likelihood", "poisson", "--out", "{d}/o"]),
    Case("unknown-model", lambda d: api.RunConfig("vea"), ConfigError, r"unknown model 'vea'; choose one of pca, ae, vae",
         ["fit", "vea", "--out", "{d}/o"], cli_message=r"invalid choice: 'vea'"),
    Case("test-fraction-1.5", lambda d: api.RunConfig("pca", test_fraction=1.5), ConfigError,
         r"test_fraction must be a number in \[0.0, 1.0\), got 1.5", ["fit", "pca", "--test-fraction", "1.5", "--out", "{d}/o"]),
    *[
        Case(f"{name}={value}", _fit(VAE, GREY, **{name: value}), ConfigError, msg,
             ["fit", "vae", *_flag(name, value), "--out", "{d}/o"])
        for name, value, msg in HYPER
    ],
    Case("pca-latent_dim=-1", _fit(PCA, GREY, latent_dim=-1), ConfigError, r"The 'latent_dim' parameter of PCA must be an int in the range \[1, inf\)\. Got -1 instead",
         ["fit", "pca", "--latent-dim", "-1", "--out", "{d}/o"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_error(case, bad, capsys):
    with pytest.raises(case.error) as info:
        case.call(bad)
    err = info.value
    assert isinstance(err, LatentlabError) and isinstance(err, (ValueError, TypeError))
    assert re.search(case.message, str(err)), str(err)
    if case.argv is None:
        return
    capsys.readouterr()
    rc = cli.main([a.format(d=bad) for a in case.argv])
    out = capsys.readouterr()
    assert rc == 2, out.err
    assert out.err.count("\n") == 1 and "Traceback" not in out.err, out.err
    assert out.err.startswith("latentlab")
    assert re.search(case.cli_message or case.message, out.err), out.err


# (The same line and status from a real process: test_cli.py::test_bad_usage_in_a_subprocess.)


# ------------------------------------------------------------------ divergence
# SGD with momentum at lr=0.1 on this data grows the weights geometrically: the loss overflows
# after a few epochs (epoch 6 here), well after the first checkpoints.
DIVERGING = dict(latent_dim=2, hidden=(16,), optimizer="sgd", lr=0.1, epochs=30, batch_size=16, patience=None,
                 validation_fraction=0.0, scale=None, verbose=False)
DIV_X = np.random.default_rng(0).normal(size=(160, 6)).astype(np.float32)


def test_divergence_names_epoch_step_and_hints_and_keeps_the_last_checkpoint(tmp_path):
    with pytest.raises(DivergenceError) as info:
        Autoencoder(checkpoint_dir=tmp_path, **DIVERGING).fit(DIV_X)
    msg = str(info.value)
    m = re.search(r"the loss became (nan|inf) at epoch (\d+), step (\d+) of 10\. The last good checkpoint is kept at (.+?)\. To fix it, "
                  r"lower the learning rate \(lr=0.1 now, try 0.01; --lr on the command line\) or clip gradients \(grad_clip=1.0; --grad-clip 1\)", msg)
    assert m, msg
    epoch = int(m.group(2))
    assert epoch >= 2 and m.group(4) == str(tmp_path / CHECKPOINT_NAME)
    tensors, meta = read_checkpoint(tmp_path / CHECKPOINT_NAME)  # the last good one: the epoch before
    assert meta["epoch"] == epoch - 1 and len(meta["history"]) == epoch - 1
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if v.is_floating_point())
    # and training resumes from it (to the epoch before the one that diverged: finite all along)
    ae = Autoencoder(checkpoint_dir=tmp_path, **{**DIVERGING, "epochs": epoch - 1}).fit(DIV_X, resume=True)
    assert ae.n_epochs_ == epoch - 1 and np.isfinite(ae.transform(DIV_X)).all()


def test_clipping_gradients_lets_the_same_run_finish():
    ae = Autoencoder(grad_clip=1.0, **{**DIVERGING, "epochs": 12}).fit(DIV_X)
    assert all(np.isfinite(h["train_loss"]) for h in ae.history_)


def test_divergence_on_the_command_line(tmp_path, capsys):
    np.save(tmp_path / "x.npy", DIV_X)
    argv = ["fit", "ae", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r"), "--scale", "none", "--test-fraction", "0",
            *[a for k, v in DIVERGING.items() if k not in ("latent_dim", "verbose", "scale") for a in _flag(k, "none" if v is None else ",".join(map(str, v)) if isinstance(v, tuple) else v)]]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(r"latentlab: error: training diverged: the loss became (nan|inf) at epoch \d+, step \d+ of 10.*--grad-clip 1", err), err
    read_checkpoint(tmp_path / "r" / CHECKPOINT_NAME)  # kept, loadable
    assert cli.main([*argv, "--grad-clip", "1", "--epochs", "3", "--out", str(tmp_path / "r2")]) == 0


def test_grad_clip_is_a_documented_option(capsys):
    for model in ("ae", "vae"):
        assert cli.main(["fit", model, "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "--grad-clip GRAD_CLIP [float or None] Clip the global gradient norm" in out
    assert Autoencoder(grad_clip=0.5)._train_config().grad_clip == 0.5


# ------------------------------------------------------------------ SIGKILL while checkpointing
# A process that imports latentlab once, then forks one training process per line it reads and
# reports its pid and, once it is gone, "dead". Forking skips the seconds of start-up per process,
# so the test can kill many; the zygote computes nothing before it forks (safe with OpenMP).
_ZYGOTE = """
import os, sys
import numpy as np
import torch._dynamo  # what the first optimiser imports (2 s): once, here
from latentlab import VAE
X = (np.random.default_rng(0).random((64, 8)) > 0.5).astype(np.float32)
while sys.stdin.readline():
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            VAE(latent_dim=2, hidden=(8,), likelihood="bernoulli", epochs=10**6, batch_size=64, patience=None,
                validation_fraction=0.0, verbose=False, checkpoint_dir=sys.argv[1]).fit(X, resume=True)
            code = 0
        finally:
            os._exit(code)
    print(pid, flush=True)
    os.waitpid(pid, 0)
    print("dead", flush=True)
"""


def test_sigkill_at_random_moments_leaves_a_loadable_checkpoint(tmp_path):
    """Kill a training process that writes a checkpoint every epoch (every few ms) with SIGKILL
    at seeded random moments, 10 times; after each kill the checkpoint left loads (it may be
    absent only before the first write), and the next process resumes from it."""
    rnd = random.Random(7)
    ck = tmp_path / CHECKPOINT_NAME
    zygote = subprocess.Popen([sys.executable, "-c", _ZYGOTE, str(tmp_path)], env=ENV, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    epochs = []
    try:
        for _ in range(10):
            zygote.stdin.write("go\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            time.sleep(rnd.uniform(0.05, 0.4))
            os.kill(pid, signal.SIGKILL)
            assert zygote.stdout.readline().strip() == "dead"
            if not ck.exists():
                assert not epochs, "a checkpoint was written before, and is gone"
                continue
            tensors, meta = read_checkpoint(ck)  # loads every time
            assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())
            epochs.append(meta["epoch"])
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
        zygote.stdout.close()
    print("epochs at each kill:", epochs, "torn writes left as .tmp:", len(list(tmp_path.glob("*.tmp"))))
    # every process resumed where the one before was killed: the epochs only go up
    # (a busy machine may let the first processes die before their first write: some may be absent)
    assert len(epochs) >= 5 and epochs == sorted(epochs) and epochs[-1] > epochs[0], epochs
    # nothing but the checkpoint, the per-epoch history.jsonl, and the temporary files of writes that were killed
    assert all(p.name in (CHECKPOINT_NAME, "history.jsonl") or p.name.endswith(".tmp") for p in tmp_path.iterdir())
    # each process rewrote history.jsonl from its checkpoint, then appended: whole lines, epochs 1, 2, ...
    # (only the last line may be torn: the last process was killed at a random moment)
    if (tmp_path / "history.jsonl").exists():
        lines = (tmp_path / "history.jsonl").read_text().split("\n")
        whole = [json.loads(line) for line in lines[:-1]]
        assert [r["epoch"] for r in whole] == list(range(1, len(whole) + 1))


# ------------------------------------------------------------------ Ctrl-C, then fit --resume
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path):
    common = ["fit", "vae", "--hidden", "16", "--epochs", "20", "--patience", "none", "--batch-size", "64", "--eval-k", "2"]
    full = tmp_path / "full"
    assert cli.main([*common, "--out", str(full)]) == 0

    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "latentlab", *common, "--out", str(cut)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (cut / CHECKPOINT_NAME).exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "fit --resume" in err and "Traceback" not in err
    _, meta = read_checkpoint(cut / CHECKPOINT_NAME)
    assert meta["epoch"] < 20, "the run ended before Ctrl-C: make it longer"
    assert not (cut / "model.safetensors").exists()
    print("interrupted at epoch", meta["epoch"], "step", meta["step"])

    assert cli.main(["fit", "--resume", str(cut)]) == 0
    a, _ = load_tensors(full / "model.safetensors")
    b, _ = load_tensors(cut / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha, hb = latentlab.load(full).history_, latentlab.load(cut).history_
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
