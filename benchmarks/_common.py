"""Helpers shared by the benchmarks: find the data, describe the machine, update BENCHMARKS.md."""

from __future__ import annotations

import os
import sys
import platform
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def find_mnist(path: str | None = None) -> Path | None:
    """binarized_mnist.npz from an explicit path, $LATENTLAB_DATA (file or folder), or ../shared/data."""
    candidates = []
    for p in (path, os.environ.get("LATENTLAB_DATA")):
        if p:
            p = Path(p)
            candidates.append(p if p.suffix == ".npz" else p / "binarized_mnist.npz")
    candidates.append(REPO.parent / "shared" / "data" / "binarized_mnist.npz")
    return next((c for c in candidates if c.is_file()), None)


def require_mnist(path: str | None = None) -> Path:
    """:func:`find_mnist`, or exit with status 2 and a message saying how to point to the file."""
    found = find_mnist(path)
    if found is None:
        print("binarized_mnist.npz not found: pass --data or set LATENTLAB_DATA", file=sys.stderr)
        raise SystemExit(2)
    return found


def machine() -> dict[str, str]:
    """CPU model, core count, memory, OS, Python and torch versions: what a figure ran on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        m = re.search(r"Model name:\s*(.+)", out)
        cpu = m.group(1).strip() if m else cpu
    except (OSError, subprocess.SubprocessError):
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, AttributeError):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": mem,
        "gpu": gpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
    }


def machine_line() -> str:
    m = machine()
    return f"{m['cpu']}, {m['memory']} RAM, GPU: {m['gpu']}; Python {m['python']}, torch {m['torch']} ({m['threads']} threads)"


def write_section(name: str, body: str, path: Path = REPO / "BENCHMARKS.md") -> None:
    """Replace (or append) the section ``## name`` of BENCHMARKS.md, leaving the others alone."""
    from latentlab.io import atomic_write_text

    text = path.read_text() if path.exists() else "# Benchmarks\n\nEvery figure here was measured by the command beside it, on the machine named with it.\n"
    block = f"## {name}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block
    atomic_write_text(path, text)
