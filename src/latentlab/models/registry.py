"""The one place a model is registered: ``@register("vae")`` on its class.

The registry feeds :func:`load` (which rebuilds a saved model from its class name), the command
line's model list (``latentlab fit MODEL``), ``latentlab.api``'s verbs and the public names of
``latentlab`` and ``latentlab.models``. :func:`discover` imports every module of this package, so
a new model is one new file here with a registered class in it.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from .base import MODEL_FORMAT, PENDING_WEIGHTS, LatentModel

__all__ = ["register", "MODELS", "discover", "model_class", "model_name", "load"]

#: Command-line name -> estimator class, in the order of the family (PCA first).
MODELS: dict[str, type] = {}
_ORDER: dict[str, float] = {}
_DISCOVERED = False


def register(name: str, *, order: float = 100.0):
    """Register an estimator class under the command-line ``name`` (``latentlab fit NAME``).

    ``order`` places it in listings (PCA 0, the autoencoder 1, the VAE 2, ...; new models come
    after). Example: ``@register("vqvae")`` above ``class VQVAE(NeuralModel)``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a model's name must be a non-empty string, got {name!r}.")

    def decorate(cls):
        if name in MODELS and MODELS[name] is not cls:
            raise ConfigError(f"two models are registered as {name!r}: {MODELS[name].__name__} and {cls.__name__}.")
        MODELS[name] = cls
        _ORDER[name] = float(order)
        ordered = sorted(MODELS, key=lambda k: (_ORDER[k], k))
        items = [(k, MODELS[k]) for k in ordered]
        MODELS.clear()
        MODELS.update(items)
        cls.model_name = name
        return cls

    return decorate


def discover() -> dict[str, type]:
    """Import every module of :mod:`latentlab.models` once (registering its models); the registry."""
    global _DISCOVERED
    if not _DISCOVERED:
        package = importlib.import_module(__package__)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{__package__}.{info.name}")
        _DISCOVERED = True
    return MODELS


def model_class(name: str) -> type:
    """The estimator class registered as ``name``; a ConfigError naming the known ones otherwise."""
    models = discover()
    if not isinstance(name, str) or name not in models:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(models)}.")
    return models[name]


def model_name(model) -> str:
    """The registered name of an estimator (or of its class), else its class name."""
    cls = model if isinstance(model, type) else type(model)
    return getattr(cls, "model_name", None) or cls.__name__


def _by_class_name() -> dict[str, type]:
    return {cls.__name__: cls for cls in discover().values()}


def _weights_of(path: Path, config: dict) -> Path:
    """The weights file that ``config.json`` names by its checksum: ``model.safetensors``, or the
    pending weights of a save that stopped between its steps (see ``LatentModel.save``)."""
    from ..io import check_regular_file, file_digest

    weights = path / "model.safetensors"
    want = config.get("weights_sha256")
    pending = path / PENDING_WEIGHTS
    if not weights.is_file() and not pending.is_file():
        raise CheckpointError(f"{weights} is missing; the model directory is incomplete.")
    for candidate in (weights, pending):
        if candidate.exists():
            check_regular_file(candidate, "weights", CheckpointError)
            if want is None or file_digest(candidate) == want:
                return candidate
    raise CheckpointError(
        f"{weights} does not match {path / 'config.json'} (checksum differs): the two files "
        "come from different saves or one is damaged. Save the model again."
    )


def load(path: str | Path, *, trust_code: bool | None = None, **networks) -> LatentModel:
    """Load an estimator saved with ``save(path)``; never unpickles.

    A model fitted with networks of your own (``encoder=``, ``decoder=``, ``likelihood=``,
    ``loss=``) needs them back, built like the ones fitted (their weights are read from the file):

    - a network that was a module instance: hand it back, ``load(path, encoder=MyEncoder(),
      decoder=MyDecoder())``;
    - a network that was a :class:`~latentlab.nn.ModuleSpec` (``"package.module:Name(k=v)"``):
      hand it back the same way, or pass ``trust_code=True`` to let ``load`` import the module and
      build it from the recorded spec. Importing a module runs its code, so this is for files you
      trust; without it ``load`` refuses, naming the modules. ``trust_code=None`` (default) follows
      :func:`latentlab.trusted_code` (the command line's ``--trust-code``), else False.

    Raises :class:`CheckpointError` with the reason and the fix for a missing directory, a
    corrupt or mismatched file, a network it needs and was not given, or a model saved by an
    incompatible latentlab version.

    Example
    -------
    >>> from latentlab import PCA, load
    >>> import numpy as np, tempfile
    >>> X = np.random.default_rng(0).normal(size=(50, 5))
    >>> d = PCA(latent_dim=2).fit(X).save(tempfile.mkdtemp())
    >>> load(d).transform(X).shape
    (50, 2)
    """
    import torch

    from ..io import check_format, load_tensors, read_json

    path = Path(path)
    if path.is_file() and path.name in ("config.json", "model.safetensors"):
        path = path.parent
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; pass the directory given to save().")
    config = check_format(read_json(path / "config.json"), path / "config.json", name="latentlab-model",
                          version=MODEL_FORMAT, what="a latentlab model configuration")
    weights = _weights_of(path, config)
    name = config.get("class")
    known = _by_class_name()
    cls = known.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CheckpointError(
            f"{path} holds a model of class {name!r}, which this latentlab does not know; known: "
            f"{sorted(known)}."
        )
    params = config.get("params") or {}
    if not isinstance(params, dict) or not isinstance(config.get("state"), dict):
        raise CheckpointError(f"{path / 'config.json'} has no settings or state of a model; the file is damaged: save the model again.")
    from .own import resolve_saved_networks

    params = resolve_saved_networks(cls, params, networks, trust_code, str(path))
    try:
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items()}
        est = cls(**params)
    except TypeError as exc:
        raise CheckpointError(f"{path}: the saved settings do not fit {name} ({exc}); save the model again with this latentlab.") from None
    tensors, _ = load_tensors(weights)
    latent = {k: v for k, v in tensors.items() if k.startswith("latent.")}
    tensors = {k: v for k, v in tensors.items() if not k.startswith("latent.")}
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{weights}: the weights {key!r} hold NaN or infinite values; the model is damaged "
                                  "(or was saved from a diverged fit): fit it again.")
    try:
        est._restore(config["state"], tensors)
        est._restore_latent(config["state"], latent)
    except (CheckpointError, ConfigError) as exc:  # damaged state, or settings out of bounds (a network too large)
        raise CheckpointError(f"{path / 'config.json'}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, OverflowError) as exc:
        raise CheckpointError(
            f"{path}: the saved state does not fit a {name} with these settings ({type(exc).__name__}: {exc}); "
            "config.json or model.safetensors is damaged: save the model again."
        ) from None
    return est
