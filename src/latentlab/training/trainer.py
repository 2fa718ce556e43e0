"""The training loop: batches, optimiser, early stopping, progress, checkpoints, resume, torchrun.

The loop knows nothing about autoencoders: it minimises ``objective(module, batch, progress)``
through the one training step the objective hands it (:mod:`latentlab.objectives.base`).
It is written as small named steps (nanoGPT's habit): :meth:`_Loop.resume`, :meth:`_Loop.run_epoch`,
:meth:`_Loop.end_epoch`, :meth:`_Loop.save`.
Callbacks (:mod:`latentlab.training.callbacks`) are called from :meth:`_Loop.run` (start, end, a
stop request after an epoch), :meth:`_Loop.run_epoch` (after a step, only when one wants steps) and
the epoch's record hook :meth:`_Loop._epoch_record`, which also adds the objective's scheduled
weights (``kl_weight``).

Guarantees (tested in tests/test_trainer.py and tests/test_robustness.py):

- Checkpoints are one safetensors file written atomically; a run killed at any moment leaves
  the previous checkpoint loadable.
- Ctrl-C (SIGINT) writes a checkpoint at the next step boundary, then raises KeyboardInterrupt;
  SIGTERM does the same and raises :class:`~latentlab.errors.Terminated` (a KeyboardInterrupt).
- On resume, a changed ``lr`` replaces the checkpoint's, a changed ``patience`` decides again
  whether the run has stopped, and ``epochs`` may grow.
- Resuming on the CPU ends with exactly the parameters of an uninterrupted run with the same seed:
  the batch order and the noise of each epoch are functions of (seed, epoch), and a checkpoint
  taken mid-epoch stores the random state.
- A NaN or infinite loss stops training with :class:`DivergenceError` before the bad step is
  applied, naming the epoch and step; the last good checkpoint is kept.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .._version import __version__
from ..config import TrainConfig
from ..threads import for_training as thread_count
from ..errors import CheckpointError, ConfigError, DivergenceError, Terminated
from ..io import save_tensors
from ..objectives.base import epoch_weights, make_step
from . import distributed
from .callbacks import CallbackList, FitInfo
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    check_checkpoint,
    damaged,
    load_module_state,
    optimizer_from_files,
    optimizer_to_files,
    read_checkpoint,
    state_dict_from,
)
from .data import ArrayData, epoch_permutation
from .device import resolve_device
from .flat import FlatParameters
from .passes import agree, evaluate_objective, with_count
from .optim import WeightAverage, make_optimizer, make_scheduler

__all__ = ["train", "TrainResult", "resolve_device", "make_optimizer", "evaluate_objective", "CHECKPOINT_NAME",
           "read_checkpoint"]


class _Step(nn.Module):
    """(module, objective) as one module, so DistributedDataParallel sees the objective's forward."""

    def __init__(self, module: nn.Module, objective: Callable):
        super().__init__()
        self.module = module
        self.objective = objective

    def forward(self, batch, progress):
        return self.objective(self.module, batch, progress)


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    converged: bool = False
    resumed_from: int | None = None
    stopped_by_callback: bool = False


def _noise_seed(seed: int, epoch: int, rank: int, step: int = 0) -> int:
    return (seed * 2_654_435_761 + epoch * 40_503 + rank * 97 + step * 1_000_033 + 1) % (2**63)


class _Interrupt:
    """SIGINT (Ctrl-C) and SIGTERM (what schedulers and ``timeout`` send) set a flag; the loop
    saves at the next step boundary and raises KeyboardInterrupt, or
    :class:`~latentlab.errors.Terminated` for SIGTERM. A second signal stops at once.

    SIGTERM is taken over only from the default action (or from the command line's handler): a
    program that installed its own handler keeps it.
    """

    def __init__(self):
        self.flag = False
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old[signal.SIGINT] = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
            term = signal.getsignal(signal.SIGTERM)
            if term in (signal.SIG_DFL, None) or getattr(term, "latentlab_terminate", False):
                self._old[signal.SIGTERM] = term
                signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.flag:
            raise self.exception()
        self.flag, self.signum = True, signum

    def exception(self) -> KeyboardInterrupt:
        return Terminated() if self.signum == signal.SIGTERM else KeyboardInterrupt()

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        return False


def train(
    module: nn.Module,
    objective: Callable,
    train_data: ArrayData,
    val_data: ArrayData | None = None,
    config: TrainConfig = TrainConfig(),
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    desc: str = "train",
    callbacks: Sequence[Any] | None = None,
) -> TrainResult:
    """Minimise ``objective`` over ``module``'s parameters.

    Parameters
    ----------
    module : nn.Module, already on the device of ``train_data``.
    objective : callable ``(module, batch, progress) -> (loss, terms)``; see :mod:`latentlab.objectives`.
    train_data, val_data : ArrayData
    config : TrainConfig
    checkpoint : path of the checkpoint file to write each epoch (and on Ctrl-C), or None.
    resume : continue from ``checkpoint`` if it exists.
    meta : JSON-serialisable description of the model, stored in the checkpoint so that it can be
        rebuilt (``latentlab fit --resume``).
    callback : called with each epoch's history record (which it may extend) before it is stored.
    callbacks : :class:`latentlab.training.callbacks.Callback` objects, called at the start, at each
        step and epoch, and at the end (rank 0 only); one may ask to stop. None or empty: no cost.

    Under torchrun (several processes) this is data-parallel training: the process group is
    started here (NCCL on CUDA, gloo on the CPU), every process takes its slice of each global
    batch of ``batch_size x world`` examples, DistributedDataParallel averages the gradients, and
    only rank 0 writes the checkpoint. A checkpoint resumes with any number of processes. A peer
    that dies or stalls longer than ``$LATENTLAB_DIST_TIMEOUT`` s ends training with
    :class:`~latentlab.errors.DistributedError` instead of a hang.

    Returns
    -------
    TrainResult, with one history record per epoch: ``train_<term>`` and ``val_<term>`` for each of
    the objective's terms, ``lr``, ``time_s``, ``samples_per_s``, and the objective's scheduled
    weights averaged over the epoch's steps (``kl_weight``: c times the warm-up ramp).
    """
    distributed.init_from_env(train_data.device.type)
    if checkpoint is not None:
        hint = (
            f"The last checkpoint is kept at {checkpoint}; resume from it with any number of "
            "processes (fit(..., resume=True), or latentlab fit --resume)."
        )
    else:
        hint = "Give a checkpoint directory to be able to resume after such a failure."
    with distributed.peer_errors(hint), thread_count(config.threads, train_data.device.type) as threads:
        loop = _Loop(module, objective, train_data, val_data, config,
                     checkpoint=checkpoint, meta=meta, callback=callback, callbacks=callbacks)
        loop.threads = threads  # None, or follows the free cores once per step (latentlab.threads)
        if resume:
            loop.resume()
        return loop.run(desc)


class _Loop:
    """One training run: its step, optimiser and state, and the named steps that move it on."""

    def __init__(self, module, objective, train_data, val_data, config, *, checkpoint, meta, callback, callbacks=None):
        dinfo = distributed.info()
        self.module, self.objective, self.config = module, objective, config
        self.train_data, self.val_data = train_data, val_data
        self.meta, self.user_callback = meta, callback
        self.device = train_data.device
        # Callbacks (training/callbacks.py): the epoch's record goes through _epoch_record; the step
        # hook is None unless a callback wants steps, so the loop does no per-step work for them.
        self.callbacks = CallbackList(callbacks, self.device)
        self.callback, self.on_step = self._epoch_record, self.callbacks.step_hook
        self.rank, self.world = dinfo.rank, dinfo.world
        self.path = Path(checkpoint) if checkpoint is not None else None
        forward = _Step(module, objective)
        if dinfo.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            forward = DDP(forward, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.progress_as_tensor = config.compile  # a compiled step takes progress as a tensor
        if config.compile:
            forward = torch.compile(forward)
        self.forward = forward
        # One step path: the objective's step, autograd or (one process, not compiled) a fused step
        # that writes the gradients in place into one flat buffer, with an optimiser over it.
        self.step = make_step(objective, module, forward, fast=not dinfo.active and not config.compile)
        self.flat = FlatParameters(module.parameters()) if self.step.flat else None
        self.params = [self.flat.param] if self.flat is not None else [p for p in module.parameters() if p.requires_grad]
        self.opt = make_optimizer(config, self.params, self.device)
        self.sched = make_scheduler(config, self.opt)
        self.ema = WeightAverage(module, config.ema, self.flat) if config.ema is not None else None
        self.result = TrainResult()
        self.epoch, self.step0 = 0, 0
        self.acc_saved: list[float] | None = None
        self.count_saved = 0
        self.best_loss, self.bad_epochs = math.inf, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.rng_state = None
        self.finished = False
        self.term_names: list[str] | None = None
        n, bs = len(train_data), config.batch_size
        self.gbs = bs * self.world  # examples per optimiser step across processes
        # The last partial global batch is dropped under torchrun.
        self.steps_per_epoch = max(1, n // self.gbs) if self.world > 1 else math.ceil(n / bs)
        self.check_every = 1 if self.device.type == "cpu" else 25
        self.threads = None

    # ------------------------------------------------------------------ resume
    def resume(self) -> None:
        """Load the checkpoint (when there is one) into the module, optimiser and loop state."""
        path, cfg = self.path, self.config
        if path is None or not path.exists():
            return
        try:
            tensors, ck = read_checkpoint(path)
            check_checkpoint(path, ck, tensors, self.module, self.opt, self.sched, self.flat)
            load_module_state(self.module, state_dict_from(tensors, "model."), path)
            optimizer_from_files(self.opt, tensors, ck["optimizer"], self.flat)
            if self.sched is not None and ck.get("scheduler"):
                self.sched.load_state_dict(ck["scheduler"])
            self.best_state = state_dict_from(tensors, "best.") or None
            if self.ema is not None and ck.get("ema_updates") is not None:
                self.ema.load(tensors, ck["ema_updates"])
            self.epoch, step0 = ck["epoch"], ck["step"]
            self.acc_saved, self.count_saved = ck.get("acc"), ck.get("count", 0)
            self.best_loss = ck["best_loss"] if ck["best_loss"] is not None else math.inf
            self.bad_epochs = ck["bad_epochs"]
            self.result.history = ck["history"]
            self.result.best_epoch = ck["best_epoch"]
            self.result.stopped_early = self.finished = ck.get("stopped_early", False)
            self.result.converged = ck.get("converged", self.result.stopped_early)
            self.result.resumed_from = self.epoch
            self._apply_changes(ck.get("config") or {})
            if step0:
                # Examples of this epoch already trained on (checkpoints record it; older ones wrote
                # steps of one process). The epoch's order depends on (seed, epoch) alone, so any
                # process count continues at the first global batch not yet fully seen.
                done = ck.get("examples", step0 * cfg.batch_size)
                exact = ck.get("world", 1) == self.world == 1 and done % cfg.batch_size == 0
                step0 = done // self.gbs
                if exact and "rng.cpu" in tensors:
                    self.rng_state = tensors["rng.cpu"], tensors.get("rng.cuda")
            self.step0 = step0
        except (CheckpointError, ConfigError):
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            raise damaged(path, f"{type(exc).__name__}: {exc}") from None

    def _apply_changes(self, saved: dict) -> None:
        """The settings that may change on resume take effect: a new ``lr`` replaces the
        checkpoint's (and the schedule's base), a new ``patience`` decides again whether the run has
        stopped, ``epochs`` may grow (not shrink below the epochs already trained)."""
        cfg = self.config
        if self.epoch > cfg.epochs:
            raise ConfigError(
                f"epochs={cfg.epochs} is fewer than the {self.epoch} epochs the checkpoint {self.path} has trained; "
                f"pass epochs >= {self.epoch} (--epochs {self.epoch} keeps the model as it is)."
            )
        if saved.get("lr") is not None and saved["lr"] != cfg.lr:
            for g in self.opt.param_groups:
                g["lr"] = cfg.lr
                if "initial_lr" in g:
                    g["initial_lr"] = cfg.lr
            if self.sched is not None and hasattr(self.sched, "base_lrs"):
                self.sched.base_lrs = [cfg.lr for _ in self.sched.base_lrs]
        if self.sched is not None and hasattr(self.sched, "T_max"):
            self.sched.T_max = cfg.epochs
        if "patience" in saved and saved["patience"] != cfg.patience:
            stop = cfg.patience is not None and self.val_data is not None and self.bad_epochs >= cfg.patience
            self.result.stopped_early = self.finished = stop
            if cfg.patience is None:
                self.best_state = None  # no early stopping: the last weights are the model

    # ------------------------------------------------------------------ save
    def save(self, epoch: int, step: int, acc, count: int, *, mid_epoch: bool) -> None:
        """Write the checkpoint (rank 0 only): where the loop is, and everything to go on from there."""
        if self.path is None or self.rank != 0:
            return
        tensors = {f"model.{k}": v for k, v in self.module.state_dict().items()}
        if self.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        ot, ometa = optimizer_to_files(self.opt, self.flat)
        tensors.update(ot)
        if self.ema is not None:
            tensors.update(self.ema.tensors())
        if mid_epoch and self.world == 1:
            tensors["rng.cpu"] = torch.get_rng_state()
            if self.device.type == "cuda":
                tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        r = self.result
        state = {
            "format": "latentlab-checkpoint", "format_version": CHECKPOINT_FORMAT, "latentlab_version": __version__,
            "epoch": epoch, "step": step, "examples": min(step * self.gbs, len(self.train_data)), "world": self.world,
            "acc": acc, "count": count, "history": r.history,
            "best_loss": self.best_loss if math.isfinite(self.best_loss) else None,
            "best_epoch": r.best_epoch, "bad_epochs": self.bad_epochs, "stopped_early": r.stopped_early,
            "converged": r.converged, "optimizer": ometa, "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "ema_updates": self.ema.updates if self.ema is not None else None,
            "config": self.config.to_dict(), "meta": self.meta,
        }
        save_tensors(self.path, tensors, state)

    # ------------------------------------------------------------------ run
    def run(self, desc: str) -> TrainResult:
        cfg = self.config
        bar = _progress_bar(cfg, desc, total=cfg.epochs * self.steps_per_epoch,
                            initial=self.epoch * self.steps_per_epoch + self.step0, rank=self.rank)
        self.callbacks.fit_start(self._fit_info())
        status, error = "failed", None
        try:
            with _Interrupt() as interrupt:
                while self.epoch < cfg.epochs and not self.finished:
                    t0 = time.perf_counter()
                    acc, count = self.run_epoch(interrupt, bar)
                    self.end_epoch(acc, count, time.perf_counter() - t0)
                    self._stop_if_asked()
                if interrupt.flag:  # a signal during the last epoch's end: its checkpoint is written
                    raise interrupt.exception()
            status = "stopped" if self.result.stopped_by_callback else "finished"
        except KeyboardInterrupt as exc:  # Ctrl-C, and SIGTERM (Terminated)
            status, error = "interrupted", exc
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            bar.close()
            self.callbacks.fit_end(status, error)
        self.finish()
        return self.result

    # ------------------------------------------------------------------ callbacks
    def _fit_info(self) -> FitInfo:
        meta = self.meta or {}
        return FitInfo(model=meta.get("class", ""), params=meta.get("params", {}), config=self.config,
                       epochs=self.config.epochs, steps_per_epoch=self.steps_per_epoch, start_epoch=self.epoch,
                       history=self.result.history, checkpoint=self.path)

    def _epoch_record(self, record: dict[str, Any]) -> None:
        """An epoch's record, before it is stored: the objective's scheduled weights (mean over the
        epoch's steps), then the ``callback`` of :func:`train`, then the callbacks."""
        record.update(epoch_weights(self.objective, self.epoch, self.steps_per_epoch))
        if self.user_callback is not None:
            self.user_callback(record)
        self.callbacks.epoch_end(record)

    def _stop_if_asked(self) -> None:
        """After an epoch: a callback's stop request ends training (with a checkpoint to resume from)."""
        if self.finished or not self.callbacks.should_stop():
            return
        self.finished = self.result.stopped_by_callback = True
        if self.epoch % self.config.checkpoint_every != 0 and self.epoch != self.config.epochs:
            self.save(self.epoch, 0, None, 0, mid_epoch=False)  # end_epoch saved only on its schedule

    def _seed_epoch(self) -> None:
        """The epoch's noise: a function of (seed, epoch, rank, step), or the saved mid-epoch state."""
        if self.step0 == 0 or self.rng_state is None:
            torch.manual_seed(_noise_seed(self.config.seed, self.epoch, self.rank, self.step0))
        else:
            torch.set_rng_state(self.rng_state[0])
            if self.rng_state[1] is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(self.rng_state[1], self.device)
        self.rng_state = None

    def run_epoch(self, interrupt: _Interrupt, bar):
        """The steps of one epoch (from ``step0`` when resumed mid-epoch); returns the running sums
        of the objective's terms (weighted by batch size) and the examples seen."""
        cfg, rank = self.config, self.rank
        bs, n = cfg.batch_size, len(self.train_data)
        self._seed_epoch()
        perm = epoch_permutation(n, cfg.seed, self.epoch)
        self.forward.train()
        acc, count = None, 0
        if self.step0 and self.acc_saved is not None:
            # the saved sums are over every process: rank 0 carries them, the others start at 0
            acc = torch.tensor(self.acc_saved, dtype=torch.float64, device=self.device) * (rank == 0)
            count = self.count_saved if rank == 0 else 0
        for step in range(self.step0, self.steps_per_epoch):
            lo = step * self.gbs + rank * bs
            hi = min(lo + bs, n)
            if self.threads is not None:
                self.threads.tick()
            batch = self.train_data.gather(perm[lo:hi])
            progress = self.epoch + step / self.steps_per_epoch
            loss, terms = self.step(batch, torch.tensor(progress) if self.progress_as_tensor else progress)
            self._check_step(loss, step, interrupt, acc, count)
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            self.opt.step()
            if self.ema is not None:
                self.ema.update()
            if self.term_names is None:
                self.term_names = list(terms)
            vals = torch.stack([terms[k].detach() for k in self.term_names]).to(torch.float64)
            if acc is not None and acc.shape != vals.shape:  # only sums read from a checkpoint can differ
                raise damaged(self.path, f"its running sums have {acc.numel()} terms, the objective {vals.numel()}")
            acc = vals * (hi - lo) if acc is None else acc.add_(vals, alpha=hi - lo)
            count += hi - lo
            bar.update(1)
            if bar.n % 50 == 0 and not bar.disable:
                bar.set_postfix({k: f"{float(v) / count:.3g}" for k, v in zip(self.term_names, acc)}, refresh=False)
            if interrupt.flag:
                if self.world == 1:
                    self.save(self.epoch, step + 1, acc.tolist(), count, mid_epoch=True)
                raise interrupt.exception()
            if self.on_step is not None and self.on_step(self.epoch * self.steps_per_epoch + step + 1, loss):
                break  # a callback asked to stop: this epoch ends here
        self.step0 = 0
        return acc, count

    def _check_step(self, loss, step: int, interrupt: _Interrupt, acc, count: int) -> None:
        """Before the step is applied: a non-finite loss is a DivergenceError; under torchrun every
        process takes the same decision (and the same Ctrl-C) at the same step."""
        if step % self.check_every:
            return
        if self.world > 1:
            bad, stop = agree(loss, interrupt.flag, self.device)
            if bad:
                raise self.diverged(step, float(loss.detach()))
            if stop:
                sums = None if acc is None else distributed.all_reduce_sum(with_count(acc, count))
                if sums is None:
                    self.save(self.epoch, step, None, 0, mid_epoch=True)
                else:
                    self.save(self.epoch, step, sums[:-1].tolist(), int(sums[-1]), mid_epoch=True)
                raise interrupt.exception()
        elif not bool(torch.isfinite(loss)):
            raise self.diverged(step, float(loss.detach()))

    # ------------------------------------------------------------------ end of an epoch
    def end_epoch(self, acc, count: int, elapsed: float) -> None:
        """Metrics, validation, early stopping, the schedule and the checkpoint of the epoch just run."""
        cfg, r = self.config, self.result
        if acc is None:  # resumed exactly at the end of an epoch's steps
            acc = torch.zeros(len(self.term_names or []), dtype=torch.float64, device=self.device)
        if self.term_names is None:
            self.term_names = self._probe_term_names()
        if not bool(torch.isfinite(acc).all()):
            raise self.diverged(None, float("nan"))
        tot = distributed.all_reduce_sum(with_count(acc, count))
        record: dict[str, Any] = {"epoch": self.epoch + 1}
        for k, v in zip(self.term_names, tot[:-1]):
            record[f"train_{k}"] = float(v / tot[-1])
        validating = self.val_data is not None and len(self.val_data) > 0
        if validating:
            with self._averaged():
                for k, v in evaluate_objective(self.module, self.objective, self.val_data, cfg.batch_size * 4,
                                               self.term_names).items():
                    record[f"val_{k}"] = v
        monitor = record["val_loss"] if validating else record["train_loss"]
        if not all(math.isfinite(float(p.detach().abs().sum())) for p in self.module.parameters()):
            raise self.diverged(None, float("nan"))
        record["lr"] = self.opt.param_groups[0]["lr"]
        record["time_s"] = elapsed
        record["samples_per_s"] = float(tot[-1]) / elapsed
        if self.device.type == "cpu":
            record["threads"] = torch.get_num_threads()
        if monitor < self.best_loss:
            self.best_loss, self.bad_epochs = monitor, 0
            r.best_epoch = self.epoch + 1
            if self.val_data is not None and cfg.patience is not None:
                with self._averaged():
                    self.best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        else:
            self.bad_epochs += 1
        if self.callback is not None:
            self.callback(record)
        r.history.append(record)
        if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.sched.step(monitor)
        elif self.sched is not None:
            self.sched.step()
        self.epoch += 1
        if self.has_converged():
            r.stopped_early = r.converged = self.finished = True
        if self.finished or self.epoch % cfg.checkpoint_every == 0 or self.epoch == cfg.epochs:
            self.save(self.epoch, 0, None, 0, mid_epoch=False)

    def has_converged(self) -> bool:
        """The stopping rule: the best monitored loss of the last ``patience`` epochs is not better
        than the best before them by ``tol`` (relative). A window, not a count of epochs without
        a new best: slow, steady progress (each epoch below ``tol``, their sum above it) goes on."""
        p = self.config.patience
        mons = [rec.get("val_loss", rec["train_loss"]) for rec in self.result.history]
        if p is None or len(mons) <= p:
            return False
        before, recent = min(mons[:-p]), min(mons[-p:])
        return not recent < before - self.config.tol * abs(before)

    def _averaged(self):
        """The averaged weights in the module for the duration, when averaging (else nothing)."""
        return self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext()

    def _probe_term_names(self) -> list[str]:
        with torch.no_grad():
            batch = self.train_data.gather(torch.arange(min(2, len(self.train_data))))
            _, terms = self.forward(batch, torch.tensor(1e9) if self.progress_as_tensor else 1e9)
        return list(terms)

    def finish(self) -> None:
        """The weights to return: the best epoch's (early stopping), else the average, else the last."""
        if self.best_state is not None:
            with torch.no_grad():
                for k, v in self.module.state_dict().items():
                    v.copy_(self.best_state[k])
        elif self.ema is not None:
            self.ema.copy_to_params()

    def diverged(self, step, value) -> DivergenceError:
        return _diverged(self.epoch, step, self.steps_per_epoch, value, self.config, self.path)


def _progress_bar(config: TrainConfig, desc: str, *, total: int, initial: int, rank: int):
    show = config.progress if config.progress is not None else sys.stderr.isatty()
    if "IPython" in sys.modules:  # a notebook widget where one runs; never import IPython ourselves
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, initial=min(total, initial), disable=not (show and rank == 0), file=sys.stderr,
                desc=desc, dynamic_ncols=True, leave=False, mininterval=0.25)


def _diverged(epoch, step, steps, value, config, path) -> DivergenceError:
    where = f"epoch {epoch + 1}, step {step + 1} of {steps}" if step is not None else f"epoch {epoch + 1}"
    kept = (
        f" The last good checkpoint is kept at {path}."
        if path is not None and path.exists()
        else ""
    )
    hint = f"lower the learning rate (lr={config.lr:g} now, try {config.lr / 10:g}; --lr on the command line)"
    if config.grad_clip is None:
        hint += " or clip gradients (grad_clip=1.0; --grad-clip 1)"
    exc = DivergenceError(f"training diverged: the loss became {value} at {where}.{kept} To fix it, {hint}.")
    exc.lr = config.lr
    return exc
