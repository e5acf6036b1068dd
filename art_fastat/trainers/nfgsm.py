"""N-FGSM: FGSM from a strong noise around the clean sample, not projected back (de Jorge et al., "Make Some Noise:
Reliable and Efficient Single-Step Adversarial Training", NeurIPS 2022)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from art_fastat._validation import check_non_negative_float
from art_fastat.perturbation import input_gradient
from art_fastat.trainers.base import AdversarialTrainerBase


class AdversarialTrainerNFGSM(AdversarialTrainerBase):
    """
    | Paper link: de Jorge et al., "Make Some Noise" (NeurIPS 2022), https://arxiv.org/abs/2202.01181

    Per batch (the paper's Algorithm 1): ``eta ~ U(-k eps, k eps)``, one FGSM step of size ``alpha`` from the noisy
    point, ``delta = eta + alpha sign(grad_x CE(f(x + eta), y))``, and one optimizer step on ``CE(f(x + delta), y)``.
    ``delta`` is *not* projected back onto the eps-ball: the training perturbation reaches ``(k + 1) eps`` with the
    defaults, which is what keeps single-step training from catastrophic overfitting at large eps (the paper's
    analysis of noise and clipping). Validation and evaluation still attack the eps-ball. Cost: 2 passes per batch, as
    Fast.

    Decisions, following the authors' code (pdejorge/N-FGSM, ``train.py``) where the paper is silent:

    - ``x + eta`` is clipped to ``clip_values`` before the gradient is taken and the clipped ``eta`` is the one
      ``delta`` keeps (the authors clamp ``eta``; Fast's start, by contrast, is left unclipped in this package);
      ``x + delta`` is clipped to ``clip_values`` again.
    - Defaults ``noise_magnitude=2`` (k) and ``alpha = eps``: the paper's setting for every CIFAR-10/100 and SVHN radius
      (``--unif 2 --alpha eps``; its scripts raise k to 3 or 4 only for a few of the largest radii).
    - Under the eps warm-up the noise and the step scale with the current eps (the authors' SVHN warm-up scales eps
      and alpha alike).
    - The gradient pass runs in the attack mode (train mode, BatchNorm statistics frozen); only the update moves them.
    - ``lr_schedule="paper"`` is ``cyclic``: the authors' CIFAR-10 schedule, linear up to the peak at half of training
      and down to 0.
    """

    method: ClassVar[str] = "nfgsm"
    paper_lr_schedule: ClassVar[str] = "cyclic"

    def __init__(
        self,
        classifier: Any,
        eps: float = 0.3,
        alpha: float | None = None,
        noise_magnitude: float = 2.0,
        **kwargs: Any,
    ) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place.
        :param eps: L-inf radius of the threat model.
        :param alpha: FGSM step at the full eps (scaled with the eps warm-up); default ``eps``.
        :param noise_magnitude: k: the noise is drawn from ``U(-k eps, k eps)``; 0 takes the FGSM step from ``x``.
        :param kwargs: Engine options of :class:`~art_fastat.trainers.base.AdversarialTrainerBase`.
        """
        super().__init__(classifier, eps, **kwargs)
        self.alpha = self.eps if alpha is None else check_non_negative_float(alpha, "alpha")
        self.noise_magnitude = check_non_negative_float(noise_magnitude, "noise_magnitude")

    @property
    def single_step(self) -> bool:
        """True: one signed gradient step per update, from the noisy point."""
        return True

    @property
    def passes_per_batch(self) -> float:
        """2: the gradient at the noisy point, then the update."""
        return 2.0

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        space = self.space
        noise = self.noise_magnitude * eps
        eta = space.project(x, space.start(x, noise), noise)  # only clips x + eta to the valid range
        with self._attack_context():
            gradient = input_gradient(space.forward, x, eta, y, space.loss_scale)
        step = self._step_size(self.alpha, eps)
        self._update((x + eta + step * gradient.sign()).clamp(self.low, self.high), y)
