"""Callbacks at the loop's boundaries, history.jsonl, and the TensorBoard and MLflow loggers read
back with the real libraries (tensorboard's EventAccumulator, mlflow's MlflowClient)."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from latentlab import IWAE, VAE, Autoencoder, ConfigError
from latentlab.training.callbacks import Callback, CallbackList, HistoryFile

FAST = dict(hidden=(16,), verbose=False, batch_size=64)


@pytest.fixture(scope="module")
def X():
    from latentlab.datasets import load_digits

    return (load_digits().data[:300] > 0.5).astype(np.float32)  # 270 training rows: 5 steps an epoch


def _need(module: str, extra: str):
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is not installed, and CI must run this test (.ci/run installs '.[dev]', which has it)")
        pytest.skip(f"{module} is not installed (pip install 'latentlab[{extra}]'); CI installs it and runs this test")


class Recorder(Callback):
    def __init__(self, stop_epoch=None, stop_step=None):
        self.events, self.steps, self.records = [], [], []
        self.stop_epoch, self.stop_step = stop_epoch, stop_step

    def on_fit_start(self, info):
        self.events.append(("start", info.model, info.start_epoch, info.steps_per_epoch, len(info.history)))

    def on_step_end(self, step, loss):
        assert isinstance(loss, float)
        self.steps.append(step)
        return self.stop_step is not None and step >= self.stop_step

    def on_epoch_end(self, record):
        self.records.append(dict(record))
        record["mine"] = 1.0  # a callback may extend the record
        return self.stop_epoch is not None and record["epoch"] >= self.stop_epoch

    def on_fit_end(self, info):
        self.events.append(("end", info.status, type(info.error).__name__ if info.error else None))


# ---------------------------------------------------------------------------------------- the hooks
def test_callbacks_are_called_at_every_boundary(X):
    rec = Recorder()
    m = VAE(latent_dim=2, epochs=3, patience=None, **FAST).fit(X, callbacks=[rec])
    assert rec.events == [("start", "VAE", 0, 5, 0), ("end", "finished", None)]
    assert rec.steps == list(range(1, 16))
    assert [r["epoch"] for r in rec.records] == [1, 2, 3]
    assert all(h["mine"] == 1.0 for h in m.history_)
    assert [{k: v for k, v in h.items() if k != "mine"} for h in m.history_] == rec.records
    for r in rec.records:
        assert {"train_loss", "train_rec", "train_kl", "val_loss", "val_elbo", "kl_weight", "lr", "samples_per_s",
                "time_s"} <= set(r)


def test_the_conditional_vae_takes_callbacks(X):
    from latentlab import ConditionalVAE
    from latentlab.datasets import load_digits

    rec = Recorder(stop_epoch=1)
    m = ConditionalVAE(latent_dim=2, epochs=3, **FAST).fit(X, load_digits().target[:300], callbacks=[rec])
    assert m.n_epochs_ == 1 and rec.events[0][1] == "ConditionalVAE" and rec.events[-1][1] == "stopped"


def test_a_callback_stops_after_an_epoch_and_resume_goes_on(X, tmp_path):
    rec = Recorder(stop_epoch=2)
    m = VAE(latent_dim=2, epochs=6, patience=None, checkpoint_dir=tmp_path, **FAST).fit(X, callbacks=[rec])
    assert m.n_epochs_ == 2 and m.stopped_early_ and rec.events[-1] == ("end", "stopped", None)
    again = Recorder()
    m.fit(X, resume=True, callbacks=[again])
    assert m.n_epochs_ == 6 and again.events[0] == ("start", "VAE", 2, 5, 2)
    assert [r["epoch"] for r in again.records] == [3, 4, 5, 6]


def test_a_callback_stops_from_a_step_at_once(X):
    rec = Recorder(stop_step=7)  # the second step of the second epoch
    m = VAE(latent_dim=2, epochs=6, patience=None, **FAST).fit(X, callbacks=[rec])
    assert rec.steps == list(range(1, 8)) and m.n_epochs_ == 2
    assert m.history_[1]["samples_per_s"] > 0 and np.isfinite(m.history_[1]["train_loss"])


def test_no_callbacks_no_per_step_work(X, monkeypatch):
    class EpochOnly(Callback):
        def on_epoch_end(self, record):
            pass

    class Stepping(Callback):
        def on_step_end(self, step, loss):
            pass

    assert CallbackList([]).step_hook is None and CallbackList(None).step_hook is None
    assert CallbackList([EpochOnly(), HistoryFile("h.jsonl")]).step_hook is None
    assert CallbackList([Stepping()]).step_hook is not None
    opted_out = Stepping()
    opted_out.on_step_end = None
    assert CallbackList([opted_out]).step_hook is None

    def boom(self, step, loss):
        raise AssertionError("a per-step callback call without a callback that wants steps")

    monkeypatch.setattr(CallbackList, "_step", boom)
    VAE(latent_dim=2, epochs=2, **FAST).fit(X)
    VAE(latent_dim=2, epochs=2, **FAST).fit(X, callbacks=[EpochOnly()])


def test_fit_end_reports_errors_and_interrupts(X):
    class Fails(Recorder):
        def on_epoch_end(self, record):
            raise RuntimeError("my callback broke")

    class Interrupts(Recorder):
        def on_step_end(self, step, loss):
            raise KeyboardInterrupt

    f = Fails()
    with pytest.raises(RuntimeError, match="my callback broke"):
        VAE(latent_dim=2, epochs=2, **FAST).fit(X, callbacks=[f])
    assert f.events[-1] == ("end", "failed", "RuntimeError")
    i = Interrupts()
    with pytest.raises(KeyboardInterrupt):
        VAE(latent_dim=2, epochs=2, **FAST).fit(X, callbacks=[i])
    assert i.events[-1] == ("end", "interrupted", "KeyboardInterrupt")
    with pytest.raises(ConfigError, match="callbacks must be latentlab.training.Callback objects"):
        VAE(latent_dim=2, epochs=1, **FAST).fit(X, callbacks=[print])


# ---------------------------------------------------------------------------------------- history.jsonl
def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_history_jsonl_has_every_epoch_with_the_kl_weight_of_its_warm_up(X, tmp_path):
    class SeesTheFile(Callback):  # after HistoryFile: the epoch's line is already flushed (tail -f)
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, record):
            self.seen.append(len((tmp_path / "history.jsonl").read_text().splitlines()))

    see = SeesTheFile()
    m = VAE(latent_dim=2, epochs=4, warmup_epochs=2.5, c=0.5, patience=None, checkpoint_dir=tmp_path, **FAST)
    m.fit(X, callbacks=[see])
    assert see.seen == [1, 2, 3, 4]
    lines = _lines(tmp_path / "history.jsonl")
    assert lines == json.loads(json.dumps(m.history_))
    S = 5  # steps an epoch; the weight at step s of epoch e is c * min(1, (e + s / S) / warm-up)
    want = [0.5 * np.mean([min(1.0, (e + s / S) / 2.5) for s in range(S)]) for e in range(4)]
    np.testing.assert_allclose([r["kl_weight"] for r in lines], want, rtol=1e-12)
    assert want[0] < want[1] < want[2] < want[3] == 0.5
    iw = IWAE(latent_dim=2, k=2, epochs=1, warmup_epochs=1, **FAST).fit(X)
    assert iw.history_[0]["kl_weight"] == pytest.approx(np.mean([s / S for s in range(S)]))
    ae = Autoencoder(latent_dim=2, epochs=1, checkpoint_dir=tmp_path / "ae", **FAST).fit(X)
    assert "kl_weight" not in ae.history_[0] and _lines(tmp_path / "ae" / "history.jsonl") == ae.history_


def test_history_jsonl_is_rewritten_from_the_checkpoint_on_resume(X, tmp_path):
    m = VAE(latent_dim=2, epochs=5, patience=None, checkpoint_dir=tmp_path, **FAST)
    m.fit(X, callbacks=[Recorder(stop_epoch=2)])
    with open(tmp_path / "history.jsonl", "a") as f:  # an epoch the checkpoint never saw (killed in between)
        f.write(json.dumps({"epoch": 3, "train_loss": 0.0}) + "\n")
    m.fit(X, resume=True)
    lines = _lines(tmp_path / "history.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5] and lines == json.loads(json.dumps(m.history_))


def test_every_run_directory_gets_history_jsonl(tmp_path, digits):
    from latentlab import api

    run = api.fit(api.RunConfig("ae", "digits", {"hidden": (8,), "epochs": 2, "latent_dim": 2}, eval_k=4), tmp_path / "r")
    assert _lines(tmp_path / "r" / "history.jsonl") == json.loads(json.dumps(run.model.history_))


# ---------------------------------------------------------------------------------------- TensorBoard
def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_event_files_hold_every_record(X, tmp_path):
    _need("tensorboard", "tensorboard")
    from latentlab import TensorBoardLogger

    m = VAE(latent_dim=2, epochs=3, warmup_epochs=2, patience=None, **FAST)
    m.fit(X, callbacks=[TensorBoardLogger(tmp_path / "tb", log_every_n_steps=2)])
    got = _scalars(tmp_path / "tb")
    for key, tag in (("train_loss", "train/loss"), ("val_elbo", "val/elbo"), ("train_kl", "train/kl"),
                     ("kl_weight", "kl_weight"), ("lr", "lr"), ("samples_per_s", "samples_per_s")):
        assert [s for s, _ in got[tag]] == [1, 2, 3], tag
        np.testing.assert_allclose([v for _, v in got[tag]], [h[key] for h in m.history_], rtol=1e-5)
    assert [s for s, _ in got["step/loss"]] == [2, 4, 6, 8, 10, 12, 14]


def test_tensorboard_continues_a_resumed_run(X, tmp_path):
    _need("tensorboard", "tensorboard")
    from latentlab import TensorBoardLogger

    m = VAE(latent_dim=2, epochs=4, patience=None, checkpoint_dir=tmp_path, **FAST)
    m.fit(X, callbacks=[TensorBoardLogger(), Recorder(stop_epoch=2)])  # default: RUN_DIR/tensorboard
    m.fit(X, resume=True, callbacks=[TensorBoardLogger()])
    got = _scalars(tmp_path / "tensorboard")
    assert [s for s, _ in got["train/loss"]] == [1, 2, 3, 4]
    np.testing.assert_allclose([v for _, v in got["train/loss"]], [h["train_loss"] for h in m.history_], rtol=1e-5)


# ---------------------------------------------------------------------------------------- MLflow
def _mlflow_runs(store, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's opt-in to reading a file store
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    exp = client.get_experiment_by_name("latentlab")
    return client, client.search_runs([exp.experiment_id])


def test_an_mlflow_file_store_holds_the_settings_and_every_record(X, tmp_path, monkeypatch):
    _need("mlflow", "mlflow")
    from latentlab import MLflowLogger

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    m = VAE(latent_dim=2, epochs=3, warmup_epochs=1, patience=None, **FAST)
    m.fit(X, callbacks=[MLflowLogger(tmp_path / "mlruns", run_name="tiny", log_every_n_steps=5)])
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # set only while the logger wrote
    client, runs = _mlflow_runs(tmp_path / "mlruns", monkeypatch)
    (run,) = runs
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    assert run.data.params["latent_dim"] == "2" and run.data.params["train.lr"] == str(m.lr)
    assert run.data.params["hidden"] == "[16]" and run.data.tags["latentlab.model"] == "VAE"
    for key in ("train_loss", "val_elbo", "kl_weight", "lr", "samples_per_s"):
        hist = sorted((h.step, h.value) for h in client.get_metric_history(run.info.run_id, key))
        assert [s for s, _ in hist] == [1, 2, 3], key
        np.testing.assert_allclose([v for _, v in hist], [h[key] for h in m.history_], rtol=1e-6)
    assert [h.step for h in client.get_metric_history(run.info.run_id, "step_loss")] == [5, 10, 15]


def test_mlflow_marks_a_failed_fit(X, tmp_path, monkeypatch):
    _need("mlflow", "mlflow")
    from latentlab import MLflowLogger

    class Fails(Callback):
        def on_epoch_end(self, record):
            raise RuntimeError("broken")

    with pytest.raises(RuntimeError):
        VAE(latent_dim=2, epochs=2, **FAST).fit(X, callbacks=[MLflowLogger(tmp_path / "mlruns"), Fails()])
    _, (run,) = _mlflow_runs(tmp_path / "mlruns", monkeypatch)
    assert run.info.status == "FAILED"


# ---------------------------------------------------------------------------------------- command line
def test_log_tensorboard_and_mlflow_on_the_command_line(X, tmp_path, monkeypatch, capsys):
    _need("tensorboard", "tensorboard")
    _need("mlflow", "mlflow")
    from latentlab.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    np.save(tmp_path / "x.npy", X)
    run = tmp_path / "run"
    rc = main(["fit", "vae", "--data", str(tmp_path / "x.npy"), "--hidden", "16", "--epochs", "2", "--eval-k", "4",
               "--out", str(run), "--log", "tensorboard", "--log", "mlflow"])
    err = capsys.readouterr().err
    assert rc == 0, err
    history = json.loads((run / "config.json").read_text())["state"]["history"]
    assert _lines(run / "history.jsonl") == history
    tb = _scalars(run / "tensorboard")
    np.testing.assert_allclose([v for _, v in tb["train/loss"]], [h["train_loss"] for h in history], rtol=1e-5)
    client, (mrun,) = _mlflow_runs(run / "mlruns", monkeypatch)
    assert mrun.info.run_name == "run" and mrun.info.status == "FINISHED"
    vals = sorted((h.step, h.value) for h in client.get_metric_history(mrun.info.run_id, "val_loss"))
    np.testing.assert_allclose([v for _, v in vals], [h["val_loss"] for h in history], rtol=1e-6)
    # resumed with more epochs: the same TensorBoard curves go on; MLflow gets a second run
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    assert main(["fit", "--resume", str(run), "--epochs", "3", "--log", "tensorboard", "--log", "mlflow"]) == 0
    assert [s for s, _ in _scalars(run / "tensorboard")["train/loss"]] == [1, 2, 3]
    _, runs = _mlflow_runs(run / "mlruns", monkeypatch)
    assert sorted(r.data.tags.get("latentlab.resumed_from_epoch", "-") for r in runs) == ["-", "2"]
    capsys.readouterr()
    assert main(["fit", "vae", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r2"), "--log-dir", "x"]) == 2
    assert "--log-dir says where --log writes" in capsys.readouterr().err
    assert main(["fit", "pca", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r3"), "--log", "mlflow"]) == 2
    assert "--log" in capsys.readouterr().err


def test_a_missing_tracker_names_its_extra(monkeypatch, capsys, tmp_path, X):
    from latentlab import MLflowLogger, TensorBoardLogger
    from latentlab.cli import main
    from latentlab.training import loggers

    real = importlib.util.find_spec
    monkeypatch.setattr(loggers.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "mlflow") else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the tensorboard package, which is not installed: pip install "
                       r"'latentlab\[tensorboard\]'"):
        TensorBoardLogger()
    with pytest.raises(ConfigError, match=r"pip install 'latentlab\[mlflow\]'"):
        MLflowLogger()
    np.save(tmp_path / "x.npy", X)
    assert main(["fit", "vae", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r"), "--log", "mlflow"]) == 2
    assert "pip install 'latentlab[mlflow]'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any training


def test_the_readme_callbacks_example_runs(X, tmp_path, monkeypatch, capsys):
    _need("tensorboard", "tensorboard")
    _need("mlflow", "mlflow")
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text[text.index("<!-- tests/test_callbacks.py runs this block"):]
    code = re.search(r"```python\n(.*?)```", block, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "readme_callbacks", "X": X}
    exec(compile(code, "README.md", "exec"), ns)
    vae = ns["vae"]
    printed = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [int(p[0]) for p in printed] == list(range(1, vae.n_epochs_ + 1))
    np.testing.assert_allclose([float(p[1]) for p in printed], [h["kl_weight"] for h in vae.history_])
    assert float(printed[0][1]) < float(printed[-1][1]) == 1.0  # the warm-up ramp
    tb = _scalars(tmp_path / "runs" / "tb" / "vae")
    assert [s for s, _ in tb["val/elbo"]] == list(range(1, vae.n_epochs_ + 1))
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tmp_path / "runs" / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    assert len(client.get_metric_history(run.info.run_id, "val_elbo")) == vae.n_epochs_


CALLBACK_MODULE = '''
from pathlib import Path
from latentlab import Callback

class Mark(Callback):
    def __init__(self, path, stop_at=None):
        self.path, self.stop_at = Path(path), stop_at

    def on_epoch_end(self, record):
        with open(self.path, "a") as f:
            f.write(f"{record['epoch']} {record['kl_weight']}\\n")
        return self.stop_at is not None and record["epoch"] >= self.stop_at
'''


def test_a_callback_of_ones_own_on_the_command_line(X, tmp_path, monkeypatch, capsys):
    from latentlab.cli import main

    (tmp_path / "mycbs.py").write_text(CALLBACK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "mycbs", raising=False)
    np.save(tmp_path / "x.npy", X)
    marks = tmp_path / "marks.txt"
    rc = main(["fit", "vae", "--data", str(tmp_path / "x.npy"), "--hidden", "16", "--epochs", "5", "--warmup-epochs", "2",
               "--eval-k", "4", "--out", str(tmp_path / "run"), "--callback", f"mycbs:Mark(path={str(marks)!r}, stop_at=3)",
               "--json"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["metrics"]["epochs"] == 3
    assert [line.split()[0] for line in marks.read_text().splitlines()] == ["1", "2", "3"]
    rc = main(["fit", "vae", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r2"), "--callback", "json:dumps"])
    err = capsys.readouterr().err  # a function that needs arguments: one clear line
    assert rc == 2 and "json:dumps failed" in err and len(err.strip().splitlines()) == 1
    rc = main(["fit", "vae", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r3"),
               "--callback", "collections:OrderedDict"])
    assert rc == 2 and "not a latentlab.Callback" in capsys.readouterr().err


def test_run_folder_logs_follow_the_run_it_holds(tmp_path):
    """A fit that replaces a run replaces its logs; a resume of a finished run continues them
    (both are written in the staging folder that becomes the run)."""
    _need("tensorboard", "tensorboard")
    from latentlab import TensorBoardLogger, api

    def cfg(epochs):
        return api.RunConfig("vae", "digits", {"hidden": (8,), "epochs": epochs, "patience": None, "latent_dim": 2},
                             eval_k=4)

    out = tmp_path / "run"
    api.fit(cfg(3), out, callbacks=[TensorBoardLogger()])
    run = api.fit(cfg(2), out, callbacks=[TensorBoardLogger()])
    tb = _scalars(out / "tensorboard")["train/loss"]
    assert [s for s, _ in tb] == [1, 2]
    np.testing.assert_allclose([v for _, v in tb], [h["train_loss"] for h in run.model.history_], rtol=1e-5)
    more = api.resume(out, epochs=4, callbacks=[TensorBoardLogger()])
    tb = _scalars(out / "tensorboard")["train/loss"]
    assert [s for s, _ in tb] == [1, 2, 3, 4]
    np.testing.assert_allclose([v for _, v in tb], [h["train_loss"] for h in more.model.history_], rtol=1e-5)
    assert _lines(out / "history.jsonl") == json.loads(json.dumps(more.model.history_))
    assert not any(p.name.endswith(".staging") for p in tmp_path.iterdir())
