"""latentlab: from PCA to variational autoencoders, one estimator family, measured honestly.

>>> from latentlab import PCA, Autoencoder, VAE, load

The public names are loaded on first use (PEP 562), so that ``import latentlab`` and the
command line's ``--version`` and ``--help`` do not import torch or scikit-learn. The estimators
come from the one model registry (:mod:`latentlab.models.registry`).
"""

from __future__ import annotations

import importlib
import importlib.util

from ._version import __version__  # noqa: F401 (public)
from .threads import configure_process as _configure_process

_configure_process()  # OMP_WAIT_POLICY=PASSIVE, THP_MEM_ALLOC_ENABLE=1 before torch loads (see latentlab.threads)

#: name -> the module that defines it (the estimators come from the registry).
_LAZY = {
    "datasets": "latentlab.datasets",
    "api": "latentlab.api",
    "plots": "latentlab.plots",
    "report": "latentlab.report",
    "evaluation": "latentlab.evaluation",
    "TrainConfig": "latentlab.config",
    "export": "latentlab.exporter",
    "explore": "latentlab.explorer",
    "load": "latentlab.models",
    "Likelihood": "latentlab.nn",
    "ModuleSpec": "latentlab.nn",
    "trusted_code": "latentlab.models.own",
    "Callback": "latentlab.training.callbacks",
    "TensorBoardLogger": "latentlab.training.loggers",
    "MLflowLogger": "latentlab.training.loggers",
    "LatentlabError": "latentlab.errors",
    "DataError": "latentlab.errors",
    "ConfigError": "latentlab.errors",
    "CheckpointError": "latentlab.errors",
    "DivergenceError": "latentlab.errors",
}


def _model_classes() -> dict[str, type]:
    models = importlib.import_module("latentlab.models")
    return {cls.__name__: cls for cls in models.MODELS.values()}


def __getattr__(name: str):
    if name == "__all__":
        return [*_model_classes(), *_LAZY, "__version__"]
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # A submodule (``from latentlab import cli``): imported as it is, without the registry,
        # which `from package import name` would otherwise import (it asks this function first).
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__.endswith("." + name) else getattr(module, name)
    else:
        classes = _model_classes() if not name.startswith("_") else {}
        if name not in classes:
            raise AttributeError(f"module 'latentlab' has no attribute {name!r}")
        value = classes[name]
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__getattr__("__all__")))
