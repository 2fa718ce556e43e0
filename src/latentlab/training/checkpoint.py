"""The training checkpoint: one safetensors file with the weights, the optimiser, the best weights,
the history and the position in the epoch, checked entry by entry before any of it is used.

The file is written atomically (:func:`latentlab.io.save_tensors`); a damaged or foreign file is
a :class:`~latentlab.errors.CheckpointError` naming what is wrong, never a crash mid-training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..io import check_format, load_tensors

__all__ = [
    "CHECKPOINT_NAME",
    "CHECKPOINT_FORMAT",
    "read_checkpoint",
    "load_module_state",
    "check_module_state",
    "check_checkpoint",
    "state_dict_from",
    "optimizer_to_files",
    "optimizer_from_files",
    "damaged",
]

CHECKPOINT_NAME = "checkpoint.safetensors"
CHECKPOINT_FORMAT = 1


def optimizer_to_files(opt: torch.optim.Optimizer, flat=None):
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


def optimizer_from_files(opt: torch.optim.Optimizer, tensors, meta, flat=None) -> None:
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
    check_format(meta, path, name="latentlab-checkpoint", version=CHECKPOINT_FORMAT,
                 what="a latentlab training checkpoint (it is a safetensors file of something else)")
    return tensors, meta


def state_dict_from(tensors, prefix):
    n = len(prefix)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_module_state(module: nn.Module, sd: dict[str, torch.Tensor], path) -> None:
    """Copy ``sd`` into ``module`` after checking it has exactly the module's entries and shapes."""
    own = module.state_dict()
    check_module_state(own, sd, path)
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(sd[k].to(v.device, v.dtype))


def check_module_state(own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], path) -> None:
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


def damaged(path, what: str) -> CheckpointError:
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
        raise damaged(path, f"{what} is not a mapping")
    for k, v in fresh.items():
        w = loaded.get(k)
        if _is_number(v) and not _is_number(w):
            raise damaged(path, f"{what} {k!r} is {w!r}, not a number")
        if isinstance(v, (tuple, list)) and all(map(_is_number, v)):
            if not (isinstance(w, (tuple, list)) and len(w) == len(v) and all(map(_is_number, w))):
                raise damaged(path, f"{what} {k!r} is {w!r}, not {len(v)} numbers")


# The per-parameter optimiser state each optimiser needs to take a step.
_OPTIM_STATE = {torch.optim.SGD: ("momentum_buffer",), torch.optim.Adam: ("step", "exp_avg", "exp_avg_sq"),
                torch.optim.AdamW: ("step", "exp_avg", "exp_avg_sq")}


def check_checkpoint(path, ck, tensors, module, opt, sched, flat) -> None:
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
                "stopped_early": lambda v: isinstance(v, bool), "converged": lambda v: isinstance(v, bool), "ema_updates": lambda v: v is None or _is_count(v),
                "scheduler": lambda v: v is None or isinstance(v, dict)}
    for key, ok in required.items():
        if key not in ck or not ok(ck[key]):
            raise damaged(path, f"entry {key!r} is {ck.get(key, 'missing')!r}")
    for key, ok in optional.items():
        if key in ck and not ok(ck[key]):
            raise damaged(path, f"entry {key!r} is {ck[key]!r}")
    own = module.state_dict()
    best = state_dict_from(tensors, "best.")
    if best:
        check_module_state(own, best, path)
    groups, fresh_groups = ck["optimizer"]["param_groups"], opt.state_dict()["param_groups"]
    if len(groups) != len(fresh_groups):
        raise damaged(path, f"{len(groups)} optimiser parameter group(s), this run has {len(fresh_groups)}")
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
                raise damaged(path, f"optimiser entry {key!r} names no parameter of this model")
            state.setdefault(parts[1], {})[parts[2]] = v
    for key, v in ck["optimizer"]["scalars"].items():
        pid = key.split(".", 1)[0]
        if not pid.isdigit() or int(pid) >= len(params) or not _is_number(v):
            raise damaged(path, f"optimiser entry {key!r} = {v!r}")
        state.setdefault(pid, {})[key.split(".", 1)[-1]] = v
    for pid, st in state.items():
        p = params[int(pid)]
        lacking = [k for k in need if k not in st]
        wrong = [k for k, v in st.items() if k != "step" and isinstance(v, torch.Tensor) and v.shape != p.shape]
        step = st.get("step", 0)
        if not (_is_number(step) or isinstance(step, torch.Tensor) and step.numel() == 1):
            wrong.append("step")
        if lacking or wrong:
            raise damaged(path, f"the optimiser state of parameter {pid} lacks {lacking} or has misshapen {wrong}")
    rng = tensors.get("rng.cpu")
    if rng is not None and (rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape):
        raise damaged(path, "its random state is not a CPU generator state")
