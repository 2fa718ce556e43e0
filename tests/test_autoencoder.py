import numpy as np
import pytest
import scipy.linalg

from latentlab import PCA, Autoencoder, ConfigError, DataError


def test_linear_autoencoder_spans_the_pca_subspace(spectrum_data):
    k = 3
    pca = PCA(latent_dim=k).fit(spectrum_data)
    ae = Autoencoder(latent_dim=k, hidden=(), lr=1e-2, epochs=100, batch_size=64, patience=None, verbose=False)
    ae.fit(spectrum_data)
    W = ae.module_.decoder[0].weight.detach().numpy()  # (F, k): the decoder's image is its column space
    angles = np.degrees(scipy.linalg.subspace_angles(W, pca.components_.T))
    assert angles.max() < 2.0, angles
    # ...but not its individual axes: the learned basis is some rotation of the PCA one.
    Wn = W / np.linalg.norm(W, axis=0)
    assert not np.allclose(np.abs(Wn.T @ pca.components_.T), np.eye(k), atol=0.05)


def _curve(rng, n=1500):
    """A 1-D curve (a quarter helix) in 5-D with a little noise: curved, so one linear axis misses it."""
    t = rng.uniform(-1.0, 1.0, size=n)
    X = np.stack([t, t**2, np.sin(3 * t), np.cos(3 * t), 0.5 * t**3], axis=1)
    return X + 0.01 * rng.normal(size=X.shape)


def test_deep_autoencoder_follows_a_curved_manifold_better_than_pca(rng):
    X = _curve(rng)
    pca = PCA(latent_dim=1).fit(X)
    err_pca = np.mean(np.sum((pca.inverse_transform(pca.transform(X)) - X) ** 2, axis=1))
    ae = Autoencoder(latent_dim=1, hidden=(64, 64), activation="tanh", lr=3e-3, epochs=150, patience=None, verbose=False)
    ae.fit(X)
    err_ae = np.mean(np.sum((ae.reconstruct(X) - X) ** 2, axis=1))
    assert err_ae < 0.05 * err_pca, (err_ae, err_pca)


@pytest.mark.parametrize("loss", ["mse", "bernoulli", "continuous_bernoulli", "gaussian"])
def test_losses_train_and_decrease(digits, loss):
    X = (digits.data > 0.5).astype(np.float32) if loss == "bernoulli" else digits.data
    ae = Autoencoder(latent_dim=4, hidden=(32,), loss=loss, epochs=5, verbose=False).fit(X)
    losses = [h["train_loss"] for h in ae.history_]
    assert losses[-1] < losses[0]
    rec = ae.reconstruct(X[:10])
    assert rec.shape == (10, 64) and np.all(np.isfinite(rec))
    if loss in ("bernoulli", "continuous_bernoulli"):
        assert rec.min() >= 0 and rec.max() <= 1


def test_conv_autoencoder_on_images(digits):
    imgs = digits.images[:300]
    ae = Autoencoder(latent_dim=3, architecture="conv", channels=(8, 16), hidden=(32,), epochs=2, verbose=False)
    Z = ae.fit_transform(imgs)
    assert Z.shape == (300, 3)
    assert ae.inverse_transform(Z).shape == (300, 8, 8)


def test_conv_needs_images(digits):
    with pytest.raises(DataError, match="architecture='conv' needs images"):
        Autoencoder(architecture="conv", epochs=1, verbose=False).fit(digits.data)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"latent_dim": 0}, r"The 'latent_dim' parameter of Autoencoder must be an int in the range \[1, inf\)"),
        ({"hidden": (32, -4)}, "each size in hidden must be an integer >= 1"),
        ({"lr": -1.0}, r"The 'lr' parameter of Autoencoder must be a float in the range \(0.0, inf\)"),
        ({"epochs": 0}, r"The 'epochs' parameter of Autoencoder must be an int in the range \[1, inf\)"),
        ({"batch_size": 0}, r"The 'batch_size' parameter of Autoencoder must be an int in the range \[1, inf\)"),
        ({"activation": "swish"}, "activation must be one of"),
        ({"loss": "l1"}, "loss must be one of"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
    ],
)
def test_nonsense_settings_are_clear_errors(digits, params, match):
    with pytest.raises(ConfigError, match=match):
        Autoencoder(verbose=False, **params).fit(digits.data[:50])
