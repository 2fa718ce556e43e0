"""Evaluation: the importance-sampled likelihood against closed forms, chunk-independence,
active units, Frechet distance, MMD, the metric table and the regularity measures."""

import json
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from latentlab import PCA, VAE, Autoencoder, ConfigError, DataError
from latentlab.evaluation import (
    FeatureSpace,
    active_units,
    continuity,
    evaluate,
    frechet_distance,
    gaussian_kl_to_standard_normal,
    kl_per_dim,
    log_likelihood,
    mmd2,
    regularity,
)
from latentlab.evaluation.likelihood import TILE_K, TILE_N, noise_tiles
from latentlab.nn.modules import VAEModule

# ----------------------------------------------------------------------------- a linear-Gaussian VAE
F, D, SIGMA = 5, 2, 0.5


class LinearGaussian:
    """A VAE whose decoder is linear with Gaussian noise, so log p(x) and the ELBO are closed forms.

    p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I)  =>  p(x) = N(b, W W^T + s^2 I).
    The encoder gives the exact posterior mean and a deliberately wrong (diagonal, shrunk)
    variance, so that importance sampling has work to do.
    """

    def __init__(self, seed=0, var_factor=0.6, n=200):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(F, D))
        self.b = rng.normal(size=F)
        z = rng.normal(size=(n, D))
        self.X = (z @ self.W.T + self.b + SIGMA * rng.normal(size=(n, F))).astype(np.float32)
        vae = VAE(latent_dim=D, hidden=(), likelihood="gaussian", sigma=SIGMA, epochs=1,
                  validation_fraction=0.0, verbose=False).fit(self.X)
        post_cov = np.linalg.inv(np.eye(D) + self.W.T @ self.W / SIGMA**2)
        M = post_cov @ self.W.T / SIGMA**2  # posterior mean = M (x - b)
        self.q_var = np.diag(post_cov) * var_factor
        enc, dec = vae.module_.encoder[0], vae.module_.decoder[0]
        with torch.no_grad():
            enc.weight.zero_()
            enc.weight[:D] = torch.as_tensor(M)
            enc.bias[:D] = torch.as_tensor(-M @ self.b)
            enc.bias[D:] = torch.as_tensor(np.log(self.q_var))
            dec.weight.copy_(torch.as_tensor(self.W))
            dec.bias.copy_(torch.as_tensor(self.b))
        self.vae = vae
        self.q_mean = (self.X - self.b) @ M.T

    def exact_log_px(self):
        cov = self.W @ self.W.T + SIGMA**2 * np.eye(F)
        return scipy.stats.multivariate_normal(self.b, cov).logpdf(self.X)

    def exact_elbo(self):
        m, s2 = self.q_mean, self.q_var
        resid = ((self.X - m @ self.W.T - self.b) ** 2).sum(1) + (s2 * (self.W**2).sum(0)).sum()
        e_log_px = -0.5 * resid / SIGMA**2 - F * math.log(SIGMA) - 0.5 * F * math.log(2 * math.pi)
        kl = 0.5 * (m**2 + s2 - np.log(s2) - 1).sum(1)
        return e_log_px - kl


@pytest.fixture(scope="module")
def linear():
    return LinearGaussian()


def test_estimate_rises_with_k(linear):
    means = [log_likelihood(linear.vae, linear.X, k=k, seed=3).mean for k in (1, 10, 100, 1000)]
    assert means == sorted(means) and means[-1] - means[0] > 0.1, means
    assert means[-1] < float(linear.exact_log_px().mean()) + 0.05


def test_large_k_matches_the_exact_likelihood(linear):
    exact = linear.exact_log_px()
    ll = log_likelihood(linear.vae, linear.X, k=4000, seed=1)
    diff = ll.per_example - exact
    # The standard error of the estimate's Monte-Carlo error, example by example, and the
    # standard error the function reports (over examples): the estimate is within 3 of each.
    se_mc = diff.std(ddof=1) / math.sqrt(len(diff))
    assert abs(diff.mean()) < 3 * se_mc + 1e-4, (diff.mean(), se_mc)
    assert abs(ll.mean - exact.mean()) < 3 * ll.se
    assert np.abs(diff).mean() < 0.05  # each example's own Monte-Carlo error is small too
    assert ll.se == pytest.approx(ll.per_example.std(ddof=1) / math.sqrt(len(exact)))


def test_k1_has_the_elbo_expectation(linear):
    elbo = linear.exact_elbo()
    assert np.all(elbo < linear.exact_log_px())
    draws = np.stack([log_likelihood(linear.vae, linear.X, k=1, seed=s).per_example for s in range(20)])
    diff = draws.mean(0) - elbo  # (n,): 20 draws of log w per example, minus its expectation
    se = draws.std(0, ddof=1).mean() / math.sqrt(draws.size)
    assert abs(diff.mean()) < 3 * se, (diff.mean(), se)
    # And the mean of the K log-weights the estimate returns is the ELBO, example by example.
    ll = log_likelihood(linear.vae, linear.X, k=2000, seed=0)
    np.testing.assert_allclose(ll.elbo_per_example, elbo, atol=0.08)
    assert ll.elbo < ll.mean


@pytest.mark.parametrize("chunk_size, batch_size", [(1, 1), (7, 5), (TILE_K, TILE_N), (300, 300), (None, 13)])
def test_estimate_does_not_depend_on_the_chunking(linear, chunk_size, batch_size):
    X = linear.X[:40]
    ref = log_likelihood(linear.vae, X, k=150, seed=7)
    got = log_likelihood(linear.vae, X, k=150, seed=7, chunk_size=chunk_size, batch_size=batch_size)
    # Same draws; only float32 rounding inside the network can differ with the batch layout.
    np.testing.assert_allclose(got.per_example, ref.per_example, rtol=0, atol=2e-5)
    other = log_likelihood(linear.vae, X, k=150, seed=8)
    assert np.abs(other.per_example - ref.per_example).max() > 1e-3


def test_the_noise_of_an_example_depends_on_seed_example_and_sample_only():
    full = noise_tiles(5, 0, 50, 0, 200, 3)
    assert full.shape == (200, 50, 3)
    for n0, n1, k0, k1 in [(3, 4, 0, 1), (10, 37, 70, 199), (16, 32, 64, 128), (0, 50, 130, 131)]:
        assert torch.equal(noise_tiles(5, n0, n1, k0, k1, 3), full[k0:k1, n0:n1])
    assert not torch.equal(noise_tiles(6, 0, 50, 0, 200, 3), full)
    flat = full.reshape(-1)
    assert abs(float(flat.mean())) < 0.03 and abs(float(flat.std()) - 1) < 0.03


class _ExtraNoiseModule(VAEModule):
    """Draws noise of its own from the generator (as a second stochastic layer would)."""

    def log_importance_weights(self, x, k, generator=None, posterior=None, cond=None):
        extra = torch.randn(k, x.shape[0], generator=generator, device=x.device)
        return super().log_importance_weights(x, k, generator=generator, posterior=posterior, cond=cond) + 0.0 * extra


def test_models_that_draw_their_own_noise_are_still_chunk_independent(linear):
    import copy

    vae = copy.deepcopy(linear.vae)
    m = vae.module_
    vae.module_ = _ExtraNoiseModule(m.encoder, m.decoder, m.likelihood, m.latent_dim).eval()
    X = linear.X[:40]
    a = log_likelihood(vae, X, k=200, seed=1)
    b = log_likelihood(vae, X, k=200, seed=1, chunk_size=3, batch_size=7)
    np.testing.assert_allclose(a.per_example, b.per_example, atol=2e-5)
    plain = log_likelihood(linear.vae, X, k=200, seed=1)  # other draws, same quantity
    assert abs(a.mean - plain.mean) < 3 * np.std(a.per_example - plain.per_example) / math.sqrt(40) + 1e-3


def test_likelihood_includes_the_jacobian_of_the_scaling(rng):
    X = rng.normal(size=(300, 4)) * np.array([1.0, 3.0, 0.5, 2.0]) + 5.0
    scaled = PCA(latent_dim=2, scale="standard").fit(X)
    Z = (X - X.mean(0)) / X.std(0)
    plain = PCA(latent_dim=2).fit(Z)
    expected = plain.score_samples(Z) - np.log(X.std(0)).sum()
    ll = log_likelihood(scaled, X)
    np.testing.assert_allclose(ll.per_example, expected, rtol=1e-6)
    assert ll.k is None


def test_errors_name_the_fix(digits):
    ae = Autoencoder(latent_dim=2, hidden=(8,), epochs=1, verbose=False).fit(digits.data[:100])
    with pytest.raises(ConfigError, match="needs a model with a posterior"):
        log_likelihood(ae, digits.data[:10])
    with pytest.raises(ConfigError, match="k must be an integer"):
        log_likelihood(VAE(latent_dim=2, hidden=(8,), epochs=1, verbose=False).fit(digits.data[:100]), digits.data[:5], k=0)
    with pytest.raises(DataError, match="features"):
        frechet_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    from latentlab.errors import NotFittedError

    with pytest.raises(NotFittedError):
        log_likelihood(VAE(), digits.data[:5])


# ----------------------------------------------------------------------------- active units and KL
def test_active_units_on_hand_made_dead_dimensions(rng):
    X = rng.normal(size=(500, 6)).astype(np.float32)
    vae = VAE(latent_dim=4, hidden=(), likelihood="gaussian", epochs=1, validation_fraction=0.0, verbose=False).fit(X)
    enc = vae.module_.encoder[0]
    with torch.no_grad():
        enc.weight.zero_()
        enc.bias.zero_()
        enc.weight[0, 0] = 1.0  # unit 0: mean = x_0, activity var(x_0) ~ 1
        enc.weight[1, 1] = 0.3  # unit 1: activity 0.09 var(x_1)
        enc.weight[2, 2] = 0.05  # unit 2: activity 0.0025 var(x_2), below 0.01
        # unit 3: mean 0 and log-variance 0 for every x, q = N(0, 1) = the prior: dead
    n, activity = active_units(vae, X)
    v = X.var(0, ddof=1)
    np.testing.assert_allclose(activity, [v[0], 0.09 * v[1], 0.0025 * v[2], 0.0], rtol=1e-4, atol=1e-12)
    assert n == 2
    assert active_units(vae, X, threshold=0.001)[0] == 3
    kl = kl_per_dim(vae, X)
    assert kl[3] == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(kl[:3], 0.5 * np.array([1.0, 0.09, 0.0025]) * (X[:, :3] ** 2).mean(0), rtol=1e-4)


# ----------------------------------------------------------------------------- Frechet distance
def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_noise(rng):
    A = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    assert frechet_distance(A, A) == pytest.approx(0.0, abs=1e-9 * np.trace(np.cov(A.T)))
    noise = rng.normal(size=A.shape)
    d = [frechet_distance(A, A + s * noise) for s in (0.0, 0.1, 0.3, 1.0, 3.0)]
    assert d[0] == pytest.approx(0.0, abs=1e-8) and all(a < b for a, b in zip(d, d[1:])), d


def test_frechet_distance_matches_the_gaussian_closed_form_and_sqrtm(rng):
    d = 4
    A = rng.normal(size=(200_000, d))
    B = 2.0 * rng.normal(size=(200_000, d)) + 1.0
    # W2^2(N(0, I), N(1, 4 I)) = |1|^2 d + d (1 - 2)^2 = 2 d
    assert frechet_distance(A, B) == pytest.approx(2 * d, rel=0.01)
    P, Q = rng.normal(size=(50, d)), rng.normal(size=(60, d)) @ rng.normal(size=(d, d))
    S1, S2 = np.cov(P.T), np.cov(Q.T)
    ref = ((P.mean(0) - Q.mean(0)) ** 2).sum() + np.trace(S1 + S2 - 2 * scipy.linalg.sqrtm(S1 @ S2).real)
    assert frechet_distance(P, Q) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(P, Q) == pytest.approx(frechet_distance(Q, P), rel=1e-8)


def test_frechet_distance_with_fewer_vectors_than_dimensions(rng):
    A, B = rng.normal(size=(5, 20)), rng.normal(size=(7, 20))  # singular covariances
    d = frechet_distance(A, B)
    assert np.isfinite(d) and d > 0
    assert frechet_distance(A, A) == pytest.approx(0.0, abs=1e-9)


# ----------------------------------------------------------------------------- MMD and the Gaussian KL
def test_mmd_is_near_zero_for_one_distribution_and_grows_with_a_shift(rng):
    A = rng.normal(size=(400, 3))
    same = mmd2(A, rng.normal(size=(400, 3)), math.sqrt(3))
    shifts = [mmd2(A, rng.normal(size=(400, 3)) + s, math.sqrt(3)) for s in (0.5, 1.0, 2.0)]
    assert abs(same) < 0.01
    assert same < shifts[0] < shifts[1] < shifts[2] <= 2.0


def test_gaussian_kl_to_standard_normal(rng):
    d = 3
    Z = 2.0 * rng.normal(size=(200_000, d)) + 0.5
    expected = 0.5 * (4 * d + 0.25 * d - d - d * math.log(4))
    assert gaussian_kl_to_standard_normal(Z) == pytest.approx(expected, rel=0.01)
    assert gaussian_kl_to_standard_normal(rng.normal(size=(100_000, d))) < 1e-3
    assert gaussian_kl_to_standard_normal(np.zeros((10, d))) is None


# ----------------------------------------------------------------------------- the table
@pytest.fixture(scope="module")
def digits_split():
    from latentlab.datasets import load_digits

    d = load_digits()
    return d.data[:1200], d.target[:1200], d.data[1200:1500], d.target[1200:1500]


@pytest.fixture(scope="module")
def fitted(digits_split):
    Xtr = digits_split[0]
    common = dict(latent_dim=3, hidden=(32,), epochs=8, verbose=False)
    return {
        "pca": PCA(latent_dim=3).fit(Xtr),
        "ae": Autoencoder(**common).fit(Xtr),
        "vae": VAE(**common).fit(Xtr),
    }


def test_evaluate_vae_terms_add_up_and_are_consistent(fitted, digits_split):
    vae, Xte = fitted["vae"], digits_split[2]
    m = evaluate(vae, Xte, k=200)
    json.dumps(m, allow_nan=False)
    assert m["rec"] + m["kl"] == pytest.approx(-m["elbo"], rel=1e-9)
    assert sum(m["kl_per_dim"]) == pytest.approx(m["kl"], rel=1e-6)
    assert len(m["kl_per_dim"]) == 3 and 0 <= m["active_units"] <= 3
    assert m["log_likelihood"] > m["elbo"] - 3 * m["elbo_se"]
    assert m["bits_per_dim"] == pytest.approx(-m["log_likelihood"] / (64 * math.log(2)))
    assert m["reconstruction_mse"] == pytest.approx(np.mean((Xte - vae.reconstruct(Xte)) ** 2), rel=1e-5)
    # The ELBO agrees with the estimator's own Monte-Carlo ELBO.
    own = vae.score_samples(Xte, mc_samples=200, seed=1)
    assert m["elbo"] == pytest.approx(own.mean(), abs=float(3 * own.std() / math.sqrt(len(own))) + 0.05)
    again = evaluate(vae, Xte, k=200)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in m.items() if k != "seconds"}


def test_evaluate_pca_and_autoencoder(fitted, digits_split):
    Xte = digits_split[2]
    p = evaluate(fitted["pca"], Xte)
    json.dumps(p, allow_nan=False)
    assert p["log_likelihood"] == pytest.approx(fitted["pca"].score(Xte))
    assert p["reconstruction_mse"] == pytest.approx(np.mean((Xte - fitted["pca"].inverse_transform(fitted["pca"].transform(Xte))) ** 2))
    assert "elbo" not in p and p["log_likelihood_method"].startswith("exact")
    a = evaluate(fitted["ae"], Xte)
    json.dumps(a, allow_nan=False)
    assert a["reconstruction_mse"] == pytest.approx(np.mean((Xte - fitted["ae"].reconstruct(Xte)) ** 2), rel=1e-5)
    assert "log_likelihood" not in a and "reconstruction_nll" not in a


# ----------------------------------------------------------------------------- feature space and regularity
@pytest.fixture(scope="module")
def features(digits_split):
    Xtr, ytr = digits_split[:2]
    return FeatureSpace(hidden=(64, 32), max_iter=60, seed=0).fit(Xtr, ytr)


def test_feature_space_classifies_held_out_digits(features, digits_split):
    _, _, Xte, yte = digits_split
    assert features.kind_ == "classifier" and features.score(Xte, yte) > 0.85
    assert features.features(Xte).shape == (len(Xte), 32)
    p = features.predict_proba(Xte)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    pca = FeatureSpace(n_components=8).fit(digits_split[0])
    assert pca.kind_ == "pca" and pca.features(Xte).shape == (len(Xte), 8) and pca.confidence(Xte) is None
    with pytest.raises(ConfigError, match="without labels"):
        pca.predict_proba(Xte)


def test_pca_interpolation_is_perfectly_even(fitted, digits_split):
    c = continuity(fitted["pca"], digits_split[2], n_pairs=30, n_steps=10)
    assert c["continuity_max_step"] == pytest.approx(0.1, rel=1e-5)
    assert c["continuity_path_ratio"] == pytest.approx(1.0, rel=1e-5)


def test_regularity_reports_every_source(fitted, features, digits_split):
    Xtr, _, Xte, _ = digits_split
    r_vae = regularity(fitted["vae"], Xtr, Xte, features=features, n_samples=300, n_pairs=30)
    r_ae = regularity(fitted["ae"], Xtr, Xte, features=features, n_samples=300, n_pairs=30)
    json.dumps(r_vae, allow_nan=False), json.dumps(r_ae, allow_nan=False)
    assert {"fd_prior", "confidence_prior", "fd_fitted_gaussian", "completeness_mmd2", "continuity_max_step"} <= set(r_vae)
    assert {"fd_standard_normal", "fd_fitted_gaussian", "completeness_mmd2_fitted"} <= set(r_ae)
    # Real held-out data is the floor; noise decoded by nothing is far above it.
    noise = np.random.default_rng(0).uniform(size=(300, 64))
    fd_noise = frechet_distance(features.features(noise), features.features(Xte))
    for r in (r_vae, r_ae):
        assert r["fd_real"] < min(v for k, v in r.items() if k.startswith("fd_") and k != "fd_real")
        assert 1 / 20 <= r["continuity_max_step"] <= 1
    same = regularity(fitted["vae"], Xtr, Xte, features=features, n_samples=300, n_pairs=30)
    assert same == r_vae  # seeded


def test_bernoulli_log_prob_keeps_the_sample_and_batch_dimensions():
    # log_importance_weights decodes (k, B, D) codes: the likelihood must return (k, B).
    from torch.nn import functional as Fn

    from latentlab.nn.distributions import Bernoulli

    g = torch.Generator().manual_seed(0)
    out = 8 * torch.randn(5, 7, 30, generator=g, requires_grad=True)  # (k, B, F) logits
    for x in ((torch.rand(7, 30, generator=g) < 0.4).float(), torch.rand(7, 30, generator=g)):
        lp = Bernoulli().log_prob(x, out)
        ref = -Fn.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none").sum(-1)
        assert lp.shape == (5, 7)
        torch.testing.assert_close(lp, ref, rtol=1e-6, atol=1e-4)
        (ga,) = torch.autograd.grad(lp.sum(), out)
        (gb,) = torch.autograd.grad(ref.sum(), out)
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- the rest of the VAE family
_FAMILY = ("IWAE", "VampPriorVAE", "HierarchicalVAE", "ConditionalVAE")  # issue 8; skipped where absent


@pytest.mark.parametrize("name", _FAMILY)
def test_every_vae_variant_is_evaluated_the_same_way(name, digits):
    import latentlab

    cls = getattr(latentlab, name, None)
    if cls is None:
        pytest.skip(f"latentlab.{name} is not in this checkout")
    X, y = (digits.data[:600] > 0.5).astype(np.float32), digits.target[:600]
    model = cls(latent_dim=3, hidden=(32,), epochs=2, verbose=False)
    cond = y[500:] if name == "ConditionalVAE" else None
    model.fit(X[:500], y[:500]) if cond is not None else model.fit(X[:500])
    m = evaluate(model, X[500:], y=cond, k=64)
    json.dumps(m, allow_nan=False)
    assert m["rec"] + m["kl"] == pytest.approx(-m["elbo"], rel=1e-9)
    assert m["log_likelihood"] > m["elbo"] - 3 * m["elbo_se"]
    a = log_likelihood(model, X[500:540], k=100, cond=None if cond is None else cond[:40], seed=2)
    b = log_likelihood(model, X[500:540], k=100, cond=None if cond is None else cond[:40], seed=2, chunk_size=7, batch_size=5)
    np.testing.assert_allclose(a.per_example, b.per_example, atol=2e-5)


def test_a_broken_model_gives_a_clear_error(linear):
    import copy

    from latentlab.errors import LatentlabError

    vae = copy.deepcopy(linear.vae)
    with torch.no_grad():
        vae.module_.decoder[0].bias[0] = float("nan")
    with pytest.raises(LatentlabError, match="NaN or infinite; check the model"):
        log_likelihood(vae, linear.X[:10], k=8)
