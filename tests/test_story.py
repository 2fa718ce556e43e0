"""The report's sentences are computed from the runs' numbers, and say so when a claim does not hold."""

from types import SimpleNamespace

from latentlab.story import comparison_claims, sweep_claims


def _run(role, **metrics):
    return SimpleNamespace(info={"role": role}, metrics=metrics)


def _runs(angle=0.4, deep=0.010, fd_ae=20.0, fd_vae=5.0):
    return [_run("PCA", reconstruction_mse=0.020), _run("linear AE", reconstruction_mse=0.0201, max_principal_angle_deg=angle),
            _run("deep AE", reconstruction_mse=deep, fd_standard_normal=fd_ae, fd_gmm=4.0, fd_real=1.0),
            _run("VAE", reconstruction_mse=0.03, fd_prior=fd_vae, fd_real=1.0)]


def test_the_argument_in_the_articles_order_with_the_runs_numbers():
    claims = comparison_claims(_runs())
    assert [c.title.split()[0] for c in claims] == ["PCA:", "A", "A", "Random"]
    assert [c.holds for c in claims] == [None, True, True, True]
    assert "0.4 degrees" in claims[1].sentence and "50% less" in claims[2].sentence
    assert "4.0 times closer" in claims[3].sentence and "sampler='gmm'" in claims[3].sentence


def test_a_measurement_against_the_claim_says_so():
    claims = comparison_claims(_runs(angle=12.0, deep=0.03, fd_ae=4.0, fd_vae=9.0))
    assert [c.holds for c in claims] == [None, False, False, False]
    assert all("does not hold" in c.sentence for c in claims[1:])


def test_the_sweep_sentence_states_what_c_trades():
    runs = [SimpleNamespace(info={"sweep": {"c": c}}, metrics={"kl": r, "rec": d, "log_likelihood": -d - r})
            for c, r, d in ((0.1, 9.0, 20.0), (1.0, 5.0, 22.0), (10.0, 1.0, 30.0))]
    (claim,) = sweep_claims(runs, ["c"])
    assert claim.holds and "from 9 to 1 nats" in claim.sentence and "from 20 to 30 nats" in claim.sentence
    runs[2].metrics["kl"] = 12.0
    assert not sweep_claims(runs, ["c"])[0].holds
