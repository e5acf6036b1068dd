"""
The attacks :func:`art_fastat.evaluation.evaluate` can run: a registry of runners, one module per attack.

A runner is a function ``run(task: AttackTask) -> AttackResult`` in its own module. :func:`evaluate` checks the
arguments, seeds numpy and torch, calls the runner of every requested attack in turn and combines their per-sample
results. Adding an attack is one module with a ``run`` and one entry in :data:`RUNNERS` (plus its options in
:func:`evaluate`'s signature and in :mod:`art_fastat.evaluation.arguments`, if it takes any).

Runner modules are imported on first use: they import ART's attacks or ``pyautoattack``, which this module, and the
training engine that imports :mod:`art_fastat.evaluation.validation`, must not pay for.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

#: Attack name -> the module whose ``run`` runs it. The order is the order in which attacks are reported.
RUNNERS: dict[str, str] = {
    "pgd": "art_fastat.evaluation.pgd",
    "cw": "art_fastat.evaluation.cw",
    "autoattack": "art_fastat.evaluation.autoattack",
}
#: The attacks :func:`~art_fastat.evaluation.evaluate` can run, in the order they are reported.
ATTACKS: tuple[str, ...] = tuple(RUNNERS)


@dataclass(frozen=True)
class AttackTask:
    """
    What a runner gets: the checked arguments of :func:`~art_fastat.evaluation.evaluate` and the clean pass's result.

    :param classifier: The ART ``PyTorchClassifier`` (in eval mode, parameters frozen).
    :param x: Every input (a private float32 copy).
    :param labels: Integer labels of ``x``.
    :param attacked: Indices of the samples classified correctly on the clean input (the others are not attacked:
                     they count as non-robust under every attack).
    :param eps: Perturbation budget, in the units of ``clip_values``.
    :param norm_name: ``"Linf"`` or ``"L2"``.
    :param tolerance: Slack on ``eps`` when judging a perturbation's size: ``NORM_TOLERANCE`` times the clip width.
    :param batch_size: Batch size of the attack and of its predictions.
    :param seed: The evaluation's seed (numpy and torch are seeded with it before the runner is called).
    :param verbose: Show the attack's progress.
    :param options: This attack's own checked options (see :mod:`art_fastat.evaluation.arguments`).
    """

    classifier: Any
    x: np.ndarray
    labels: np.ndarray
    attacked: np.ndarray
    eps: float
    norm_name: str
    tolerance: float
    batch_size: int
    seed: int
    verbose: bool
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def x_attacked(self) -> np.ndarray:
        """The inputs to attack: those classified correctly on the clean input."""
        return self.x[self.attacked]

    @property
    def y_attacked(self) -> np.ndarray:
        """The labels of :attr:`x_attacked`."""
        return self.labels[self.attacked]


@dataclass
class AttackResult:
    """
    What a runner returns.

    :param robust: Boolean array of shape ``(n,)``: the samples the attack did not break (:func:`evaluate` keeps only
                   those also correct on the clean input).
    :param settings: The parameters the attack ran with (JSON-serialisable), reported under the attack's name.
    :param warnings: Warnings the attack itself raised while it ran; they become flags of the report.
    """

    robust: np.ndarray
    settings: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


class Runner(Protocol):
    """An attack's ``run``: attack ``task`` and say which samples survived."""

    def __call__(self, task: AttackTask) -> AttackResult:
        """
        :param task: The inputs, the budget and the attack's options.
        :return: The per-sample result and the settings.
        """


def get_runner(name: str) -> Runner:
    """
    :param name: A key of :data:`RUNNERS`.
    :return: The ``run`` function of its module (imported now if it was not yet).
    """
    return importlib.import_module(RUNNERS[name]).run


def predict_labels(classifier: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """
    :param classifier: The ART classifier.
    :param x: Inputs.
    :param batch_size: Batch size of ``predict``.
    :return: The predicted class of every input.
    """
    return np.argmax(classifier.predict(x, batch_size=batch_size), axis=1)


def distances(x_adv: np.ndarray, x: np.ndarray, norm_name: str) -> np.ndarray:
    """Per-sample size of ``x_adv - x`` in the threat norm, in float64."""
    delta = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    if norm_name == "Linf":
        return np.abs(delta).max(axis=1)
    return np.sqrt(np.square(delta).sum(axis=1))


def check_budget(name: str, x_adv: np.ndarray, x: np.ndarray, limit: float, norm_name: str) -> None:
    """Warn if an eps-bounded attack returned points outside the budget (the evaluation would be too pessimistic)."""
    largest = float(distances(x_adv, x, norm_name).max())
    if largest > limit:
        logger.warning("%s returned perturbations of %s norm up to %g, above eps (%g)", name, norm_name, largest, limit)
