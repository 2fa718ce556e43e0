"""The VAE family beyond the plain VAE: IWAE, VampPriorVAE, ConditionalVAE, HierarchicalVAE."""

import math
import tempfile

import numpy as np
import pytest
import torch

from latentlab import (
    IWAE,
    VAE,
    ConditionalVAE,
    ConfigError,
    DataError,
    HierarchicalVAE,
    LatentlabError,
    VampPriorVAE,
    load,
)
from latentlab.nn.distributions import diagonal_gaussian_mixture_log_prob
from latentlab.objectives import ImportanceWeightedBound, elbo_terms, iw_bound

FAST = dict(hidden=(32,), verbose=False)


@pytest.fixture(scope="module")
def binary_digits():
    from latentlab.datasets import load_digits

    d = load_digits()
    return (d.data > 0.5).astype(np.float32), d.target


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------- IWAE
@pytest.fixture(scope="module")
def iwae(binary_digits):
    X, _ = binary_digits
    return IWAE(latent_dim=4, k=5, epochs=5, **FAST).fit(X)


def test_iw_bound_is_at_least_the_elbo_of_the_same_samples_and_equals_it_at_k1(iwae, binary_digits):
    x = torch.as_tensor(binary_digits[0][:200])
    m = iwae.module_
    with torch.no_grad():
        for k in (2, 5, 50):
            lw = m.log_importance_weights(x, k, generator=_gen(k))  # (k, B)
            # logsumexp_k log w_k - log k >= mean_k log w_k, example by example (Jensen).
            assert torch.all(iw_bound(lw, k) >= lw.mean(0) - 1e-5)
            _, t = ImportanceWeightedBound(k=k)(m, (x,))
            assert float(t["iw_bound"]) >= float(t["elbo"])
            assert float(t["elbo"]) == pytest.approx(-(float(t["rec"]) + float(t["kl"])), rel=1e-6)
        # k = 1: the bound is the ELBO of that one sample, and on the same draw of z it is the
        # VAE's reconstruction term plus a Monte-Carlo KL.
        log_px, log_pz, log_qz = m.log_weight_terms(x, 1, generator=_gen(0))
        rec, _ = elbo_terms(m, x, 1, generator=_gen(0))
        torch.testing.assert_close(-log_px[0], rec)
        lw1 = log_px + log_pz - log_qz
        torch.testing.assert_close(iw_bound(lw1, 1), lw1[0])
        torch.manual_seed(3)
        _, t1 = ImportanceWeightedBound(k=1)(m, (x,))
        assert float(t1["iw_bound"]) == pytest.approx(float(t1["elbo"]), abs=1e-5)


def test_iw_bound_rises_with_k_on_average(iwae, binary_digits):
    x = torch.as_tensor(binary_digits[0][:300])
    with torch.no_grad():
        means = [float(iw_bound(iwae.module_.log_importance_weights(x, 20 * k, generator=_gen(k)), k).mean())
                 for k in (1, 5, 50)]
    assert means[0] < means[1] < means[2], means
    # ...and the IWAE's k=1 bound, averaged over many draws, is the closed-form-KL ELBO.
    elbo = VAE.score_samples(iwae, binary_digits[0][:300], mc_samples=200)
    assert means[0] == pytest.approx(elbo.mean(), abs=0.1)


def test_iwae_trains_reports_terms_and_scores_its_bound(iwae, binary_digits):
    X = binary_digits[0]
    h = iwae.history_
    assert h[-1]["val_iw_bound"] > h[0]["val_iw_bound"]
    for r in h:
        assert r["val_loss"] == pytest.approx(-r["val_iw_bound"])
        assert r["val_iw_bound"] >= r["val_elbo"]
    s = iwae.score_samples(X[:100])
    np.testing.assert_array_equal(s, iwae.score_samples(X[:100]))  # seeded: repeatable
    assert iwae.score(X[:100]) == pytest.approx(s.mean())
    assert iwae.score_samples(X[:100], k=500).mean() > iwae.score_samples(X[:100], k=1, mc_samples=20).mean()


def test_iwae_k1_trains_like_the_vae(binary_digits):
    X = binary_digits[0]
    a = IWAE(latent_dim=3, k=1, epochs=6, seed=1, **FAST).fit(X)
    b = VAE(latent_dim=3, epochs=6, seed=1, **FAST).fit(X)
    # Same model and objective in expectation (Monte-Carlo vs closed-form KL): same ELBO to
    # within the noise of a short run.
    assert a.history_[-1]["val_elbo"] == pytest.approx(b.history_[-1]["val_elbo"], abs=1.0)


@pytest.mark.parametrize("cls", [IWAE, VampPriorVAE, HierarchicalVAE])
def test_free_bits_are_refused_where_the_kl_has_no_closed_form(cls, binary_digits):
    with pytest.raises(ConfigError, match="free_bits.*not available.*warmup_epochs"):
        cls(free_bits=0.1, epochs=1, **FAST).fit(binary_digits[0][:50])


# ----------------------------------------------------------------------------------- VampPrior
def _direct_mixture_log_prob(z, mean, logvar):
    """(1/K) sum_k N(z; m_k, v_k), component by component, in float64."""
    z, mean, std = z.double(), mean.double(), torch.exp(0.5 * logvar.double())
    comps = torch.stack([torch.distributions.Normal(mean[k], std[k]).log_prob(z).sum(-1)
                         for k in range(len(mean))], -1)
    return torch.logsumexp(comps, -1) - math.log(len(mean))


def test_mixture_log_density_matches_a_direct_computation():
    g = _gen(0)
    mean = torch.randn(7, 3, generator=g) * 2
    logvar = torch.randn(7, 3, generator=g) - 0.5
    z = torch.randn(5, 11, 3, generator=g) * 3
    got = diagonal_gaussian_mixture_log_prob(z, mean, logvar)
    assert got.shape == (5, 11)
    torch.testing.assert_close(got.double(), _direct_mixture_log_prob(z, mean, logvar), rtol=1e-5, atol=1e-4)


@pytest.fixture(scope="module")
def vamp(binary_digits):
    X, _ = binary_digits
    return VampPriorVAE(latent_dim=3, n_pseudo_inputs=15, epochs=5, **FAST).fit(X)


def test_vampprior_log_density_is_the_mixture_of_posteriors_at_the_pseudo_inputs(vamp):
    m = vamp.module_
    with torch.no_grad():
        q = m.encode(m.prior.pseudo_inputs)  # the K components
        z = torch.randn(4, 50, 3, generator=_gen(1))
        got = m.prior_log_prob(z)
    assert got.shape == (4, 50)
    torch.testing.assert_close(got.double(), _direct_mixture_log_prob(z, q.mean, q.logvar), rtol=1e-5, atol=1e-4)


def test_vampprior_samples_follow_the_mixture(vamp):
    m = vamp.module_
    with torch.no_grad():
        q = m.encode(m.prior.pseudo_inputs)
        z = m.sample_prior(100_000, generator=_gen(2))
    mix_mean = q.mean.mean(0)
    mix_second = (q.var + q.mean**2).mean(0)
    se = z.std(0) / math.sqrt(len(z))
    assert torch.all((z.mean(0) - mix_mean).abs() < 5 * se)
    assert torch.allclose(z.pow(2).mean(0), mix_second, rtol=0.03)
    # The estimator's sample() decodes these draws.
    X, Z = vamp.sample(6, seed=0, return_latent=True)
    np.testing.assert_allclose(vamp.inverse_transform(Z), X, atol=1e-6)


def test_pseudo_inputs_start_at_training_rows_and_are_learned(binary_digits):
    X, _ = binary_digits
    est = VampPriorVAE(latent_dim=2, n_pseudo_inputs=10, epochs=1, lr=1e-9, seed=4, **FAST)
    est.fit(X)  # a vanishing learning rate: the parameters stay at their initial values
    u = est.module_.prior.pseudo_inputs.detach().numpy()
    train_rows, _ = est._split(len(X))
    d_train = np.abs(u[:, None, :] - X[train_rows][None]).max(-1).min(1)
    assert np.all(d_train < 1e-6)  # every pseudo-input is a training example
    moved = VampPriorVAE(latent_dim=2, n_pseudo_inputs=10, epochs=3, seed=4, **FAST).fit(X)
    assert not np.allclose(moved.module_.prior.pseudo_inputs.detach().numpy(), u)


def test_vampprior_kl_is_the_monte_carlo_estimate(vamp, binary_digits):
    x = torch.as_tensor(binary_digits[0][:100])
    m = vamp.module_
    with torch.no_grad():
        torch.manual_seed(0)
        _, t = ImportanceWeightedBound(k=1, mc_samples=200)(m, (x,))
        log_px, log_pz, log_qz = m.log_weight_terms(x, 200, generator=_gen(0))
    kl = (log_qz - log_pz).mean()
    assert float(t["kl"]) == pytest.approx(float(kl), abs=0.05)
    assert float(t["kl"]) > 0  # a KL, estimated on 20,000 draws


# ---------------------------------------------------------------------------- conditional VAE
def test_conditional_samples_have_the_label_asked_for(digits):
    from latentlab.evaluation import FeatureSpace

    X, y = digits.data, digits.target
    judge = FeatureSpace(seed=0).fit(X, y)  # the evaluation's classifier
    cvae = ConditionalVAE(latent_dim=4, hidden=(128,), epochs=30, lr=2e-3, verbose=False).fit(X, y)
    asked = np.repeat(np.arange(10), 30)
    S = cvae.sample(len(asked), y=asked, seed=0)
    # Chance is 0.1; the accuracy measured over CVAE seeds 0-2 was 0.99 to 1.0.
    assert judge.score(S, asked) >= 0.9
    assert judge.score(S, (asked + 1) % 10) <= 0.1  # a label other than the one asked: rare


def test_conditional_vae_api_and_errors(digits):
    X, y = digits.data[:400], digits.target[:400]
    labels = np.array(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])[y]
    cvae = ConditionalVAE(latent_dim=2, epochs=2, **FAST).fit(X, labels)
    assert cvae.condition_ == "categorical" and list(cvae.classes_) == list("abcdefghij")
    Z = cvae.transform(X, labels)
    assert Z.shape == (400, 2)
    assert cvae.inverse_transform(Z, labels).shape == X.shape
    assert cvae.fit_transform(X, labels).shape == (400, 2)
    S, ys = cvae.sample(50, seed=1, return_y=True)
    assert S.shape == (50, 64) and set(ys) <= set("abcdefghij")
    np.testing.assert_array_equal(cvae.sample(3, y="c", seed=2), cvae.sample(3, y=["c"] * 3, seed=2))
    # The module takes class indices or one-hot rows as cond=: the same weights.
    m = cvae.module_
    x = torch.as_tensor(X[:5])
    idx = torch.as_tensor(cvae.encode_condition(labels[:5]))
    with torch.no_grad():
        a = m.log_importance_weights(x, 3, generator=_gen(0), cond=idx)
        b = m.log_importance_weights(x, 3, generator=_gen(0), cond=torch.nn.functional.one_hot(idx, 10).float())
    torch.testing.assert_close(a, b)
    with pytest.raises(DataError, match="needs the condition"):
        cvae.transform(X)
    with pytest.raises(DataError, match="not seen in training.*known labels"):
        cvae.transform(X[:2], ["a", "z"])
    with pytest.raises(DataError, match="fit\\(X, y\\)"):
        ConditionalVAE(epochs=1, **FAST).fit(X)


def test_conditional_vae_on_a_continuous_side_input(rng):
    # x = (s, -s, noise) with the side input s: given s, the decoder needs no code for it.
    s = rng.uniform(-1, 1, size=(600, 1)).astype(np.float32)
    X = np.hstack([s, -s, 0.1 * rng.normal(size=(600, 1))]).astype(np.float32)
    cvae = ConditionalVAE(latent_dim=1, hidden=(32,), epochs=40, lr=3e-3, verbose=False).fit(X, s)
    assert cvae.condition_ == "continuous" and cvae.n_cond_ == 1
    out = cvae.sample(200, y=s[:200], seed=0)
    assert np.corrcoef(out[:, 0], s[:200, 0])[0, 1] > 0.9
    assert np.corrcoef(out[:, 1], s[:200, 0])[0, 1] < -0.9
    with pytest.raises(DataError, match="continuous condition"):
        cvae.sample(3)


def test_conditional_vae_conv(digits):
    cvae = ConditionalVAE(latent_dim=2, architecture="conv", channels=(4,), hidden=(16,), epochs=2, verbose=False)
    cvae.fit(digits.images[:200], digits.target[:200])
    assert cvae.sample(3, y=1, seed=0).shape == (3, 8, 8)
    assert np.isfinite(cvae.score(digits.images[:20], digits.target[:20]))


# ------------------------------------------------------------------------------ hierarchical VAE
@pytest.fixture(scope="module")
def hvae(binary_digits):
    X, _ = binary_digits
    return HierarchicalVAE(latent_dim=4, latent_dim2=3, epochs=8, **FAST).fit(X)


def test_hierarchical_vae_trains_and_its_elbo_improves(hvae):
    h = hvae.history_
    assert h[-1]["val_elbo"] > h[0]["val_elbo"] + 1.0
    assert all(r["val_kl"] > 0 for r in h)


def test_hierarchical_log_weights_are_consistent(hvae, binary_digits):
    m = hvae.module_
    x = torch.as_tensor(binary_digits[0][:100])
    with torch.no_grad():
        # The specialised log_weight_terms and the generic path (sample the posterior object,
        # then evaluate each density) draw the same (z1, z2) and give the same three terms.
        terms = m.log_weight_terms(x, 7, generator=_gen(5))
        q = m.encode(x)
        z = q.rsample(7, generator=_gen(5))  # (7, B, D1 + D2), ancestral: z2 then z1 | z2
        generic = (m.likelihood.log_prob(x, m.decode(z)), m.prior_log_prob(z), q.log_prob(z))
        for a, b in zip(terms, generic):
            torch.testing.assert_close(a, b)
        # log q(z1, z2 | x) = log q(z1 | x, z2) + log q(z2 | x), both by hand.
        z1, z2 = z[..., :4], z[..., 4:]
        torch.testing.assert_close(q.log_prob(z), q.q1(z2).log_prob(z1) + q.q2.log_prob(z2))
        # The importance-sampled estimate lies above the ELBO, on average over examples.
        lw = m.log_importance_weights(x, 1000, generator=_gen(6))
        gap = iw_bound(lw, 1000) - lw.mean(0)
    assert torch.all(gap >= 0) and float(gap.mean()) > 0.05


def test_hierarchical_codes_and_samples(hvae, binary_digits):
    X = binary_digits[0][:50]
    Z = hvae.transform(X)
    assert Z.shape == (50, 7) and hvae.get_feature_names_out().shape == (7,)
    mean, std = hvae.encode(X)
    np.testing.assert_array_equal(mean, Z)
    assert std.shape == (50, 7) and np.all(std > 0)
    assert hvae.inverse_transform(Z).shape == (50, 64)
    S, Zs = hvae.sample(5, seed=0, return_latent=True)
    assert Zs.shape == (5, 7)
    np.testing.assert_allclose(hvae.inverse_transform(Zs), S, atol=1e-6)
    with pytest.raises(DataError, match="\\(n, 7\\)"):
        hvae.inverse_transform(Z[:, :4])
    with pytest.raises(LatentlabError, match="no closed-form KL"):
        hvae.module_.encode(torch.as_tensor(X)).kl_per_dim()


def test_hierarchical_vae_with_a_vampprior_and_the_iw_bound(binary_digits):
    X, _ = binary_digits
    est = HierarchicalVAE(latent_dim=3, latent_dim2=2, prior="vamp", n_pseudo_inputs=12, k=4, epochs=3, **FAST).fit(X)
    m = est.module_
    assert m.top_prior.pseudo_inputs.shape == (12, 64)
    with torch.no_grad():
        z2 = torch.randn(9, 2, generator=_gen(0))
        q = m.encode_top(m.top_prior.pseudo_inputs)
        torch.testing.assert_close(m.top_log_prob(z2).double(), _direct_mixture_log_prob(z2, q.mean, q.logvar),
                                   rtol=1e-5, atol=1e-4)
    assert all(r["val_iw_bound"] >= r["val_elbo"] for r in est.history_)
    with pytest.raises(ConfigError, match="at least one hidden layer"):
        HierarchicalVAE(hidden=(), epochs=1, verbose=False).fit(X[:50])


# -------------------------------------------------------------------------------- persistence
def test_conditional_vae_save_load_round_trip(tmp_path, digits):
    X, y = digits.data[:300], digits.target[:300]
    est = ConditionalVAE(latent_dim=2, epochs=2, **FAST).fit(X, y)
    same = load(est.save(tmp_path / "cvae"))
    assert type(same) is ConditionalVAE and same.get_params() == est.get_params()
    np.testing.assert_array_equal(same.transform(X, y), est.transform(X, y))
    Z = est.transform(X, y)
    np.testing.assert_array_equal(same.inverse_transform(Z, y), est.inverse_transform(Z, y))
    np.testing.assert_array_equal(same.sample(4, y=3, seed=0), est.sample(4, y=3, seed=0))
    np.testing.assert_array_equal(same.sample(4, seed=0), est.sample(4, seed=0))
    assert same.score(X, y) == est.score(X, y)
    np.testing.assert_array_equal(same.classes_, est.classes_)


# ---------------------------------------------------------------------------- benchmark script
def test_static_mnist_models_script_trains_resumes_evaluates_and_records(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    arrays = {k: (rng.uniform(size=(n, 784)) < 0.2).astype(np.uint8) for k, n in (("train", 60), ("valid", 20), ("test", 10))}
    np.savez(data, **{k: np.asfortranarray(v) for k, v in arrays.items()})
    md, res = tmp_path / "BENCHMARKS.md", tmp_path / "r.json"
    md.write_text("# Benchmarks\n\n## Someone else's benchmark\n\nkeep me\n")
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "OMP_NUM_THREADS": "1"}

    def run(*args):
        p = subprocess.run([sys.executable, str(repo / "benchmarks" / "static_mnist_models.py"), "--data", str(data),
                            "--benchmarks-file", str(md), "--results-file", str(res), *args],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert p.returncode == 0, p.stderr
        return p.stdout

    out = str(tmp_path / "run")
    run("train", "--model", "hvae-vamp", "--out", out, "--epochs", "2", "--chunk", "1")
    assert "resuming at epoch 2" in run("train", "--model", "hvae-vamp", "--out", out, "--epochs", "3")
    run("evaluate", "--out", out, "--k", "8")
    (entry,) = json.loads(res.read_text())
    assert entry["epochs"] == 3 and entry["status"] == "epoch limit reached"
    assert entry["k"] == 8 and entry["test_images"] == 10 and np.isfinite(entry["test_nll"])
    text = md.read_text()
    assert "## Someone else's benchmark\n\nkeep me" in text and text.count("the VAE family") == 1
    assert "no full run evaluated yet" in text  # a 10-image, K = 8 check is not a benchmark result
    # the resume is recorded with its own command; the test result names the weights it measured
    assert len(entry["resume_commands"]) == 1 and "--epochs 3" in entry["resume_commands"][0]
    assert entry["eval_epochs"] == 3 and entry["eval_best_epoch"] == entry["best_epoch"]
    assert f"weights of epoch {entry['best_epoch']}" in text and "not evaluated yet" not in text
    # training on after the evaluation: the record must not pass the old test figure off as the new weights'
    run("train", "--model", "hvae-vamp", "--out", out, "--epochs", "6", "--chunk", "3")
    (entry,) = json.loads(res.read_text())
    assert entry["epochs"] == 6 and entry["eval_epochs"] == 3 and len(entry["resume_commands"]) == 2
    stale = entry["best_epoch"] != entry["eval_best_epoch"]
    assert ("not evaluated yet" in md.read_text()) == stale


@pytest.mark.parametrize("cls", [IWAE, VampPriorVAE, ConditionalVAE, HierarchicalVAE])
def test_the_family_takes_every_vae_setting(cls):
    # scikit-learn needs explicit constructor arguments: a setting added to VAE must be added here too,
    # or be refused with its reason (HierarchicalVAE builds its own five networks: no encoder=/decoder=).
    assert set(VAE().get_params()) - set(cls.refused_params) <= set(cls().get_params())
    assert set(cls.refused_params) <= {"encoder", "decoder"}
