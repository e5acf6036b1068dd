"""TEMPORARY until the evaluation package lands."""

from __future__ import annotations

import time

import torch

from art_fastat.perturbation import AttackSpace, Bound, Forward, pgd

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
