"""
The per-epoch validation that the training engine (:class:`~art_fastat.trainers.AdversarialTrainerBase`) and the
bench's ART anchors share: clean accuracy and PGD accuracy on a fixed subset, under a fixed random stream.

Imports only torch and :mod:`art_fastat.perturbation`: the engine imports this module, and ART's attacks or
``pyautoattack`` here would slow ``import art_fastat`` by seconds.
"""

from __future__ import annotations

import time

import torch

from art_fastat.perturbation import AttackSpace, Bound, Forward, pgd

#: Default per-epoch validation: samples and PGD steps (step eps/4, random start).
VALIDATION_SIZE, VALIDATION_PGD_STEPS = 512, 10


@torch.no_grad()
def validation_metrics(
    forward: Forward, x: torch.Tensor, y: torch.Tensor, eps: float, pgd_steps: int, low: Bound, high: Bound, seed: int
) -> dict[str, float]:
    """
    The per-epoch validation of every trainer (and of the benchmark's ART anchors): clean accuracy and the accuracy
    under PGD with ``pgd_steps`` steps of eps/4 from a random start, the start drawn from a generator seeded with
    ``seed`` so every epoch and every method meets the same attack. The caller sets the model's mode.

    :return: ``val_accuracy``, ``val_pgd_accuracy`` (only if ``eps`` > 0) and ``val_seconds``.
    """
    started = time.perf_counter()
    result = {"val_accuracy": float((forward(x).argmax(1) == y).float().mean())}
    if eps:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed)
        with torch.enable_grad():
            delta = pgd(AttackSpace(forward, low, high, generator), x, y, eps, eps / 4, pgd_steps)
        result["val_pgd_accuracy"] = float((forward(x + delta).argmax(1) == y).float().mean())
    result["val_seconds"] = time.perf_counter() - started
    return result
