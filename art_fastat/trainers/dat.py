"""DAT: delayed adversarial training (Gupta et al. 2020; as combined with GAAT in Gong 2023, Table 4)."""

from __future__ import annotations

import logging
import numbers
from typing import Any, ClassVar

import torch

from art_fastat._validation import check_choice, check_non_negative_float, check_positive_int
from art_fastat.engine.external import check_external_attack, single_step_attack
from art_fastat.engine.options import ENGINE_OPTIONS
from art_fastat.engine.schedules import warmed_up_eps
from art_fastat.trainers.base import AdversarialTrainerBase

logger = logging.getLogger(__name__)


class AdversarialTrainerDAT(AdversarialTrainerBase):
    """
    | Paper link: Gupta et al., "Improving the affordability of robustness training for DNNs", https://arxiv.org/abs/2002.04237
    | DAT+GAAT (Table 4): Gong, "Reducing Adversarial Training Cost with Gradient Approximation",
      https://arxiv.org/abs/2309.09464

    Natural training first, then adversarial training with any inner method for the remaining epochs.

    ``inner`` is one of this package's trainers (an instance built on the same classifier, or a method name such as
    ``"gaat"`` built with ``inner_options``) or a ``torchattacks.Attack`` (trained against as PGD-AT would). DAT+GAAT is
    ``AdversarialTrainerDAT(classifier, inner="gaat")``.

    Decisions where the paper is silent:

    - ``switch_epoch`` is an epoch count (the number of natural epochs) or a fraction of ``nb_epochs`` (rounded); the
      paper switches at 100 of 200 epochs, hence the default 0.5.
    - ``switch="plateau"`` switches as soon as the natural training loss improved by less than ``plateau_tolerance``
      (relative) over the last ``plateau_window`` epochs, and at ``switch_epoch`` at the latest.
    - The eps warm-up (``eps_warmup_epochs``) starts at the switch, since the natural phase has no eps.
    - The inner method runs inside DAT's engine (:meth:`~AdversarialTrainerBase.join`): it shares DAT's step (mixed
      precision, loss scaling, update), its records, its random stream and its process setup (one DDP wrap under
      torch.distributed), so DAT's engine options (``use_amp``, schedules, warm-up, guards, validation, checkpoints)
      govern both phases. ``inner_options`` therefore takes the inner method's own arguments only, and a trainer
      instance given as ``inner`` must use the same classifier and eps; its own engine options are not used.
    - History: every record has ``adversarial`` (0 or 1); from the switch on, ``switch_epoch`` (the first adversarial
      epoch, 1-based), also kept as ``trainer.switch_epoch``.
    """

    method: ClassVar[str] = "dat"

    def __init__(
        self,
        classifier: Any,
        eps: float = 0.3,
        inner: str | AdversarialTrainerBase | Any = "pgd",
        inner_options: dict[str, Any] | None = None,
        switch_epoch: int | float = 0.5,
        switch: str = "epoch",
        plateau_window: int = 3,
        plateau_tolerance: float = 0.01,
        **kwargs: Any,
    ) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place.
        :param eps: L-inf radius of the adversarial phase.
        :param inner: Method of the adversarial phase: a trainer name (``"pgd"``, ``"fast"``, ``"gaat"``, ...), a
                      trainer instance on ``classifier``, or a ``torchattacks.Attack`` on its model.
        :param inner_options: Arguments of the inner trainer when ``inner`` is a name.
        :param switch_epoch: Natural epochs (an int) or a fraction of ``nb_epochs`` in (0, 1) (a float).
        :param switch: ``"epoch"`` (at ``switch_epoch``) or ``"plateau"`` (at a natural-loss plateau, at
                       ``switch_epoch`` at the latest).
        :param plateau_window: Epochs over which the plateau is judged.
        :param plateau_tolerance: Relative loss improvement below which the loss has plateaued.
        :param kwargs: Engine options of :class:`~art_fastat.trainers.base.AdversarialTrainerBase`.
        """
        super().__init__(classifier, eps, **kwargs)
        self.switch = check_choice(switch, "switch", ("epoch", "plateau"))
        if isinstance(switch_epoch, bool) or not isinstance(switch_epoch, numbers.Real):
            raise TypeError(f"switch_epoch must be an int >= 0 or a fraction in (0, 1), got {switch_epoch!r}")
        if isinstance(switch_epoch, numbers.Integral):
            self.switch_epoch_setting: int | float = check_positive_int(switch_epoch, "switch_epoch", minimum=0)
        elif 0 < switch_epoch < 1:
            self.switch_epoch_setting = float(switch_epoch)
        else:
            raise ValueError(f"switch_epoch must be an int >= 0 or a fraction in (0, 1), got {switch_epoch!r}")
        self.plateau_window = check_positive_int(plateau_window, "plateau_window")
        self.plateau_tolerance = check_non_negative_float(plateau_tolerance, "plateau_tolerance")
        self.inner, self.attack = self._resolve_inner(inner, inner_options or {})
        self._switched_at: int | None = None

    def _resolve_inner(self, inner: Any, options: dict[str, Any]) -> tuple[AdversarialTrainerBase | None, Any]:
        from art_fastat.trainers import TRAINERS

        if isinstance(inner, str):
            names = tuple(name for name in TRAINERS if name not in ("natural", "dat", "dat+gaat"))
            check_choice(inner, "inner", names)
            engine_options = sorted(set(options) & {*ENGINE_OPTIONS, "eps"})
            if engine_options:
                raise ValueError(f"inner_options takes the inner method's own arguments; {', '.join(engine_options)} "
                                 "are DAT's own arguments and apply to both phases")  # fmt: skip
            inner = TRAINERS[inner](self._classifier, eps=self.eps, **options)
        elif options:
            raise ValueError("inner_options only apply when inner is a method name")
        elif isinstance(inner, AdversarialTrainerDAT):
            raise TypeError("inner must not itself be a DAT trainer")
        elif not isinstance(inner, AdversarialTrainerBase):
            return None, check_external_attack(inner, self)
        if inner.eps != self.eps:
            raise ValueError(f"inner must use the DAT trainer's eps={self.eps}, got eps={inner.eps}")
        inner.join(self)
        return inner, None

    @property
    def switch_epoch(self) -> int | None:
        """The first adversarial epoch (1-based) of the last ``fit``, or ``None`` if it has not been reached."""
        return None if self._switched_at is None else self._switched_at + 1

    @property
    def single_step(self) -> bool:
        """As the adversarial phase's method (DAT+GAAT: True)."""
        return self.inner.single_step if self.inner is not None else single_step_attack(self.attack)

    @property
    def passes_per_batch(self) -> float:
        """Average over the epochs run: 1 per natural batch, the inner method's per adversarial batch."""
        adversarial = self.inner.passes_per_batch if self.inner is not None else 1.0 + getattr(self.attack, "steps", 1)
        if not self.history:
            return adversarial
        return sum(adversarial if record["adversarial"] else 1.0 for record in self.history) / len(self.history)

    def _latest_switch(self) -> int:
        setting = self.switch_epoch_setting
        return setting if isinstance(setting, int) else round(setting * self._nb_epochs)

    def _adversarial_epochs(self) -> float:
        """
        The epochs after the (latest) switch. A switch at or after the last epoch makes the run natural training: it
        is warned about (WARNING), not refused, since a first ``fit`` of the natural phase alone is a valid use.
        """
        latest, total = self._latest_switch(), self._nb_epochs
        if latest >= total:
            logger.warning("dat: switch_epoch=%s switches after epoch %d, at or after the last of the %d epochs: this "
                           "fit trains naturally only%s", self.switch_epoch_setting, latest, total,
                           " unless the natural loss plateaus earlier" if self.switch == "plateau" else "")  # fmt: skip
        return float(max(total - latest, 0))

    def _begin_fit(self, x: torch.Tensor) -> None:
        self._switched_at = 0 if self._latest_switch() == 0 else None
        if self.inner is not None:
            self.inner._begin_fit(x)

    def _current_eps(self) -> float:
        if self._switched_at is None:
            return 0.0
        return warmed_up_eps(self.eps, self._progress - self._switched_at, self.eps_warmup)

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        if self._switched_at is None:
            self._update(x, y)
        elif self.attack is not None:
            self._update(x + self._run_attack(self.attack, x, y), y)
        else:
            self.inner._train_batch(x, y, eps)  # its records land in DAT's history (shared on join)

    def _end_epoch(self, record: dict[str, Any]) -> None:
        record["adversarial"] = float(self._switched_at is not None)
        if self._switched_at is None and self._natural_phase_over(record):
            self._switched_at = record["epoch"]
        if self._switched_at is not None:
            record["switch_epoch"] = self._switched_at + 1

    def _natural_phase_over(self, record: dict[str, Any]) -> bool:
        if record["epoch"] >= self._latest_switch():
            return True
        if self.switch != "plateau":
            return False
        losses = [r["loss"] for r in self.history] + [record["loss"]]
        if len(losses) <= self.plateau_window:
            return False
        before, now = losses[-1 - self.plateau_window], losses[-1]
        return (before - now) / max(abs(before), 1e-12) < self.plateau_tolerance

    def _method_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"switched_at": -1 if self._switched_at is None else self._switched_at}
        if self.inner is not None:
            state["inner"] = self.inner._method_state()
        return state

    def _load_method_state(self, state: dict[str, Any]) -> None:
        self._switched_at = None if state["switched_at"] < 0 else state["switched_at"]
        if self.inner is not None:
            self.inner._load_method_state(state["inner"])
