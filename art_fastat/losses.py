"""Losses shared by several methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_divergence(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """
    Per-sample ``KL(softmax(reference_logits) || softmax(logits))`` in float32, differentiable in both arguments
    (detach ``reference_logits`` for a fixed reference, as an attack on it does).

    :param reference_logits: Logits of the reference distribution (e.g. the clean prediction).
    :param logits: Logits of the compared distribution (e.g. at a perturbed input).
    :return: The divergence per sample, shape ``(n,)``.
    """
    reference = F.log_softmax(reference_logits.float(), dim=1)
    return (reference.exp() * (reference - F.log_softmax(logits.float(), dim=1))).sum(1)
