"""RAT: regular PGD adversarial training (Madry et al. 2018; GAAT paper's Algorithm 1), the reference of every ratio."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from art_fastat._validation import check_non_negative_float, check_positive_int
from art_fastat.engine.external import check_external_attack, single_step_attack
from art_fastat.trainers.base import AdversarialTrainerBase


class AdversarialTrainerPGD(AdversarialTrainerBase):
    """
    | Paper link: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks" (ICLR 2018), https://arxiv.org/abs/1706.06083

    PGD adversarial training: ``delta_0 ~ U(-eps, eps)``, ``steps`` times ``delta <- Pi(delta + alpha sign(grad))``,
    then one optimizer step on ``CE(f(x + delta), y)``. Cost: ``steps + 1`` passes per batch.

    The inner maximizer is pluggable: ``attack=`` takes any ``torchattacks.Attack`` built on the classifier's model
    (it then replaces the built-in PGD; its own eps and steps apply and ``eps`` only bounds validation).
    """

    method: ClassVar[str] = "pgd"
    paper_lr_schedule: ClassVar[str] = "multistep"

    def __init__(
        self,
        classifier: Any,
        eps: float = 0.3,
        alpha: float | None = None,
        steps: int = 10,
        random_start: bool = True,
        attack: Any = None,
        **kwargs: Any,
    ) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place.
        :param eps: L-inf radius.
        :param alpha: Step size at the full eps (scaled with the eps warm-up); default ``eps / 4``.
        :param steps: PGD steps per batch.
        :param random_start: Start from ``U(-eps, eps)``.
        :param attack: Optional ``torchattacks.Attack`` replacing the built-in PGD.
        :param kwargs: Engine options of :class:`~art_fastat.trainers.base.AdversarialTrainerBase`.
        """
        super().__init__(classifier, eps, **kwargs)
        self.alpha = self.eps / 4 if alpha is None else check_non_negative_float(alpha, "alpha")
        self.steps = check_positive_int(steps, "steps")
        self.random_start = bool(random_start)
        self.attack = None if attack is None else check_external_attack(attack, self)

    @property
    def single_step(self) -> bool:
        """One step (Fast, ``steps=1``) or a one-step plugged-in attack."""
        return single_step_attack(self.attack) if self.attack is not None else self.steps == 1

    @property
    def passes_per_batch(self) -> float:
        """``steps + 1``."""
        return float(self.steps + 1)

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        if self.attack is not None:
            delta = self._run_attack(self.attack, x, y)
        else:
            delta = self._pgd(x, y, eps, self._step_size(self.alpha, eps), self.steps, self.random_start)
        self._update(x + delta, y)
