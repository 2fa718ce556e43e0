"""latentlab's own exceptions.

Every error a user can cause is one of these, with a message that names the problem and the fix.
They subclass the built-in type that fits, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "LatentlabError",
    "DataError",
    "DataTypeError",
    "ConfigError",
    "UnknownParameterError",
    "CheckpointError",
    "DivergenceError",
    "NotFittedError",
    "DistributedError",
    "RunInUseError",
    "Terminated",
]

from sklearn.exceptions import NotFittedError as _SkNotFitted

from .interrupts import Terminated  # noqa: F401 (public here too)


class LatentlabError(Exception):
    """Base class of every error latentlab raises on purpose."""


class DataError(LatentlabError, ValueError):
    """The data cannot be used as given (NaN, wrong shape, wrong range, unreadable file...)."""


class DataTypeError(DataError, TypeError):
    """The data holds values that are not numbers."""


class ConfigError(LatentlabError, ValueError):
    """A setting is out of its allowed range or unknown."""


class UnknownParameterError(ConfigError, TypeError):
    """An estimator was given a setting it does not have (a misspelt or misplaced keyword)."""


class CheckpointError(LatentlabError, ValueError):
    """A saved model or checkpoint is missing, corrupt, or from an incompatible version."""


class DivergenceError(LatentlabError, FloatingPointError):
    """Training produced a NaN or infinite loss."""


class NotFittedError(LatentlabError, _SkNotFitted):
    """The estimator is used before ``fit``."""


class DistributedError(LatentlabError, RuntimeError):
    """A process of a torchrun job lost contact with the others (one died or stalled)."""


class RunInUseError(LatentlabError, RuntimeError):
    """A run folder is being written by another process (its lock is held)."""

