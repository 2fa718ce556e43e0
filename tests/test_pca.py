import numpy as np
import pytest
from sklearn.decomposition import PCA as SkPCA

from latentlab import PCA, ConfigError, load


def _match_signs(a, b):
    """Flip rows of a so that they point like the rows of b."""
    s = np.sign(np.sum(a * b, axis=1))
    return a * s[:, None]


@pytest.mark.parametrize("shape", [(300, 12), (15, 40)])  # covariance path and SVD path
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("whiten", [False, True])
def test_agrees_with_scikit_learn(rng, shape, dtype, whiten):
    X = (rng.normal(size=shape) * np.linspace(3, 0.2, shape[1])).astype(dtype)
    k = 5
    ours = PCA(latent_dim=k, whiten=whiten).fit(X)
    ref = SkPCA(n_components=k, whiten=whiten, svd_solver="full").fit(X.astype(np.float64))
    rtol = 1e-5 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(_match_signs(ours.components_, ref.components_), ref.components_, rtol=rtol, atol=rtol * 1e-1)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=rtol)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=rtol)
    np.testing.assert_allclose(ours.singular_values_, ref.singular_values_, rtol=rtol)
    rec_ours = ours.inverse_transform(ours.transform(X))
    rec_ref = ref.inverse_transform(ref.transform(X.astype(np.float64)))
    np.testing.assert_allclose(rec_ours, rec_ref, rtol=rtol, atol=rtol * np.abs(X).max())
    if shape[0] >= shape[1] and not whiten:
        # Probabilistic-PCA noise and log-likelihood (nats per example). scikit-learn departs from
        # Tipping & Bishop for n < F (it averages the discarded variance over min(n, F) - k
        # dimensions, not F - k) and with whiten=True (its covariance scales the axes by
        # sqrt(variance); scikit-learn issue #13898), so compare where both follow the paper.
        np.testing.assert_allclose(ours.noise_variance_, ref.noise_variance_, rtol=rtol)
        np.testing.assert_allclose(ours.score(X), ref.score(X.astype(np.float64)), rtol=rtol)
        np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X.astype(np.float64)), rtol=rtol * 10, atol=1e-4)


def test_probabilistic_pca_score_is_a_density_that_ignores_whitening(rng):
    X = rng.normal(size=(400, 3)) @ np.diag([3.0, 1.0, 0.3])
    plain, white = PCA(latent_dim=1).fit(X), PCA(latent_dim=1, whiten=True).fit(X)
    assert plain.score(X) == pytest.approx(white.score(X), rel=1e-12)
    # It is the log-density of N(mean, W W^T + s2 I): compare with scipy.
    from scipy.stats import multivariate_normal

    ref = multivariate_normal(plain.mean_, plain.get_covariance()).logpdf(X)
    np.testing.assert_allclose(plain.score_samples(X), ref, rtol=1e-10)


def test_signs_are_deterministic(rng):
    X = rng.normal(size=(100, 6))
    comps = PCA(latent_dim=3).fit(X).components_
    assert np.all(comps[np.arange(3), np.abs(comps).argmax(1)] > 0)


def test_full_rank_reconstruction_is_exact(rng):
    X = rng.normal(size=(50, 6))
    pca = PCA(latent_dim=6).fit(X)
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(X)), X, atol=1e-10)


def test_whitened_codes_have_unit_variance(rng):
    X = rng.normal(size=(500, 8)) * np.arange(1, 9)
    Z = PCA(latent_dim=3, whiten=True).fit_transform(X)
    np.testing.assert_allclose(Z.var(axis=0, ddof=1), 1.0, rtol=1e-8)


def test_images_keep_their_shape(digits):
    pca = PCA(latent_dim=10).fit(digits.images)
    rec = pca.inverse_transform(pca.transform(digits.images))
    assert rec.shape == digits.images.shape
    # The same model from flat data gives the same codes.
    np.testing.assert_allclose(pca.transform(digits.images), PCA(latent_dim=10).fit(digits.data).transform(digits.data), atol=1e-4)


def test_latent_dim_larger_than_data_allows_is_a_clear_error(rng):
    with pytest.raises(ConfigError, match=r"latent_dim=20 is larger than the data allows.*min\(n_samples, n_features\) = 10; choose latent_dim <= 10"):
        PCA(latent_dim=20).fit(rng.normal(size=(50, 10)))


def test_standard_scaling_is_applied_and_undone(rng):
    X = rng.normal(size=(200, 4)) * [1, 10, 100, 1000] + [5, -5, 50, 0]
    pca = PCA(latent_dim=4, scale="standard").fit(X)
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(X)), X, rtol=1e-5, atol=1e-3)
    # On standardized data each feature counts the same: the ratios are those of the correlation matrix.
    ref = SkPCA(4).fit((X - X.mean(0)) / X.std(0))
    np.testing.assert_allclose(pca.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-4)


def test_save_load_round_trip(tmp_path, rng):
    X = rng.normal(size=(80, 7))
    pca = PCA(latent_dim=3, whiten=True, scale="standard").fit(X)
    same = load(pca.save(tmp_path / "pca"))
    np.testing.assert_array_equal(same.transform(X), pca.transform(X))
    np.testing.assert_array_equal(same.inverse_transform(pca.transform(X)), pca.inverse_transform(pca.transform(X)))
    assert same.score(X) == pca.score(X)


def test_float32_data_far_from_the_origin_keeps_its_precision():
    """A feature whose mean dwarfs its spread would lose float32's digits in X^T X - n m m^T;
    PCA then centres the data first, and matches a float64 computation."""
    rng = np.random.default_rng(0)
    X64 = rng.normal(size=(2000, 6)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.2, 0.1]) + 1e4
    X = X64.astype(np.float32)
    pca = PCA(latent_dim=3).fit(X)
    ref = np.linalg.eigvalsh(np.cov(X.astype(np.float64).T))[::-1][:3]
    np.testing.assert_allclose(pca.explained_variance_, ref, rtol=1e-4)
