"""The estimators: PCA, Autoencoder, VAE, and the VAE family (IWAE, VampPriorVAE,
ConditionalVAE, HierarchicalVAE).

Each is registered once, with ``@register("name")`` in its own file
(:mod:`latentlab.models.registry`); importing this package imports every module in it, so the
registry, :func:`load` and the public names below all come from those registrations.
"""

from . import registry
from .base import CAPABILITIES, LatentModel
from .registry import MODELS, load, model_class, model_name, register

registry.discover()
globals().update({cls.__name__: cls for cls in MODELS.values()})

__all__ = [cls.__name__ for cls in MODELS.values()] + [
    "LatentModel",
    "CAPABILITIES",
    "MODELS",
    "load",
    "register",
    "model_class",
    "model_name",
]
