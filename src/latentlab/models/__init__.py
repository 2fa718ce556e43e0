"""The estimators: PCA, Autoencoder, VAE."""

from .autoencoder import Autoencoder
from .base import LatentModel, load
from .pca import PCA
from .vae import VAE

__all__ = ["PCA", "Autoencoder", "VAE", "LatentModel", "load"]
