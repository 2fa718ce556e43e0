"""What an objective hands the trainer: a *step*, one function that computes the loss and writes
every trainable parameter's gradient.

An objective is called as ``objective(module, batch, progress) -> (loss, terms)``: the scalar to
minimise and a dict of scalar tensors the trainer averages per epoch. Its :meth:`Objective.step`
turns it into a training step; the default runs the objective through ``forward`` (the module
wrapped for DistributedDataParallel or ``torch.compile``) and back-propagates. An objective with
a hand-derived gradient (:class:`latentlab.objectives.ELBO`'s fused step) returns that instead
where it applies. Any plain callable with the objective's signature works too: :func:`make_step`
gives it the autograd step.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

__all__ = ["Objective", "AutogradStep", "make_step", "scheduled_weights", "epoch_weights"]


class AutogradStep:
    """loss, terms = forward(batch, progress); then gradients by autograd (set, not accumulated).

    ``flat`` is False: the gradients land in each parameter's own ``.grad``.
    """

    flat = False

    def __init__(self, forward: Callable, params: Iterable[torch.nn.Parameter]):
        self.forward = forward
        self.params = [p for p in params if p.requires_grad]

    def __call__(self, batch, progress) -> tuple[torch.Tensor, dict[str, Any]]:
        loss, terms = self.forward(batch, progress)
        for p in self.params:
            p.grad = None
        loss.backward()
        return loss, terms


class Objective:
    """Base class of latentlab's objectives: ``__call__`` gives the loss, :meth:`step` the training step."""

    def __call__(self, module, batch, progress: float = 0.0):  # pragma: no cover
        raise NotImplementedError

    def scheduled_weights(self, progress: float) -> dict[str, float]:
        """The weights of the loss's terms that follow a schedule, at ``progress`` (in epochs):
        e.g. ``{"kl_weight": 0.5}`` half-way through a KL warm-up. The trainer records their mean
        over each epoch's steps in the history. None here."""
        return {}

    def step(self, module: torch.nn.Module, forward: Callable, *, fast: bool):
        """The training step for ``module``. ``forward(batch, progress)`` runs this objective on the
        module (possibly wrapped); ``fast`` says whether a hand-derived step may replace autograd
        (one process, not compiled). A step with ``flat = True`` writes the gradients into the
        module's parameters' ``.grad`` views of one flat buffer
        (:class:`latentlab.training.flat.FlatParameters`), which the trainer sets up."""
        return AutogradStep(forward, module.parameters())


def make_step(objective: Callable, module: torch.nn.Module, forward: Callable, *, fast: bool):
    """``objective.step(...)`` for an :class:`Objective`; the autograd step for any other callable."""
    if isinstance(objective, Objective):
        return objective.step(module, forward, fast=fast)
    return AutogradStep(forward, module.parameters())


def scheduled_weights(objective: Callable, progress: float) -> dict[str, float]:
    """``objective.scheduled_weights(progress)`` for an :class:`Objective`; nothing for another callable."""
    if isinstance(objective, Objective):
        return objective.scheduled_weights(progress)
    return {}


def epoch_weights(objective: Callable, epoch: int, steps: int) -> dict[str, float]:
    """The scheduled weights of epoch ``epoch`` (0-based): their mean over its ``steps`` steps, at
    progress epoch + s / steps (what the history records, e.g. ``kl_weight`` during a warm-up)."""
    sums: dict[str, float] = {}
    for s in range(steps):
        w = scheduled_weights(objective, epoch + s / steps)
        if not w:
            break
        for k, v in w.items():
            sums[k] = sums.get(k, 0.0) + v
    return {k: v / steps for k, v in sums.items()}
