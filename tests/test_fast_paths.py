"""The likelihood's and the bound's hand-written gradients (one graph node each) give the loss and
gradients that plain autograd gives on the textbook formulas, to float tolerance: the Bernoulli
log-likelihood, the logsumexp of the importance-weighted bound and of the VampPrior's mixture,
and the whole objectives of the IWAE, the VampPrior VAE and the two-layer HVAE built on them."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from latentlab import IWAE, HierarchicalVAE, VampPriorVAE
from latentlab.nn import distributions as D


def _plain_bernoulli(self, x, out):
    nd = out.dim() - (x.dim() - 1)
    lf = out.reshape(*out.shape[:nd], -1)
    xf = x.reshape(x.shape[0], -1).to(lf.dtype)
    return (xf * lf - F.softplus(lf)).sum(-1)


@pytest.fixture
def plain_paths(monkeypatch):
    """Switch latentlab to the textbook formulas, differentiated by autograd."""
    def use():
        monkeypatch.setattr(D.Bernoulli, "log_prob", _plain_bernoulli)
        monkeypatch.setattr(D, "logsumexp", lambda x, dim: torch.logsumexp(x, dim))
        import latentlab.objectives.bound as bound
        monkeypatch.setattr(bound, "logsumexp", lambda x, dim: torch.logsumexp(x, dim))
    return use


@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_log_prob_and_its_gradient_match_autograd(lead, dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(5, 2, 8, generator=g) < 0.4).to(dtype)  # (B, *F) images
    logits = (4 * torch.randn(*lead, 5, 2, 8, generator=g, dtype=dtype)).requires_grad_()
    got = D.Bernoulli().log_prob(x, logits)
    want = _plain_bernoulli(None, x, logits)
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(got, want, **tol)
    up = torch.randn(want.shape, generator=g, dtype=dtype)
    (g_got,) = torch.autograd.grad(got, logits, up)
    (g_want,) = torch.autograd.grad(want, logits, up)
    torch.testing.assert_close(g_got, g_want, **(dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)))


def test_bernoulli_log_prob_gives_a_gradient_to_the_data_too():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 6, generator=g, dtype=torch.float64).requires_grad_()
    logits = torch.randn(3, 4, 6, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: D.Bernoulli().log_prob(a, b), (x, logits))


def test_logsumexp_matches_torch_and_drops_only_subnormal_weights():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 50, 4, generator=g, dtype=torch.float64) * 30  # wide spread: tiny weights
    x.requires_grad_()
    up = torch.randn(6, 4, generator=g, dtype=torch.float64)
    got = D.logsumexp(x, 1)
    want = torch.logsumexp(x, 1)
    assert torch.equal(got, want)
    (g_got,) = torch.autograd.grad(got, x, up)
    (g_want,) = torch.autograd.grad(want, x, up)
    torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-18)
    w = torch.softmax(x.detach(), 1)
    assert bool((g_got[w < D.TINY_WEIGHT] == 0).all()) and bool((w < D.TINY_WEIGHT).any())
    assert not bool((g_got[w >= D.TINY_WEIGHT] == 0).any())


def test_logsumexp_backward_makes_no_subnormal_numbers_in_float32():
    x = torch.tensor([[0.0, -95.0, -120.0, -3.0]], requires_grad=True)  # exp(-95): subnormal in float32
    D.logsumexp(x, 1).sum().backward()
    tiny = torch.finfo(torch.float32).tiny
    assert not bool(((x.grad != 0) & (x.grad.abs() < tiny)).any())


MODELS = {
    "iwae": lambda: IWAE(latent_dim=3, hidden=(16,), k=5, likelihood="bernoulli"),
    "vamp": lambda: VampPriorVAE(latent_dim=3, hidden=(16,), n_pseudo_inputs=7, likelihood="bernoulli"),
    "hvae-vamp": lambda: HierarchicalVAE(latent_dim=3, latent_dim2=2, prior="vamp", n_pseudo_inputs=7, k=3, hidden=(16,),
                                         likelihood="bernoulli"),
}


def _module_and_objective(name):
    torch.manual_seed(0)
    est = MODELS[name]()
    est.input_shape_, est.n_features_in_, est.likelihood_ = (12,), 12, "bernoulli"
    return est._build_module().double(), est._objective()


def _loss_and_grads(module, objective, x, seed=7):
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss, terms = objective(module, (x,), 0.5)
    loss.backward()
    return ({k: float(v.detach()) for k, v in terms.items()},
            {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_objectives_loss_and_gradients_match_plain_autograd(name, plain_paths):
    module, objective = _module_and_objective(name)
    x = (torch.rand(9, 12, generator=torch.Generator().manual_seed(3)) > 0.6).double()
    t_fast, g_fast = _loss_and_grads(module, objective, x)
    plain_paths()
    t_plain, g_plain = _loss_and_grads(module, objective, x)
    assert t_fast.keys() == t_plain.keys() and g_fast.keys() == g_plain.keys()
    for k in t_plain:
        assert t_fast[k] == pytest.approx(t_plain[k], rel=1e-10, abs=1e-10), k
    for n in g_plain:
        torch.testing.assert_close(g_fast[n], g_plain[n], rtol=1e-9, atol=1e-12)
