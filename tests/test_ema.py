"""TrainConfig.ema: an exponential moving average of the weights, used for validation, early
stopping and the returned model, and carried through checkpoints."""

import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from latentlab import VAE, ConfigError, TrainConfig
from latentlab.objectives import ELBO, ReconstructionLoss
from latentlab.training import ArrayData, train
from latentlab.training.trainer import CHECKPOINT_NAME, evaluate_objective


class _Recording:
    """A squared-error objective that records the weights it sees at every training step."""

    def __init__(self):
        self.seen = []

    def __call__(self, module, batch, progress=0.0):
        if module.training:
            self.seen.append([p.detach().clone() for p in module.parameters()])
        x = batch[0]
        loss = (module(x) - x).pow(2).sum(-1).mean()
        return loss, {"loss": loss}


def test_the_returned_weights_are_the_moving_average_of_the_iterates():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 4))
    data = ArrayData([torch.randn(64, 4)], torch.device("cpu"))
    obj, after_last = _Recording(), []
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-2, patience=None, progress=False, ema=0.8)
    train(module, obj, data, None, cfg,
          callback=lambda r: after_last.append([p.detach().clone() for p in module.parameters()]))
    iterates = obj.seen + [after_last[-1]]  # the weights before each step, then after the last
    avg = [w.clone() for w in iterates[0]]
    for t, w in enumerate(iterates[1:], start=1):
        d = min(0.8, (1 + t) / (10 + t))
        avg = [a + (1 - d) * (x - a) for a, x in zip(avg, w)]
    for p, a in zip(module.parameters(), avg):
        torch.testing.assert_close(p.detach(), a, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(next(module.parameters()), after_last[-1][0])


def test_validation_and_the_returned_model_use_the_averaged_weights(digits):
    from latentlab import Autoencoder

    X = digits.data
    kw = dict(latent_dim=2, hidden=(32,), epochs=8, patience=2, lr=3e-3, verbose=False)
    ae = Autoencoder(ema=0.9, **kw).fit(X[:1500], X_val=X[1500:])
    best = ae.history_[ae.best_epoch_ - 1]
    val = evaluate_objective(ae.module_, ReconstructionLoss(), ae._data([X[1500:]], torch.device("cpu")), 512)
    assert val["loss"] == pytest.approx(best["val_loss"], rel=1e-6)
    plain = Autoencoder(ema=None, **kw).fit(X[:1500], X_val=X[1500:])
    assert plain.history_[0]["train_loss"] == pytest.approx(ae.history_[0]["train_loss"], rel=1e-6)  # same iterates
    assert plain.history_[0]["val_loss"] != pytest.approx(ae.history_[0]["val_loss"], rel=1e-3)  # other weights


def test_the_flat_fused_path_averages_like_the_plain_one(digits):
    # The fused Bernoulli ELBO step keeps the weights in one flat buffer; its average must be
    # the same as the per-parameter one of the autograd path.
    X = torch.as_tensor((digits.data[:600] > 0.5).astype(np.float32))
    finals = []
    for objective in (ELBO(), ELBO(fast=False)):
        torch.manual_seed(0)
        est = VAE(latent_dim=2, hidden=(16,), likelihood="bernoulli")
        est.input_shape_, est.n_features_in_, est.likelihood_ = (64,), 64, "bernoulli"
        module = est._build_module()
        cfg = TrainConfig(epochs=2, batch_size=64, patience=None, progress=False, seed=1, ema=0.9)
        train(module, objective, ArrayData([X], torch.device("cpu")), None, cfg)
        finals.append({k: v.clone() for k, v in module.state_dict().items()})
    for k in finals[0]:
        torch.testing.assert_close(finals[0][k], finals[1][k], rtol=1e-4, atol=1e-5)


def test_resume_with_an_average_equals_an_uninterrupted_run(tmp_path):
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(300, 12, generator=g) > 0.5).float()

    def setup(seed):
        torch.manual_seed(seed)
        est = VAE(latent_dim=2, hidden=(16,), likelihood="bernoulli")
        est.input_shape_, est.n_features_in_, est.likelihood_ = (12,), 12, "bernoulli"
        return est._build_module(), ArrayData([X], torch.device("cpu"))

    cfg = TrainConfig(epochs=4, batch_size=32, patience=None, progress=False, seed=3, ema=0.95)
    full, data = setup(0)
    train(full, ELBO(fast=False), data, None, cfg)  # the autograd path throughout, as StopAt's

    class StopAt:
        def __init__(self, step):
            self.step, self.n = step, 0

        def __call__(self, module, batch, progress):
            self.n += 1
            if self.n == self.step:
                os.kill(os.getpid(), signal.SIGINT)
            return ELBO(fast=False)(module, batch, progress)

    ckpt = tmp_path / CHECKPOINT_NAME
    part, data = setup(0)
    with pytest.raises(KeyboardInterrupt):
        train(part, StopAt(23), data, None, TrainConfig(**{**cfg.to_dict(), "ema": 0.95}), checkpoint=ckpt)
    resumed, data = setup(99)
    train(resumed, ELBO(fast=False), data, None, cfg, checkpoint=ckpt, resume=True)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_ema_setting_is_checked():
    with pytest.raises(ConfigError, match="ema"):
        TrainConfig(ema=1.0)
    with pytest.raises(ConfigError, match="ema"):
        TrainConfig(ema=0.0)
    assert TrainConfig(ema=0.999).ema == 0.999
