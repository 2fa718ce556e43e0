"""A module's parameters and gradients as slices of one contiguous buffer each.

With every parameter a view of one flat tensor, the optimiser updates one tensor in one kernel
(no per-parameter Python work), and a fused step can write gradients in place. The checkpoint
format stays per parameter (see ``split_state`` / ``join_state``), so a run can resume on a path
that does not flatten (e.g. under torchrun).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["FlatParameters"]


class FlatParameters:
    """Re-seat ``params`` as views of one buffer; ``.param`` is the flat ``nn.Parameter`` whose
    ``.grad`` holds every gradient (each ``p.grad`` is a view of it)."""

    def __init__(self, params):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("no trainable parameters")
        dtypes = {p.dtype for p in self.params}
        devices = {p.device for p in self.params}
        if len(dtypes) != 1 or len(devices) != 1:
            raise ValueError("all parameters must share one dtype and device to be flattened")
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.param = nn.Parameter(flat)
        self.param.grad = torch.zeros_like(flat)
        self.sizes = [p.numel() for p in self.params]
        offset = 0
        for p, n in zip(self.params, self.sizes):
            p.data = self.param.data[offset : offset + n].view(p.shape)
            p.grad = self.param.grad[offset : offset + n].view(p.shape)
            offset += n

    def _split(self, t: torch.Tensor):
        return [v.view(p.shape) for v, p in zip(torch.split(t, self.sizes), self.params)]

    def split_state(self, sd: dict[str, Any]) -> dict[str, Any]:
        """The flat optimiser's state_dict as if it optimised each parameter separately."""
        (st,) = sd["state"].values() if sd["state"] else ({},)
        state = {}
        for i in range(len(self.params)):
            state[i] = {}
            for k, v in st.items():
                if k != "step" and isinstance(v, torch.Tensor) and v.numel() == self.param.numel():
                    state[i][k] = self._split(v)[i]
                else:
                    state[i][k] = v
        if not sd["state"]:
            state = {}
        (group,) = sd["param_groups"]
        return {"state": state, "param_groups": [{**group, "params": list(range(len(self.params)))}]}

    def join_state(self, sd: dict[str, Any]) -> dict[str, Any]:
        """The inverse of :meth:`split_state`: a per-parameter state_dict for the flat optimiser."""
        (group,) = sd["param_groups"]
        state = {}
        if sd["state"]:
            per = [sd["state"][i] for i in range(len(self.params))]
            state[0] = {}
            for k, v in per[0].items():
                per_param = k != "step" and all(
                    isinstance(s[k], torch.Tensor) and s[k].shape == p.shape for s, p in zip(per, self.params)
                )
                if per_param:
                    state[0][k] = torch.cat([s[k].reshape(-1) for s in per])
                else:
                    state[0][k] = v
        return {"state": state, "param_groups": [{**group, "params": [0]}]}
