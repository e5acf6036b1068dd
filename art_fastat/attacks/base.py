"""What the attacks of art_fastat add to ``torchattacks.Attack``: a refused call leaves the attack as it was."""

from __future__ import annotations

from typing import Any

import torch
from torchattacks.attack import Attack


class CheckedAttack(Attack):
    """
    A ``torchattacks.Attack`` whose ``__call__`` puts back what torchattacks changes on the way in (the normalisation
    flag of ``set_normalization_used`` and the model's mode) when the attack raises, e.g. when it refuses its inputs:
    the attack stays usable after a refusal.
    """

    def __call__(self, inputs: torch.Tensor, labels: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        normalization_applied, training = self._normalization_applied, self.model.training
        try:
            return super().__call__(inputs, labels, *args, **kwargs)
        except BaseException:
            self._set_normalization_applied(normalization_applied)
            self._recover_model_mode(training)
            raise
