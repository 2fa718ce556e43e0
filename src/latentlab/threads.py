"""How many threads latentlab computes on, and how those threads wait.

PyTorch's CPU kernels run on an OpenMP thread pool (GNU libgomp in the x86 and ARM wheels). By
default its idle threads *spin*: after each parallel region they keep their core busy for a while,
waiting for the next one. On an idle machine that saves a little wake-up latency. On a shared one
(a laptop running other programs, a CI runner, a server with other jobs) the spinning threads
fight the competitors for the cores, and a training step on 2 threads measured 5.9x slower than on
1 (``benchmarks/busy_machine.py``; BENCHMARKS.md).

latentlab's choice:

- **OMP_WAIT_POLICY=PASSIVE**, set when ``latentlab`` is imported (and by the command line) unless
  you set it yourself and unless torch was imported first: libgomp reads it once, when torch
  loads it, so ``import latentlab`` before ``import torch``, or set the variable in the
  environment. Idle threads then sleep instead of spinning. On an idle machine this costs little
  (measured in ``benchmarks/busy_machine.py``), and on a busy one it removes the collapse.
- **The thread count is torch's own** (one per core it may use), unless you choose: the
  ``OMP_NUM_THREADS`` environment variable, ``torch.set_num_threads``, an estimator's ``threads``
  setting (training only, restored afterwards), or the command line's ``--threads``. latentlab never
  changes the count by itself: the results of a CPU run can depend on it (the order of the sums in
  a matrix multiply), and a resumed run should be computed as the first was.

Under torchrun each process gets ``OMP_NUM_THREADS=1`` unless you set it (torchrun's rule), and the
wait policy is inherited like any other environment variable.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["configure_process", "wait_policy", "limited", "describe", "DEFAULT_WAIT_POLICY"]

#: The OpenMP wait policy latentlab sets when none is set.
DEFAULT_WAIT_POLICY = "PASSIVE"

#: Whether torch was already loaded when latentlab first configured the process (None: not yet),
#: and the policy the environment held then.
_torch_first: bool | None = None
_policy_at_start: str | None = None


def configure_process() -> None:
    """Set OMP_WAIT_POLICY=PASSIVE for this process and its children, unless it is set already or
    torch is already loaded (then it would not take effect in this process). Idempotent."""
    global _torch_first, _policy_at_start
    if _torch_first is None:
        _torch_first = "torch" in sys.modules
        _policy_at_start = os.environ.get("OMP_WAIT_POLICY")
    if not _torch_first:
        os.environ.setdefault("OMP_WAIT_POLICY", DEFAULT_WAIT_POLICY)


def wait_policy() -> str:
    """The OpenMP wait policy in effect in this process, as far as latentlab can tell."""
    value = _policy_at_start if _torch_first else os.environ.get("OMP_WAIT_POLICY")
    if not value:
        return "default (spinning)" + ("; torch was imported before latentlab" if _torch_first else "")
    return value.upper()


@contextlib.contextmanager
def limited(threads: int | None):
    """Compute on ``threads`` threads inside the block (torch.set_num_threads), then restore the
    count; None leaves it as it is."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def describe() -> str:
    """One line: the thread count and the wait policy (for --version and bug reports)."""
    import torch

    return f"{torch.get_num_threads()} thread(s), OMP_WAIT_POLICY {wait_policy()}"
