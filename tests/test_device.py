"""Which device trains, and where the data lives: tested on the CPU by faking what is available.

The tests marked ``cuda`` run only where PyTorch sees a CUDA GPU.
"""

import numpy as np
import pytest
import torch

from latentlab import VAE, Autoencoder
from latentlab.errors import ConfigError
from latentlab.training import data as data_mod
from latentlab.training.data import ArrayData, placement
from latentlab.training.trainer import resolve_device


@pytest.fixture
def fake(monkeypatch):
    """fake(cuda=bool, mps=bool, local_rank=None | int) pretends these exist."""

    def apply(cuda: bool, mps: bool, local_rank=None):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        if local_rank is None:
            monkeypatch.delenv("WORLD_SIZE", raising=False)
            monkeypatch.delenv("LOCAL_RANK", raising=False)
        else:  # as torchrun sets it for process local_rank of 2
            monkeypatch.setenv("WORLD_SIZE", "2")
            monkeypatch.setenv("LOCAL_RANK", str(local_rank))

    return apply


@pytest.mark.parametrize(
    "cuda, mps, expected",
    [(True, True, "cuda:0"), (True, False, "cuda:0"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_picks_cuda_then_mps_then_cpu(fake, cuda, mps, expected):
    fake(cuda, mps)
    assert resolve_device("auto") == torch.device(expected)


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda:1"), (False, True, "cpu"), (False, False, "cpu")])
def test_under_torchrun_auto_picks_this_process_gpu_and_never_mps(fake, cuda, mps, expected):
    fake(cuda, mps, local_rank=1)
    assert resolve_device("auto") == torch.device(expected)


def test_explicit_devices(fake):
    fake(True, True, local_rank=1)
    assert resolve_device("cuda") == torch.device("cuda", 1)  # this process's GPU
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index is kept
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ConfigError, match="device='mps' cannot train under torchrun.*device='cpu'"):
        resolve_device("mps")
    fake(False, False)
    with pytest.raises(ConfigError, match="device='cuda' but this PyTorch sees no CUDA GPU; use device='auto' or 'cpu'"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="device='mps' but this PyTorch sees no Apple GPU"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match="'gpu' is not a device name; use 'auto', 'cpu', 'cuda' or 'mps'"):
        resolve_device("gpu")


def test_data_goes_to_the_gpu_once_when_it_fits_in_a_quarter_of_free_memory(monkeypatch):
    free = 8 << 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 16 << 30))
    gpu = torch.device("cuda", 0)
    assert placement(free // 4 - 1, gpu) == "device"
    assert placement(free // 4, gpu) == "pinned"
    assert placement(10 * free, gpu) == "pinned"
    assert placement(10 * free, torch.device("cpu")) == "host"


def test_array_data_follows_the_placement(monkeypatch):
    """The decision is applied: 'pinned' pins the host copy, 'host' leaves it; mapped data stays mapped."""
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: pinned.append(self.shape) or self)
    X = np.arange(24, dtype=np.float32).reshape(6, 4)
    monkeypatch.setattr(data_mod, "placement", lambda nbytes, device: "pinned")
    d = ArrayData([X], torch.device("cpu"))
    assert d.placements == ["pinned"] and pinned == [(6, 4)]
    monkeypatch.setattr(data_mod, "placement", lambda nbytes, device: "host")
    d = ArrayData([X], torch.device("cpu"))
    assert d.placements == ["host"] and pinned == [(6, 4)]
    torch.testing.assert_close(d.gather(torch.tensor([4, 1]))[0], torch.from_numpy(X[[4, 1]]))


def test_array_data_asks_with_the_stored_size(monkeypatch, tmp_path):
    """uint8 data is placed (and moved) as uint8: a quarter of the bytes of float32."""
    asked = []
    monkeypatch.setattr(data_mod, "placement", lambda nbytes, device: asked.append(nbytes) or "host")
    X = np.ones((10, 8), np.uint8)
    d = ArrayData([X], torch.device("cpu"))
    assert asked == [80]
    assert d.gather(torch.arange(3))[0].dtype == torch.float32
    np.save(tmp_path / "x.npy", X)
    m = ArrayData([np.load(tmp_path / "x.npy", mmap_mode="r")], torch.device("cpu"))
    assert m.placements == ["mapped"] and asked == [80]  # mapped data is never placed whole


# --------------------------------------------------------------------------- on a real GPU
@pytest.mark.cuda
def test_cuda_auto_and_placement(tmp_path):
    assert resolve_device("auto").type == "cuda"
    X = (np.random.default_rng(0).random((512, 16)) < 0.5).astype(np.uint8)
    d = ArrayData([X], resolve_device("auto"))
    assert d.placements == ["device"] and d.arrays[0].is_cuda
    np.save(tmp_path / "x.npy", X)
    m = ArrayData([np.load(tmp_path / "x.npy", mmap_mode="r")], resolve_device("auto"))
    b = m.gather(torch.arange(0, 512, 7))[0]
    assert b.is_cuda and b.dtype == torch.float32
    torch.testing.assert_close(b.cpu(), torch.from_numpy(X[::7]).float())


@pytest.mark.cuda
def test_cuda_fit_matches_the_cpu_on_mapped_data(tmp_path):
    X = (np.random.default_rng(0).random((600, 16)) < 0.5).astype(np.uint8)
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    kw = dict(latent_dim=2, hidden=(16,), epochs=3, patience=None, verbose=False)
    gpu = Autoencoder(device="cuda", **kw).fit(mapped)  # deterministic: no sampling noise
    cpu = Autoencoder(device="cpu", **kw).fit(X)
    assert gpu.device_.type == "cuda"
    for g, c in zip(gpu.history_, cpu.history_, strict=True):
        assert g["train_loss"] == pytest.approx(c["train_loss"], rel=1e-3)
    np.testing.assert_allclose(gpu.transform(mapped), cpu.transform(X), rtol=1e-3, atol=1e-4)
    vae = VAE(device="cuda", **kw).fit(mapped)
    assert np.isfinite(vae.score(mapped))
