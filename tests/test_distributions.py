import math

import numpy as np
import pytest
import torch
from torch import distributions as D

from latentlab import DataError
from latentlab.nn.distributions import (
    Bernoulli,
    ContinuousBernoulli,
    DiagonalGaussian,
    Gaussian,
    standard_normal_log_prob,
)


def _posterior(seed=0, B=4, K=3):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(B, K, generator=g, dtype=torch.float64)
    logvar = torch.randn(B, K, generator=g, dtype=torch.float64) * 0.5
    return DiagonalGaussian(mean, logvar)


def test_closed_form_kl_matches_monte_carlo_within_its_standard_error():
    q = _posterior()
    torch.manual_seed(1)
    z = q.rsample(200_000)  # (S, B, K)
    samples = q.log_prob(z) - standard_normal_log_prob(z)  # log q - log p, (S, B)
    mc = samples.mean(0)
    se = samples.std(0) / math.sqrt(samples.shape[0])
    assert torch.all((mc - q.kl()).abs() < 4 * se), (mc, q.kl(), se)


def test_kl_and_log_prob_agree_with_torch_distributions():
    q = _posterior()
    ref = D.Independent(D.Normal(q.mean, q.std), 1)
    prior = D.Independent(D.Normal(torch.zeros_like(q.mean), torch.ones_like(q.mean)), 1)
    z = q.rsample(5)
    torch.testing.assert_close(q.log_prob(z), ref.log_prob(z))
    torch.testing.assert_close(q.kl(), D.kl_divergence(ref, prior))
    torch.testing.assert_close(q.entropy(), ref.entropy())
    torch.testing.assert_close(standard_normal_log_prob(z), prior.log_prob(z))


def test_reparameterized_gradient_matches_the_analytic_one():
    # f(z) = sum(a z^2 + b z): E_q f = sum(a (mu^2 + var) + b mu), so
    # dE/dmu = 2 a mu + b and dE/dlogvar = a var.
    K = 3
    a = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    b = torch.tensor([1.0, 0.3, -0.7], dtype=torch.float64)
    mean = torch.tensor([[0.2, -1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([[0.1, -0.5, 0.3]], dtype=torch.float64, requires_grad=True)
    q = DiagonalGaussian(mean, logvar)
    torch.manual_seed(0)
    z = q.rsample(400_000)  # (S, 1, K)
    per_sample = (a * z**2 + b * z).sum(-1)  # (S, 1)
    per_sample.mean().backward()
    with torch.no_grad():
        g_mean = 2 * a * mean + b
        g_logvar = a * logvar.exp()
    # Standard error of each gradient's Monte-Carlo estimate is about sqrt(var of the integrand / S).
    torch.testing.assert_close(mean.grad, g_mean, atol=0.02, rtol=0)
    torch.testing.assert_close(logvar.grad, g_logvar, atol=0.02, rtol=0)
    assert z.shape == (400_000, 1, K)


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(3)
    out = torch.randn(5, 7, generator=g, dtype=torch.float64) * 3
    out[0, :3] = torch.tensor([0.0, 1e-5, -2e-4])  # exercise the window around lambda = 1/2
    return out


def test_bernoulli_log_prob(logits):
    x = (torch.rand(5, 7, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    ref = D.Independent(D.Bernoulli(logits=logits), 1).log_prob(x)
    torch.testing.assert_close(Bernoulli().log_prob(x, logits), ref)
    torch.testing.assert_close(Bernoulli().mean(logits), torch.sigmoid(logits))


def test_continuous_bernoulli_log_prob_mean_and_samples(logits):
    x = torch.rand(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = D.ContinuousBernoulli(logits=logits)
    cb = ContinuousBernoulli()
    torch.testing.assert_close(cb.log_prob(x, logits), ref.log_prob(x).sum(-1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(cb.mean(logits), ref.mean, rtol=1e-5, atol=1e-5)
    s = cb.sample(logits.expand(4000, 5, 7).contiguous(), generator=torch.Generator().manual_seed(1))
    assert s.min() >= 0 and s.max() <= 1
    torch.testing.assert_close(s.mean(0), ref.mean, atol=0.03, rtol=0)


@pytest.mark.parametrize("sigma", [0.3, "learned", "learned_per_feature"])
def test_gaussian_log_prob(sigma):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    mean = torch.randn(6, 4, generator=g, dtype=torch.float64)
    lik = Gaussian(sigma, n_features=4).double()
    if sigma != 0.3:
        with torch.no_grad():
            lik.log_sigma.copy_(torch.randn(lik.log_sigma.shape, generator=g, dtype=torch.float64))
    std = lik.log_sigma.exp().expand(4)
    ref = D.Independent(D.Normal(mean, std), 1).log_prob(x)
    torch.testing.assert_close(lik.log_prob(x, mean), ref)
    # A leading sample dimension (L, B, F) broadcasts against x (B, F).
    torch.testing.assert_close(lik.log_prob(x, mean.expand(3, 6, 4)), ref.expand(3, 6))


def test_learned_sigma_starts_at_the_data_scale():
    var = np.array([0.04, 0.01, 0.0, 0.09])
    g = Gaussian("learned", 4, init_var=var)
    assert float(g.sigma) == pytest.approx(math.sqrt(var.mean()))
    pf = Gaussian("learned_per_feature", 4, init_var=var)
    assert torch.all(torch.isfinite(pf.log_sigma)) and float(pf.sigma[0]) == pytest.approx(0.2)


def test_support_checks_name_the_likelihood_that_fits():
    grey = np.array([[0.0, 0.5, 1.0]])
    with pytest.raises(DataError, match="continuous_bernoulli"):
        Bernoulli().check(grey)
    Bernoulli().check(np.array([[0.0, 1.0]]))
    with pytest.raises(DataError, match="gaussian"):
        ContinuousBernoulli().check(np.array([[-0.5, 2.0]]))
    ContinuousBernoulli().check(grey)


@pytest.mark.parametrize("shape", [(3, 5, 784), (1100, 784), (40, 64), (9, 17), (6, 7)])
def test_softplus_sum_matches_float64_softplus(shape):
    from latentlab.nn.distributions import softplus_sum

    logits = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 8
    ref = torch.nn.functional.softplus(logits.double()).sum(-1)
    with torch.no_grad():
        got = softplus_sum(logits)
    assert got.shape == ref.shape
    # float32 sums of up to 784 terms of size ~10: the plain float32 formula errs as much
    torch.testing.assert_close(got.double(), ref, rtol=2e-6, atol=1e-3)


def test_softplus_sum_infinite_logits_and_gradients():
    from latentlab.nn.distributions import softplus_sum

    logits = torch.zeros(3, 784)
    logits[0, 0], logits[1, 1] = -math.inf, math.inf
    got = softplus_sum(logits)
    assert got[0] == pytest.approx(783 * math.log(2.0), rel=1e-6) and got[1] == math.inf
    x = torch.randn(2, 784, requires_grad=True)
    softplus_sum(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.sigmoid(x.detach()))
