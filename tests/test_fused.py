"""The fused MLP-VAE step computes the same loss and gradients as autograd."""

import numpy as np
import pytest
import torch

from latentlab import VAE
from latentlab.models import fused
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


# ----------------------------------------------------------------------------- CPU GEMM backends
@pytest.fixture
def gemm_backend():
    from latentlab import _gemm

    yield _gemm
    _gemm.set_backend(None)


def test_numpy_gemm_matches_torch(gemm_backend):
    g = torch.Generator().manual_seed(0)
    a, w, b = torch.randn(33, 70, generator=g), torch.randn(50, 70, generator=g), torch.randn(50, generator=g)
    gemm_backend.set_backend("numpy")
    out = torch.full((70, 50), float("nan"))
    got = gemm_backend.mm(a.t(), torch.randn(33, 50, generator=torch.Generator().manual_seed(1)), out=out)
    assert got.data_ptr() == out.data_ptr()  # written in place
    torch.testing.assert_close(got, a.t() @ torch.randn(33, 50, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(gemm_backend.linear(a, w, b), torch.addmm(b, a, w.t()))


def test_numpy_gemm_leaves_autograd_and_float64_to_torch(gemm_backend):
    gemm_backend.set_backend("numpy")
    w = torch.randn(4, 3, requires_grad=True)
    y = gemm_backend.linear(torch.randn(2, 3), w, torch.zeros(4))
    y.sum().backward()  # the graph was kept: torch did the product
    assert w.grad is not None
    a64 = torch.randn(3, 3, dtype=torch.float64)
    assert gemm_backend.mm(a64, a64).dtype == torch.float64


def test_gemm_backend_setting_is_checked(gemm_backend, monkeypatch):
    monkeypatch.setenv("LATENTLAB_CPU_GEMM", "torch")
    assert gemm_backend.backend() == "torch"
    monkeypatch.setenv("LATENTLAB_CPU_GEMM", "numpy")
    assert gemm_backend.backend() == "numpy"
    monkeypatch.setenv("LATENTLAB_CPU_GEMM", "mkl")
    with pytest.raises(ValueError, match="LATENTLAB_CPU_GEMM"):
        gemm_backend.backend()
    with pytest.raises(ValueError, match="'torch', 'numpy'"):
        gemm_backend.set_backend("blas")


def test_openblas_follows_torch_thread_count(gemm_backend):
    lib = gemm_backend._numpy_openblas()
    if lib is None:
        pytest.skip("NumPy is not linked with OpenBLAS here")
    gemm_backend.set_backend("numpy")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        gemm_backend.mm(torch.ones(2, 2), torch.ones(2, 2))
        assert lib.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_float32_step_is_the_same_on_either_blas(gemm_backend, backend):
    """The in-place float32 step through either library agrees with float32 autograd."""
    from latentlab.training.flat import FlatParameters

    module = _module((16, 8), "relu")
    x = (torch.rand(30, 12, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    gemm_backend.set_backend("torch")
    t_ref, g_ref = _loss_and_grads(_module((16, 8), "relu"), x, ELBO(c=1.5, fast=False), 0.0, seed=3)
    FlatParameters(module.parameters())
    gemm_backend.set_backend(backend)
    step = fused.fused_step(module, lambda p: 1.5)
    torch.manual_seed(3)
    loss, _, _ = step(x, 0.0)
    assert float(loss) == pytest.approx(t_ref["loss"], rel=1e-5)
    for n, p in module.named_parameters():
        torch.testing.assert_close(p.grad, g_ref[n], rtol=1e-4, atol=1e-5)


def test_divergence_is_reported_not_warned_on_numpy_blas(gemm_backend):
    gemm_backend.set_backend("numpy")
    a = torch.tensor([[float("inf"), 1.0]])
    out = gemm_backend.mm(a, torch.tensor([[0.0], [1.0]]))  # inf * 0: nan, silently as in torch
    assert torch.isnan(out).all()


def test_one_thread_pool_during_the_steps_and_restored_after(gemm_backend):
    lib = gemm_backend._numpy_openblas()
    if lib is None:
        pytest.skip("NumPy is not linked with OpenBLAS here")
    gemm_backend.set_backend("numpy")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(KeyboardInterrupt):
            with gemm_backend.blas_owns_threads():
                gemm_backend.mm(torch.ones(2, 2), torch.ones(2, 2))
                assert torch.get_num_threads() == 1 and lib.get_num_threads() == 2
                raise KeyboardInterrupt
        assert torch.get_num_threads() == 2
        gemm_backend.set_backend("torch")
        with gemm_backend.blas_owns_threads():  # nothing to arrange for torch's own BLAS
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
