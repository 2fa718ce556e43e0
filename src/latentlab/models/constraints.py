"""The estimators' parameter constraints, in scikit-learn's own terms.

Each estimator's ``_parameter_constraints`` (scikit-learn's convention, checked by
``sklearn.utils._param_validation.validate_parameter_constraints`` in
:meth:`latentlab.models.base.LatentModel._validate_params`, with scikit-learn's own message)
says each setting's type and range; the training settings are declared once, here, for every
estimator trained by gradient descent. Settings with a list of choices are declared as text
(``str``) and their choice is checked by latentlab, whose message lists the choices in order
(scikit-learn prints them as a set, in an order that changes from run to run).

Example
-------
>>> from latentlab import VAE
>>> VAE(epochs=0).fit([[0.0, 1.0], [1.0, 0.0]])  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
latentlab.errors.InvalidParameterError: The 'epochs' parameter of VAE must be an int in the range [1, inf). Got 0 instead.
"""

from __future__ import annotations

import os
from numbers import Integral, Real

from sklearn.utils._param_validation import Interval
from torch import nn

from ..nn.spec import ModuleSpec

__all__ = ["POSITIVE_INT", "TRAINING", "NETWORK", "OWN_NETWORKS", "SCALE", "VAE_TERMS", "OWN"]

POSITIVE_INT = [Interval(Integral, 1, None, closed="left")]
_POSITIVE = [Interval(Real, 0, None, closed="neither")]
_NON_NEGATIVE = [Interval(Real, 0, None, closed="left")]
_SIZES = [tuple, list, Interval(Integral, 1, None, closed="left")]  # the sizes themselves: check_hidden
#: A network or likelihood of your own: a module, a ModuleSpec, or its text (checked by models.own).
OWN = [nn.Module, ModuleSpec]

#: The training settings every estimator trained by gradient descent shares.
TRAINING = {
    "epochs": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "lr": _POSITIVE,
    "optimizer": [str],
    "weight_decay": _NON_NEGATIVE,
    "lr_schedule": [str],
    "patience": [None, Interval(Integral, 1, None, closed="left")],
    "tol": _NON_NEGATIVE,
    "validation_fraction": [Interval(Real, 0, 1, closed="left")],
    "grad_clip": [None, Interval(Real, 0, None, closed="neither")],
    "ema": [None, Interval(Real, 0, 1, closed="left")],
    "seed": [Interval(Integral, 0, None, closed="left")],
    "device": [str],
    "threads": [None, Interval(Integral, 1, None, closed="left")],
    "compile": ["boolean"],
    "verbose": ["boolean", None],
    "checkpoint_dir": [None, str, os.PathLike],
}

#: The networks' settings.
NETWORK = {
    "latent_dim": POSITIVE_INT,
    "hidden": _SIZES,
    "activation": [str],
    "architecture": [str],
    "channels": _SIZES,
}

#: Your own encoder and decoder, where an estimator takes them: checked by latentlab.models.own,
#: whose message lists every form they may take (None for the built-in network, a module, a spec).
OWN_NETWORKS = {"encoder": "no_validation", "decoder": "no_validation"}

SCALE = {"scale": [None, str]}

#: The VAE's likelihood and loss terms.
VAE_TERMS = {
    "likelihood": [str, *OWN],
    "sigma": [Interval(Real, 0, None, closed="neither"), str],
    "c": _NON_NEGATIVE,
    "mc_samples": POSITIVE_INT,
    "warmup_epochs": _NON_NEGATIVE,
    "free_bits": _NON_NEGATIVE,
}
