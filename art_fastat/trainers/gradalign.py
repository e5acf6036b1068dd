"""GradAlign: FGSM training with the gradient-alignment regulariser (Andriushchenko & Flammarion 2020)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from art_fastat._classifier import clip_range
from art_fastat._validation import check_non_negative_float
from art_fastat.trainers.base import AdversarialTrainerBase

logger = logging.getLogger(__name__)

#: The largest radius (as a fraction of the valid range) the paper's log-linear rule for lambda covers: 16/255.
PAPER_LAMBDA_MAX_EPS = 16 / 255
#: lambda beyond that range, where no value is published: the best of 0, 0.5, 1, 2, 5 and 10 on protocol P1 (MNIST,
#: eps 0.3), see docs/methods/gradalign.md.
LARGE_EPS_LAMBDA = 5.0


def paper_lambda(relative_eps: float) -> float:
    """
    The authors' CIFAR-10 rule: ``lambda = 0.02 * 10^(e / 8)`` for ``eps = e / 255`` (0.2 at 8/255, 2.0 at 16/255),
    "the log-linear interpolation scheme" of their ``sh/exps_diff_eps_cifar10.sh``.

    :param relative_eps: eps as a fraction of the width of the valid range.
    :return: lambda.
    """
    return 0.02 * 10 ** (255 * relative_eps / 8)


def gradient_misalignment(clean_gradient: torch.Tensor, noisy_gradient: torch.Tensor) -> torch.Tensor:
    """
    The regulariser without its weight: ``1 - mean_i cos(g1_i, g2_i)``, each sample's gradient flattened. Samples where
    either gradient is zero (their cosine is undefined) are left out of the mean, as the authors' code leaves them
    out; with none left it is 0. Differentiable in both gradients.

    :param clean_gradient: ``g1``, the input gradients at ``x``, shape ``(n, ...)``.
    :param noisy_gradient: ``g2``, the input gradients at ``x + eta``, same shape.
    :return: A scalar in ``[0, 2]``.
    """
    g1, g2 = clean_gradient.flatten(1), noisy_gradient.flatten(1)
    norms = torch.linalg.vector_norm(g1, dim=1) * torch.linalg.vector_norm(g2, dim=1)
    kept = norms > 0
    cosine = torch.where(kept, (g1 * g2).sum(1) / norms.clamp_min(torch.finfo(norms.dtype).tiny), 0.0)
    count = kept.sum()
    return (count - cosine.sum()) / count.clamp_min(1)


class AdversarialTrainerGradAlign(AdversarialTrainerBase):
    """
    | Paper link: Andriushchenko & Flammarion, "Understanding and Improving Fast Adversarial Training" (NeurIPS 2020), https://arxiv.org/abs/2007.02617

    FGSM training from a zero start plus GradAlign (the paper's section 4):
    ``CE(f(x + delta), y) + lambda (1 - E cos(grad_x l(x), grad_x l(x + eta)))``, ``eta ~ U(-eps, eps)`` per sample,
    ``delta = Pi(alpha sign(grad_x l(x)))``. The regulariser is differentiated through ``grad_x l(x + eta)`` (double
    backpropagation), so it trains the network to keep its input gradients aligned inside the eps-ball, which is what
    prevents catastrophic overfitting.

    Decisions, following the authors' code (tml-epfl/understanding-fast-adv-training, ``train.py``) where the paper is
    silent:

    - Zero start (``--attack_init=zero`` in every GradAlign run of their scripts), so the FGSM gradient *is*
      ``grad_x l(x)``: one pass serves both. ``alpha`` defaults to eps; their 1.25 eps step from a zero start is
      projected to the same point.
    - ``grad_x l(x)`` is a constant of the update (their FGSM gradient is detached before it enters the regulariser);
      ``differentiate_clean_gradient=True`` differentiates through both gradients (the regulariser's full gradient, one
      more double backward).
    - ``x + eta`` is not clipped to the valid range (neither in their code nor in the paper's formula; nor are this
      package's random starts); ``x + delta`` is.
    - The cosine is per sample over the flattened gradient, averaged over the batch; samples with a zero gradient are
      left out (:func:`gradient_misalignment`). The gradients are of the batch-summed cross-entropy (the authors
      differentiate the batch mean: the cosine does not see the factor, and the sum does not underflow in fp16).
    - lambda: the paper's log-linear rule (:func:`paper_lambda`: 0.2 at 8/255) for eps up to 16/255 of the valid range,
      the radii it was fitted on; beyond it, where nothing is published, :data:`LARGE_EPS_LAMBDA` (5), chosen on P1
      (MNIST, eps 0.3, where lambda <= 1 still overfits catastrophically; the measurements are in
      ``docs/methods/gradalign.md``). ``grad_align_lambda=0`` is FGSM training.
    - The FGSM pass runs in the attack mode (BatchNorm statistics frozen); the forward at ``x + eta`` is part of the
      loss, so, like the update's, it runs in train mode and moves the statistics (as in the authors' code).
    - ``lr_schedule="paper"`` is ``triangle``: the authors' cyclic schedule, peak at 2/5 of training.
    - History: ``ce`` and ``gradient_misalignment`` (``1 - mean cos``, unweighted) beside ``loss``.
    - Cost: 4 passes per batch: the FGSM pass, the forward and backward at ``x + eta`` and the double backward through
      it, the update.
    """

    method: ClassVar[str] = "gradalign"
    paper_lr_schedule: ClassVar[str] = "triangle"

    def __init__(
        self,
        classifier: Any,
        eps: float = 0.3,
        alpha: float | None = None,
        grad_align_lambda: float | None = None,
        random_start: bool = False,
        differentiate_clean_gradient: bool = False,
        **kwargs: Any,
    ) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place.
        :param eps: L-inf radius.
        :param alpha: FGSM step at the full eps (scaled with the eps warm-up); default eps.
        :param grad_align_lambda: Weight of the regulariser; None: :func:`paper_lambda` for eps up to 16/255 of the
                                  valid range, else :data:`LARGE_EPS_LAMBDA`; 0: plain FGSM training.
        :param random_start: Start FGSM from ``U(-eps, eps)`` instead of zero (``grad_x l(x)`` then needs a pass of
                             its own).
        :param differentiate_clean_gradient: Differentiate the regulariser through ``grad_x l(x)`` as well.
        :param kwargs: Engine options of :class:`~art_fastat.trainers.base.AdversarialTrainerBase`.
        """
        super().__init__(classifier, eps, **kwargs)
        self.alpha = self.eps if alpha is None else check_non_negative_float(alpha, "alpha")
        if grad_align_lambda is None:
            relative_eps = self.eps / clip_range(classifier)
            in_range = relative_eps <= PAPER_LAMBDA_MAX_EPS * (1 + 1e-9)
            grad_align_lambda = paper_lambda(relative_eps) if in_range else LARGE_EPS_LAMBDA
            logger.info("GradAlign lambda %.4g (%s)", grad_align_lambda,
                        "the paper's rule" if in_range else "eps beyond the paper's range: the P1 choice")  # fmt: skip
        self.grad_align_lambda = check_non_negative_float(grad_align_lambda, "grad_align_lambda")
        self.random_start = bool(random_start)
        self.differentiate_clean_gradient = bool(differentiate_clean_gradient)

    @property
    def single_step(self) -> bool:
        """True: one FGSM step per update (its regulariser is what prevents overfitting; the guard watches it too)."""
        return True

    @property
    def passes_per_batch(self) -> float:
        """FGSM and update, + 2 for ``x + eta`` and its double backward; + 1 for a separate ``grad_x l(x)`` pass (random
        start), + 1 for its double backward (``differentiate_clean_gradient``)."""
        if self.grad_align_lambda == 0:
            return 2.0
        return 4.0 + self.random_start + self.differentiate_clean_gradient

    def _loss_gradient(self, x_point: torch.Tensor, y: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """``grad_x`` of the batch-summed CE at ``x_point``, times the fp16 loss scale (which a sign or a cosine
        ignores)."""
        leaf = x_point.detach().requires_grad_(True)
        loss = F.cross_entropy(self._forward(leaf).float(), y, reduction="sum")
        (gradient,) = torch.autograd.grad(loss * self.step.loss_scale, leaf, create_graph=create_graph)
        return gradient

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        space = self.space
        regularised = self.grad_align_lambda > 0
        graph = regularised and self.differentiate_clean_gradient
        with self._attack_context():
            start = space.start(x, eps, self.random_start)
            attack_gradient = self._loss_gradient(x + start, y, create_graph=graph and not self.random_start)
            delta = space.project(x, start + self._step_size(self.alpha, eps) * attack_gradient.sign(), eps).detach()
            if regularised and self.random_start:
                clean_gradient = self._loss_gradient(x, y, create_graph=graph)
            else:
                clean_gradient = attack_gradient
        logits = self._forward(x + delta)
        ce = F.cross_entropy(logits.float(), y)
        n = len(y)
        self._record("ce", ce.detach() * n, n)
        loss = ce
        if regularised:
            noisy_gradient = self._loss_gradient(x + space.start(x, eps), y, create_graph=True)
            misalignment = gradient_misalignment(clean_gradient, noisy_gradient)
            loss = ce + self.grad_align_lambda * misalignment
            self._record("gradient_misalignment", misalignment.detach() * n, n)
        self._optimize(loss, logits, y)
