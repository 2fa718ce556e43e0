"""Training objectives: plain callables handed to the trainer, each with the step it trains by.

An objective is called as ``objective(module, batch, progress)`` where ``batch`` is a tuple of
tensors whose first entry is x (B, *F) (the second, if any, a conditional model's condition) and
``progress`` is the training time in epochs (a float, for warm-up schedules). It returns
``(loss, terms)``: the scalar to minimise and a dict of scalar tensors that the trainer averages
per epoch and records in the history. ``objective.step(module, forward, fast=...)`` gives the
trainer its one training step (:mod:`latentlab.objectives.base`): autograd by default, the fused
hand-derived step of :mod:`latentlab.objectives.fused` where it applies.
"""

from .base import AutogradStep, Objective, make_step
from .bound import ImportanceWeightedBound, iw_bound
from .elbo import ELBO, ReconstructionLoss, elbo_terms, kl_weight

__all__ = [
    "Objective",
    "AutogradStep",
    "make_step",
    "ReconstructionLoss",
    "ELBO",
    "ImportanceWeightedBound",
    "elbo_terms",
    "iw_bound",
    "kl_weight",
]
