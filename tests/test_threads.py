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
from latentlab import threads as _threads
from latentlab.errors import ConfigError
from latentlab.training import Callback

PROBE = (
    "import json, os, sys\n"
    "if sys.argv[1] == 'torch-first':\n    import torch\n"
    "import latentlab\n"
    "print(json.dumps([os.environ.get('OMP_WAIT_POLICY'), latentlab.threads.wait_policy()]))\n"
)


def _run_probe(code: str, variable: str, order: str, env: dict) -> list:
    """Run ``code`` in a fresh interpreter, ``variable`` unset unless ``env`` sets it; its JSON output."""
    clean = {k: v for k, v in os.environ.items() if k != variable}
    out = subprocess.run([sys.executable, "-c", code, order], env={**clean, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)


def _probe(order: str, **env) -> list:
    return _run_probe(PROBE, "OMP_WAIT_POLICY", order, env)


def test_import_sets_the_passive_wait_policy_before_torch_loads():
    assert _probe("latentlab-first") == ["PASSIVE", "PASSIVE"]


def test_the_users_wait_policy_is_kept():
    assert _probe("latentlab-first", OMP_WAIT_POLICY="active") == ["active", "ACTIVE"]


def test_after_torch_the_policy_is_left_alone_and_reported_as_spinning():
    env, policy = _probe("torch-first")
    assert env is None  # setting it now would not take effect in this process: it is not pretended
    assert policy.startswith("default (spinning)") and "before latentlab" in policy


HUGE_PROBE = (
    "import json, os, sys\n"
    "if sys.argv[1] == 'torch-first':\n    import torch\n"
    "import latentlab, torch\n"
    "t = torch.ones(16 << 20)  # 64 MiB: over torch's 2 MiB threshold for huge pages\n"
    "p, flags, inside = t.data_ptr(), None, False\n"
    "for line in open('/proc/self/smaps').read().splitlines():\n"
    "    head = line.split()[0]\n"
    "    if '-' in head and all(c in '0123456789abcdef-' for c in head):\n"
    "        lo, hi = (int(v, 16) for v in head.split('-'))\n"
    "        inside = lo <= p < hi\n"
    "    elif line.startswith('VmFlags:') and inside:\n"
    "        flags = line.split()[1:]\n"
    "print(json.dumps([os.environ.get('THP_MEM_ALLOC_ENABLE'), flags]))\n"
)


def _huge_probe(order: str, **env) -> list:
    return _run_probe(HUGE_PROBE, "THP_MEM_ALLOC_ENABLE", order, env)


@pytest.mark.skipif(not (_threads._kernel_offers_huge_pages() and os.path.exists("/proc/self/smaps")),
                    reason="needs Linux with transparent huge pages on and /proc/self/smaps")
def test_import_asks_for_huge_pages_for_large_tensors_and_the_users_choice_is_kept():
    value, flags = _huge_probe("latentlab-first")
    assert value == "1" and flags is not None and "hg" in flags  # the tensor's mapping carries MADV_HUGEPAGE
    value, flags = _huge_probe("latentlab-first", THP_MEM_ALLOC_ENABLE="0")
    assert value == "0" and flags is not None and "hg" not in flags
    value, flags = _huge_probe("torch-first")
    assert value is None and "hg" not in flags  # too late once torch has loaded: not pretended


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


# ---------------------------------------------------------------- following the free cores


@pytest.mark.parametrize("cores, others, ceiling, want", [
    (2, 0.0, 2, 2), (2, 0.4, 2, 2), (2, 0.6, 2, 1), (2, 1.0, 2, 1), (2, 2.0, 2, 1), (2, 5.0, 2, 1),
    (8, 3.0, 8, 5), (8, 0.0, 4, 4), (1, 0.0, 1, 1),
])
def test_the_count_is_the_free_cores_within_one_and_the_ceiling(cores, others, ceiling, want):
    assert _threads.choose(cores, others, ceiling) == want


class _FakeCores:
    """A clock and a /proc/stat reading: other programs use ``others`` cores, this process ``own``."""

    def __init__(self, cores=2, others=0.0, own=1.0):
        self.t, self.busy, self.self_cpu = 0.0, 0.0, 0.0
        self.cores, self.others, self.own = cores, others, own

    def advance(self, dt):
        self.t += dt
        self.busy += (self.others + self.own) * dt
        self.self_cpu += self.own * dt

    def clock(self):
        return self.t

    def sample(self):
        return self.busy, self.self_cpu, self.cores


def test_free_cores_reads_others_use_less_its_own_and_only_every_interval():
    fake = _FakeCores(cores=2, others=0.0, own=2.0)  # alone, on both cores: its own use is not "others"
    free = _threads.FreeCores(2, interval=0.5, first=0.1, sample=fake.sample, clock=fake.clock)
    fake.advance(0.05)
    assert free.update() == 2  # before the first look: the ceiling
    fake.advance(0.1)
    assert free.update() == 2
    fake.others = 2.0  # two busy programs arrive
    fake.advance(0.2)
    assert free.update() == 2  # within the interval: no new reading
    fake.advance(0.4)
    assert free.update() == 1
    fake.others = 0.0  # they end
    fake.advance(0.6)
    assert free.update() == 2


def test_free_cores_without_proc_stat_is_unavailable_and_keeps_the_ceiling():
    free = _threads.FreeCores(4, sample=lambda: None)
    assert not free.available and free.update() == 4


def test_the_real_reading_is_sane_where_proc_stat_exists():
    got = _threads._sample()
    if got is None:
        pytest.skip("no /proc/stat or sched_getaffinity on this system")
    busy, own, cores = got
    assert busy >= 0 and own > 0 and cores == len(os.sched_getaffinity(0))


@pytest.fixture
def unpinned(monkeypatch):
    for v in _threads.PINNING_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(_threads, "FIRST_S", 0.0)
    monkeypatch.setattr(_threads, "INTERVAL_S", 0.0)


def _others_use(monkeypatch, others: float, cores: int = 2):
    """Make the real clock's /proc/stat reading say that other programs use ``others`` cores."""
    import time as _time

    t0 = _time.monotonic()

    def sample():
        t = os.times()
        own = t.user + t.system
        return own + others * (_time.monotonic() - t0), own, cores

    monkeypatch.setattr(_threads, "_sample", sample)


def test_an_unpinned_fit_trains_on_the_free_cores_and_restores_the_count(unpinned, monkeypatch):
    X = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _others_use(monkeypatch, others=1.5)
        m = VAE(latent_dim=2, hidden=(8,), epochs=3, batch_size=16, verbose=False).fit(X)
        assert [h["threads"] for h in m.history_] == [1, 1, 1]
        assert torch.get_num_threads() == 2
        _others_use(monkeypatch, others=0.0)
        m = VAE(latent_dim=2, hidden=(8,), epochs=2, batch_size=16, verbose=False).fit(X)
        assert [h["threads"] for h in m.history_] == [2, 2]
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("how", ["setting", "environment"])
def test_a_count_the_user_chose_is_kept_whatever_the_load(unpinned, monkeypatch, how):
    X = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _others_use(monkeypatch, others=2.0)
        if how == "environment":
            monkeypatch.setenv("OMP_NUM_THREADS", "2")
        m = VAE(latent_dim=2, hidden=(8,), epochs=2, batch_size=16, verbose=False,
                threads=2 if how == "setting" else None).fit(X)
        assert [h["threads"] for h in m.history_] == [2, 2]
    finally:
        torch.set_num_threads(before)


BUSY = r"""
import json, os, subprocess, sys, time
cpus = sorted(os.sched_getaffinity(0))[:2]
os.sched_setaffinity(0, cpus)
import latentlab, numpy as np, torch
torch.set_num_threads(2)
X = np.random.default_rng(0).normal(size=(1000, 32)).astype(np.float32)
latentlab.VAE(latent_dim=4, hidden=(64,), epochs=1, verbose=False).fit(X[:100])  # the imports, before the load
spin = [subprocess.Popen([sys.executable, "-S", "-c", "import os\nos.sched_setaffinity(0, %r)\nwhile True: pass" % cpus])
        for _ in range(2)]
try:
    time.sleep(0.3)
    m = latentlab.VAE(latent_dim=4, hidden=(64,), epochs=8, batch_size=32, verbose=False).fit(X)
    print(json.dumps([h["threads"] for h in m.history_]))
finally:
    for p in spin:
        p.kill()
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2
                    or not os.path.exists("/proc/stat"), reason="needs Linux and 2 usable cores")
def test_two_busy_programs_on_its_two_cores_bring_a_real_fit_down_to_one_thread():
    env = {k: v for k, v in os.environ.items() if k not in _threads.PINNING_VARIABLES}
    out = subprocess.run([sys.executable, "-c", BUSY], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen[-1] == 1, seen  # more load than the two competitors only lowers it further
