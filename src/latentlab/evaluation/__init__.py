"""Evaluation a researcher would trust.

- :func:`log_likelihood`: importance-sampled log p(x) (K samples, streamed in chunks, seeded so
  that the chunking never changes the number), with its standard error;
- :func:`evaluate`: every metric that applies to a PCA, autoencoder or VAE, in one dict;
- :func:`active_units`, :func:`kl_per_dim`: how many latent dimensions a VAE uses;
- :func:`regularity`: generation quality (Frechet distance and classifier confidence of decoded
  random points), continuity and completeness of the latent space;
- :class:`FeatureSpace`, :func:`frechet_distance`, :func:`mmd2`: the pieces behind it.
"""

from .features import FeatureSpace
from .frechet import frechet_distance, gaussian_frechet_distance
from .likelihood import LogLikelihood, log_likelihood
from .metrics import active_units, evaluate, kl_per_dim
from .regularity import continuity, gaussian_kl_to_standard_normal, mmd2, regularity
from .subspace import principal_angle

__all__ = [
    "LogLikelihood",
    "log_likelihood",
    "evaluate",
    "active_units",
    "kl_per_dim",
    "regularity",
    "continuity",
    "mmd2",
    "gaussian_kl_to_standard_normal",
    "FeatureSpace",
    "frechet_distance",
    "gaussian_frechet_distance",
    "principal_angle",
]
