import numpy as np
import pytest
import torch

from latentlab import PCA, VAE, DataError
from latentlab.objectives import ELBO, kl_weight


@pytest.fixture
def ppca_data(rng):
    """2000 examples from a linear-Gaussian model: x = W z + mu + 0.5 eps, z ~ N(0, I_2), in 8-D."""
    n, F, k = 2000, 8, 2
    W = rng.normal(size=(F, k))
    return rng.normal(size=(n, k)) @ W.T + rng.normal(size=F) + 0.5 * rng.normal(size=(n, F))


def test_linear_vae_elbo_is_below_and_within_one_nat_of_the_exact_likelihood(ppca_data):
    # A VAE with a linear decoder and one learned sigma is probabilistic PCA, whose maximum
    # likelihood PCA gives in closed form: ELBO <= log p_vae(x) <= max log-likelihood.
    exact = PCA(latent_dim=2).fit(ppca_data).score(ppca_data)
    vae = VAE(latent_dim=2, hidden=(), likelihood="gaussian", sigma="learned", epochs=60, lr=1e-2, batch_size=256,
              patience=None, validation_fraction=0, verbose=False).fit(ppca_data)
    elbo = vae.score_samples(ppca_data, mc_samples=100)
    se = elbo.std() / np.sqrt(len(elbo))
    assert elbo.mean() < exact + 3 * se
    assert elbo.mean() > exact - 1.0, (elbo.mean(), exact)


def test_auto_likelihood_fits_the_data(digits):
    binary = (digits.data > 0.5).astype(np.float32)
    assert VAE(epochs=1, hidden=(16,), verbose=False).fit(binary).likelihood_ == "bernoulli"
    assert VAE(epochs=1, hidden=(16,), verbose=False).fit(digits.data).likelihood_ == "gaussian"


def test_bernoulli_on_grey_levels_is_a_clear_error(digits):
    with pytest.raises(DataError, match="likelihood='bernoulli' needs binary data.*continuous_bernoulli"):
        VAE(likelihood="bernoulli", verbose=False).fit(digits.data)


@pytest.mark.parametrize("likelihood, sigma", [
    ("bernoulli", None), ("continuous_bernoulli", None), ("gaussian", 0.2),
    ("gaussian", "learned"), ("gaussian", "learned_per_feature"),
])
def test_every_likelihood_trains(digits, likelihood, sigma):
    X = (digits.data > 0.5).astype(np.float32) if likelihood == "bernoulli" else digits.data
    vae = VAE(latent_dim=4, hidden=(64,), likelihood=likelihood, sigma=sigma or 1.0, epochs=8, verbose=False).fit(X)
    elbos = [h["val_elbo"] for h in vae.history_]
    assert elbos[-1] > elbos[0]
    for h in vae.history_:  # the terms add up: elbo = -(rec + kl), nats per example
        assert h["train_elbo"] == pytest.approx(-(h["train_rec"] + h["train_kl"]), rel=1e-6)
    s = vae.sample(7, seed=1)
    assert s.shape == (7, 64) and np.all(np.isfinite(s))


def test_transform_gives_means_by_default_and_samples_on_request(digits):
    vae = VAE(latent_dim=3, hidden=(32,), epochs=3, verbose=False).fit(digits.data)
    X = digits.data[:50]
    mean, std = vae.encode(X)
    np.testing.assert_array_equal(vae.transform(X), mean)
    z1, z2 = vae.transform(X, sample=True, seed=0), vae.transform(X, sample=True, seed=0)
    np.testing.assert_array_equal(z1, z2)
    assert not np.allclose(z1, mean)
    # Samples are spread as q(z|x) says: (z - mean) / std is standard normal.
    many = np.stack([vae.transform(X, sample=True, seed=s) for s in range(200)])
    eps = (many - mean) / std
    assert abs(eps.mean()) < 0.05 and abs(eps.std() - 1) < 0.05


def test_sample_is_repeatable_with_a_seed(digits):
    vae = VAE(latent_dim=2, hidden=(32,), epochs=2, verbose=False).fit(digits.images)
    a, za = vae.sample(5, seed=3, return_latent=True)
    b = vae.sample(5, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 8, 8) and za.shape == (5, 2)
    np.testing.assert_allclose(vae.inverse_transform(za), a, atol=1e-6)
    assert not np.array_equal(a, vae.sample(5, seed=4))


def test_conv_vae_on_images(digits):
    vae = VAE(latent_dim=2, architecture="conv", channels=(8, 16), hidden=(), epochs=2, verbose=False)
    vae.fit(digits.images[:200])
    assert vae.sample(3, seed=0).shape == (3, 8, 8)
    assert np.isfinite(vae.score(digits.images[:20]))


def test_kl_warmup_is_linear_then_constant():
    assert kl_weight(2.0, 0.0, 0.3) == 2.0
    assert kl_weight(2.0, 4.0, 0.0) == 0.0
    assert kl_weight(2.0, 4.0, 1.0) == pytest.approx(0.5)
    assert kl_weight(2.0, 4.0, 10.0) == 2.0


class _FixedPosterior(torch.nn.Module):
    """A stand-in model whose posterior and decoder are fixed, to test the objective's arithmetic."""

    def __init__(self, mean, logvar):
        super().__init__()
        from latentlab.nn.distributions import Bernoulli

        self.mean, self.logvar = mean, logvar
        self.likelihood = Bernoulli()

    def encode(self, x, cond=None):
        from latentlab.nn.distributions import DiagonalGaussian

        return DiagonalGaussian(self.mean.expand(len(x), -1), self.logvar.expand(len(x), -1))

    def decode(self, z, cond=None):
        return torch.zeros(*z.shape[:-1], 3)


def test_free_bits_and_c_shape_the_loss_but_not_the_reported_terms():
    mean = torch.tensor([[1.0, 0.01]])  # KL per dim: 0.5 and 0.00005
    module = _FixedPosterior(mean, torch.zeros(1, 2))
    x = torch.ones(4, 3)
    _, t = ELBO()(module, (x,))
    rec, kl = float(t["rec"]), float(t["kl"])
    assert kl == pytest.approx(0.5 + 0.5e-4)
    loss, t_fb = ELBO(free_bits=0.2)(module, (x,))
    assert float(loss) == pytest.approx(rec + 0.5 + 0.2)  # the small dimension is charged 0.2
    assert float(t_fb["kl"]) == pytest.approx(kl)
    loss_c, _ = ELBO(c=3.0)(module, (x,))
    assert float(loss_c) == pytest.approx(rec + 3 * kl)
    loss_w, _ = ELBO(warmup_epochs=2.0)(module, (x,), 0.5)
    assert float(loss_w) == pytest.approx(rec + 0.25 * kl)


def test_more_mc_samples_keep_the_estimate_and_lower_its_variance(digits):
    vae = VAE(latent_dim=4, hidden=(32,), epochs=3, verbose=False).fit(digits.data)
    x = digits.data[:200]
    one = np.stack([vae.score_samples(x, mc_samples=1, seed=s) for s in range(30)])
    ten = np.stack([vae.score_samples(x, mc_samples=10, seed=s) for s in range(30)])
    assert abs(one.mean() - ten.mean()) < 3 * one.mean(1).std() + 1e-3
    assert ten.std(0).mean() < 0.5 * one.std(0).mean()


def test_training_with_several_mc_samples(digits):
    vae = VAE(latent_dim=2, hidden=(32,), mc_samples=4, warmup_epochs=2, free_bits=0.05, epochs=3, verbose=False)
    vae.fit(digits.data)
    assert len(vae.history_) == 3 and np.isfinite(vae.history_[-1]["val_elbo"])


def test_importance_weights_average_to_the_elbo(digits):
    vae = VAE(latent_dim=3, hidden=(32,), epochs=2, verbose=False).fit(digits.data)
    x = torch.as_tensor(digits.data[:100])
    with torch.no_grad():
        lw = vae.module_.log_importance_weights(x, 4000, generator=torch.Generator().manual_seed(0))
    assert lw.shape == (4000, 100)
    # E_q[log w] is the ELBO, whose closed-form-KL estimate score_samples gives (1000 draws of z):
    # they agree within their Monte-Carlo standard errors.
    elbo = vae.score_samples(digits.data[:100], mc_samples=1000)
    se = lw.std(0).numpy() * np.sqrt(1 / 4000 + 1 / 1000)
    assert np.all(np.abs(lw.mean(0).numpy() - elbo) < 4 * se + 1e-3)
    iw = torch.logsumexp(lw, 0) - np.log(4000)  # the importance-weighted bound is above the ELBO
    assert np.all(iw.numpy() > elbo - 4 * se)
