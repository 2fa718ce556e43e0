"""The estimators: PCA, Autoencoder, VAE, and the VAE family (IWAE, VampPriorVAE,
ConditionalVAE, HierarchicalVAE)."""

from .autoencoder import Autoencoder
from .base import LatentModel, load
from .cvae import ConditionalVAE
from .hvae import HierarchicalVAE
from .iwae import IWAE
from .pca import PCA
from .vae import VAE
from .vamp import VampPriorVAE

__all__ = [
    "PCA",
    "Autoencoder",
    "VAE",
    "IWAE",
    "VampPriorVAE",
    "ConditionalVAE",
    "HierarchicalVAE",
    "LatentModel",
    "load",
]
