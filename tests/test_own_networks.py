"""Networks and likelihoods of your own: VAE(encoder=..., decoder=...), Autoencoder(...), the VAE
family, shape checks on the first batch, clone / GridSearchCV, and saving without pickle (hand the
networks back, or rebuild them from a recorded spec only with trust_code)."""

from __future__ import annotations

import json
import os
import math
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import latentlab
from latentlab import (
    IWAE,
    VAE,
    Autoencoder,
    CheckpointError,
    ConditionalVAE,
    ConfigError,
    DataError,
    HierarchicalVAE,
    VampPriorVAE,
    load,
)
from latentlab.errors import UnknownParameterError
from latentlab.nn import Likelihood, ModuleSpec
from latentlab.nn.networks import BatchFlatten

REPO = Path(__file__).resolve().parents[1]
FAST = dict(epochs=2, verbose=False, batch_size=64)


@pytest.fixture(scope="module")
def X():
    from latentlab.datasets import load_digits

    return (load_digits().data[:300] > 0.5).astype(np.float32)  # (300, 64), 0/1


class Enc(nn.Module):
    """x (B, 64) -> (B, width)."""

    def __init__(self, width=4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, width))

    def forward(self, x):
        return self.net(x)


class Dec(nn.Module):
    """z (B, k) -> (B, 64); written for 2-D input only (the view), as users write decoders."""

    def __init__(self, k=2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(k, 16), nn.Tanh(), nn.Linear(16, 64))

    def forward(self, z):
        return self.net(z).view(-1, 64)


def _weights(m: nn.Module):
    return [p.detach().clone() for p in m.parameters()]


# ---------------------------------------------------------------------------------------- fitting
@pytest.mark.parametrize("cls,width", [(VAE, 4), (IWAE, 4), (VampPriorVAE, 4), (Autoencoder, 2)])
def test_own_networks_train_and_are_used(cls, width, X):
    enc, dec = Enc(width), Dec(2)
    before = _weights(enc) + _weights(dec)
    extra = {"n_pseudo_inputs": 5} if cls is VampPriorVAE else {}
    m = cls(latent_dim=2, encoder=enc, decoder=dec, **FAST, **extra).fit(X)
    # fit trains copies: the user's modules keep their weights (scikit-learn: fit does not change params)
    for a, b in zip(before, _weights(enc) + _weights(dec)):
        assert torch.equal(a, b)
    assert m.module_.encoder is not enc and type(m.module_.encoder) is Enc
    assert isinstance(m.module_.decoder, BatchFlatten) and type(m.module_.decoder.net) is Dec
    assert m.history_[-1]["train_loss"] < m.history_[0]["train_loss"]
    # the fitted networks are the ones in use: transform is the copied encoder's output
    with torch.no_grad():
        out = m.module_.encoder(torch.as_tensor(X[:5])).numpy()
    np.testing.assert_allclose(m.transform(X[:5]), out[:, :2], rtol=1e-5, atol=1e-6)
    assert m.inverse_transform(m.transform(X[:5])).shape == (5, 64)


def test_iwae_runs_a_two_dimensional_decoder_on_k_samples(X):
    m = IWAE(latent_dim=2, k=5, encoder=Enc(4), decoder=Dec(2), **FAST).fit(X)
    assert m.score_samples(X[:7], k=20).shape == (7,)  # decodes (20, 7, 2) codes through a (B, 2) decoder


def test_conditional_vae_takes_the_condition_beside_x_and_z(X):
    from latentlab.datasets import load_digits

    y = load_digits().target[:300]

    class CondEnc(Enc):
        def __init__(self):
            super().__init__(4)
            self.net[0] = nn.Linear(64 + 10, 16)

    m = ConditionalVAE(latent_dim=2, encoder=CondEnc(), decoder=Dec(2 + 10), **FAST).fit(X, y)
    assert m.sample(4, y=3, seed=0).shape == (4, 64)
    with pytest.raises(ConfigError, match=r"encoder failed on its input of shape \(2, 74\) \(x of shape \(2, 64\) with the condition beside it"):
        ConditionalVAE(latent_dim=2, encoder=Enc(4), decoder=Dec(12), **FAST).fit(X, y)


def test_only_one_own_network_is_fine(X):
    m = VAE(latent_dim=2, decoder=Dec(2), hidden=(16,), **FAST).fit(X)
    assert type(m.module_.decoder.net) is Dec and type(m.module_.encoder).__name__ == "MLP"


def test_a_spec_is_built_at_fit_under_the_seed(X):
    kw = dict(latent_dim=2, encoder=ModuleSpec("torch.nn:Linear", in_features=64, out_features=4),
              decoder="torch.nn:Linear(in_features=2, out_features=64)", **FAST)
    a, b = VAE(seed=3, **kw).fit(X), VAE(seed=3, **kw).fit(X)
    np.testing.assert_array_equal(a.transform(X[:10]), b.transform(X[:10]))
    c = VAE(seed=4, **kw).fit(X)
    assert not np.array_equal(a.transform(X[:10]), c.transform(X[:10]))


# ---------------------------------------------------------------------------------------- shape checks
@pytest.mark.parametrize("cls,enc,dec,pattern", [
    (VAE, Enc(3), Dec(2), r"VAE\(latent_dim=2\): your encoder maps its input of shape \(2, 64\) to \(2, 3\), "
     r"but it must give \(2, 4\): the mean and the log-variance"),
    (Autoencoder, Enc(4), Dec(2), r"Autoencoder\(latent_dim=2\): your encoder maps .* to \(2, 4\), but it must give "
     r"\(2, 2\): the code"),
    (VAE, Enc(4), Dec(3), r"your decoder failed on its input of shape \(2, 2\)"),
    (VAE, Enc(4), nn.Linear(2, 60), r"your decoder maps its input of shape \(2, 2\) to \(2, 60\), but it must give "
     r"\(2, 64\)"),
])
def test_wrong_shapes_are_named_on_the_first_batch(cls, enc, dec, pattern, X):
    with pytest.raises(ConfigError, match=pattern):
        cls(latent_dim=2, encoder=enc, decoder=dec, **FAST).fit(X)


def test_images_given_as_flat_rows_get_a_hint(X):
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, 4))
    with pytest.raises(ConfigError, match=r"shape \(2, 64\).*pass architecture='conv' for images"):
        VAE(latent_dim=2, encoder=conv, decoder=Dec(2), **FAST).fit(X)
    m = VAE(latent_dim=2, encoder=conv, decoder=nn.Sequential(nn.Linear(2, 64), nn.Unflatten(1, (1, 8, 8))),
            architecture="conv", **FAST).fit(X.reshape(-1, 8, 8))
    assert m.transform(X.reshape(-1, 8, 8)[:3]).shape == (3, 2)


@pytest.mark.parametrize("value,pattern", [
    (42, r"encoder must be None .* a torch.nn.Module, a latentlab.nn.ModuleSpec .*; got int"),
    ("not a spec", r"importable 'package.module:Name'"),
    ("torch.nn:Linear(4, 2)", r"only keyword arguments"),
    ("torch.nn:Linear(in_features=__import__('os'))", r"cannot read the network spec"),
    ("no_such_module_xyz:Net", r"cannot import 'no_such_module_xyz'"),
])
def test_bad_network_values_are_config_errors(value, pattern, X):
    with pytest.raises(ConfigError, match=pattern):
        VAE(latent_dim=2, encoder=value, decoder=Dec(2), **FAST).fit(X)


def test_the_hierarchical_vae_refuses_own_networks_with_a_reason():
    with pytest.raises(UnknownParameterError, match="HierarchicalVAE takes no encoder=: it builds five networks"):
        HierarchicalVAE(encoder=Enc(4))
    with pytest.raises(UnknownParameterError, match="takes no decoder="):
        HierarchicalVAE().set_params(decoder=Dec(2))


# ---------------------------------------------------------------------------------------- scikit-learn
def test_clone_deep_copies_the_modules_and_grid_search_works(X):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    enc = Enc(4)
    est = VAE(latent_dim=2, encoder=enc, decoder=Dec(2), **FAST)
    c = clone(est)
    assert c.encoder is not enc and type(c.encoder) is Enc
    assert all(torch.equal(a, b) for a, b in zip(_weights(c.encoder), _weights(enc)))
    before = _weights(enc)
    gs = GridSearchCV(est, {"lr": [1e-3, 1e-2]}, cv=2).fit(X)
    assert set(gs.cv_results_["param_lr"]) == {1e-3, 1e-2} and np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(enc)))
    # a grid over architectures, as specs
    specs = [ModuleSpec("torch.nn:Linear", in_features=64, out_features=4),
             ModuleSpec("test_own_networks:Enc", width=4)]
    gs = GridSearchCV(VAE(latent_dim=2, decoder=Dec(2), **FAST), {"encoder": specs}, cv=2).fit(X)
    assert gs.best_params_["encoder"] in specs


def test_refitting_starts_again_from_the_same_weights(X):
    m = VAE(latent_dim=2, encoder=Enc(4), decoder=Dec(2), **FAST)
    a = m.fit(X).transform(X[:10])
    b = m.fit(X).transform(X[:10])
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------- likelihoods
class Laplace(Likelihood):
    """p(x|z) = Laplace(out, b) with one learned scale b; (a likelihood of one's own)."""

    name = "laplace"

    def __init__(self):
        super().__init__()
        self.log_b = nn.Parameter(torch.zeros(()))

    def log_prob(self, x, out):
        d = (x - out).abs() * torch.exp(-self.log_b) + self.log_b + math.log(2)
        return -d.flatten(-x.dim() + 1).sum(-1)

    def mean(self, out):
        return out

    def sample(self, out, generator=None):
        u = torch.rand(out.shape, generator=generator) - 0.5
        return out - torch.exp(self.log_b) * u.sign() * torch.log1p(-2 * u.abs())

    def check(self, x):
        if not np.all(np.isfinite(x)):
            raise DataError("the Laplace likelihood needs finite data")


def test_a_likelihood_of_ones_own_trains_saves_and_loads(X, tmp_path):
    Xc = X + 0.1 * np.random.default_rng(0).normal(size=X.shape).astype(np.float32)
    lik = Laplace()
    m = VAE(latent_dim=2, hidden=(16,), likelihood=lik, **FAST).fit(Xc)
    assert m.likelihood_ == "laplace" and float(lik.log_b.detach()) == 0.0  # the user's instance is not trained
    assert float(m.module_.likelihood.log_b.detach()) != 0.0                 # its copy is
    rec = m.reconstruction_nll(Xc[:4])
    x, out = torch.as_tensor(Xc[:4]), None
    with torch.no_grad():
        out = m.module_.decode(m.module_.encode(x).mean)
        np.testing.assert_allclose(rec, -m.module_.likelihood.log_prob(x, out).numpy(), rtol=1e-5)
    again = load(m.save(tmp_path / "m"), likelihood=Laplace())
    assert float(again.module_.likelihood.log_b.detach()) == pytest.approx(float(m.module_.likelihood.log_b.detach()))
    np.testing.assert_allclose(again.score_samples(Xc[:5]), m.score_samples(Xc[:5]), rtol=1e-5)
    ae = Autoencoder(latent_dim=2, hidden=(16,), loss=Laplace(), **FAST).fit(Xc)
    assert "reconstruction_nll" in ae.capabilities and ae.reconstruction_nll(Xc[:3]).shape == (3,)
    hv = HierarchicalVAE(latent_dim=2, hidden=(16,), likelihood=Laplace(), **FAST).fit(Xc)
    assert hv.likelihood_ == "laplace"


def test_a_likelihood_is_checked_against_the_data_and_its_contract(X):
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(DataError):
        VAE(latent_dim=2, hidden=(16,), likelihood=Laplace(), **FAST).fit(bad)

    class NotSummed(Laplace):
        def log_prob(self, x, out):
            return -(x - out).abs()

    with pytest.raises(ConfigError, match=r"likelihood's log_prob\(x, out\) has shape \(2, 64\), but it must be \(2,\)"):
        VAE(latent_dim=2, hidden=(16,), likelihood=NotSummed(), **FAST).fit(X)

    class NoSampleDims(Laplace):
        def log_prob(self, x, out):
            return -(x - out).abs().reshape(x.shape[0], -1).sum(-1)

    with pytest.raises(ConfigError, match=r"leading sample dimension failed|must be \(2, 2\)"):
        VAE(latent_dim=2, hidden=(16,), likelihood=NoSampleDims(), **FAST).fit(X)
    with pytest.raises(ConfigError, match="not a latentlab.nn.Likelihood|a latentlab.nn.Likelihood"):
        VAE(latent_dim=2, likelihood=nn.Linear(2, 2), **FAST).fit(X)


def test_likelihood_is_public():
    assert latentlab.Likelihood is Likelihood and latentlab.ModuleSpec is ModuleSpec
    assert issubclass(latentlab.nn.Bernoulli, Likelihood)


# ---------------------------------------------------------------------------------------- saving
def test_instances_are_recorded_by_class_and_must_be_handed_back(X, tmp_path):
    m = VAE(latent_dim=2, encoder=Enc(4), decoder=Dec(2), **FAST).fit(X)
    path = m.save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["params"]["encoder"] == {"network": "instance", "class": "test_own_networks.Enc"}
    with pytest.raises(CheckpointError, match=r"its encoder is an instance of test_own_networks.Enc; its decoder "
                       r"is an instance of .*Dec\). Hand them back, load\(path, encoder=..., decoder=...\)"):
        load(path)
    with pytest.raises(CheckpointError, match="Hand them back"):
        load(path, trust_code=True)  # nothing to import for an instance
    again = load(path, encoder=Enc(4), decoder=Dec(2))
    np.testing.assert_array_equal(again.transform(X[:20]), m.transform(X[:20]))
    np.testing.assert_array_equal(again.sample(5, seed=1), m.sample(5, seed=1))
    with pytest.raises(CheckpointError, match="does not match this model's configuration"):
        load(path, encoder=Enc(6), decoder=Dec(2))
    with pytest.raises(ConfigError, match="takes no network 'prior'"):
        load(path, encoder=Enc(4), decoder=Dec(2), prior=Enc(1))
    plain = VAE(latent_dim=2, hidden=(8,), **FAST).fit(X).save(tmp_path / "plain")
    with pytest.raises(ConfigError, match="built-in encoder"):
        load(plain, encoder=Enc(4))


NOISY_MODULE = '''
import pathlib
pathlib.Path(__file__).with_name("imported.flag").write_text("the module ran")
from torch import nn

class Enc(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.lin = nn.Linear(64, width)

    def forward(self, x):
        return self.lin(x)
'''


def test_a_spec_is_imported_at_load_only_with_trust_code(X, tmp_path, monkeypatch):
    pkg = tmp_path / "code"
    pkg.mkdir()
    (pkg / "noisy_nets.py").write_text(NOISY_MODULE)
    monkeypatch.syspath_prepend(str(pkg))
    m = VAE(latent_dim=2, encoder="noisy_nets:Enc(width=4)", decoder=Dec(2), **FAST).fit(X)
    path = m.save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["params"]["encoder"] == "noisy_nets:Enc(width=4)"
    (pkg / "imported.flag").unlink()
    sys.modules.pop("noisy_nets", None)
    with pytest.raises(CheckpointError, match=r"its encoder is noisy_nets:Enc\(width=4\).*load\(path, trust_code=True\), "
                       r"--trust-code on the command line; importing a module runs its code"):
        load(path, decoder=Dec(2))
    assert not (pkg / "imported.flag").exists() and "noisy_nets" not in sys.modules  # refused without importing
    again = load(path, decoder=Dec(2), trust_code=True)
    assert (pkg / "imported.flag").exists()
    np.testing.assert_array_equal(again.transform(X[:10]), m.transform(X[:10]))
    with latentlab.trusted_code():
        np.testing.assert_array_equal(load(path, decoder=Dec(2)).transform(X[:10]), m.transform(X[:10]))
    with pytest.raises(CheckpointError, match="trust_code=True"):
        load(path, decoder=Dec(2))  # the context is over
    # handing a spec'd network back works without trust
    assert load(path, encoder=sys.modules["noisy_nets"].Enc(4), decoder=Dec(2)).transform(X[:2]).shape == (2, 2)


def test_a_module_spec_round_trips_through_its_record_and_text():
    s = ModuleSpec("torch.nn:Linear", in_features=3, out_features=2, bias=False)
    assert ModuleSpec.from_record(json.loads(json.dumps(s.to_record()))) == s
    assert ModuleSpec.parse(s.text()) == s and s.build().bias is None
    assert ModuleSpec("m:f", sizes=(1, 2)).kwargs == {"sizes": [1, 2]}  # stored as JSON gives it back
    with pytest.raises(ConfigError, match="values JSON holds"):
        ModuleSpec("m:f", fn=print)
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        ModuleSpec("builtins:dict").build()


# ---------------------------------------------------------------------------------------- the README example
def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    marker = "<!-- tests/test_own_networks.py runs this block"
    block = text[text.index(marker):]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


def _tiny_binary_images(n=40, seed=0) -> np.ndarray:
    """Blobs on 28x28: a random disc per image, 0/1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    c = rng.uniform(8, 20, size=(n, 2))
    r = rng.uniform(4, 8, size=n)
    return (((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) < r[:, None, None] ** 2).astype(np.float32)


def test_the_readme_conv_example_runs_on_tiny_data(tmp_path, monkeypatch):
    code = _readme_example()
    data_line = next(line for line in code.splitlines() if line.startswith("X = "))
    assert "binarized-mnist" in data_line
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "readme_example", "_tiny": _tiny_binary_images()}
    exec(compile(code.replace(data_line, "X = _tiny"), "README.md", "exec"), ns)
    vae, same, X = ns["vae"], ns["same"], ns["X"]
    assert vae.module_.encoder.net[0].in_channels == 1 and vae.transform(X[:3]).shape == (3, 16)
    np.testing.assert_array_equal(same.transform(X[:8]), vae.transform(X[:8]))
    assert same.sample(4, seed=0).shape == (4, 28, 28)
    assert vae.history_[-1]["train_loss"] < vae.history_[0]["train_loss"]


def test_the_readme_conv_example_on_the_command_line(tmp_path, monkeypatch, capsys):
    from latentlab.cli import main

    code = _readme_example()
    classes = code[: code.index("\nX = ")]
    (tmp_path / "mynets.py").write_text(textwrap.dedent(classes))
    np.save(tmp_path / "x.npy", _tiny_binary_images())
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # PYTHONPATH=. of the README
    monkeypatch.delitem(sys.modules, "mynets", raising=False)

    def cli(*args):
        capsys.readouterr()
        rc = main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err

    rc, _, err = cli("fit", "vae", "--data", "x.npy", "--architecture", "conv", "--latent-dim", "16", "--epochs", "2",
                     "--encoder", "mynets:ConvEncoder28(latent_dim=16)", "--decoder", "mynets:ConvDecoder28(latent_dim=16)",
                     "--eval-k", "4", "--out", "runs/conv-vae")
    assert rc == 0, err
    rc, _, err = cli("evaluate", "runs/conv-vae", "--k", "4")
    assert rc == 2 and "mynets" in err and "--trust-code" in err and len(err.strip().splitlines()) == 1, err
    rc, out, err = cli("evaluate", "runs/conv-vae", "--k", "4", "--json", "--trust-code")
    assert rc == 0, err
    assert json.loads(out)["metrics"]["elbo"] < 0
    rc, _, err = cli("fit", "--resume", "runs/conv-vae", "--epochs", "3")
    assert rc == 2 and "trust_code" in err, err
    rc, out, err = cli("fit", "--resume", "runs/conv-vae", "--epochs", "3", "--trust-code", "--json")
    assert rc == 0, err
    assert json.loads(out)["metrics"]["epochs"] == 3


def test_runs_with_own_networks_reopen_and_resume_with_them_handed_back(tmp_path):
    from latentlab import api

    cfg = api.RunConfig("vae", "digits", {"latent_dim": 2, "encoder": Enc(4), "decoder": Dec(2), "epochs": 2,
                                          "patience": None, "verbose": False}, eval_k=4)
    run = api.fit(cfg, tmp_path / "r")
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["config"]["params"]["encoder"] == {"network": "instance", "class": "test_own_networks.Enc"}
    with pytest.raises(CheckpointError, match="Hand them back"):
        api.open_run(tmp_path / "r")
    again = api.open_run(tmp_path / "r", networks={"encoder": Enc(4), "decoder": Dec(2)})
    np.testing.assert_array_equal(again.model.transform(again.test.data), run.model.transform(run.test.data))
    with pytest.raises(CheckpointError, match="Hand them back"):
        api.resume(tmp_path / "r", epochs=3)
    with pytest.raises(ConfigError, match="cannot change encoder"):  # a setting, not a network to hand back
        api.resume(tmp_path / "r", epochs=3, encoder=Enc(4), decoder=Dec(2))
    more = api.resume(tmp_path / "r", epochs=3, networks={"encoder": Enc(4), "decoder": Dec(2)})
    assert more.model.n_epochs_ == 3 and [h["epoch"] for h in more.model.history_] == [1, 2, 3]


def test_own_networks_export_to_onnx_and_run_in_the_explorer(X, tmp_path):
    """The other consumers of module_: the ONNX export (run with onnxruntime) and the explorer's
    in-page decoder see your networks like the built-in ones."""
    import importlib.util

    from latentlab.explorer import decoder_program

    dec = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 64))
    m = VAE(latent_dim=2, encoder=Enc(4), decoder=dec, likelihood="bernoulli", **FAST).fit(X)
    assert [op["op"] for op in decoder_program(m)["ops"]][:3] == ["linear", "relu", "linear"]
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None:
        if os.environ.get("CI"):
            pytest.fail("onnxruntime/onnxscript are not installed, and CI must run this test ('.[dev]' has them)")
        pytest.skip("onnxruntime or onnxscript not installed (pip install 'latentlab[dev]'); CI runs this test")
    import onnxruntime

    from latentlab.exporter import export

    info = export(m, tmp_path / "onnx", format="onnx")
    enc = onnxruntime.InferenceSession(str(tmp_path / "onnx" / info["encoder"]["file"]))
    decs = onnxruntime.InferenceSession(str(tmp_path / "onnx" / info["decoder"]["file"]))
    (z,) = enc.run(None, {"x": X[:9]})
    np.testing.assert_allclose(z, m.transform(X[:9]), rtol=1e-4, atol=1e-5)
    (r,) = decs.run(None, {"z": z})
    np.testing.assert_allclose(r, m.inverse_transform(z), rtol=1e-4, atol=1e-5)
