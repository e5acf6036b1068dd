"""
The contract between a method and the engine: what a method provides (:meth:`TrainingMethod._train_batch` and a few
optional hooks) and the helpers it builds its step from. :class:`~art_fastat.trainers.base.AdversarialTrainerBase`
inherits it and supplies the engine parts the helpers use.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from art_fastat.engine.distributed import ProcessSetup
from art_fastat.engine.external import run_external_attack
from art_fastat.engine.history import EpochTotals
from art_fastat.engine.step import Step
from art_fastat.perturbation import AttackSpace, Bound, pgd


class TrainingMethod(abc.ABC):
    """A method's side of the engine: subclass :class:`~art_fastat.trainers.base.AdversarialTrainerBase`."""

    #: Short name used by the CLI, the history and checkpoints.
    method: ClassVar[str] = "base"
    #: Mode of the network during the built-in attack passes: "train" or "eval" (see the engine's decisions).
    attack_mode: ClassVar[str] = "train"
    #: The schedule ``lr_schedule="paper"`` selects.
    paper_lr_schedule: ClassVar[str] = "constant"

    # the engine parts the helpers use (set by AdversarialTrainerBase)
    classifier: Any
    eps: float | None
    network: nn.Module
    model: nn.Module
    low: Bound
    high: Bound
    generator: torch.Generator
    step: Step
    totals: EpochTotals
    process: ProcessSetup
    lr_schedule: Any
    lr_schedule_interval: str
    _nb_epochs: int

    # ------------------------------------------------------------------ what a method provides

    @abc.abstractmethod
    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        """
        Train on one minibatch: build the adversarial input and call :meth:`_update` (or :meth:`_optimize`).

        :param x: Clean inputs on the classifier's device.
        :param y: Integer labels.
        :param eps: The radius to use now (the warm-up schedule applied to ``self.eps``).
        """

    @property
    def passes_per_batch(self) -> float:
        """Forward+backward passes per minibatch that the method's algorithm implies (cost accounting)."""
        return 1.0

    @property
    def single_step(self) -> bool:
        """
        Whether the method's adversary takes one gradient step per weight update (FGSM-like). Such methods can
        overfit catastrophically: their robust accuracy collapses within an epoch or a few while the clean accuracy
        holds (Wong et al. 2020, https://arxiv.org/abs/2001.03994), so ``overfitting_guard="auto"`` watches them.
        """
        return False

    @property
    def replays(self) -> int:
        """
        What one minibatch counts for in ``nb_epochs`` (Free: its ``m`` replays; ATCD: its ``T K`` trajectory steps).
        For a replaying method ``fit`` runs ``ceil(nb_epochs / replays)`` passes over the data, and schedules and
        warm-up progress in these units.
        """
        return 1

    @property
    def updates_per_batch(self) -> int:
        """Optimizer steps per minibatch (Free: m; ATCD: T); a scheduler object with ``interval="step"`` counts them."""
        return 1

    def _adversarial_epochs(self) -> float:
        """Epochs of this ``fit`` (in ``nb_epochs`` units) in which the eps warm-up applies; a method may refuse a plan
        here."""
        return float(self._nb_epochs)

    def _method_state(self) -> dict[str, Any]:
        """State a method keeps across batches, saved in checkpoints (tensors, numbers, strings, containers)."""
        return {}

    def _load_method_state(self, state: dict[str, Any]) -> None:  # noqa: B027 (an optional hook)
        """Restore what :meth:`_method_state` returned."""

    def _end_epoch(self, record: dict[str, Any]) -> None:  # noqa: B027 (an optional hook)
        """Called after every epoch with its history record, which a method may extend."""

    def _begin_fit(self, x: torch.Tensor) -> None:  # noqa: B027 (an optional hook)
        """Called once per fresh (not resumed) ``fit`` with its first batch, before training on it (e.g. to size a
        buffer)."""

    # ------------------------------------------------------------------ helpers for methods

    @property
    def space(self) -> AttackSpace:
        """What the attack functions need: the forward pass, ``clip_values``, the generator and the fp16 loss scale."""
        return AttackSpace(self.step.forward, self.low, self.high, self.generator, self.step.loss_scale)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of input-space images, with preprocessing and mixed precision applied."""
        return self.step.forward(x)

    def _attack_context(self) -> contextlib.AbstractContextManager:
        """The network in the mode of the attack passes (see ``attack_mode``) for the block."""
        return self.step.attack(self.attack_mode)

    def _step_size(self, alpha: float, eps: float) -> float:
        """A step size given for the full eps, scaled with the warm-up (alpha * eps_now / eps)."""
        return alpha * eps / self.eps if self.eps else alpha

    def _pgd(self, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, random_start: bool) -> Any:
        """PGD of :func:`art_fastat.perturbation.pgd` in this trainer's attack space and attack mode."""
        with self._attack_context():
            return pgd(self.space, x, y, eps, alpha, steps, random_start)

    def _run_attack(self, attack: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The perturbation a plugged-in torchattacks attack (checked at construction) finds for input-space ``x``."""
        return run_external_attack(attack, self.network, self.model, x, y)

    def _update(self, x_input: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """
        One weight update on ``CE(f(x_input), y)``. If ``x_input`` depends on a leaf that requires grad (Free's
        persistent delta), that leaf's ``.grad`` is filled by the same backward pass.

        :return: The logits of the update's forward pass (detached).
        """
        logits = self._forward(x_input)
        self._optimize(F.cross_entropy(logits.float(), y), logits, y)
        return logits.detach()

    def _optimize(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """
        Backward on ``loss``, an optimizer step and the per-step schedule; records loss and accuracy for the history.

        :param loss: Batch-mean training loss, built in train mode.
        :param logits: Logits whose accuracy is reported (those of the adversarial inputs).
        :param y: Labels.
        """
        self.step.optimize(loss)
        if not isinstance(self.lr_schedule, str) and self.lr_schedule_interval == "step":
            self.lr_schedule.step()
        n = len(y)
        self._record("loss", loss.detach() * n, n)
        self._record("accuracy", (logits.detach().argmax(1) == y).sum(), n)

    def _record(self, name: str, total: torch.Tensor | float, weight: float) -> None:
        """Add ``total`` (a sum over ``weight`` samples) to the epoch mean reported as ``name`` in the history."""
        self.totals.record(name, total, weight)

    def join(self, host: TrainingMethod) -> None:
        """
        Run as a phase of ``host`` (DAT's adversarial phase): share its step (forward, mixed precision, update, loss
        weight), its records, its random stream and its process setup (one DDP wrap). ``host`` then calls this
        trainer's :meth:`_train_batch` with its own warm-up eps; its schedules, guards and checkpoints govern both.
        """
        if host.classifier is not self.classifier:
            raise ValueError("inner must be a trainer built on the same classifier as the DAT trainer")
        self.step, self.totals, self.generator, self.process = host.step, host.totals, host.generator, host.process
