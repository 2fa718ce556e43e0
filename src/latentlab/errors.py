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
    "NotFittedError",  # noqa: F822 (made on first use, see __getattr__)
    "InvalidParameterError",  # noqa: F822
    "DistributedError",
    "RunInUseError",
    "Terminated",
]

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


class DistributedError(LatentlabError, RuntimeError):
    """A process of a torchrun job lost contact with the others (one died or stalled)."""


class RunInUseError(LatentlabError, RuntimeError):
    """A run folder is being written by another process (its lock is held)."""


def _not_fitted_error() -> type:
    """``NotFittedError``: a LatentlabError that is also scikit-learn's NotFittedError (so that
    ``except sklearn.exceptions.NotFittedError`` and scikit-learn's own checks catch it)."""
    from sklearn.exceptions import NotFittedError as SkNotFitted

    class NotFittedError(LatentlabError, SkNotFitted):
        """The estimator is used before ``fit``."""

    NotFittedError.__module__, NotFittedError.__qualname__ = __name__, "NotFittedError"  # pickled by name
    return NotFittedError


def _invalid_parameter_error() -> type:
    """``InvalidParameterError``: a ConfigError that is also scikit-learn's InvalidParameterError
    (raised with scikit-learn's message by the estimators' parameter constraints)."""
    from sklearn.utils._param_validation import InvalidParameterError as SkInvalid

    class InvalidParameterError(ConfigError, SkInvalid):
        """A setting of an estimator is of the wrong type or out of its range."""

    InvalidParameterError.__module__, InvalidParameterError.__qualname__ = __name__, "InvalidParameterError"
    return InvalidParameterError


_LAZY_ERRORS = {"NotFittedError": _not_fitted_error, "InvalidParameterError": _invalid_parameter_error}


def __getattr__(name: str):
    # NotFittedError and InvalidParameterError subclass scikit-learn's, and importing scikit-learn
    # takes seconds: they are made on first use (PEP 562), so that `latentlab --version` and `--help`, which import this
    # module, do not import scikit-learn. Made once, then an ordinary module attribute.
    if name in _LAZY_ERRORS:
        return globals().setdefault(name, _LAZY_ERRORS[name]())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
