"""
The ``"cw"`` runner of :func:`art_fastat.evaluation.evaluate`: ART's ``CarliniLInfMethod`` (L-inf) or
``CarliniL2Method`` (L2). They look for the smallest perturbation, unbounded, so a sample counts as robust if the attack
fails to change the prediction *or* its perturbation is larger than ``eps`` (plus ``NORM_TOLERANCE`` times the clip
width), measured in the threat norm.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from art.attacks.evasion import CarliniL2Method, CarliniLInfMethod

from art_fastat.evaluation.runners import AttackResult, AttackTask, distances, predict_labels

#: ``cw_learning_rate=None`` means this, per norm (see :func:`~art_fastat.evaluation.evaluate`).
CW_DEFAULT_LEARNING_RATE: dict[str, float] = {"Linf": 0.1, "L2": 0.01}
#: ART's ``CarliniLInfMethod`` settings fixed by :func:`~art_fastat.evaluation.evaluate` (ART's defaults: 0.9 and
#: 2.0). The coarser tau and constant schedules make it about 15x faster; on a digits CNN it found the same
#: perturbations.
CW_LINF_DECREASE_FACTOR = 0.5
CW_LINF_CONST_FACTOR = 4.0


def run(task: AttackTask) -> AttackResult:
    """
    :param task: Options ``max_iter`` and ``learning_rate`` (``None``: :data:`CW_DEFAULT_LEARNING_RATE` of the norm).
    :return: Robust: the attack failed or needs more than ``eps``. Settings: ART's class (``method``), its
             parameters, and ``tolerance``.
    """
    learning_rate = task.options["learning_rate"]
    if learning_rate is None:
        learning_rate = CW_DEFAULT_LEARNING_RATE[task.norm_name]
    attack, settings = carlini_wagner(
        task.classifier, task.norm_name, task.options["max_iter"], learning_rate, task.batch_size, task.verbose
    )
    settings["tolerance"] = task.tolerance
    robust = np.zeros(len(task.x), dtype=bool)
    if len(task.attacked):
        x_attacked, y_attacked = task.x_attacked, task.y_attacked
        x_adv = attack.generate(x_attacked, y_attacked)
        failed = predict_labels(task.classifier, x_adv, task.batch_size) == y_attacked
        too_large = distances(x_adv, x_attacked, task.norm_name) > task.eps + task.tolerance
        robust[task.attacked] = failed | too_large
    return AttackResult(robust, settings)


def carlini_wagner(
    classifier: Any, norm_name: str, max_iter: int, learning_rate: float, batch_size: int, verbose: bool
) -> tuple[CarliniLInfMethod | CarliniL2Method, dict[str, Any]]:
    """ART's Carlini-Wagner attack for the threat norm, and its settings."""
    if norm_name == "Linf":
        attack = CarliniLInfMethod(
            classifier,
            learning_rate=learning_rate,
            max_iter=max_iter,
            decrease_factor=CW_LINF_DECREASE_FACTOR,
            const_factor=CW_LINF_CONST_FACTOR,
            batch_size=batch_size,
            verbose=verbose,
        )
        names = ("learning_rate", "max_iter", "decrease_factor", "initial_const", "largest_const", "const_factor")
    else:
        attack = CarliniL2Method(
            classifier, learning_rate=learning_rate, max_iter=max_iter, batch_size=batch_size, verbose=verbose
        )
        names = ("learning_rate", "max_iter", "binary_search_steps", "initial_const", "max_halving", "max_doubling")
    settings = {"method": type(attack).__name__, **{key: getattr(attack, key) for key in names}}
    return attack, settings
