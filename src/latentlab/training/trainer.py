"""The training loop: batches, optimiser, early stopping, progress, checkpoints, resume, torchrun.

The loop knows nothing about autoencoders: it minimises ``objective(module, batch, progress)``.

Guarantees (tested in tests/test_trainer.py and tests/test_robustness.py):

- Checkpoints are one safetensors file written atomically; a run killed at any moment leaves
  the previous checkpoint loadable.
- Ctrl-C (SIGINT) writes a checkpoint at the next step boundary, then raises KeyboardInterrupt.
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
from typing import Any, Callable

import torch
from torch import nn

from .._version import __version__
from ..config import TrainConfig
from ..errors import CheckpointError, DivergenceError
from ..io import load_tensors, save_tensors
from . import distributed
from .data import ArrayData, epoch_permutation
from .flat import FlatParameters

__all__ = ["train", "TrainResult", "resolve_device", "make_optimizer", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.safetensors"
CHECKPOINT_FORMAT = 1


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for a device setting.

    ``"auto"`` picks CUDA when present, then Apple's MPS, then the CPU (under torchrun: CUDA, else
    the CPU, as MPS has no collective backend). Under torchrun a CUDA device without an index is
    this process's GPU, ``cuda:LOCAL_RANK``.

    Example
    -------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    from ..errors import ConfigError

    local = distributed.env_local_rank()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local if local is not None else torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if local is None and mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a device name; use 'auto', 'cpu', 'cuda' or 'mps'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but this PyTorch sees no CUDA GPU; use device='auto' or 'cpu'.")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("device='mps' but this PyTorch sees no Apple GPU; use device='auto' or 'cpu'.")
        if local is not None:
            raise ConfigError("device='mps' cannot train under torchrun (no collective backend for MPS); use device='cpu'.")
    if dev.type == "cuda" and dev.index is None and local is not None:
        dev = torch.device("cuda", local)
    return dev


def make_optimizer(config: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (momentum 0.9); the fused single-kernel update where this PyTorch has it."""
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    try:
        return cls(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):  # fused not built for this device / version
        return cls(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)


def _make_scheduler(config: TrainConfig, opt):
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=0.5, patience=max(1, (config.patience or 10) // 2)
        )
    return None


class _WeightAverage:
    """An exponential moving average of the trainable parameters (Polyak averaging).

    After each optimiser step, avg <- avg + (1 - d_t) (param - avg) with d_t =
    min(decay, (1 + t) / (10 + t)) at update t: the short warm-up keeps the average from
    remembering the initial weights for ~1/(1 - decay) steps. One ``lerp`` over the flat
    parameter buffer when training flattened, one ``_foreach_lerp_`` otherwise.
    """

    def __init__(self, module: nn.Module, decay: float, flat: FlatParameters | None):
        named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        self.params = [p for _, p in named]
        self.decay = decay
        self.updates = 0
        with torch.no_grad():
            if flat is not None:
                self.sources = [flat.param]
                self.targets = [flat.param.detach().clone()]
                self.avg = [v.view(p.shape) for v, p in zip(torch.split(self.targets[0], flat.sizes), flat.params)]
            else:
                self.sources = self.params
                self.avg = self.targets = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        torch._foreach_lerp_(self.targets, [p.detach() for p in self.sources], 1.0 - d)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"ema.{k}": v for k, v in zip(self.names, self.avg)}

    @torch.no_grad()
    def load(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        for k, v in zip(self.names, self.avg):
            v.copy_(tensors[f"ema.{k}"])
        self.updates = updates

    @torch.no_grad()
    def copy_to_params(self) -> None:
        for p, a in zip(self.params, self.avg):
            p.copy_(a)

    @contextlib.contextmanager
    def swapped_in(self):
        """The averaged weights in the module for the duration (validation, best-weight copy)."""
        backup = [p.detach().clone() for p in self.params]
        self.copy_to_params()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(self.params, backup):
                    p.copy_(b)


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
    resumed_from: int | None = None


def _noise_seed(seed: int, epoch: int, rank: int, step: int = 0) -> int:
    return (seed * 2_654_435_761 + epoch * 40_503 + rank * 97 + step * 1_000_033 + 1) % (2**63)


class _Interrupt:
    """SIGINT sets a flag; the loop saves at the next step boundary. A second Ctrl-C stops at once."""

    def __init__(self):
        self.flag = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _optimizer_to_files(opt: torch.optim.Optimizer, flat=None):
    sd = opt.state_dict()
    if flat is not None:  # always stored per parameter, whichever path trained
        sd = flat.split_state(sd)
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_files(opt: torch.optim.Optimizer, tensors, meta, flat=None) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    sd = {"state": state, "param_groups": groups}
    opt.load_state_dict(flat.join_state(sd) if flat is not None else sd)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, meta = load_tensors(path)
    if not isinstance(meta, dict) or meta.get("format") != "latentlab-checkpoint":
        raise CheckpointError(f"{path} is a safetensors file but not a latentlab training checkpoint.")
    if meta.get("format_version") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} was written by latentlab {meta.get('latentlab_version')} in checkpoint format "
            f"{meta.get('format_version')}; this latentlab ({__version__}) reads format "
            f"{CHECKPOINT_FORMAT}. Use the matching latentlab version, or retrain."
        )
    return tensors, meta


def _state_dict_from(tensors, prefix):
    n = len(prefix)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load_module_state(module: nn.Module, sd: dict[str, torch.Tensor], path) -> None:
    own = module.state_dict()
    _check_module_state(own, sd, path)
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(sd[k].to(v.device, v.dtype))


def _check_module_state(own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], path) -> None:
    """CheckpointError unless ``sd`` has exactly the entries of ``own``, with the same shapes."""
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    wrong = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or extra or wrong:
        detail = []
        if missing:
            detail.append(f"missing {missing[:3]}")
        if extra:
            detail.append(f"unexpected {extra[:3]}")
        if wrong:
            k = wrong[0]
            detail.append(f"{k} has shape {tuple(sd[k].shape)}, the model needs {tuple(own[k].shape)}")
        raise CheckpointError(
            f"{path} does not match this model's configuration ({'; '.join(detail)}); it was "
            "saved from a model with other settings, or is damaged: use the settings it was saved "
            "with, or train again."
        )


def _damaged(path, what: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is a latentlab checkpoint with damaged contents ({what}); restore it from a copy, "
        "or delete it to train from the start."
    )


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_numbers_like(loaded, fresh, path, what: str) -> None:
    """Every number (or list of numbers) of ``fresh`` is a number (list) in ``loaded`` too."""
    if not isinstance(loaded, dict):
        raise _damaged(path, f"{what} is not a mapping")
    for k, v in fresh.items():
        w = loaded.get(k)
        if _is_number(v) and not _is_number(w):
            raise _damaged(path, f"{what} {k!r} is {w!r}, not a number")
        if isinstance(v, (tuple, list)) and all(map(_is_number, v)):
            if not (isinstance(w, (tuple, list)) and len(w) == len(v) and all(map(_is_number, w))):
                raise _damaged(path, f"{what} {k!r} is {w!r}, not {len(v)} numbers")


# The per-parameter optimiser state each optimiser needs to take a step.
_OPTIM_STATE = {torch.optim.SGD: ("momentum_buffer",), torch.optim.Adam: ("step", "exp_avg", "exp_avg_sq"),
                torch.optim.AdamW: ("step", "exp_avg", "exp_avg_sq")}


def _check_checkpoint(path, ck, tensors, module, opt, sched, flat) -> None:
    """Check a checkpoint's entries against this run before any is used (a damaged or foreign
    file becomes a CheckpointError here, not a crash later in training)."""
    required = {"epoch": _is_count, "step": _is_count, "bad_epochs": _is_count,
                "history": lambda v: isinstance(v, list) and all(isinstance(h, dict) for h in v),
                "best_loss": lambda v: v is None or _is_number(v),
                "best_epoch": lambda v: v is None or _is_count(v),
                "optimizer": lambda v: isinstance(v, dict) and isinstance(v.get("param_groups"), list)
                and isinstance(v.get("scalars"), dict)}
    optional = {"acc": lambda v: v is None or isinstance(v, list) and all(map(_is_number, v)),
                "count": _is_count, "examples": _is_count, "world": lambda v: _is_count(v) and v >= 1,
                "stopped_early": lambda v: isinstance(v, bool), "ema_updates": lambda v: v is None or _is_count(v),
                "scheduler": lambda v: v is None or isinstance(v, dict)}
    for key, ok in required.items():
        if key not in ck or not ok(ck[key]):
            raise _damaged(path, f"entry {key!r} is {ck.get(key, 'missing')!r}")
    for key, ok in optional.items():
        if key in ck and not ok(ck[key]):
            raise _damaged(path, f"entry {key!r} is {ck[key]!r}")
    own = module.state_dict()
    best = _state_dict_from(tensors, "best.")
    if best:
        _check_module_state(own, best, path)
    groups, fresh_groups = ck["optimizer"]["param_groups"], opt.state_dict()["param_groups"]
    if len(groups) != len(fresh_groups):
        raise _damaged(path, f"{len(groups)} optimiser parameter group(s), this run has {len(fresh_groups)}")
    for g, f in zip(groups, fresh_groups):
        _check_numbers_like(g, {k: v for k, v in f.items() if k != "params"}, path, "optimiser setting")
    if sched is not None and ck.get("scheduler"):
        _check_numbers_like(ck["scheduler"], sched.state_dict(), path, "schedule setting")
    params = flat.params if flat is not None else [p for p in module.parameters() if p.requires_grad]
    need = next((v for cls, v in _OPTIM_STATE.items() if type(opt) is cls), ())
    state: dict[str, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            parts = key.split(".", 2)
            if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(params):
                raise _damaged(path, f"optimiser entry {key!r} names no parameter of this model")
            state.setdefault(parts[1], {})[parts[2]] = v
    for key, v in ck["optimizer"]["scalars"].items():
        pid = key.split(".", 1)[0]
        if not pid.isdigit() or int(pid) >= len(params) or not _is_number(v):
            raise _damaged(path, f"optimiser entry {key!r} = {v!r}")
        state.setdefault(pid, {})[key.split(".", 1)[-1]] = v
    for pid, st in state.items():
        p = params[int(pid)]
        lacking = [k for k in need if k not in st]
        wrong = [k for k, v in st.items() if k != "step" and isinstance(v, torch.Tensor) and v.shape != p.shape]
        step = st.get("step", 0)
        if not (_is_number(step) or isinstance(step, torch.Tensor) and step.numel() == 1):
            wrong.append("step")
        if lacking or wrong:
            raise _damaged(path, f"the optimiser state of parameter {pid} lacks {lacking} or has misshapen {wrong}")
    rng = tensors.get("rng.cpu")
    if rng is not None and (rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape):
        raise _damaged(path, "its random state is not a CPU generator state")


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

    Under torchrun (several processes) this is data-parallel training: the process group is
    started here (NCCL on CUDA, gloo on the CPU), every process takes its slice of each global
    batch of ``batch_size x world`` examples, DistributedDataParallel averages the gradients, and
    only rank 0 writes the checkpoint. A checkpoint resumes with any number of processes. A peer
    that dies or stalls longer than ``$LATENTLAB_DIST_TIMEOUT`` s ends training with
    :class:`~latentlab.errors.DistributedError` instead of a hang.

    Returns
    -------
    TrainResult, with one history record per epoch: ``train_<term>`` and ``val_<term>`` for each of
    the objective's terms, ``lr``, ``time_s`` and ``samples_per_s``.
    """
    distributed.init_from_env(train_data.device.type)
    if checkpoint is not None:
        hint = (
            f"The last checkpoint is kept at {checkpoint}; resume from it with any number of "
            "processes (fit(..., resume=True), or latentlab fit --resume)."
        )
    else:
        hint = "Give a checkpoint directory to be able to resume after such a failure."
    with distributed.peer_errors(hint):
        return _train(
            module,
            objective,
            train_data,
            val_data,
            config,
            checkpoint=checkpoint,
            resume=resume,
            meta=meta,
            callback=callback,
            desc=desc,
        )


def _train(
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
) -> TrainResult:
    """The body of :func:`train`, inside the translation of lost-peer errors."""
    dinfo = distributed.info()
    device = train_data.device
    rank, world = dinfo.rank, dinfo.world
    step_module = _Step(module, objective)
    model = step_module
    if dinfo.active:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(step_module, device_ids=[device.index] if device.type == "cuda" else None)
    # The fast path: a fused step that writes gradients in place into one flat buffer, and an
    # optimiser over that one tensor. One process only (DDP needs autograd's gradient hooks).
    fast_step = None
    if not dinfo.active and not config.compile and hasattr(objective, "fused_step"):
        fast_step = objective.fused_step(module)
    flat = FlatParameters(module.parameters()) if fast_step is not None else None
    opt = make_optimizer(config, [flat.param] if flat is not None else module.parameters(), device)
    sched = _make_scheduler(config, opt)
    ema = _WeightAverage(module, config.ema, flat) if config.ema is not None else None

    result = TrainResult()
    epoch, step0 = 0, 0
    acc_saved: list[float] | None = None
    count_saved = 0
    best_loss, bad_epochs = math.inf, 0
    best_state: dict[str, torch.Tensor] | None = None
    rng_state = None
    finished = False
    path = Path(checkpoint) if checkpoint is not None else None
    if resume and path is not None and path.exists():
        try:
            tensors, ck = read_checkpoint(path)
            _check_checkpoint(path, ck, tensors, module, opt, sched, flat)
            _load_module_state(module, _state_dict_from(tensors, "model."), path)
            _optimizer_from_files(opt, tensors, ck["optimizer"], flat)
            if sched is not None and ck.get("scheduler"):
                sched.load_state_dict(ck["scheduler"])
            best = _state_dict_from(tensors, "best.")
            best_state = best or None
            if ema is not None and ck.get("ema_updates") is not None:
                ema.load(tensors, ck["ema_updates"])
            epoch, step0 = ck["epoch"], ck["step"]
            acc_saved, count_saved = ck.get("acc"), ck.get("count", 0)
            best_loss = ck["best_loss"] if ck["best_loss"] is not None else math.inf
            bad_epochs = ck["bad_epochs"]
            result.history = ck["history"]
            result.best_epoch = ck["best_epoch"]
            result.stopped_early = ck.get("stopped_early", False)
            result.resumed_from = epoch
            finished = ck.get("stopped_early", False)
            if step0:
                # Examples of this epoch already trained on (checkpoints record it; older ones wrote
                # steps of one process). The epoch's order depends on (seed, epoch) alone, so any
                # process count continues at the first global batch not yet fully seen.
                done = ck.get("examples", step0 * config.batch_size)
                exact = ck.get("world", 1) == world == 1 and done % config.batch_size == 0
                step0 = done // (config.batch_size * world)
                if exact and "rng.cpu" in tensors:
                    rng_state = tensors["rng.cpu"], tensors.get("rng.cuda")
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            raise _damaged(path, f"{type(exc).__name__}: {exc}") from None

    bs = config.batch_size
    gbs = bs * world  # examples per optimiser step across processes
    n = len(train_data)
    if world > 1:
        steps_per_epoch = max(1, n // gbs)  # the last partial global batch is dropped under torchrun
    else:
        steps_per_epoch = math.ceil(n / bs)

    step_fn = model
    progress_as_tensor = False
    if config.compile:
        step_fn = torch.compile(model)
        progress_as_tensor = True

    def save(epoch_: int, step_: int, acc_, count_, *, mid_epoch: bool):
        if path is None or rank != 0:
            return
        tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
        if best_state is not None:
            tensors.update({f"best.{k}": v for k, v in best_state.items()})
        ot, ometa = _optimizer_to_files(opt, flat)
        tensors.update(ot)
        if ema is not None:
            tensors.update(ema.tensors())
        if mid_epoch and world == 1:
            tensors["rng.cpu"] = torch.get_rng_state()
            if device.type == "cuda":
                tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
        state = {
            "format": "latentlab-checkpoint",
            "format_version": CHECKPOINT_FORMAT,
            "latentlab_version": __version__,
            "epoch": epoch_,
            "step": step_,
            "examples": min(step_ * gbs, n),
            "world": world,
            "acc": acc_,
            "count": count_,
            "history": result.history,
            "best_loss": best_loss if math.isfinite(best_loss) else None,
            "best_epoch": result.best_epoch,
            "bad_epochs": bad_epochs,
            "stopped_early": result.stopped_early,
            "optimizer": ometa,
            "scheduler": sched.state_dict() if sched is not None else None,
            "ema_updates": ema.updates if ema is not None else None,
            "config": config.to_dict(),
            "meta": meta,
        }
        save_tensors(path, tensors, state)

    show = config.progress if config.progress is not None else sys.stderr.isatty()
    if "IPython" in sys.modules:  # a notebook widget where one runs; never import IPython ourselves
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

    total = config.epochs * steps_per_epoch
    bar = tqdm(
        total=total,
        initial=min(total, epoch * steps_per_epoch + step0),
        disable=not (show and rank == 0),
        file=sys.stderr,
        desc=desc,
        dynamic_ncols=True,
        leave=False,
        mininterval=0.25,
    )
    check_every = 1 if device.type == "cpu" else 25
    term_names: list[str] | None = None

    try:
        with _Interrupt() as interrupt:
            while epoch < config.epochs and not finished:
                t0 = time.perf_counter()
                if step0 == 0 or rng_state is None:
                    torch.manual_seed(_noise_seed(config.seed, epoch, rank, step0))
                else:
                    torch.set_rng_state(rng_state[0])
                    if rng_state[1] is not None and device.type == "cuda":
                        torch.cuda.set_rng_state(rng_state[1], device)
                rng_state = None
                perm = epoch_permutation(n, config.seed, epoch)
                model.train()
                acc = None
                count = 0
                if step0 and acc_saved is not None:
                    # the saved sums are over every process: rank 0 carries them, the others start at 0
                    acc = torch.tensor(acc_saved, dtype=torch.float64, device=device) * (rank == 0)
                    count = count_saved if rank == 0 else 0
                for step in range(step0, steps_per_epoch):
                    lo = step * gbs + rank * bs
                    hi = min(lo + bs, n)
                    idx = perm[lo:hi]
                    batch = train_data.gather(idx)
                    progress = epoch + step / steps_per_epoch
                    if fast_step is not None:  # loss and gradients at once, gradients in place
                        loss, terms = fast_step(batch, progress)
                        if step % check_every == 0 and not bool(torch.isfinite(loss)):
                            raise _diverged(epoch, step, steps_per_epoch, float(loss), config, path)
                        if config.grad_clip is not None:
                            torch.nn.utils.clip_grad_norm_([flat.param], config.grad_clip)
                    else:
                        p_arg = torch.tensor(progress) if progress_as_tensor else progress
                        loss, terms = step_fn(batch, p_arg)
                        if world > 1 and step % check_every == 0:
                            # One small all-reduce makes every process take the same decision at the same step.
                            bad, stop = _agree(loss, interrupt.flag, device)
                            if bad:
                                raise _diverged(epoch, step, steps_per_epoch, float(loss.detach()), config, path)
                            if stop:
                                sums = None if acc is None else distributed.all_reduce_sum(_with_count(acc, count))
                                if sums is None:
                                    save(epoch, step, None, 0, mid_epoch=True)
                                else:
                                    save(epoch, step, sums[:-1].tolist(), int(sums[-1]), mid_epoch=True)
                                raise KeyboardInterrupt
                        elif step % check_every == 0 and not bool(torch.isfinite(loss)):
                            raise _diverged(epoch, step, steps_per_epoch, float(loss.detach()), config, path)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        if config.grad_clip is not None:
                            torch.nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
                    opt.step()
                    if ema is not None:
                        ema.update()
                    if term_names is None:
                        term_names = list(terms)
                    vals = torch.stack([terms[k].detach() for k in term_names]).to(torch.float64)
                    b = hi - lo
                    if acc is not None and acc.shape != vals.shape:  # only sums read from a checkpoint can differ
                        raise _damaged(path, f"its running sums have {acc.numel()} terms, the objective {vals.numel()}")
                    acc = vals * b if acc is None else acc.add_(vals, alpha=b)
                    count += b
                    bar.update(1)
                    if bar.n % 50 == 0 and not bar.disable:
                        bar.set_postfix({k: f"{float(v) / count:.3g}" for k, v in zip(term_names, acc)}, refresh=False)
                    if interrupt.flag:
                        if world == 1:
                            save(epoch, step + 1, acc.tolist(), count, mid_epoch=True)
                        raise KeyboardInterrupt
                step0 = 0

                # ---- end of epoch: metrics, validation, early stopping, checkpoint ----
                if acc is None:  # resumed exactly at the end of an epoch's steps
                    acc = torch.zeros(len(term_names or []), dtype=torch.float64, device=device)
                if term_names is None:
                    term_names = _term_names(step_fn, train_data, progress_as_tensor)
                if not bool(torch.isfinite(acc).all()):
                    raise _diverged(epoch, None, steps_per_epoch, float("nan"), config, path)
                tot = distributed.all_reduce_sum(torch.cat([acc, torch.tensor([count], dtype=torch.float64, device=device)]))
                record: dict[str, Any] = {"epoch": epoch + 1}
                for k, v in zip(term_names, tot[:-1]):
                    record[f"train_{k}"] = float(v / tot[-1])
                if val_data is not None and len(val_data):
                    with ema.swapped_in() if ema is not None else contextlib.nullcontext():
                        for k, v in evaluate_objective(module, objective, val_data, bs * 4, term_names).items():
                            record[f"val_{k}"] = v
                    monitor = record["val_loss"]
                else:
                    monitor = record["train_loss"]
                if not all(math.isfinite(float(p.detach().abs().sum())) for p in module.parameters()):
                    raise _diverged(epoch, None, steps_per_epoch, float("nan"), config, path)
                elapsed = time.perf_counter() - t0
                record["lr"] = opt.param_groups[0]["lr"]
                record["time_s"] = elapsed
                record["samples_per_s"] = float(tot[-1]) / elapsed
                if monitor < best_loss:
                    best_loss, bad_epochs = monitor, 0
                    result.best_epoch = epoch + 1
                    if val_data is not None and config.patience is not None:
                        with ema.swapped_in() if ema is not None else contextlib.nullcontext():
                            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                else:
                    bad_epochs += 1
                if callback is not None:
                    callback(record)
                result.history.append(record)
                if sched is not None:
                    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        sched.step(monitor)
                    else:
                        sched.step()
                epoch += 1
                if config.patience is not None and val_data is not None and bad_epochs >= config.patience:
                    result.stopped_early = True
                    finished = True
                if finished or epoch % config.checkpoint_every == 0 or epoch == config.epochs:
                    save(epoch, 0, None, 0, mid_epoch=False)
    finally:
        bar.close()

    if best_state is not None:
        with torch.no_grad():
            for k, v in module.state_dict().items():
                v.copy_(best_state[k])
    elif ema is not None:
        ema.copy_to_params()
    return result


def _agree(loss: torch.Tensor, interrupted: bool, device) -> tuple[bool, bool]:
    """(any process's loss is not finite, any process was interrupted), the same on every process."""
    flags = torch.stack(
        [(~torch.isfinite(loss.detach())).to(torch.float64), torch.tensor(float(interrupted), dtype=torch.float64, device=device)]
    )
    bad, stop = distributed.all_reduce_sum(flags).tolist()
    return bad > 0, stop > 0


def _with_count(acc: torch.Tensor, count: int) -> torch.Tensor:
    return torch.cat([acc, torch.tensor([count], dtype=torch.float64, device=acc.device)])


def _term_names(step_fn, data: ArrayData, progress_as_tensor: bool) -> list[str]:
    with torch.no_grad():
        batch = data.gather(torch.arange(min(2, len(data))))
        _, terms = step_fn(batch, torch.tensor(1e9) if progress_as_tensor else 1e9)
    return list(terms)


@torch.no_grad()
def evaluate_objective(module, objective, data: ArrayData, batch_size: int, names=None) -> dict[str, float]:
    """The objective's terms averaged over ``data`` (warm-up finished), in eval mode.

    Under torchrun each process evaluates its share and the sums are all-reduced.
    """
    was_training = module.training
    module.eval()
    dinfo = distributed.info()
    acc, count = None, 0
    for batch in data.slices(batch_size, dinfo.rank, dinfo.world):
        _, terms = objective(module, batch, math.inf)
        names = names or list(terms)
        vals = torch.stack([terms[k].detach() for k in names]).to(torch.float64) * len(batch[0])
        acc = vals if acc is None else acc + vals
        count += len(batch[0])
    if names is None:
        module.train(was_training)
        return {}
    if acc is None:
        acc = torch.zeros(len(names), dtype=torch.float64, device=data.device)
    tot = distributed.all_reduce_sum(torch.cat([acc, torch.tensor([count], dtype=torch.float64, device=acc.device)]))
    module.train(was_training)
    return {k: float(v / tot[-1]) for k, v in zip(names, tot[:-1])}


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
    return DivergenceError(f"training diverged: the loss became {value} at {where}.{kept} To fix it, {hint}.")
