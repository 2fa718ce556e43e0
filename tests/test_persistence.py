import json

import numpy as np
import pytest

from latentlab import IWAE, PCA, VAE, Autoencoder, CheckpointError, HierarchicalVAE, VampPriorVAE, load

FAST = dict(epochs=2, verbose=False)


def _binary(d):
    return (d.data > 0.5).astype(np.float32)


CASES = {
    "pca": (lambda: PCA(latent_dim=5, whiten=True), lambda d: d.data),
    "ae-mlp-mse": (lambda: Autoencoder(latent_dim=3, hidden=(16,), **FAST), lambda d: d.data),
    "ae-conv-bernoulli": (lambda: Autoencoder(latent_dim=3, architecture="conv", channels=(4,), hidden=(), loss="bernoulli", **FAST),
                          lambda d: _binary(d).reshape(-1, 8, 8)),
    "ae-linear-scaled": (lambda: Autoencoder(latent_dim=3, hidden=(), scale="standard", **FAST), lambda d: d.data * 7 + 3),
    "vae-gaussian-per-feature": (lambda: VAE(latent_dim=3, hidden=(16,), likelihood="gaussian", sigma="learned_per_feature", scale="standard", **FAST),
                                 lambda d: d.data),
    "vae-conv-bernoulli": (lambda: VAE(latent_dim=2, architecture="conv", channels=(4, 8), hidden=(8,), likelihood="bernoulli", **FAST),
                           lambda d: _binary(d).reshape(-1, 1, 8, 8)),
    "vae-cb": (lambda: VAE(latent_dim=2, hidden=(16,), likelihood="continuous_bernoulli", **FAST), lambda d: d.data),
    "iwae": (lambda: IWAE(latent_dim=3, k=4, hidden=(16,), **FAST), _binary),
    "vamp": (lambda: VampPriorVAE(latent_dim=3, n_pseudo_inputs=7, hidden=(16,), **FAST), _binary),
    "vamp-conv-gaussian": (lambda: VampPriorVAE(latent_dim=2, n_pseudo_inputs=5, architecture="conv", channels=(4,), hidden=(8,),
                                                likelihood="gaussian", scale="standard", **FAST), lambda d: d.images),
    "hvae": (lambda: HierarchicalVAE(latent_dim=3, latent_dim2=2, hidden=(16,), **FAST), _binary),
    "hvae-vamp-iw": (lambda: HierarchicalVAE(latent_dim=2, latent_dim2=2, prior="vamp", n_pseudo_inputs=5, k=3, hidden=(16,), **FAST),
                     _binary),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_save_load_gives_identical_outputs(tmp_path, digits, case):
    make, data = CASES[case]
    X = data(digits)[:300]
    est = make().fit(X)
    path = est.save(tmp_path / case)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]  # no pickle
    same = load(path)
    assert type(same) is type(est) and same.get_params() == est.get_params()
    Z = est.transform(X)
    np.testing.assert_array_equal(same.transform(X), Z)
    np.testing.assert_array_equal(same.inverse_transform(Z), est.inverse_transform(Z))
    assert same.score(X) == est.score(X)
    if hasattr(est, "sample"):
        np.testing.assert_array_equal(same.sample(4, seed=0), est.sample(4, seed=0))
    if hasattr(est, "history_"):
        assert same.history_ == json.loads(json.dumps(est.history_))


def test_damaged_or_mismatched_files_are_clear_errors(tmp_path, digits):
    vae = VAE(latent_dim=2, hidden=(8,), **FAST).fit(digits.data)
    path = vae.save(tmp_path / "m")
    weights = path / "model.safetensors"

    # Truncated weights: the checksum in config.json no longer matches.
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="does not match .*config.json"):
        load(path)
    weights.write_bytes(good)

    # Settings that do not fit the weights.
    cfg = json.loads((path / "config.json").read_text())
    cfg["params"]["hidden"] = [9]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match this model's configuration"):
        load(path)

    # A format from another version.
    cfg["params"]["hidden"] = [8]
    cfg["format_version"] = 99
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model format 99.*matching latentlab version"):
        load(path)

    with pytest.raises(CheckpointError, match="not a directory"):
        load(tmp_path / "nowhere")
