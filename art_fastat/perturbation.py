"""
L-inf perturbation steps shared by every trainer and attack of the package.

All functions work in input space on a *forward function* ``forward(x) -> logits`` (the engine passes one that
applies the classifier's preprocessing and mixed precision) and never touch the network's parameter gradients. What
every attack step needs besides the batch (the forward function, the valid range, the random stream and the fp16 loss
scale) travels as one :class:`AttackSpace`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]
#: An end of the valid range: a number, or a tensor broadcastable to a batch (per-feature clip values).
Bound = float | torch.Tensor


def project(x: torch.Tensor, delta: torch.Tensor, eps: float, low: Bound, high: Bound) -> torch.Tensor:
    """
    Pi of the method notes: the eps-ball around ``x`` intersected with the valid range.

    :param x: Clean inputs.
    :param delta: Perturbation.
    :param eps: L-inf radius.
    :param low: Lower end of the valid range.
    :param high: Upper end of the valid range.
    :return: The projected perturbation, so that ``x + delta`` is valid and ``|delta| <= eps``.
    """
    delta = delta.clamp(-eps, eps)
    return (x + delta).clamp(low, high) - x


def uniform_start(x: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """
    The random start ``delta_0 ~ U(-eps, eps)`` of PGD, Fast and GAAT.

    It is *not* clipped to the valid range: it is only the point where the first gradient is taken, and every step
    after it is projected by :func:`project`. Clipping it removes half the noise on saturated pixels (MNIST's
    background), and on protocol P1 that turned Fast's 0.548 / 0.374 PGD-50-10 accuracy (seeds 0 / 1) into
    catastrophic overfitting (0.000 / 0.020); locuslab/fast_adversarial's MNIST code does not clip it either.

    :param x: Clean inputs (for shape, device and dtype).
    :param eps: L-inf radius.
    :param generator: Random stream (the trainer's own, for reproducibility).
    :return: The start perturbation.
    """
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (2 * noise - 1) * eps


def objective_gradient(
    forward: Forward,
    x: torch.Tensor,
    delta: torch.Tensor,
    objective: Callable[[torch.Tensor], torch.Tensor],
    loss_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    One pass: the gradient of a *summed* per-sample objective with respect to ``delta`` (a batch mean would shrink it
    by 1/B). ``delta`` is detached first, so the gradient is a constant: no second derivative is ever taken.

    :param forward: Maps inputs to logits.
    :param x: Clean inputs.
    :param delta: Current perturbation.
    :param objective: Maps the logits at ``x + delta`` to the per-sample objective.
    :param loss_scale: Multiplies the objective before differentiation (keeps fp16 gradients from underflowing); undone
                       before the gradient is returned.
    :return: ``(gradient shaped like delta, the logits at x + delta, detached)``.
    """
    leaf = delta.detach().requires_grad_(True)
    logits = forward(x + leaf)
    (gradient,) = torch.autograd.grad(objective(logits).sum() * loss_scale, leaf)
    return (gradient / loss_scale if loss_scale != 1.0 else gradient), logits.detach()


def input_gradient(
    forward: Forward, x: torch.Tensor, delta: torch.Tensor, y: torch.Tensor, loss_scale: float = 1.0
) -> torch.Tensor:
    """
    Gradient of the summed per-sample cross-entropy with respect to ``delta`` (:func:`objective_gradient` of CE).

    :param forward: Maps inputs to logits.
    :param x: Clean inputs.
    :param delta: Current perturbation.
    :param y: Labels.
    :param loss_scale: See :func:`objective_gradient`.
    :return: The gradient, shaped like ``delta``.
    """
    gradient, _ = objective_gradient(
        forward, x, delta, lambda logits: F.cross_entropy(logits.float(), y, reduction="none"), loss_scale
    )
    return gradient


def normalise_per_sample(gradient: torch.Tensor) -> torch.Tensor:
    """``gradient / mean|gradient|`` per sample (MI-FGSM's L1 normalisation, scaled to mean absolute value 1)."""
    mean_abs = gradient.abs().mean(dim=tuple(range(1, gradient.dim())), keepdim=True)
    return gradient / mean_abs.clamp_min(torch.finfo(gradient.dtype).tiny)


@dataclass(frozen=True)
class AttackSpace:
    """
    Where an attack works: the trainers build one per batch from their engine, the torchattacks wrappers from their
    model (``AttackSpace(self.get_logits)``: torchattacks' [0, 1] range, the global random stream).

    :param forward: Maps input-space images to logits (preprocessing and mixed precision inside).
    :param low: Lower end of the valid range: a number or a tensor broadcastable to a batch.
    :param high: Upper end of the valid range.
    :param generator: Random stream of random starts and other draws (None: torch's global stream).
    :param loss_scale: Multiplies attack objectives before differentiation so fp16 input gradients do not underflow
                       (undone before use; signs are unaffected).
    """

    forward: Forward
    low: Bound = 0.0
    high: Bound = 1.0
    generator: torch.Generator | None = None
    loss_scale: float = 1.0

    def project(self, x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
        """:func:`project` onto the eps-ball around ``x`` inside this space's valid range."""
        return project(x, delta, eps, self.low, self.high)

    def start(self, x: torch.Tensor, eps: float, random: bool = True) -> torch.Tensor:
        """The first perturbation: :func:`uniform_start` from this space's generator, or zero."""
        return uniform_start(x, eps, self.generator) if random else torch.zeros_like(x)

    def gradient(
        self, x: torch.Tensor, delta: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`objective_gradient` of a per-sample objective: ``(gradient, logits at x + delta)``."""
        return objective_gradient(self.forward, x, delta, objective, self.loss_scale)

    def box(self, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``Pi`` as one clamp: the per-sample box ``[max(-eps, low - x), min(eps, high - x)]`` of perturbations."""
        return torch.clamp(self.low - x, min=-eps), torch.clamp(self.high - x, max=eps)


def pgd(
    space: AttackSpace,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
) -> torch.Tensor:
    """
    L-inf PGD on the cross-entropy (Madry et al. 2018): ``delta <- Pi(delta + alpha * sign(grad))``, ``steps`` times.
    With ``steps=1``, ``random_start=True`` it is FGSM with random start (Wong et al. 2020).

    :param space: Forward function, valid range, random stream and loss scale.
    :param x: Clean inputs.
    :param y: Labels.
    :param eps: L-inf radius.
    :param alpha: Step size.
    :param steps: Number of ascent steps (one pass each).
    :param random_start: Start from ``U(-eps, eps)`` instead of zero.
    :return: The final perturbation, detached.
    """
    delta = space.start(x, eps, random_start)
    for _ in range(steps):
        gradient = input_gradient(space.forward, x, delta, y, space.loss_scale)
        delta = space.project(x, delta + alpha * gradient.sign(), eps)
    return delta.detach()
