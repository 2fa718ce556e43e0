"""Threads and the OpenMP wait policy (latentlab.threads): set before torch loads, the user's
choice respected, a model's ``threads`` used for training and restored after."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from latentlab import VAE, TrainConfig
from latentlab.errors import ConfigError
from latentlab.training import Callback

PROBE = (
    "import json, os, sys\n"
    "if sys.argv[1] == 'torch-first':\n    import torch\n"
    "import latentlab\n"
    "print(json.dumps([os.environ.get('OMP_WAIT_POLICY'), latentlab.threads.wait_policy()]))\n"
)


def _probe(order: str, **env) -> list:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", PROBE, order], env={**clean, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)


def test_import_sets_the_passive_wait_policy_before_torch_loads():
    assert _probe("latentlab-first") == ["PASSIVE", "PASSIVE"]


def test_the_users_wait_policy_is_kept():
    assert _probe("latentlab-first", OMP_WAIT_POLICY="active") == ["active", "ACTIVE"]


def test_after_torch_the_policy_is_left_alone_and_reported_as_spinning():
    env, policy = _probe("torch-first")
    assert env is None  # setting it now would not take effect in this process: it is not pretended
    assert policy.startswith("default (spinning)") and "before latentlab" in policy


class _Threads(Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, record):
        self.seen.append(torch.get_num_threads())


def test_a_models_threads_setting_is_used_for_training_and_restored():
    X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    before = torch.get_num_threads()
    want = 1 if before > 1 else 2
    probe = _Threads()
    VAE(latent_dim=2, hidden=(8,), epochs=2, threads=want, verbose=False).fit(X, callbacks=[probe])
    assert probe.seen == [want, want]
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_a_bad_thread_count_is_refused_with_its_name(bad):
    with pytest.raises(ConfigError, match="threads"):
        TrainConfig(threads=bad)
