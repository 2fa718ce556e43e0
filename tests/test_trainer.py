import math
import os
import signal

import numpy as np
import pytest
import torch

from latentlab import VAE, Autoencoder, DivergenceError, TrainConfig
from latentlab.objectives import ELBO
from latentlab.training import ArrayData, train
from latentlab.training.trainer import CHECKPOINT_NAME, read_checkpoint


def _params(est):
    return {k: v.clone() for k, v in est.module_.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_cpu_run_is_repeatable(digits):
    kw = dict(latent_dim=2, hidden=(32,), epochs=3, verbose=False, seed=5)
    _assert_same(_params(VAE(**kw).fit(digits.data)), _params(VAE(**kw).fit(digits.data)))
    other = _params(VAE(**{**kw, "seed": 6}).fit(digits.data))
    assert not torch.equal(other["encoder.0.weight"], _params(VAE(**kw).fit(digits.data))["encoder.0.weight"])


def test_fit_leaves_the_global_random_state_alone(digits):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    VAE(latent_dim=2, hidden=(8,), epochs=1, verbose=False).fit(digits.data[:100])
    torch.testing.assert_close(torch.rand(3), expected)


def test_early_stopping_restores_the_best_weights(rng):
    # Few examples and a big network overfit quickly; the validation loss then rises.
    X = rng.normal(size=(40, 20)).astype(np.float32)
    V = rng.normal(size=(200, 20)).astype(np.float32)
    ae = Autoencoder(latent_dim=8, hidden=(256,), lr=1e-2, epochs=300, batch_size=8, patience=5, verbose=False)
    ae.fit(X, X_val=V)
    assert ae.stopped_early_ and ae.n_epochs_ < 300
    assert ae.best_epoch_ == ae.n_epochs_ - 5
    best = ae.history_[ae.best_epoch_ - 1]["val_loss"]
    assert best == min(h["val_loss"] for h in ae.history_)
    assert -ae.score(V) == pytest.approx(best, rel=1e-5)


def test_history_has_every_term_per_epoch(digits):
    vae = VAE(latent_dim=2, hidden=(16,), epochs=2, verbose=False).fit(digits.data)
    keys = set(vae.history_[0])
    for k in ("epoch", "train_loss", "train_rec", "train_kl", "train_elbo", "val_loss", "val_elbo", "lr", "time_s", "samples_per_s"):
        assert k in keys


def _setup(init_seed=0, n=300):
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(n, 12, generator=g) > 0.5).float()
    torch.manual_seed(init_seed)
    est = VAE(latent_dim=2, hidden=(16,), likelihood="bernoulli")
    est.input_shape_, est.n_features_in_, est.likelihood_ = (12,), 12, "bernoulli"
    module = est._build_module()
    return module, ArrayData([X], torch.device("cpu"))


CFG = TrainConfig(epochs=4, batch_size=32, patience=None, progress=False, seed=3)


def test_resume_after_an_interrupted_epoch_equals_an_uninterrupted_run(tmp_path):
    full, data = _setup()
    train(full, ELBO(fast=False), data, None, CFG)  # the autograd path throughout, as StopAt's

    class StopAt:
        """Sends SIGINT to this process at the given step, as Ctrl-C would."""

        def __init__(self, step):
            self.step, self.n = step, 0

        def __call__(self, module, batch, progress):
            self.n += 1
            if self.n == self.step:
                os.kill(os.getpid(), signal.SIGINT)
            return ELBO(fast=False)(module, batch, progress)

    ckpt = tmp_path / CHECKPOINT_NAME
    part, data = _setup()
    with pytest.raises(KeyboardInterrupt):
        train(part, StopAt(23), data, None, CFG, checkpoint=ckpt)  # mid-epoch 3 (10 steps an epoch)
    _, meta = read_checkpoint(ckpt)
    assert (meta["epoch"], meta["step"]) == (2, 3)
    resumed, data = _setup(init_seed=99)  # other initial weights: everything must come from the checkpoint
    result = train(resumed, ELBO(fast=False), data, None, CFG, checkpoint=ckpt, resume=True)
    assert result.resumed_from == 2 and len(result.history) == 4
    _assert_same(resumed.state_dict(), full.state_dict())


def test_resume_from_an_epoch_checkpoint_equals_an_uninterrupted_run(tmp_path, digits):
    kw = dict(latent_dim=2, hidden=(16,), epochs=4, patience=None, verbose=False, lr_schedule="cosine")
    full = VAE(**kw).fit(digits.data)

    class Crash(Exception):
        pass

    def crash_after_two(record):
        if record["epoch"] == 2:
            raise Crash

    module, data = None, None
    ck = tmp_path / "run"
    est = VAE(checkpoint_dir=ck, **kw)
    import latentlab.models.neural as neural

    real_train = neural.train
    neural.train = lambda *a, **k: real_train(*a, **{**k, "callback": crash_after_two})
    try:
        with pytest.raises(Crash):
            est.fit(digits.data)
    finally:
        neural.train = real_train
    _, meta = read_checkpoint(ck / CHECKPOINT_NAME)
    assert meta["epoch"] == 1  # the crash came before epoch 2's checkpoint
    again = VAE(checkpoint_dir=ck, **kw).fit(digits.data, resume=True)
    _assert_same(_params(again), _params(full))
    assert [h["epoch"] for h in again.history_] == [1, 2, 3, 4]


def test_divergence_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    module, data = _setup()

    class NaNAt:
        def __init__(self, step):
            self.step, self.n = step, 0

        def __call__(self, module, batch, progress):
            self.n += 1
            loss, terms = ELBO()(module, batch, progress)
            return (loss * math.nan if self.n == self.step else loss), terms

    ckpt = tmp_path / CHECKPOINT_NAME
    with pytest.raises(DivergenceError, match=r"loss became nan at epoch 2, step 5 of 10.*kept at .*lower the learning rate.*grad_clip"):
        train(module, NaNAt(15), data, None, CFG, checkpoint=ckpt)
    tensors, meta = read_checkpoint(ckpt)
    assert meta["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())
    assert all(torch.isfinite(p).all() for p in module.parameters())  # the bad step was not applied


def test_grad_clip_bounds_the_update(digits):
    vae = VAE(latent_dim=2, hidden=(16,), epochs=2, grad_clip=0.5, verbose=False).fit(digits.data)
    assert np.isfinite(vae.history_[-1]["train_loss"])


@pytest.mark.parametrize("opt", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "plateau"])
def test_optimizers_and_schedules(digits, opt, schedule):
    vae = VAE(latent_dim=2, hidden=(16,), epochs=3, optimizer=opt, lr_schedule=schedule, lr=1e-3, verbose=False)
    vae.fit(digits.data[:400])
    assert len(vae.history_) == 3
    if schedule == "cosine":
        assert vae.history_[-1]["lr"] < vae.history_[0]["lr"]
