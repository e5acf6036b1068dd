"""Free-m: adversarial training for free (Shafahi et al. 2019; Algorithm 2 of Capaldi & Capozzi, "Free vs Fast")."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from art_fastat._validation import check_positive_int
from art_fastat.trainers.base import AdversarialTrainerBase


class AdversarialTrainerFree(AdversarialTrainerBase):
    """
    | Paper link: Shafahi et al., "Adversarial Training for Free!" (NeurIPS 2019), https://arxiv.org/abs/1904.12843

    Each minibatch is replayed ``replays`` (m) times; each replay is *one* pass whose backward gives both the weight
    gradient (an optimizer step) and the input gradient (``delta <- clip(delta + eps sign(g_adv), -eps, eps)``). The
    perturbation is one persistent batch-sized buffer, zero at the start of ``fit`` and never reset between
    minibatches.

    Decisions where the paper is silent:

    - ``nb_epochs`` counts passes, so ``fit(nb_epochs=N)`` costs what N epochs of natural training cost: it runs
      ``ceil(N / m)`` passes over the data of m replays each (the paper's ``N_ep / m`` epochs). The learning-rate
      schedule and the eps warm-up progress per pass; history records have ``passes`` beside ``epoch`` (data passes).
    - The buffer carries over from the previous minibatch and is projected onto the current minibatch's eps-ball and
      valid range before its first replay (so every input is valid and its gradient is not cut by a clamp); after
      each replay ``Pi`` keeps ``x + delta`` inside ``clip_values`` (as locuslab/fast_adversarial's Free does).
    - A short last minibatch uses the buffer's first rows (the other rows are kept); a larger one (a last minibatch
      merged into the one before, or a resume with a larger ``batch_size``) extends the buffer with zero rows.
    - The step is the current eps (``alpha = eps``, the paper's), scaled with the warm-up.
    - Cost: one pass per replay, ``m`` per minibatch; per pass the same as natural training plus the first layer's
      input gradient.
    """

    method: ClassVar[str] = "free"
    paper_lr_schedule: ClassVar[str] = "cyclic"

    def __init__(self, classifier: Any, eps: float = 0.3, replays: int = 8, **kwargs: Any) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place.
        :param eps: L-inf radius, also the step of each replay.
        :param replays: Replays per minibatch (the paper's m).
        :param kwargs: Engine options of :class:`~art_fastat.trainers.base.AdversarialTrainerBase`.
        """
        super().__init__(classifier, eps, **kwargs)
        self.m = check_positive_int(replays, "replays")
        self.delta: torch.Tensor | None = None

    @property
    def single_step(self) -> bool:
        """With one replay (``replays=1``: one signed step per update, no random start)."""
        return self.m == 1

    @property
    def replays(self) -> int:
        """The paper's m."""
        return self.m

    @property
    def updates_per_batch(self) -> int:
        """m: an optimizer step per replay."""
        return self.m

    @property
    def passes_per_batch(self) -> float:
        """m: one pass per replay."""
        return float(self.m)

    def _begin_fit(self, x: torch.Tensor) -> None:
        self.delta = torch.zeros_like(x)

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        if len(x) > len(self.delta):
            self.delta = torch.cat([self.delta, torch.zeros_like(x[len(self.delta) :])])
        rows, space = slice(0, len(x)), self.space
        delta = space.project(x, self.delta[rows], eps)
        for _ in range(self.m):
            delta.requires_grad_(True)
            self._update(x + delta, y)  # one backward: the optimizer step and delta.grad
            delta = space.project(x, delta.detach() + eps * delta.grad.sign(), eps)
        self.delta[rows] = delta

    def _method_state(self) -> dict[str, Any]:
        return {"delta": self.delta}

    def _load_method_state(self, state: dict[str, Any]) -> None:
        self.delta = state["delta"]
