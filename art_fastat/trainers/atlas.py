"""ATLAS: Lu & Kumar, "Improving Local Effectiveness for Global Robust Training" (this project's reading)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from art_fastat._validation import check_choice, check_non_negative_float, check_positive_int
from art_fastat.losses import kl_divergence
from art_fastat.trainers.base import AdversarialTrainerBase

ADVERSARIES = ("fgsm", "pgd")


class AdversarialTrainerATLAS(AdversarialTrainerBase):
    """
    | Paper link: Lu & Kumar, "Improving Local Effectiveness for Global Robust Training", https://arxiv.org/abs/2110.14030

    Only the abstract and introduction of the ATLAS paper survive, so its loss here is **this project's reading** of
    the paper's description (``shared/design/methods.md``), not a transcription:

    1. a global adversary ``x_a = x + delta`` on the cross-entropy: one FGSM step with random start
       (``adversary="fgsm"``, Fast's alpha 1.25 eps) or PGD-k (``"pgd"``, alpha eps/4);
    2. local stability on the ball of radius ``r`` around ``x_a``: ``CE(f(x_a), y) + beta KL(p(x_a) || p(x_a + xi))``,
       ``xi`` one signed ascent step on that KL from ``U(-r, r)`` (step ``1.25 r``), ``x_a + xi`` clipped to the valid
       range;
    3. a global term tying the balls to the natural prediction: ``gamma KL(p(x) || p(x_a))``.

    The loss is the sum; ``local_term=False`` / ``global_term=False`` drop 2's KL / 3 (with both off it is Fast).

    Decisions where the description is silent:

    - ``delta`` and ``xi`` are constants of the weight update (no gradient flows into the attacks); the KL terms are
      differentiated through *both* distributions, as TRADES differentiates its KL.
    - The local ball is centred at ``x_a``, so ``x_a + xi`` may lie up to ``eps + r`` from ``x`` (inside
      ``clip_values``): it measures stability around the adversary, not a larger threat model.
    - ``r`` and the local step scale with the eps warm-up like every step size.
    - The forward pass at ``x_a`` is shared: its logits are both the local attack's (detached) target and the update's.
    - History: ``ce``, ``local_kl`` and ``global_kl`` (batch means of the unweighted terms) beside ``loss``.
    - ``lr_schedule="paper"`` is ``cyclic`` (Fast's; the paper's schedule is not in the surviving text).
    - Cost per batch: ``steps`` attack passes, one local-attack pass, the update's forward at ``x_a``, ``x_a + xi`` and
      ``x`` and one backward through the three: about 5 passes for one-step ATLAS, against Fast's 2.
    """

    method: ClassVar[str] = "atlas"
    paper_lr_schedule: ClassVar[str] = "cyclic"

    def __init__(
        self,
        classifier: Any,
        eps: float = 0.3,
        adversary: str = "fgsm",
        steps: int | None = None,
        alpha: float | None = None,
        local_radius: float | None = None,
        beta: float = 1.0,
        gamma: float = 1.0,
        local_term: bool = True,
        global_term: bool = True,
        **kwargs: Any,
    ) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place.
        :param eps: L-inf radius of the global adversary.
        :param adversary: ``"fgsm"`` (one step with random start) or ``"pgd"``.
        :param steps: PGD steps (default 10); must be 1 or None with ``"fgsm"``.
        :param alpha: Adversary step size at the full eps; default 1.25 eps (fgsm) or eps / 4 (pgd).
        :param local_radius: ``r``, the radius of the local balls at the full eps; default eps / 2.
        :param beta: Weight of the local KL term.
        :param gamma: Weight of the global KL term.
        :param local_term: Include the local KL term (and its attack pass).
        :param global_term: Include the global KL term (and its natural forward pass).
        :param kwargs: Engine options of :class:`~art_fastat.trainers.base.AdversarialTrainerBase`.
        """
        super().__init__(classifier, eps, **kwargs)
        self.adversary = check_choice(adversary, "adversary", ADVERSARIES)
        if self.adversary == "fgsm":
            if steps not in (None, 1):
                raise ValueError(f"steps must be 1 (or None) with adversary='fgsm', got {steps!r}")
            self.steps = 1
        else:
            self.steps = 10 if steps is None else check_positive_int(steps, "steps")
        default_alpha = 1.25 * self.eps if self.adversary == "fgsm" else self.eps / 4
        self.alpha = default_alpha if alpha is None else check_non_negative_float(alpha, "alpha")
        self.local_radius = (
            self.eps / 2 if local_radius is None else check_non_negative_float(local_radius, "local_radius")
        )
        self.beta = check_non_negative_float(beta, "beta")
        self.gamma = check_non_negative_float(gamma, "gamma")
        self.local_term = bool(local_term)
        self.global_term = bool(global_term)

    @property
    def single_step(self) -> bool:
        """With the one-step global adversary (``adversary="fgsm"``)."""
        return self.steps == 1

    @property
    def passes_per_batch(self) -> float:
        """Attack steps + 1 update, + 2 with the local term (its attack and forward), + 1 with the global term."""
        return float(self.steps + 1 + 2 * self.local_term + self.global_term)

    def _local_perturbation(self, x_adv: torch.Tensor, target_logits: torch.Tensor, radius: float) -> torch.Tensor:
        """``xi``: one signed ascent step on ``KL(p(x_a) || p(x_a + xi))`` from ``U(-r, r)``, projected."""

        def divergence(logits: torch.Tensor) -> torch.Tensor:
            return kl_divergence(target_logits, logits)

        space = self.space
        xi = space.start(x_adv, radius)
        with self._attack_context():
            gradient, _ = space.gradient(x_adv, xi, divergence)
        return space.project(x_adv, xi + 1.25 * radius * gradient.sign(), radius)

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        delta = self._pgd(x, y, eps, self._step_size(self.alpha, eps), self.steps, random_start=True)
        x_adv = x + delta
        logits_adv = self._forward(x_adv)
        ce = F.cross_entropy(logits_adv.float(), y)
        loss = ce
        n = len(y)
        self._record("ce", ce.detach() * n, n)
        if self.local_term:
            xi = self._local_perturbation(x_adv, logits_adv.detach(), self._step_size(self.local_radius, eps))
            local_kl = kl_divergence(logits_adv, self._forward(x_adv + xi)).mean()
            loss = loss + self.beta * local_kl
            self._record("local_kl", local_kl.detach() * n, n)
        if self.global_term:
            global_kl = kl_divergence(self._forward(x), logits_adv).mean()
            loss = loss + self.gamma * global_kl
            self._record("global_kl", global_kl.detach() * n, n)
        self._optimize(loss, logits_adv, y)
