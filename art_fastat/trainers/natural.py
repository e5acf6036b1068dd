"""Natural (non-adversarial) training on the engine: the cost reference of every ratio "to natural training"."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from art_fastat.trainers.base import AdversarialTrainerBase


class NaturalTrainer(AdversarialTrainerBase):
    """
    Plain training on clean inputs, one pass per batch. ``eps`` is optional and only used by the per-epoch validation
    PGD accuracy.
    """

    method: ClassVar[str] = "natural"

    def __init__(self, classifier: Any, eps: float | None = None, **kwargs: Any) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place.
        :param eps: Radius of the validation PGD (optional).
        :param kwargs: Engine options of :class:`~art_fastat.trainers.base.AdversarialTrainerBase`.
        """
        super().__init__(classifier, eps, **kwargs)

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        self._update(x, y)
