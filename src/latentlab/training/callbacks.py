"""Callbacks: your code at the training loop's boundaries, and the per-epoch history file.

``model.fit(X, callbacks=[...])`` (and :func:`latentlab.api.fit`) hands the callbacks to the
training loop, which calls, on the process that writes (rank 0 under torchrun):

- ``on_fit_start(info)`` once, before the first step (``info``: a :class:`FitInfo`);
- ``on_step_end(step, loss)`` after every optimiser step: the global step (1, 2, ...) and the
  step's training loss as a float (on a GPU that reads the loss back: a device sync each step);
- ``on_epoch_end(record)`` after every epoch, with the epoch's history record (``epoch``,
  ``train_<term>`` and ``val_<term>`` for every loss term, ``kl_weight`` where the objective
  weights a KL term, ``lr``, ``time_s``, ``samples_per_s``), before it is stored in
  ``history_``: a callback may add entries to it;
- ``on_fit_end(info)`` once, also after an error or Ctrl-C (``info.status`` says which).

``on_step_end`` or ``on_epoch_end`` returning True asks training to stop: from an epoch, after
that epoch; from a step, at once (the epoch's record then averages the steps it ran). The
model keeps the weights it would have after early stopping, and a checkpoint is written, so
``fit(..., resume=True)`` can go on. Under torchrun a stop asked on a step takes effect at the
end of the epoch, where every process learns of it.

No callbacks, no cost: the loop checks one ``None`` per step. A callback list whose callbacks do
not override ``on_step_end`` (or set it to None on the instance) costs nothing per step either.

Example
-------
>>> from latentlab import VAE
>>> from latentlab.training.callbacks import Callback
>>> from latentlab.datasets import load_digits
>>> class StopBelow(Callback):
...     def __init__(self, level):
...         self.level = level
...     def on_epoch_end(self, record):
...         return record["train_loss"] < self.level  # True: stop after this epoch
>>> vae = VAE(hidden=(32,), epochs=50, verbose=False).fit(load_digits().data, callbacks=[StopBelow(1e9)])
>>> vae.n_epochs_
1
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..config import TrainConfig
from ..io import atomic_write_text, jsonable
from . import distributed

__all__ = ["Callback", "FitInfo", "CallbackList", "HistoryFile", "HISTORY_FILE", "STATUSES"]

#: The file every run directory gets: one JSON line per epoch, appended (and flushed) as it ends.
HISTORY_FILE = "history.jsonl"
#: ``FitInfo.status`` at ``on_fit_end``.
STATUSES = ("finished", "stopped", "interrupted", "failed")


@dataclass
class FitInfo:
    """What a callback is told at the start and the end of training.

    Attributes
    ----------
    model : str, the estimator's class name ("VAE"), or "" for a bare ``train`` call.
    params : dict, the estimator's settings as JSON values (own networks as their records).
    config : TrainConfig
    epochs : int, the epochs training runs to (``config.epochs``).
    steps_per_epoch : int
    start_epoch : int, the epochs already done (a resumed run), 0 otherwise.
    history : list of dict, the records so far (a resumed run's earlier epochs, then each new one).
    checkpoint : Path or None, the checkpoint file (its folder is the run directory).
    status : "running", then at ``on_fit_end`` one of "finished" (all epochs, or early stopping),
        "stopped" (a callback asked), "interrupted" (Ctrl-C), "failed" (an error).
    error : the exception training ended with, or None.
    """

    model: str
    params: dict[str, Any]
    config: TrainConfig
    epochs: int
    steps_per_epoch: int
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    status: str = "running"
    error: BaseException | None = None

    @property
    def run_dir(self) -> Path | None:
        """The folder of the checkpoint (the run directory), or None."""
        return self.checkpoint.parent if self.checkpoint is not None else None


class Callback:
    """Base class: override the hooks you need (see the module docstring for when each is called).

    ``on_step_end`` and ``on_epoch_end`` may return True to ask training to stop.
    """

    def on_fit_start(self, info: FitInfo) -> None:
        """Before the first step."""

    def on_step_end(self, step: int, loss: float) -> bool | None:
        """After optimiser step ``step`` (counted from 1 over the whole run), with its training loss."""

    def on_epoch_end(self, record: dict[str, Any]) -> bool | None:
        """After each epoch, with its history record (which the callback may extend)."""

    def on_fit_end(self, info: FitInfo) -> None:
        """After the last epoch, or when training ends with an error or Ctrl-C (``info.status``)."""


def _overrides(cb: Any, name: str) -> bool:
    """Whether ``cb`` has a hook ``name`` of its own (an instance may set it to None to opt out)."""
    fn = getattr(cb, name, None)
    return fn is not None and getattr(fn, "__func__", fn) is not getattr(Callback, name)


class CallbackList:
    """The loop's side: calls the callbacks (on rank 0 only) and keeps their stop requests.

    ``step_hook`` is None unless a callback overrides ``on_step_end``: the loop then does no
    per-step work for callbacks at all.
    """

    def __init__(self, callbacks: Sequence[Callback] | None = None, device=None):
        given = list(callbacks or ())
        for cb in given:
            if not any(hasattr(cb, h) for h in ("on_fit_start", "on_step_end", "on_epoch_end", "on_fit_end")):
                from ..errors import ConfigError

                raise ConfigError(f"callbacks must be latentlab.training.Callback objects (or have its on_* methods); "
                                  f"got {type(cb).__name__}.")
        dinfo = distributed.info()
        self.world, self.device = dinfo.world, device
        self.any = bool(given)  # the same on every process: they take the same decisions
        self.callbacks = given if dinfo.rank == 0 else []
        self.stop_requested = False
        self.info: FitInfo | None = None
        stepping = [cb for cb in self.callbacks if _overrides(cb, "on_step_end")]
        self._stepping = stepping
        self.step_hook = self._step if stepping else None

    def _call(self, name: str, *args) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, name, None)
            if fn is not None and fn(*args):
                self.stop_requested = True

    def fit_start(self, info: FitInfo) -> None:
        self.info = info
        self._call("on_fit_start", info)

    def _step(self, step: int, loss) -> bool:
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        for cb in self._stepping:
            if cb.on_step_end(step, value):
                self.stop_requested = True
        return self.stop_requested and self.world == 1

    def epoch_end(self, record: dict[str, Any]) -> None:
        self._call("on_epoch_end", record)

    def should_stop(self) -> bool:
        """Whether a callback asked to stop; under torchrun every process gets rank 0's answer."""
        if not self.any:
            return False
        if self.world > 1:
            import torch

            flag = torch.tensor([float(self.stop_requested)], dtype=torch.float64, device=self.device)
            self.stop_requested = bool(distributed.all_reduce_sum(flag)[0] > 0)
        return self.stop_requested

    def fit_end(self, status: str, error: BaseException | None = None) -> None:
        if self.info is None:
            return
        self.info.status, self.info.error = status, error
        self._call("on_fit_end", self.info)


class HistoryFile(Callback):
    """Writes ``history.jsonl``: one JSON object per epoch, appended and flushed as the epoch
    ends, so that ``tail -f RUN_DIR/history.jsonl`` follows training.

    At the start of training the file is rewritten with the records already in the history (none
    for a new run; a resumed run's earlier epochs), so it never holds epochs the checkpoint lost.

    Parameters
    ----------
    path : str or Path
        The file (latentlab writes ``RUN_DIR/history.jsonl`` for every network trained with a
        ``checkpoint_dir``, which every run directory is).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None

    def on_fit_start(self, info: FitInfo) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, "".join(_line(r) for r in info.history))
        self._file = open(self.path, "a", encoding="utf-8")

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(_line(record))
        self._file.flush()

    def on_fit_end(self, info: FitInfo) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _line(record: dict[str, Any]) -> str:
    return json.dumps(jsonable(record), allow_nan=True) + "\n"
