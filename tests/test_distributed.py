"""Data-parallel training with several processes on the CPU (gloo), as torchrun runs it.

Each test launches two small processes (tiny model, a few steps) with a hard time limit: either
torchrun itself (``python -m torch.distributed.run --standalone``), or, where the test must stop
a process on purpose, one process per rank with the environment torchrun would give it.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from latentlab import Autoencoder
from latentlab.errors import ConfigError, DistributedError
from latentlab.training import distributed
from latentlab.training import data as data_mod
from latentlab.training.data import open_npy
from latentlab.training.trainer import CHECKPOINT_NAME, read_checkpoint

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "tests" / "_dist_job.py"
LAUNCH_LIMIT_S = 240  # a hard bound on every launch: nothing here may hang the suite

N, F, B = 200, 12, 15  # 180 training examples after the 10% validation split: 6 global batches of 2B
N_TRAIN = 180
PARAMS = dict(
    latent_dim=3,
    hidden=(16,),
    epochs=3,
    batch_size=B,
    lr=1e-2,
    patience=None,
    validation_fraction=0.1,
    seed=0,
    device="cpu",
    verbose=False,
)


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def binary_npy(tmp_path):
    """(200, 12) uint8 0/1 data in a .npy file, opened memory-mapped by the jobs."""
    X = (np.random.default_rng(0).random((N, F)) < 0.4).astype(np.uint8)
    path = tmp_path / "x.npy"
    np.save(path, X)
    return path


def _spec(tmp_path, name, **spec):
    out = tmp_path / name
    out.mkdir()
    spec = {"out": str(out), "n_train": N_TRAIN, **spec}
    spec["params"] = {**PARAMS, **spec.get("params", {})}
    path = out / "spec.json"
    path.write_text(json.dumps(spec))
    return path, out


def _torchrun(nproc, spec_path, **env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(JOB), str(spec_path)]
    return subprocess.run(cmd, env=_clean_env(**env), capture_output=True, text=True, timeout=LAUNCH_LIMIT_S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(nproc, spec_path, **env):
    """One process per rank with torchrun's environment, so that the test controls each one."""
    port = _free_port()
    procs = []
    for r in range(nproc):
        e = _clean_env(RANK=r, LOCAL_RANK=r, WORLD_SIZE=nproc, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, **env)
        procs.append(
            subprocess.Popen([sys.executable, str(JOB), str(spec_path)], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    return procs


def _finish(procs):
    """Kill what is left (a stopped rank included) and collect (returncode, stdout, stderr)."""
    results = []
    for p in procs:
        if p.poll() is None:
            p.kill()
        out, err = p.communicate(timeout=60)
        results.append((p.returncode, out, err))
    return results


def _flat(est):
    return torch.cat([p.detach().reshape(-1) for p in est.module_.parameters()]).numpy()


def _single(path, **kw):
    """The one-process reference: per-process batch 2B, the same global batch as 2 x B."""
    return Autoencoder(**{**PARAMS, "batch_size": 2 * B, **kw}).fit(open_npy(path))


def _ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"


# --------------------------------------------------------------------------- torchrun, the estimator
def test_two_processes_with_batch_b_train_like_one_with_batch_2b(tmp_path, binary_npy):
    spec, out = _spec(
        tmp_path,
        "ddp",
        data=str(binary_npy),
        record_batches=True,
        params={"checkpoint_dir": str(tmp_path / "ck{rank}")},
    )
    _ok(_torchrun(2, spec))

    # Gradients are averaged: both replicas hold the same weights, those of one process with 2B.
    flat0, flat1 = np.load(out / "flat0.npy"), np.load(out / "flat1.npy")
    np.testing.assert_array_equal(flat0, flat1)
    ref = _single(binary_npy)
    np.testing.assert_allclose(flat0, _flat(ref), rtol=1e-5, atol=1e-6)
    hist = json.loads((out / "history0.json").read_text())
    for h, r in zip(hist, ref.history_, strict=True):
        assert h["train_loss"] == pytest.approx(r["train_loss"], rel=1e-4)
        assert h["val_loss"] == pytest.approx(r["val_loss"], rel=1e-4)  # sharded, all-reduced

    # Each rank read its own half of every epoch: disjoint, and together the whole training split.
    b0, b1 = np.load(out / "batches0.npy"), np.load(out / "batches1.npy")
    steps = N_TRAIN // (2 * B)
    assert b0.shape == b1.shape == (PARAMS["epochs"] * steps, B)
    train_rows = np.sort(np.concatenate([b0[:steps], b1[:steps]]).ravel())
    for e in range(PARAMS["epochs"]):
        mine, theirs = b0[e * steps : (e + 1) * steps].ravel(), b1[e * steps : (e + 1) * steps].ravel()
        assert not set(mine) & set(theirs)
        np.testing.assert_array_equal(np.sort(np.concatenate([mine, theirs])), train_rows)
    assert len(np.unique(train_rows)) == N_TRAIN

    # Only rank 0 wrote: its checkpoint and its saved model, nothing of rank 1's.
    assert (tmp_path / "ck0" / CHECKPOINT_NAME).is_file() and not (tmp_path / "ck1").exists()
    assert (out / "model0" / "config.json").is_file() and not (out / "model1").exists()
    _, meta = read_checkpoint(tmp_path / "ck0" / CHECKPOINT_NAME)
    assert (meta["world"], meta["epoch"]) == (2, 3)

    # That two-process checkpoint resumes in one process (batch 2B) and ends where one process does.
    more = Autoencoder(**{**PARAMS, "batch_size": 2 * B, "epochs": 5, "checkpoint_dir": tmp_path / "ck0"})
    more.fit(open_npy(binary_npy), resume=True)
    np.testing.assert_allclose(_flat(more), _flat(_single(binary_npy, epochs=5)), rtol=1e-5, atol=1e-6)
    assert [h["epoch"] for h in more.history_] == [1, 2, 3, 4, 5]


def test_a_callback_stop_reaches_every_process_at_the_end_of_the_epoch(tmp_path, binary_npy):
    # 6 global steps an epoch: a stop asked at step 8 (rank 0's callback) ends both after epoch 2.
    spec, out = _spec(tmp_path, "stop", data=str(binary_npy), stop_step=8, params={"checkpoint_dir": str(tmp_path / "ck{rank}")})
    _ok(_torchrun(2, spec))
    h0, h1 = (json.loads((out / f"history{r}.json").read_text()) for r in (0, 1))
    assert [h["epoch"] for h in h0] == [h["epoch"] for h in h1] == [1, 2]
    np.testing.assert_array_equal(np.load(out / "flat0.npy"), np.load(out / "flat1.npy"))
    lines = (tmp_path / "ck0" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2] and not (tmp_path / "ck1").exists()


def test_a_one_process_checkpoint_taken_mid_epoch_resumes_in_two_processes(tmp_path, binary_npy, monkeypatch):
    ck = tmp_path / "ck"
    real_gather, seen = data_mod.ArrayData.gather, [0]

    def gather(self, idx):  # Ctrl-C during the 8th training step: epoch 2, step 2 of 6
        if self.n == N_TRAIN and len(idx) == 2 * B:
            seen[0] += 1
            if seen[0] == 8:
                os.kill(os.getpid(), signal.SIGINT)
        return real_gather(self, idx)

    monkeypatch.setattr(data_mod.ArrayData, "gather", gather)
    with pytest.raises(KeyboardInterrupt):
        _single(binary_npy, checkpoint_dir=ck)
    monkeypatch.undo()
    _, meta = read_checkpoint(ck / CHECKPOINT_NAME)
    assert (meta["epoch"], meta["step"], meta["examples"], meta["world"]) == (1, 2, 60, 1)

    spec, out = _spec(tmp_path, "resume", data=str(binary_npy), resume=True, params={"checkpoint_dir": str(ck)})
    _ok(_torchrun(2, spec))
    np.testing.assert_allclose(np.load(out / "flat0.npy"), _flat(_single(binary_npy)), rtol=1e-5, atol=1e-6)
    hist = json.loads((out / "history0.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]


# --------------------------------------------------------------------------- a lost process
@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_lost_rank_ends_the_job_with_a_clear_error_within_the_timeout(tmp_path, binary_npy, how):
    """SIGKILL closes the dead rank's sockets: the survivor fails at once. SIGSTOP leaves them
    open (a hung process): the survivor fails when LATENTLAB_DIST_TIMEOUT (here 5 s) runs out."""
    timeout = 5
    spec, out = _spec(
        tmp_path,
        how,
        data=str(binary_npy),
        die={"rank": 1, "step": 3, "signal": how},
        params={"epochs": 50, "checkpoint_dir": str(tmp_path / "ck")},
    )
    t0 = time.monotonic()
    procs = _launch(2, spec, LATENTLAB_DIST_TIMEOUT=timeout)
    try:
        procs[0].wait(timeout=LAUNCH_LIMIT_S)
        elapsed = time.monotonic() - t0
    finally:
        (rc0, _, err0), (rc1, out1, _) = _finish(procs)
    assert f"rank 1 sends itself {how}" in out1
    assert rc0 == 1, err0[-3000:]
    last = err0.strip().splitlines()[-1].removeprefix("[rank0]: ")  # torch tags a rank's traceback
    assert last.startswith("latentlab.errors.DistributedError: rank 0 of 2 lost contact with the other training processes"), err0[-3000:]
    assert f"stalled for more than {timeout} s (LATENTLAB_DIST_TIMEOUT)" in last
    assert f"The last checkpoint is kept at {tmp_path / 'ck' / CHECKPOINT_NAME}" in last
    if how == "SIGSTOP":
        assert f"Timed out waiting {timeout * 1000}ms" in last  # the timeout, not a closed socket, ended it
        assert elapsed >= timeout
    assert elapsed < LAUNCH_LIMIT_S / 2


def test_torchrun_ends_the_job_when_a_rank_is_killed(tmp_path, binary_npy):
    spec, out = _spec(tmp_path, "kill", data=str(binary_npy), die={"rank": 1, "step": 3, "signal": "SIGKILL"}, params={"epochs": 50})
    t0 = time.monotonic()
    result = _torchrun(2, spec, LATENTLAB_DIST_TIMEOUT=30)
    assert result.returncode != 0
    assert time.monotonic() - t0 < LAUNCH_LIMIT_S / 2
    assert "ChildFailedError" in result.stderr and "Signal 9 (SIGKILL)" in result.stderr, result.stderr[-3000:]
    assert not (out / "flat0.npy").exists()


# --------------------------------------------------------------------------- the settings
def test_the_timeout_setting(monkeypatch):
    monkeypatch.delenv("LATENTLAB_DIST_TIMEOUT", raising=False)
    assert distributed.timeout_s() == distributed.DEFAULT_TIMEOUT_S == 120
    monkeypatch.setenv("LATENTLAB_DIST_TIMEOUT", "7.5")
    assert distributed.timeout_s() == 7.5
    for bad in ("0", "-3", "soon", "inf"):
        monkeypatch.setenv("LATENTLAB_DIST_TIMEOUT", bad)
        with pytest.raises(ConfigError, match="LATENTLAB_DIST_TIMEOUT.*seconds > 0"):
            distributed.timeout_s()


def test_without_torchrun_nothing_is_started(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.init_from_env("cpu") == distributed.DistInfo(0, 1, 0)
    assert not torch.distributed.is_initialized()
    assert distributed.env_local_rank() is None


def test_a_partial_torchrun_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="MASTER_ADDR, MASTER_PORT is not set; start several processes with torchrun"):
        distributed.init_from_env("cpu")


def test_lost_peer_errors_are_translated_only_in_a_job(monkeypatch):
    with pytest.raises(RuntimeError, match="Connection reset") as info:
        with distributed.peer_errors():
            raise RuntimeError("Connection reset by peer")
    assert not isinstance(info.value, DistributedError)  # one process: left as it is

    monkeypatch.setattr(distributed, "info", lambda: distributed.DistInfo(1, 4, 1))
    with pytest.raises(DistributedError, match=r"rank 1 of 4 lost contact .*\(Read error: Connection reset by peer\)\. Another .*Resume here"):
        with distributed.peer_errors("Resume here."):
            raise RuntimeError("[pair.cc:537] Read error: Connection reset by peer. This is typically caused by...\nmore")
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes") as info:
        with distributed.peer_errors():
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    assert not isinstance(info.value, DistributedError)  # a bug of the program is not a lost peer


# --------------------------------------------------------------------------- the command line
def test_torchrun_latentlab_fit_prints_and_writes_once_and_resumes_in_one_process(tmp_path, binary_npy):
    run = tmp_path / "run"
    args = ["fit", "ae", "--data", str(binary_npy), "--latent-dim", "2", "--hidden", "16", "--epochs", "2",
            "--batch-size", str(B), "--eval-k", "5", "--out", str(run), "--json"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "latentlab", *args]
    r = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, timeout=LAUNCH_LIMIT_S)
    _ok(r)
    out = json.loads(r.stdout)  # one JSON object: rank 1 printed nothing
    assert out["run_dir"] == str(run) and out["metrics"]["epochs"] == 2 and "n_test" in out["metrics"]
    assert "error" not in r.stderr and "(rank 1)" not in r.stderr  # and no error from either rank
    _, meta = read_checkpoint(run / CHECKPOINT_NAME)
    assert (meta["world"], meta["epoch"]) == (2, 2)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "fitted" and info["metrics"]["epochs"] == 2

    # The two-process run continues in one process (global batch kept: --batch-size came from run.json,
    # so one process now takes B per step where two took 2B: allowed, the checkpoint is at an epoch end).
    r = subprocess.run([sys.executable, "-m", "latentlab", "fit", "--resume", str(run), "--epochs", "3", "--json"],
                       env=_clean_env(), capture_output=True, text=True, timeout=LAUNCH_LIMIT_S)
    _ok(r)
    assert json.loads(r.stdout)["metrics"]["epochs"] == 3
    _, meta = read_checkpoint(run / CHECKPOINT_NAME)
    assert (meta["world"], meta["epoch"]) == (1, 3) and [h["epoch"] for h in meta["history"]] == [1, 2, 3]
