"""The torch side of latentlab: network bodies, distributions, and the modules the estimators
train (no scikit-learn here).

For networks and likelihoods of your own:

- :class:`Likelihood`, the base class of a decoder distribution p(x|z) (subclass it and pass an
  instance as ``likelihood=`` to the VAE family, ``loss=`` to the Autoencoder);
- :class:`ModuleSpec`, an importable ``package.module:Name`` with JSON arguments, which a saved
  model records so that :func:`latentlab.load` can rebuild your network (with ``trust_code=True``);
- the built-in likelihoods (:class:`Bernoulli`, :class:`Gaussian`, :class:`ContinuousBernoulli`)
  and networks (:class:`MLP`, :class:`ConvEncoder`, :class:`ConvDecoder`) to build on.
"""

from .distributions import Bernoulli, ContinuousBernoulli, Gaussian, Likelihood
from .networks import MLP, BatchFlatten, ConvDecoder, ConvEncoder
from .spec import ModuleSpec

__all__ = ["Likelihood", "Bernoulli", "Gaussian", "ContinuousBernoulli", "ModuleSpec", "MLP", "ConvEncoder", "ConvDecoder",
           "BatchFlatten"]
