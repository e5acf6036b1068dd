"""
Learning-rate and eps schedules, as pure functions of training progress.

Progress is measured in epochs as a float (``epoch + batch / batches_per_epoch``), so every schedule is
per-iteration and survives a resume without state of its own.
"""

from __future__ import annotations

import math

import numpy as np

#: Named learning-rate schedules: a multiplier of the optimizer's own (peak) learning rate at ``fraction`` of training.
LR_SCHEDULES = ("constant", "triangle", "cyclic", "multistep", "multistep_gaat", "cosine")


def lr_multiplier(name: str, fraction: float) -> float:
    """
    :param name: One of :data:`LR_SCHEDULES`:

        - ``constant``: the optimizer's learning rate throughout (ART's behaviour);
        - ``triangle``: linear 0 -> peak at 2/5 of training -> 0 (locuslab/fast_adversarial MNIST, protocol P1);
        - ``cyclic``: linear 0 -> peak at 1/2 -> 0 (locuslab/fast_adversarial CIFAR-10, Fast and Free);
        - ``multistep``: x0.1 at 1/2 and again at 3/4 of training (Madry et al.; Rice et al. 2020);
        - ``multistep_gaat``: x0.2 at 30%, 60% and 80% of training (GAAT's paper: epochs 60, 120, 160 of 200);
        - ``cosine``: half a cosine from peak to 0.
    :param fraction: Progress in [0, 1].
    :return: The multiplier of the peak learning rate.
    """
    if name == "constant":
        return 1.0
    if name == "triangle":
        return float(np.interp(fraction, [0.0, 0.4, 1.0], [0.0, 1.0, 0.0]))
    if name == "cyclic":
        return float(np.interp(fraction, [0.0, 0.5, 1.0], [0.0, 1.0, 0.0]))
    if name == "multistep":
        return 0.1 ** ((fraction >= 0.5) + (fraction >= 0.75))
    if name == "multistep_gaat":
        return 0.2 ** ((fraction >= 0.3) + (fraction >= 0.6) + (fraction >= 0.8))
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))
    raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, 'paper' or a scheduler, got {name!r}")


#: ``eps_warmup_epochs="auto"``: the eps ramp takes this share of the epochs it applies to (P1's 3 of 10).
AUTO_EPS_WARMUP = 0.3


def warmed_up_eps(eps: float, progress_epochs: float, warmup_epochs: float) -> float:
    """
    The eps warm-up of protocol P1: linear per iteration from 0 to ``eps`` over the first ``warmup_epochs``.
    Without it PGD-AT at eps 0.3 on MNIST collapses to a constant prediction.

    :param eps: Target radius.
    :param progress_epochs: Training progress in epochs.
    :param warmup_epochs: Length of the ramp; 0 disables it.
    :return: The radius to attack with now.
    """
    if warmup_epochs <= 0:
        return eps
    return eps * min(1.0, progress_epochs / warmup_epochs)
