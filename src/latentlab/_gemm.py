"""Float32 matrix multiplies on the CPU through the faster of the two BLAS libraries at hand.

PyTorch's x86 wheels multiply matrices with MKL; NumPy's wheels carry OpenBLAS. On AMD processors
MKL does not take its fastest code path, and at the shapes of an MLP training step (a batch of 128
against 784 x 400 weights) OpenBLAS measured about 1.5x the GEMM rate of ``torch.mm`` on the
development machine (AMD EPYC, AVX2; ``python benchmarks/throughput.py`` prints both rates). Both
are well-kept BLAS libraries; this module only chooses between them and calls ``numpy.matmul``
on zero-copy views of the torch tensors, writing into torch-allocated outputs.

The choice is deterministic, so that a seed gives the same numbers in every process on a machine:
``LATENTLAB_CPU_GEMM=torch`` or ``=numpy`` forces it; otherwise (``auto``) NumPy's OpenBLAS is used on
AMD x86 processors when NumPy's BLAS is OpenBLAS, and ``torch.mm`` everywhere else. OpenBLAS runs
with as many threads as ``torch.get_num_threads()``, so a thread limit set for torch holds for both.

Only the fused MLP-VAE step (:mod:`latentlab.models.fused`) routes its multiplies here; it runs
under ``torch.no_grad`` or inside its own ``autograd.Function`` on float32 CPU tensors. Anything
else (float64, CUDA, non-contiguous layouts NumPy cannot hand to BLAS) goes to torch.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform

import torch

__all__ = ["backend", "blas_owns_threads", "linear", "mm", "set_backend"]

_FORCED: str | None = None


def set_backend(name: str | None) -> None:
    """Force ``"torch"`` or ``"numpy"`` for this process (``None``: back to the environment/auto rule)."""
    global _FORCED
    if name not in (None, "torch", "numpy"):
        raise ValueError(f"unknown CPU GEMM backend {name!r}; use 'torch', 'numpy' or None")
    _FORCED = name


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


@functools.lru_cache(maxsize=1)
def _numpy_openblas():
    """threadpoolctl's handle on NumPy's OpenBLAS, or None when NumPy uses another BLAS."""
    try:
        import numpy  # noqa: F401
        from threadpoolctl import ThreadpoolController

        libs = [lib for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers
                if "numpy" in lib.filepath]
    except Exception:  # threadpoolctl could not inspect this process: stay with torch
        return None
    return libs[0] if libs else None


@functools.lru_cache(maxsize=1)
def _auto() -> str:
    if platform.machine().lower() not in ("x86_64", "amd64") or "AMD" not in _cpu_vendor():
        return "torch"
    return "numpy" if _numpy_openblas() is not None else "torch"


def backend() -> str:
    """``"numpy"`` (OpenBLAS) or ``"torch"``: which library multiplies float32 CPU matrices here."""
    if _FORCED is not None:
        return _FORCED
    env = os.environ.get("LATENTLAB_CPU_GEMM", "auto").strip().lower()
    if env in ("torch", "numpy"):
        return env
    if env not in ("", "auto"):
        raise ValueError(f"LATENTLAB_CPU_GEMM={env!r} is not one of 'auto', 'torch', 'numpy'")
    return _auto()


_threads = [0]
_owner_threads: list[int | None] = [None]


def _sync_threads() -> None:
    n = _owner_threads[0] or torch.get_num_threads()
    if n != _threads[0]:
        lib = _numpy_openblas()
        if lib is not None:
            lib.set_num_threads(n)
        _threads[0] = n


@contextlib.contextmanager
def blas_owns_threads():
    """Within: one thread pool on the CPU, OpenBLAS's, with torch's thread count; torch's own
    operations run on the calling thread. Two pools that each spin-wait for work (OpenMP's and
    OpenBLAS's) take turns badly on a busy machine (measured: a training step 9x slower with one
    of two cores taken by another process); with one pool it degrades gracefully. A no-op unless
    the NumPy backend is in use with more than one thread."""
    n = torch.get_num_threads()
    if n == 1 or _owner_threads[0] is not None or backend() != "numpy" or _numpy_openblas() is None:
        yield
        return
    _owner_threads[0] = n
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
        _owner_threads[0] = None


def _numpy_ok(*ts: torch.Tensor) -> bool:
    # Under autograd recording a NumPy product would silently cut the graph: torch there.
    if torch.is_grad_enabled() and any(t.requires_grad for t in ts):
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in ts) and backend() == "numpy"


def mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` (2-D), into ``out`` when given."""
    if not _numpy_ok(a, b):
        return torch.mm(a, b, out=out) if out is not None else torch.mm(a, b)
    import numpy as np

    _sync_threads()
    if out is None:
        out = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    with np.errstate(all="ignore"):  # inf/nan propagate as in torch; the trainer reports divergence
        np.matmul(a.detach().numpy(), b.detach().numpy(), out=out.detach().numpy())
    return out


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T + bias``, as ``torch.addmm(bias, x, weight.t())``."""
    if not _numpy_ok(x, weight, bias):
        return torch.addmm(bias, x, weight.t())
    return mm(x, weight.t()).add_(bias)
