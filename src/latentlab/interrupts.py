"""The exception SIGTERM becomes, in a module that imports nothing, so that a signal handler can
raise it at any moment (even while the rest of latentlab is being imported)."""

from __future__ import annotations

__all__ = ["Terminated"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers and ``timeout`` send), handled as Ctrl-C is: training writes a
    checkpoint first; the command line exits with status 143."""

    signum = 15
