"""Samplers that fill the prior hole: densities fitted to the training codes (ex-post estimation)."""

import json

import numpy as np
import pytest

import latentlab
from latentlab import PCA, VAE, Autoencoder, cli
from latentlab.errors import DataError
from latentlab.evaluation import FeatureSpace, frechet_distance


@pytest.fixture(scope="module")
def ae_digits(digits):
    X = digits.data
    return Autoencoder(latent_dim=2, hidden=(64, 32), epochs=60, verbose=False).fit(X[:1500]), X


def test_gmm_decodes_of_a_plain_autoencoder_are_closer_to_data_than_its_standard_normal_decodes(ae_digits, digits):
    ae, X = ae_digits
    fs = FeatureSpace(seed=0).fit(X[:1500], digits.target[:1500])
    ref = fs.features(X[1500:])
    fd = {s: frechet_distance(fs.features(ae.sample(600, seed=1, sampler=s).reshape(600, -1)), ref)
          for s in ("prior", "gaussian", "gmm")}
    assert fd["gmm"] < fd["prior"] and fd["gaussian"] < fd["prior"]
    assert 1 <= ae.latent_density("gmm").n_components <= 10


@pytest.mark.parametrize("make", [lambda: PCA(latent_dim=3), lambda: VAE(latent_dim=3, hidden=(16,), epochs=2, verbose=False)])
def test_fitted_samplers_are_saved_with_the_model_without_pickle(tmp_path, digits, make):
    m = make().fit(digits.data)
    a = m.sample(7, seed=3, sampler="gmm")
    again = latentlab.load(m.save(tmp_path / "m"))
    np.testing.assert_array_equal(again.sample(7, seed=3, sampler="gmm"), a)
    assert "samplers" in json.loads((tmp_path / "m" / "config.json").read_text())["state"]


def test_the_number_of_components_is_chosen_by_bic_unless_set(ae_digits):
    ae, X = ae_digits
    ae.fit_sampler(X[:500], n_components=4)
    assert ae.latent_density("gmm").n_components == 4
    ae.fit_sampler(X[:500], max_components=3)
    d = ae.latent_density("gmm")
    assert len(d.bic) == 3 and d.n_components == int(np.argmin(d.bic)) + 1


def test_a_model_without_training_codes_says_how_to_fit_its_sampler(ae_digits):
    import copy

    ae = copy.deepcopy(ae_digits[0])
    ae.train_codes_, ae.samplers_ = None, {}
    with pytest.raises(DataError, match=r"fit_sampler\(X_train\)"):
        ae.sample(3, sampler="gmm")
    with pytest.raises(latentlab.ConfigError, match="sampler"):
        ae.sample(3, sampler="flow")


def test_sample_sampler_gmm_on_the_command_line_works_on_an_ordinary_run(tmp_path):
    run = tmp_path / "ae"
    assert cli.main(["fit", "ae", "--data", "digits", "--latent-dim", "2", "--hidden", "8", "--epochs", "2",
                     "--out", str(run)]) == 0
    # A run saved before latent codes were kept: the command fits the mixture from the run's split.
    cfg = json.loads((run / "config.json").read_text())
    model = latentlab.load(run)
    model.train_codes_ = None
    model.save(run)
    assert cli.main(["sample", str(run), "-n", "9", "--sampler", "gmm", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (9, 64)
    assert "gmm" in json.loads((run / "config.json").read_text())["state"]["samplers"]
    assert cfg["class"] == "Autoencoder"
