"""Export: the encoder and the decoder as ONNX (run with onnxruntime) and TorchScript (run with
torch.jit.load) files, scaling folded in, that give latentlab's own transform and
inverse_transform to float tolerance at any batch size."""

import json
import sys
import warnings

import numpy as np
import pytest
import torch

from latentlab import PCA, VAE, Autoencoder, ConditionalVAE, HierarchicalVAE, api
from latentlab.cli import main
from latentlab.datasets import load_digits
from latentlab.errors import ConfigError, NotFittedError
from latentlab.exporter import FORMATS, MANIFEST, export

KW = dict(hidden=(16,), epochs=2, verbose=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fitted():
    d = load_digits()
    X, y, images = d.data[:300], d.target[:300], d.images[:300]
    Xb = (X > 0.5).astype(np.float32)
    return {
        "pca": (PCA(latent_dim=3, scale="standard").fit(X), X, None),
        "ae": (Autoencoder(latent_dim=2, activation="gated", scale="minmax", **KW).fit(X), X, None),
        "vae": (VAE(latent_dim=2, likelihood="bernoulli", activation="gelu", **KW).fit(Xb), Xb, None),
        "conv": (VAE(latent_dim=2, architecture="conv", channels=(4, 6), **KW).fit(images), images, None),
        "cvae": (ConditionalVAE(latent_dim=2, **KW).fit(X, y), X, y),
        "hvae": (HierarchicalVAE(latent_dim=2, latent_dim2=2, **KW).fit(Xb), Xb, None),
    }


def _reference(model, A, y, logvar):
    """latentlab's own answers: codes, (log-variances), decodes of those codes."""
    Z = np.asarray(model.transform(A, y), dtype=np.float32)
    R = model.inverse_transform(Z, y)
    L = 2 * np.log(model.encode(A, y)[1]) if logvar else None
    return Z, L, R


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["pca", "vae", "conv", "cvae", "hvae"])
def test_onnx_files_run_in_onnxruntime_and_match(fitted, name, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[dev]'); CI installs it")
    model, A, y = fitted[name]
    logvar = "posterior" in model.capabilities
    info = export(model, tmp_path, "onnx", logvar=logvar)
    assert json.loads((tmp_path / MANIFEST).read_text())["encoder"] == info["encoder"]
    enc = ort.InferenceSession(str(tmp_path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(tmp_path / "decoder.onnx"), providers=["CPUExecutionProvider"])
    for sess, part in ((enc, "encoder"), (dec, "decoder")):  # the files are what export.json says
        assert [i.name for i in sess.get_inputs()] == [s["name"] for s in info[part]["inputs"]]
        assert [o.name for o in sess.get_outputs()] == [s["name"] for s in info[part]["outputs"]]
        assert all(i.shape[0] == "batch" for i in sess.get_inputs())
    for rows in (slice(0, 1), slice(0, 37)):  # a dynamic batch dimension
        Ab, yb = np.asarray(A[rows], dtype=np.float32), None if y is None else y[rows]
        Z, L, R = _reference(model, Ab, yb, logvar)
        cond = {} if yb is None else {"y": model.condition_features(yb).astype(np.float32)}
        out = enc.run(None, {"x": Ab, **cond})
        _close(out[0], Z)
        if logvar:
            _close(out[1], L)
        _close(dec.run(None, {"z": Z, **cond})[0], R)
    if model.conditional:
        assert info["condition"]["classes"] == list(range(10))


@pytest.mark.parametrize("name", ["pca", "ae", "vae", "conv", "cvae", "hvae"])
def test_torchscript_files_load_with_torch_jit_and_match(fitted, name, tmp_path):
    model, A, y = fitted[name]
    info = export(model, tmp_path / "ts", "torchscript")
    assert info["encoder"]["file"] == "encoder.pt" and info["exporter"] == "torch.jit.trace"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in favour of torch.export
        enc = torch.jit.load(str(tmp_path / "ts" / "encoder.pt"))
        dec = torch.jit.load(str(tmp_path / "ts" / "decoder.pt"))
    for rows in (slice(0, 1), slice(0, 23)):
        Ab, yb = np.asarray(A[rows], dtype=np.float32), None if y is None else y[rows]
        Z, _, R = _reference(model, Ab, yb, False)
        cond = () if yb is None else (torch.from_numpy(model.condition_features(yb)),)
        with torch.no_grad():
            _close(enc(torch.from_numpy(Ab), *cond).numpy(), Z)
            _close(dec(torch.from_numpy(Z), *cond).numpy(), R)


def test_without_onnxscript_the_legacy_exporter_writes_the_same_model(fitted, tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[dev]'); CI installs it")
    model, A, _ = fitted["vae"]
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now raises ImportError
    info = export(model, tmp_path, "onnx")
    assert "legacy" in info["exporter"] and "onnxscript is not installed" in info["exporter"]
    Ab = np.asarray(A[:9], dtype=np.float32)
    Z, _, R = _reference(model, Ab, None, False)
    _close(ort.InferenceSession(str(tmp_path / "encoder.onnx")).run(None, {"x": Ab})[0], Z)
    _close(ort.InferenceSession(str(tmp_path / "decoder.onnx")).run(None, {"z": Z})[0], R)


def test_the_public_names_are_the_functions():
    import latentlab
    import latentlab.explorer
    import latentlab.exporter  # importing the modules does not shadow the functions

    assert latentlab.export is export and latentlab.explore is latentlab.explorer.explore


def test_bad_requests_get_clear_errors(fitted, tmp_path):
    with pytest.raises(NotFittedError):
        export(VAE(), tmp_path)
    with pytest.raises(ConfigError, match="format must be one of onnx, torchscript"):
        export(fitted["vae"][0], tmp_path, "tflite")
    with pytest.raises(ConfigError, match="no posterior variance"):
        export(fitted["ae"][0], tmp_path, logvar=True)
    with pytest.raises(ConfigError, match="out=FOLDER"):
        export(fitted["ae"][0])


def test_export_from_the_command_line(tmp_path, capsys):
    from latentlab.cli.parser import EXPORT_FORMATS

    assert EXPORT_FORMATS == tuple(FORMATS)
    run = api.fit(api.RunConfig("ae", "digits", {"latent_dim": 2, "hidden": (8,), "epochs": 1, "verbose": False}),
                  tmp_path / "ae")
    assert main(["export", str(run.path), "--format", "torchscript", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(tmp_path / "ae" / "export")
    assert sorted(p.name for p in (tmp_path / "ae" / "export").iterdir()) == ["decoder.pt", "encoder.pt", MANIFEST]
    assert info["decoder"]["outputs"][0]["shape"] == ["batch", 64]
    assert main(["export", str(run.path), "--out", str(tmp_path / "onnx")]) == 0
    assert "encoder: x (batch, 64) -> z (batch, 2)" in capsys.readouterr().out
    assert (tmp_path / "onnx" / "decoder.onnx").is_file()
    assert main(["export", str(run.path), "--logvar", "--out", str(tmp_path / "x")]) == 2
    assert "no posterior variance" in capsys.readouterr().err
