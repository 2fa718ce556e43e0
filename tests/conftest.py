import os
from pathlib import Path

import latentlab  # noqa: F401  (first: OMP_WAIT_POLICY=PASSIVE before torch loads, so a busy machine does not stall the tests)
import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))
# The suite computes on a fixed count (latentlab follows the free cores only when no count is chosen,
# latentlab.threads): tests that compare two runs bit for bit must not see the machine's load.
# tests/test_threads.py lifts this where it tests the following itself.
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]


def mnist_path() -> Path | None:
    """binarized_mnist.npz from $LATENTLAB_DATA (a file or a folder), else ../shared/data beside the repo."""
    env = os.environ.get("LATENTLAB_DATA")
    candidates = []
    if env:
        p = Path(env)
        candidates.append(p if p.suffix == ".npz" else p / "binarized_mnist.npz")
    candidates.append(REPO.parent / "shared" / "data" / "binarized_mnist.npz")
    for c in candidates:
        if c.is_file():
            return c
    return None


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        no_gpu = pytest.mark.skip(reason="needs a CUDA GPU, and this PyTorch sees none")
        for item in items:
            if item.get_closest_marker("cuda") is not None:
                item.add_marker(no_gpu)
    if os.environ.get("LATENTLAB_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set LATENTLAB_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def digits():
    from latentlab.datasets import load_digits

    return load_digits()


@pytest.fixture
def spectrum_data(rng):
    """(400, 10) Gaussian data with a clear spectrum: variances 16, 9, 4, then 0.01."""
    std = np.array([4.0, 3.0, 2.0] + [0.1] * 7)
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    return (rng.normal(size=(400, 10)) * std) @ Q.T + rng.normal(size=10)
