"""The fused MLP-VAE step computes the same loss and gradients as autograd."""

import numpy as np
import pytest
import torch

from latentlab import VAE
from latentlab.objectives import fused
from latentlab.objectives import ELBO


def _module(hidden, activation, seed=0, likelihood="bernoulli"):
    torch.manual_seed(seed)
    est = VAE(latent_dim=3, hidden=hidden, activation=activation, likelihood=likelihood)
    est.input_shape_, est.n_features_in_, est.likelihood_ = (12,), 12, likelihood
    return est._build_module()


def _loss_and_grads(module, x, objective, progress, seed):
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss, terms = objective(module, (x,), progress)
    loss.backward()
    return {k: float(v.detach()) for k, v in terms.items()}, {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("hidden", [(), (16,), (16, 8)])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("c, warmup, progress", [(1.0, 0.0, 0.0), (2.5, 4.0, 1.0)])
def test_fused_step_matches_autograd(hidden, activation, c, warmup, progress):
    module = _module(hidden, activation).double()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(40, 12, generator=g) > 0.6).double()
    fast = ELBO(c=c, warmup_epochs=warmup)
    plain = ELBO(c=c, warmup_epochs=warmup, fast=False)
    assert fused.supports(module, x.float(), 1, 0.0)
    # float64 copies of the parameters, so the comparison is not blurred by float32 rounding:
    # the fused path is float32-only in training, so call its Function directly here.
    t_fast, g_fast = _fused_in_double(module, x, fast, progress, seed=7)
    t_plain, g_plain = _loss_and_grads(module, x, plain, progress, seed=7)
    for k in ("loss", "rec", "kl", "elbo"):
        assert t_fast[k] == pytest.approx(t_plain[k], rel=1e-12, abs=1e-12)
    for n in g_plain:
        torch.testing.assert_close(g_fast[n], g_plain[n], rtol=1e-10, atol=1e-12)


def _fused_in_double(module, x, objective, progress, seed):
    from latentlab.objectives import kl_weight

    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss, rec, kl = fused.fused_bernoulli_elbo(module, x, kl_weight(objective.c, objective.warmup_epochs, progress))
    loss.backward()
    loss = loss.detach()
    terms = {"loss": float(loss), "rec": float(rec), "kl": float(kl), "elbo": -float(rec + kl)}
    return terms, {n: p.grad.clone() for n, p in module.named_parameters()}


def test_float32_training_follows_the_plain_path(digits):
    """Same seed, same data: the fast and plain trainings end at the same loss (float32 rounding apart)."""
    X = (digits.data > 0.5).astype(np.float32)
    kw = dict(latent_dim=4, hidden=(64,), likelihood="bernoulli", epochs=3, verbose=False)
    fast = VAE(**kw).fit(X)
    plain_obj = ELBO(fast=False)
    plain = VAE(**kw)
    plain._objective = lambda: plain_obj
    plain.fit(X)
    for hf, hp in zip(fast.history_, plain.history_):
        assert hf["train_loss"] == pytest.approx(hp["train_loss"], rel=1e-4)
        assert hf["val_loss"] == pytest.approx(hp["val_loss"], rel=1e-4)


def test_confident_mistakes_use_the_exact_formula():
    module = _module((8,), "relu")
    with torch.no_grad():
        module.decoder[-1].bias.fill_(-200.0)  # every pixel predicted off with logit -200
    x = torch.ones(5, 12)
    torch.manual_seed(0)
    loss_fast, rec_fast, _ = fused.fused_bernoulli_elbo(module, x, 1.0)
    torch.manual_seed(0)
    _, terms = ELBO(fast=False)(module, (x,))
    assert torch.isfinite(rec_fast) and float(rec_fast) == pytest.approx(float(terms["rec"].detach()), rel=1e-5)


@pytest.mark.parametrize("case", ["gaussian", "elu", "mc2", "free_bits"])
def test_other_models_fall_back_to_autograd(case):
    module = _module((8,), "elu" if case == "elu" else "relu", likelihood="gaussian" if case == "gaussian" else "bernoulli")
    x = torch.ones(4, 12)
    assert not fused.supports(module, x, 2 if case == "mc2" else 1, 0.1 if case == "free_bits" else 0.0)


def test_in_place_step_writes_the_autograd_gradients():
    from latentlab.training.flat import FlatParameters

    module = _module((16, 8), "relu").double()
    x = (torch.rand(30, 12, generator=torch.Generator().manual_seed(2)) > 0.5).double()
    plain = ELBO(c=1.5, fast=False)
    t_plain, g_plain = _loss_and_grads(module, x, plain, 0.0, seed=3)
    flat = FlatParameters(module.parameters())
    flat.param.grad.fill_(123.0)  # overwritten, not accumulated
    step = fused.fused_step(module, lambda p: 1.5)
    torch.manual_seed(3)
    loss, rec, kl = step(x, 0.0)
    assert float(loss) == pytest.approx(t_plain["loss"], rel=1e-12)
    for n, p in module.named_parameters():
        torch.testing.assert_close(p.grad, g_plain[n], rtol=1e-10, atol=1e-12)


def test_flat_optimizer_state_round_trips_per_parameter():
    from latentlab.training.flat import FlatParameters

    module = _module((8,), "relu")
    flat = FlatParameters(module.parameters())
    opt = torch.optim.Adam([flat.param], lr=1e-2)
    flat.param.grad.normal_()
    opt.step()
    per = flat.split_state(opt.state_dict())
    assert len(per["state"]) == len(list(module.parameters()))
    for i, p in enumerate(module.parameters()):
        assert per["state"][i]["exp_avg"].shape == p.shape
    again = flat.join_state(per)
    torch.testing.assert_close(again["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    # The per-parameter form loads into an ordinary optimiser over the same parameters.
    plain = torch.optim.Adam(module.parameters(), lr=1e-2)
    plain.load_state_dict(per)
