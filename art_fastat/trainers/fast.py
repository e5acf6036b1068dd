"""Fast: FGSM adversarial training with random start (Wong et al. 2020)."""

from __future__ import annotations

from typing import Any, ClassVar

from art_fastat.trainers.pgd import AdversarialTrainerPGD


class AdversarialTrainerFast(AdversarialTrainerPGD):
    """
    | Paper link: Wong et al., "Fast is better than free: Revisiting adversarial training" (ICLR 2020), https://arxiv.org/abs/2001.03994

    One FGSM step of size ``alpha`` (default ``1.25 eps``) from ``delta_0 ~ U(-eps, eps)``, projected back into the
    eps-ball, then one optimizer step. Cost: 2 passes per batch. It is PGD with one step, so it shares PGD's code.

    Large ``alpha`` (e.g. 2 eps and above) invites catastrophic overfitting: robust accuracy falls to ~0 within an
    epoch (Wong et al. 2020); watch the history's ``val_pgd_accuracy``.

    Unlike ART's ``AdversarialTrainerFBFPyTorch``, the weight update runs in train mode (BatchNorm statistics update).
    """

    method: ClassVar[str] = "fast"
    paper_lr_schedule: ClassVar[str] = "cyclic"

    def __init__(self, classifier: Any, eps: float = 0.3, alpha: float | None = None, **kwargs: Any) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place.
        :param eps: L-inf radius.
        :param alpha: FGSM step at the full eps (scaled with the eps warm-up); default ``1.25 eps``.
        :param kwargs: Engine options of :class:`~art_fastat.trainers.base.AdversarialTrainerBase`.
        """
        if "steps" in kwargs or "random_start" in kwargs:
            raise TypeError("AdversarialTrainerFast takes one step from a random start: use AdversarialTrainerPGD")
        super().__init__(classifier, eps, alpha, steps=1, random_start=True, **kwargs)
        if alpha is None:
            self.alpha = 1.25 * self.eps
