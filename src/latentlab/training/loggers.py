"""Loggers for TensorBoard and MLflow: callbacks that send every epoch's record to a tracker.

Both are optional extras, imported only when training starts:

- ``pip install 'latentlab[tensorboard]'``: :class:`TensorBoardLogger` writes event files with
  ``torch.utils.tensorboard.SummaryWriter`` (view with ``tensorboard --logdir RUN_DIR/tensorboard``);
- ``pip install 'latentlab[mlflow]'`` (``mlflow-skinny``): :class:`MLflowLogger` logs the settings
  as parameters and the records as metrics to an MLflow tracking store (a server, or a folder).

Each epoch's record is logged whole: every loss term (``train_loss``, ``val_elbo``, ...), the
KL weight of the epoch (``kl_weight``), the learning rate (``lr``), the throughput
(``samples_per_s``) and the epoch's time (``time_s``), at step = the epoch (1, 2, ...). With
``log_every_n_steps`` the training loss of every n-th step goes in too (``step_loss``, at the
global step), which costs reading the loss back each such step.

On the command line: ``latentlab fit vae ... --out RUN_DIR --log tensorboard`` (or ``--log mlflow``;
both may be given), with ``--log-dir`` for another place than the run directory.

Example
-------
>>> from latentlab import VAE, TensorBoardLogger   # doctest: +SKIP
>>> VAE(epochs=5).fit(X, callbacks=[TensorBoardLogger("runs/tb/vae")])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import ConfigError
from .callbacks import Callback, FitInfo

__all__ = ["TensorBoardLogger", "MLflowLogger", "LOGGERS", "make_logger", "metrics_of"]

#: ``--log`` choices: name -> (the module that must be importable, the pip extra that installs it).
LOGGERS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}


def _require(kind: str) -> None:
    module, extra = LOGGERS[kind]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"logging to {kind} needs the {module} package, which is not installed: "
                          f"pip install 'latentlab[{extra}]'.")


def metrics_of(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of an epoch's record to log (everything but ``epoch``; finite or not)."""
    return {k: float(v) for k, v in record.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _tag(key: str) -> str:
    """TensorBoard tags: ``train_loss`` -> ``train/loss`` (train and val side by side), others as they are."""
    for split in ("train", "val"):
        if key.startswith(split + "_"):
            return f"{split}/{key[len(split) + 1:]}"
    return key


class TensorBoardLogger(Callback):
    """Writes each epoch's record as TensorBoard scalars (``train/loss``, ``val/loss``, ``kl_weight``,
    ``lr``, ``samples_per_s``, ...; step = epoch) and the settings as text.

    Parameters
    ----------
    log_dir : str or Path, optional
        Where the event files go. Default: ``RUN_DIR/tensorboard`` when training has a run
        directory (a ``checkpoint_dir``), else TensorBoard's own default (``./runs/...``).
    log_every_n_steps : int, optional
        Also write the training loss of every n-th step (``step/loss``, at the global step).

    A resumed run continues the same curves: events after the resumed epoch are purged.
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, *, log_every_n_steps: int | None = None):
        _require("tensorboard")
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.every = log_every_n_steps
        if not log_every_n_steps:
            self.on_step_end = None  # no per-step hook at all (see CallbackList)
        self.writer = None

    def on_fit_start(self, info: FitInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        log_dir = self.log_dir or (info.run_dir / "tensorboard" if info.run_dir is not None else None)
        self.writer = SummaryWriter(log_dir=None if log_dir is None else str(log_dir),
                                    purge_step=info.start_epoch + 1 if info.start_epoch else None)
        self.log_dir = Path(self.writer.log_dir)
        text = json.dumps({"model": info.model, "params": info.params, "train": info.config.to_dict()}, indent=2)
        self.writer.add_text("settings", f"```\n{text}\n```", global_step=info.start_epoch)

    def on_step_end(self, step: int, loss: float) -> None:
        if self.writer is not None and step % self.every == 0:
            self.writer.add_scalar("step/loss", loss, step)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for k, v in metrics_of(record).items():
            self.writer.add_scalar(_tag(k), v, record["epoch"])
        self.writer.flush()

    def on_fit_end(self, info: FitInfo) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _as_uri(target: str | os.PathLike) -> str:
    """A tracking URI: URIs as given, a folder as its ``file:`` URI."""
    text = str(target)
    if "://" in text or text.startswith(("file:", "databricks")):
        return text
    return Path(text).resolve().as_uri()


@contextlib.contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set: for a ``file:``
    store the logger asked for, it is set for the duration of each call (and restored)."""
    if not uri.startswith("file:") or os.environ.get("MLFLOW_ALLOW_FILE_STORE") is not None:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def _flat_params(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping) and not value.get("network"):
        for k, v in value.items():
            _flat_params(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = (value if isinstance(value, str) else json.dumps(value))[:6000]


def _final_dir(folder: Path | None) -> Path | None:
    """The run folder a fit writes: ``RUN_DIR`` for its staging folder ``.RUN_DIR.staging``."""
    if folder is not None and folder.name.startswith(".") and folder.name.endswith(".staging"):
        return folder.with_name(folder.name[1:-len(".staging")])
    return folder


class MLflowLogger(Callback):
    """Logs the settings as MLflow parameters and each epoch's record as metrics (step = epoch), in
    one MLflow run per fit, ended FINISHED, KILLED (Ctrl-C) or FAILED.

    Parameters
    ----------
    tracking_uri : str or Path, optional
        An MLflow tracking URI (``http://...``, ``file:...``) or a folder for a file store. Default:
        ``$MLFLOW_TRACKING_URI``, else ``RUN_DIR/mlruns`` (the run directory), else ``./mlruns``.
        MLflow 3 refuses file stores unless ``MLFLOW_ALLOW_FILE_STORE=true``: the logger sets it
        while it writes; set it yourself to read the store (``mlflow ui``, ``MlflowClient``).
    experiment : str
        The MLflow experiment (created when missing).
    run_name : str, optional
        Default: the run directory's name, else the model's class name.
    tags : dict, optional
        Extra tags of the MLflow run.
    log_every_n_steps : int, optional
        Also log the training loss of every n-th step (``step_loss``, at the global step).

    Attributes
    ----------
    run_id : the MLflow run's id once training started.
    """

    def __init__(self, tracking_uri: str | os.PathLike | None = None, *, experiment: str = "latentlab",
                 run_name: str | None = None, tags: Mapping[str, str] | None = None,
                 log_every_n_steps: int | None = None):
        _require("mlflow")
        self.tracking_uri = None if tracking_uri is None else _as_uri(tracking_uri)
        self.experiment, self.run_name, self.tags = experiment, run_name, dict(tags or {})
        self.every = log_every_n_steps
        if not log_every_n_steps:
            self.on_step_end = None
        self.client = self.run_id = None

    def _do(self, name: str, *args, **kwargs):
        with _file_store_allowed(self.tracking_uri):
            return getattr(self.client, name)(*args, **kwargs)

    def on_fit_start(self, info: FitInfo) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        if self.tracking_uri is None:
            env = os.environ.get("MLFLOW_TRACKING_URI")
            self.tracking_uri = env or _as_uri(info.run_dir / "mlruns" if info.run_dir is not None else "mlruns")
        with _file_store_allowed(self.tracking_uri):
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
        exp = self._do("get_experiment_by_name", self.experiment)
        exp_id = exp.experiment_id if exp is not None else self._do("create_experiment", self.experiment)
        run_dir = _final_dir(info.run_dir)
        name = self.run_name or (run_dir.name if run_dir is not None else info.model or "latentlab")
        tags = {"latentlab.model": info.model, **self.tags}
        if info.start_epoch:
            tags["latentlab.resumed_from_epoch"] = str(info.start_epoch)
        if run_dir is not None:
            tags["latentlab.run_dir"] = str(run_dir)
        self.run_id = self._do("create_run", exp_id, run_name=name, tags=tags).info.run_id
        flat: dict[str, str] = {}
        _flat_params("", {**info.params, **{f"train.{k}": v for k, v in info.config.to_dict().items()}}, flat)
        params = [Param(k, v) for k, v in flat.items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a batch
            self._do("log_batch", self.run_id, params=params[i:i + 100])

    def on_step_end(self, step: int, loss: float) -> None:
        if self.run_id is not None and step % self.every == 0 and math.isfinite(loss):
            self._do("log_metric", self.run_id, "step_loss", loss, step=step)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, int(record["epoch"])) for k, v in metrics_of(record).items()]
        self._do("log_batch", self.run_id, metrics=metrics)

    def on_fit_end(self, info: FitInfo) -> None:
        if self.run_id is None:
            return
        status = {"finished": "FINISHED", "stopped": "FINISHED", "interrupted": "KILLED"}.get(info.status, "FAILED")
        self._do("set_terminated", self.run_id, status)


def make_logger(kind: str, run_dir: str | os.PathLike | None, log_dir: str | None = None) -> Callback:
    """The logger ``--log KIND`` asks for: TensorBoard event files in ``log_dir``, or an MLflow run
    in the tracking store ``log_dir`` (a URI or a folder) named after the run directory. Without
    ``log_dir``: the folder the run is written in (``RUN_DIR/tensorboard``, ``RUN_DIR/mlruns``; for
    a fit that replaces a run, its staging folder, which then becomes RUN_DIR), or for MLflow
    ``$MLFLOW_TRACKING_URI`` when set."""
    if kind not in LOGGERS:
        raise ConfigError(f"--log {kind!r}: choose one of {', '.join(LOGGERS)}.")
    name = Path(run_dir).name if run_dir is not None else None
    if kind == "tensorboard":
        return TensorBoardLogger(log_dir)
    return MLflowLogger(log_dir, run_name=name)
