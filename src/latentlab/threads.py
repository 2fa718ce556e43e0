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
- **The thread count follows the free cores** while latentlab trains on the CPU, unless you chose
  a count. Twice a second (the first time 0.1 s into a fit) the trainer reads how much of the cores
  it may use (``os.sched_getaffinity``) other programs took since the last look (``/proc/stat``,
  less this process's own CPU time) and trains on ``round(cores - others)`` threads, at least 1 and
  at most torch's count when the fit began (one per core by default, or what
  ``torch.set_num_threads`` set: latentlab never goes above it). With two busy programs on a
  2-core machine it trains on 1 thread instead of fighting them; when they end it goes back to 2.
  Each epoch's record says how many threads its last step used (``history_[i]["threads"]``).

  You choose a count, and latentlab keeps it for the whole fit, with the ``OMP_NUM_THREADS`` (or
  ``MKL_NUM_THREADS``) environment variable, an estimator's ``threads`` setting (restored after
  training), or the command line's ``--threads``. Choose one when a CPU run must give the same last
  bits every time: PyTorch's kernels promise the same result only for the same thread count (on
  the models measured in ``benchmarks/busy_machine.py``, 1 and 2 threads gave identical
  parameters, but that is an observation, not a promise). Where ``/proc/stat`` cannot be read
  (macOS, Windows) and on a GPU, the count is torch's, as set.

Under torchrun each process gets ``OMP_NUM_THREADS=1`` unless you set it (torchrun's rule), and the
wait policy is inherited like any other environment variable.

One more setting is read as torch loads, and ``import latentlab`` sets it the same way (unless you
set it, unless torch was imported first), on Linux where the kernel offers transparent huge pages:
**THP_MEM_ALLOC_ENABLE=1**, PyTorch's switch that asks the kernel for huge pages (2 MiB,
``madvise(MADV_HUGEPAGE)``) for every CPU tensor of 2 MiB or more. Memory freshly allocated is
faulted in page by page on its first write, and a large temporary allocated anew at each step pays
that every step once the C library has handed the freed memory back: the IWAE's (k, B, 784) logits
and their gradient (15.7 MB each at k = 50, batch 100). Measured on one epoch, one thread
(``benchmarks/hugepages.py``, BENCHMARKS.md): the IWAE k = 50 took 0.89x the time with 6x fewer
page faults, a VAE 784-512-256-40 0.93x, and the VampPrior and hierarchical models, whose tensors
are mostly under 2 MiB, within the machine's noise of 1x; the peak memory did not change. Set
``THP_MEM_ALLOC_ENABLE=0`` to opt out.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

__all__ = ["configure_process", "wait_policy", "limited", "for_training", "FreeCores", "choose", "describe",
           "DEFAULT_WAIT_POLICY"]

#: The OpenMP wait policy latentlab sets when none is set.
DEFAULT_WAIT_POLICY = "PASSIVE"

#: Whether torch was already loaded when latentlab first configured the process (None: not yet),
#: and the policy the environment held then.
_torch_first: bool | None = None
_policy_at_start: str | None = None


def configure_process() -> None:
    """Set OMP_WAIT_POLICY=PASSIVE (and, where the kernel offers transparent huge pages,
    THP_MEM_ALLOC_ENABLE=1) for this process and its children, each unless it is set already, and
    neither if torch is already loaded (then they would not take effect in this process). Idempotent."""
    global _torch_first, _policy_at_start
    if _torch_first is None:
        _torch_first = "torch" in sys.modules
        _policy_at_start = os.environ.get("OMP_WAIT_POLICY")
    if not _torch_first:
        os.environ.setdefault("OMP_WAIT_POLICY", DEFAULT_WAIT_POLICY)
        if _kernel_offers_huge_pages():
            os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def _kernel_offers_huge_pages() -> bool:
    """Linux with transparent huge pages not switched off (where they are missing, torch's madvise
    would fail and warn)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


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


#: Seconds between two readings of the cores' use, and before the first one in a fit.
INTERVAL_S = 0.5
FIRST_S = 0.1

#: Environment variables through which a user fixes the thread count (torch reads them as it loads).
PINNING_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def choose(cores: int, others: float, ceiling: int) -> int:
    """The thread count for ``cores`` usable cores of which other programs use ``others`` (in
    cores, over the last interval): the free cores rounded to the nearest whole, in [1, ceiling]."""
    return max(1, min(int(ceiling), int(cores - others + 0.5)))


def _usable_cpus() -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _busy_ticks(cpus: set[int]) -> int | None:
    """Busy clock ticks (user, nice, system, irq, softirq, steal) summed over ``cpus``, from /proc/stat."""
    try:
        with open("/proc/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        try:
            if int(name[3:]) not in cpus:
                continue
            v = [int(x) for x in fields[:8]]
        except ValueError:
            return None
        if len(v) < 8:
            return None
        total += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return total


class FreeCores:
    """How many threads to train on now: ``update()`` reads, at most every ``interval`` seconds
    (``first`` seconds after the start), how much of this process's cores other programs used
    since the last reading, and returns the count to use (:func:`choose`). ``sample`` returns
    (busy seconds of the usable cores, this process's CPU seconds, usable cores), or None where
    it cannot be read; the default reads /proc/stat and os.times."""

    def __init__(self, ceiling: int, *, interval: float | None = None, first: float | None = None, sample=None,
                 clock=time.monotonic):
        interval = INTERVAL_S if interval is None else interval
        first = FIRST_S if first is None else first
        self.ceiling, self.interval, self.clock = int(ceiling), float(interval), clock
        self.sample = sample if sample is not None else _sample
        self.threads = self.ceiling
        self.last = self.sample()
        self.t_last = clock()
        self.t_next = self.t_last + float(first)

    @property
    def available(self) -> bool:
        return self.last is not None

    def update(self) -> int:
        now = self.clock()
        if now < self.t_next or self.last is None:
            return self.threads
        cur = self.sample()
        if cur is None:
            return self.threads
        (busy0, own0, _), (busy1, own1, cores) = self.last, cur
        wall = now - self.t_last
        self.last, self.t_last, self.t_next = cur, now, now + self.interval
        if wall <= 0:
            return self.threads
        others = max(0.0, (busy1 - busy0) - (own1 - own0)) / wall
        self.threads = choose(cores, others, self.ceiling)
        return self.threads


_TICK = None


def _sample():
    global _TICK
    cpus = _usable_cpus()
    if not cpus:
        return None
    ticks = _busy_ticks(set(cpus))
    if ticks is None:
        return None
    if _TICK is None:
        _TICK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    t = os.times()
    return ticks / _TICK, t.user + t.system, len(cpus)


def pinned(threads: int | None) -> bool:
    """Whether the user fixed the thread count: a ``threads`` setting, or OMP_NUM_THREADS /
    MKL_NUM_THREADS in the environment."""
    return threads is not None or any(os.environ.get(v) for v in PINNING_VARIABLES)


class _Follow:
    """The trainer's side of :class:`FreeCores`: ``tick()`` once per step, cheap between readings."""

    def __init__(self, free: FreeCores):
        self.free = free

    def tick(self) -> int:
        import torch

        n = self.free.update()
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        return n


@contextlib.contextmanager
def for_training(threads: int | None, device_type: str = "cpu", *, sample=None):
    """The thread count of one training run. A count the user chose (``threads``, or the
    environment) is kept for the run, as :func:`limited`; otherwise, on the CPU where the cores'
    use can be read, yields an object whose ``tick()`` the loop calls once per step to follow the
    free cores (:class:`FreeCores`), else None. Torch's count is restored afterwards."""
    if pinned(threads) or device_type != "cpu":
        with limited(threads):
            yield None
        return
    import torch

    before = torch.get_num_threads()
    free = FreeCores(before, sample=sample)
    if not free.available:
        yield None
        return
    try:
        yield _Follow(free)
    finally:
        torch.set_num_threads(before)


def describe() -> str:
    """One line: the thread count and the wait policy (for --version and bug reports)."""
    import torch

    mode = "fixed" if pinned(None) else "at most; fewer while other programs hold cores"
    return f"{torch.get_num_threads()} thread(s) ({mode}), OMP_WAIT_POLICY {wait_policy()}"
