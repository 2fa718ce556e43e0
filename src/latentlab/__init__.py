"""latentlab: from PCA to variational autoencoders, one estimator family, measured honestly.

>>> from latentlab import PCA, Autoencoder, VAE, load
"""

from . import datasets
from ._version import __version__
from .config import TrainConfig
from .errors import CheckpointError, ConfigError, DataError, DivergenceError, LatentlabError
from .models import IWAE, PCA, VAE, Autoencoder, ConditionalVAE, HierarchicalVAE, VampPriorVAE, load

__all__ = [
    "PCA",
    "Autoencoder",
    "VAE",
    "IWAE",
    "VampPriorVAE",
    "ConditionalVAE",
    "HierarchicalVAE",
    "load",
    "datasets",
    "TrainConfig",
    "LatentlabError",
    "DataError",
    "ConfigError",
    "CheckpointError",
    "DivergenceError",
    "__version__",
]
