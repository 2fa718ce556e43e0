"""Bounds checked before allocating: output sizes, network sizes, work per step, importance samples,
image pixels, file sizes, seeds.

Each limit has a default and an environment variable that raises (or lowers) it, and each check
raises :class:`~latentlab.errors.ConfigError` (or :class:`~latentlab.errors.DataError` for data)
that names the setting, the size asked for, the limit and both fixes: a smaller setting, or the
variable. Nothing is allocated before the check passes.

========================================  ==============================  =========================
limit                                     variable                        default
========================================  ==============================  =========================
one output array (sample, interpolate)    ``LATENTLAB_MAX_OUTPUT_MB``     a quarter of the memory
parameters of a network (built or loaded) ``LATENTLAB_MAX_PARAMETERS``    2**28 (1 GiB of float32)
values of one layer in a training step    ``LATENTLAB_MAX_STEP_VALUES``   2**30 (4 GiB of float32)
importance samples per example            ``LATENTLAB_MAX_SAMPLES``       100,000
pixels of one image                       ``LATENTLAB_MAX_IMAGE_PIXELS``  2**25 (a 5792x5792 image)
pixels of a PNG written                   ``LATENTLAB_MAX_PNG_PIXELS``    2**27
a JSON file (run.json, config.json)       ``LATENTLAB_MAX_JSON_MB``       64
a text table read whole (.csv, .tsv)      ``LATENTLAB_MAX_TEXT_MB``       a quarter of the memory
========================================  ==============================  =========================

Example
-------
>>> from latentlab.limits import check_count
>>> check_count(10, "n", "--n", limit=100)
10
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

from .errors import ConfigError, DataError

__all__ = [
    "limit",
    "memory_bytes",
    "check_count",
    "check_output",
    "check_samples",
    "check_seed",
    "check_step",
    "ParameterBudget",
    "human_bytes",
    "MAX_SEED",
]

#: Seeds are 63-bit non-negative integers (what NumPy, torch and the batch order all accept).
MAX_SEED = 2**63 - 1


def memory_bytes() -> int:
    """Physical memory of this machine in bytes (16 GiB where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - platforms without sysconf
        return 16 << 30


_DEFAULTS = {
    "LATENTLAB_MAX_OUTPUT_MB": lambda: memory_bytes() / 4 / (1 << 20),
    "LATENTLAB_MAX_PARAMETERS": lambda: 2**28,
    "LATENTLAB_MAX_STEP_VALUES": lambda: 2**30,
    "LATENTLAB_MAX_SAMPLES": lambda: 100_000,
    "LATENTLAB_MAX_IMAGE_PIXELS": lambda: 2**25,
    "LATENTLAB_MAX_PNG_PIXELS": lambda: 2**27,
    "LATENTLAB_MAX_JSON_MB": lambda: 64,
    "LATENTLAB_MAX_TEXT_MB": lambda: memory_bytes() / 4 / (1 << 20),
}


def limit(variable: str) -> float:
    """The limit named by ``variable``: its value in the environment, else the default."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return float(_DEFAULTS[variable]())
    try:
        v = float(raw)
    except ValueError:
        v = math.nan
    if not v > 0 or not math.isfinite(v):
        raise ConfigError(f"{variable}={raw!r} is not a positive number; set it to a number or unset it.")
    return v


def human_bytes(n: float) -> str:
    """``n`` bytes in words: '1.5 GiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def check_count(value: Any, name: str, option: str | None = None, *, limit: float, low: int = 1, why: str = "") -> int:
    """``value`` as an int in [low, limit]; a ConfigError naming ``name`` (and ``option``) otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}.")
    v = int(value)
    if v < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}.")
    if v > limit:
        opt = f" ({option})" if option else ""
        raise ConfigError(f"{name}={v}{opt} is above the limit of {int(limit)}{why}; choose {name} <= {int(limit)}.")
    return v


def check_seed(value: Any, name: str = "seed") -> int | None:
    """A seed: None, or an integer in [0, 2**63 - 1]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{name} must be an integer from 0 to 2**63 - 1 ({MAX_SEED}), got {value!r}; pick another seed.")
    return int(value)


def check_output(rows: int, width: int, what: str, setting: str, itemsize: int = 4) -> None:
    """Refuse an output array of ``rows`` x ``width`` values above ``LATENTLAB_MAX_OUTPUT_MB``,
    before it is allocated; ``setting`` names what sets ``rows`` (e.g. "-n")."""
    need = float(rows) * max(1, int(width)) * itemsize
    cap = limit("LATENTLAB_MAX_OUTPUT_MB") * (1 << 20)
    if need > cap:
        most = max(1, int(cap // (max(1, int(width)) * itemsize)))
        raise ConfigError(
            f"{what} of {rows} x {width} values would take {human_bytes(need)}, above the limit of "
            f"{human_bytes(cap)} for one output (LATENTLAB_MAX_OUTPUT_MB); ask for fewer ({setting} <= {most}), "
            "or raise LATENTLAB_MAX_OUTPUT_MB if this machine has the memory."
        )


def check_samples(k: Any, name: str = "k", option: str | None = None) -> int:
    """Importance (or Monte-Carlo) samples per example, bounded by ``LATENTLAB_MAX_SAMPLES``."""
    return check_count(k, name, option, limit=limit("LATENTLAB_MAX_SAMPLES"),
                       why=" samples per example (LATENTLAB_MAX_SAMPLES; the estimate's error shrinks only "
                       "as 1/sqrt(k), and each sample costs a pass of the network over every example)")


def check_step(values: float, detail: str, fix: str) -> None:
    """Refuse a training step whose widest layer would hold ``values`` numbers (batch x samples x
    width) above ``LATENTLAB_MAX_STEP_VALUES``."""
    cap = limit("LATENTLAB_MAX_STEP_VALUES")
    if values > cap:
        raise ConfigError(
            f"one training step would hold {values:.3g} values in a layer ({detail}; {human_bytes(values * 4)}), above "
            f"the limit of {cap:.3g} (LATENTLAB_MAX_STEP_VALUES); {fix}, or raise LATENTLAB_MAX_STEP_VALUES."
        )


class ParameterBudget:
    """A context in which torch's tensor factories (``torch.empty``, ``zeros``, ``full``...) are
    counted and refused, before they allocate, once the total passes ``LATENTLAB_MAX_PARAMETERS``.

    Wrap the building of a network in it: ``nn.Linear(64, 10**8)`` is then a ConfigError naming
    ``settings`` instead of gigabytes allocated. ``total`` holds the values counted.
    """

    _FACTORIES = frozenset({"empty", "zeros", "ones", "full", "rand", "randn", "randint", "tensor", "as_tensor", "arange"})

    def __init__(self, settings: str, what: str = "the network"):
        self.settings, self.what = settings, what
        self.total = 0
        self.cap = limit("LATENTLAB_MAX_PARAMETERS")
        self._mode = None

    def __enter__(self):
        from torch.overrides import TorchFunctionMode

        budget = self

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if getattr(func, "__name__", "") in budget._FACTORIES:
                    budget.add(_requested(func.__name__, args, kwargs))
                return func(*args, **kwargs)

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        return False

    def add(self, n: int) -> None:
        self.total += n
        if self.total > self.cap:
            raise ConfigError(
                f"{self.what} would need more than {self.total:.3g} parameters ({human_bytes(self.total * 4)} of "
                f"float32, and about 4 times that to train), above the limit of {int(self.cap)} "
                f"(LATENTLAB_MAX_PARAMETERS); its size settings are {self.settings}: choose smaller ones, or raise "
                "LATENTLAB_MAX_PARAMETERS if this machine has the memory."
            )


def _requested(name: str, args, kwargs) -> int:
    """The number of values a tensor factory call asks for (0 when it cannot tell)."""
    if name in ("tensor", "as_tensor"):
        return 0  # the data exists already: it is not a new allocation of a size we choose
    if name == "arange":
        return 0
    size = kwargs.get("size")
    if size is None:
        if name == "full":
            size = args[0] if args else ()
        elif name == "randint":
            size = args[-1] if args and isinstance(args[-1], (tuple, list)) else kwargs.get("size", ())
        else:
            size = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
    try:
        dims = [int(s) for s in (size if isinstance(size, (tuple, list)) else (size,))]
    except (TypeError, ValueError):
        return 0
    return math.prod(max(0, d) for d in dims)


def check_text_size(path, size: int) -> None:
    """Refuse a text table larger than ``LATENTLAB_MAX_TEXT_MB`` before reading it whole."""
    cap = limit("LATENTLAB_MAX_TEXT_MB") * (1 << 20)
    if size > cap:
        raise DataError(
            f"{path} is {human_bytes(size)}, above the limit of {human_bytes(cap)} for a text table, which is read whole "
            "into memory (LATENTLAB_MAX_TEXT_MB); save it as .npy (np.save), which is memory-mapped and read as used, "
            "or raise LATENTLAB_MAX_TEXT_MB."
        )
