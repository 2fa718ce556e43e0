"""Shared by the benchmarks: the machine's description and one section of BENCHMARKS.md.

Each benchmark owns one ``## `` section of BENCHMARKS.md (identified by its heading) and
replaces only that section, so benchmarks never clobber each other's figures.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = "# Benchmarks\n\nEvery figure here comes from a run of the command shown beside it, on the machine described.\n"

__all__ = ["machine_info", "command_line", "update_section", "git_revision", "REPO"]


def _lscpu_model() -> str | None:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return None


def machine_info() -> dict:
    """CPU model (lscpu), core count, threads torch uses, platform, Python, torch and GPU."""
    import torch

    info = {
        "cpu": _lscpu_model() or platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_line(info: dict) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return (f"{info['cpu']} ({info['cpu_count']} cores, torch using {info['torch_threads']} thread(s)){gpu}; "
            f"{info['platform']}; Python {info['python']}, torch {info['torch']}")


def command_line() -> str:
    """The command as typed (with the thread-count variables that change timings)."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "LATENTLAB_DATA") if k in os.environ)
    cmd = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])
    return f"{env} {cmd}".strip()


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{' (with uncommitted changes)' if dirty else ''}" if rev else "unknown"


def update_section(path: Path, heading: str, body: str) -> None:
    """Replace the section whose first line is ``## {heading}`` in ``path`` (or append it),
    leaving every other section as it is. Written atomically."""
    sys.path.insert(0, str(REPO / "src"))
    from latentlab.io import atomic_write_text

    title = f"## {heading}"
    text = path.read_text() if path.exists() else HEADER
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == title), None)
    block = [title + "\n", "\n", body.rstrip("\n") + "\n", "\n"]
    if start is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        if lines and lines[-1].strip():
            lines.append("\n")
        lines += block
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = block
    atomic_write_text(path, "".join(lines).rstrip("\n") + "\n")
