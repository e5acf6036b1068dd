"""GAAT: adversarial training with gradient approximation (Gong 2023, section 4, Algorithm 2)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from art_fastat._validation import check_choice, check_non_negative_float, check_positive_int
from art_fastat.attacks.gaat import HESSIANS, taylor_ascent
from art_fastat.trainers.base import AdversarialTrainerBase


class AdversarialTrainerGAAT(AdversarialTrainerBase):
    """
    | Paper link: Gong, "Reducing Adversarial Training Cost with Gradient Approximation", https://arxiv.org/abs/2309.09464

    Per batch: ``J = grad_x l(x)`` once at the natural point, ``steps`` Taylor steps
    ``delta <- Pi(delta + alpha sign(J + H delta))`` with no further pass through the network (eq. 6), then one
    optimizer step on ``CE(f(x + delta), y)``. See :func:`art_fastat.attacks.gaat.taylor_ascent` for the two Hessians.

    Decisions where the paper is silent or loose:

    - ``Pi`` also clips ``x + delta`` to ``clip_values`` (Algorithm 2 line 9 only clamps to the eps-ball).
    - ``alpha`` defaults to ``eps / 4`` as for PGD; the paper's own settings are ``{T, alpha, eps}`` = ``{10, 1/255,
      8/255}`` on CIFAR-10 (as printed) and ``{100, 0.01, 0.1}`` on MNIST.
    - With ``"gauss_newton"`` (the paper's default) the algebra makes the adversary one step of ``steps * alpha`` along
      ``sign(J)`` from the random start wherever ``1 + <J, delta_0> > 0``, and a *descent* where it is negative; it is
      implemented as printed and the history reports the descending fraction as ``descent_fraction``.
    - ``track_residual=True`` adds the mean residual ``R(x, delta)`` of eq. 4 (true loss increase minus the Taylor
      model's) to the history, computed from the update's own forward pass (no extra pass).
    - ``lr_schedule="paper"``: x0.2 at 30%, 60% and 80% of training (the paper's epochs 60, 120, 160 of 200).
    - ``eps_warmup_epochs="auto"`` by default, unlike the other trainers (0): eps ramps up from 0 over the first 30% of
      the epochs (the paper trains at eps 8/255 on CIFAR-10 and 0.1 on MNIST, where none is needed). At eps 0.3 on
      MNIST GAAT without a ramp never leaves a constant prediction (P1's network, Adam 5e-3, every other default: loss
      2.30 for 20 epochs, docs/reliability.md); with the ramp it learns, and the overfitting guard (on by default for
      single-step methods) keeps its best epoch when it overfits. ``eps_warmup_epochs=0`` trains at eps throughout.
    - Cost: 2 passes per batch with Gauss-Newton (J, then the update), ``2 + 2 * hutchinson_samples`` with the
      diagonal Hessian (each Hessian-vector product is a double backward). Between them, the Gauss-Newton steps are
      two elementwise steps over the batch whatever ``steps`` is (they fold exactly, see ``taylor_ascent``); the
      diagonal ones are ``steps``.
    """

    method: ClassVar[str] = "gaat"
    paper_lr_schedule: ClassVar[str] = "multistep_gaat"

    def __init__(
        self,
        classifier: Any,
        eps: float = 0.3,
        alpha: float | None = None,
        steps: int = 10,
        hessian: str = "gauss_newton",
        hutchinson_samples: int = 1,
        random_start: bool = True,
        track_residual: bool = False,
        eps_warmup_epochs: float | str = "auto",
        **kwargs: Any,
    ) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place.
        :param eps: L-inf radius.
        :param alpha: Taylor step size at the full eps (scaled with the eps warm-up); default ``eps / 4``.
        :param steps: Number of Taylor steps ``T``.
        :param hessian: ``"gauss_newton"`` (eq. 8) or ``"diagonal"`` (eq. 10, Hutchinson).
        :param hutchinson_samples: Rademacher probes per batch for the diagonal Hessian.
        :param random_start: Start from ``U(-eps, eps)`` (Algorithm 2 line 3 allows 0 or a random value).
        :param track_residual: Record the residual ``R(x, delta)`` of eq. 4 in the history.
        :param eps_warmup_epochs: The engine option (see :class:`~art_fastat.trainers.base.AdversarialTrainerBase`);
                                  ``"auto"`` (GAAT's default): eps ramps up over the first 0.3 of each ``fit``'s
                                  epochs.
        :param kwargs: Engine options of :class:`~art_fastat.trainers.base.AdversarialTrainerBase`.
        """
        super().__init__(classifier, eps, eps_warmup_epochs=eps_warmup_epochs, **kwargs)
        self.alpha = self.eps / 4 if alpha is None else check_non_negative_float(alpha, "alpha")
        self.steps = check_positive_int(steps, "steps")
        self.hessian = check_choice(hessian, "hessian", HESSIANS)
        self.hutchinson_samples = check_positive_int(hutchinson_samples, "hutchinson_samples")
        self.random_start = bool(random_start)
        self.track_residual = bool(track_residual)

    @property
    def single_step(self) -> bool:
        """True: the Taylor steps all use the one input gradient ``J`` (with Gauss-Newton, FGSM from the natural
        point), and GAAT overfits catastrophically at P1's eps 0.3 (docs/methods/gaat.md)."""
        return True

    @property
    def passes_per_batch(self) -> float:
        """2 with Gauss-Newton; ``2 + 2 * hutchinson_samples`` with the diagonal Hessian."""
        return 2.0 if self.hessian == "gauss_newton" else 2.0 + 2 * self.hutchinson_samples

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        with self._attack_context():
            ascent = taylor_ascent(self.space, x, y, eps, self._step_size(self.alpha, eps), self.steps,
                                   hessian=self.hessian, hutchinson_samples=self.hutchinson_samples,
                                   random_start=self.random_start)  # fmt: skip
        logits = self._update(x + ascent.delta, y)
        if ascent.descending is not None:
            self._record("descent_fraction", ascent.descending.sum(), len(y))
        if self.track_residual:
            adversarial_loss = F.cross_entropy(logits.float(), y, reduction="none")
            residual = (adversarial_loss - ascent.natural_loss - ascent.predicted_increase()).abs()
            self._record("residual", residual.sum(), len(y))
