"""
Adapters between an ART ``PyTorchClassifier`` and the plain PyTorch code of the engine and the attacks.

Every attack in this package works in *input space*: images inside the classifier's ``clip_values``, with the
classifier's own ``preprocessing=(mean, std)`` applied differentiably inside the forward pass. That is what ART's
own attacks see, so a perturbation budget ``eps`` means the same thing for training and for evaluation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)


class InputSpaceModel(nn.Module):
    """
    ``model((x - mean) / std)``: a classifier's network with its standardisation folded into the forward pass.

    The wrapped module is the classifier's own (not a copy), so training through this wrapper trains the classifier.
    """

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        """
        :param model: The network that expects standardised inputs.
        :param mean: Subtrahend, broadcastable to a batch of inputs.
        :param std: Divisor, broadcastable to a batch of inputs.
        """
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Inputs in input space.
        :return: The network's logits.
        """
        return self.model((x - self.mean) / self.std)


def check_classifier(classifier: Any) -> None:
    """
    Refuse anything the engine cannot train or attack correctly.

    :param classifier: The object passed by the user as ``classifier``.
    :raises TypeError: If it is not an ART ``PyTorchClassifier``.
    :raises ValueError: If it has no ``clip_values`` or uses preprocessing defences.
    """
    from art.estimators.classification import PyTorchClassifier

    if not isinstance(classifier, PyTorchClassifier):
        raise TypeError(
            f"classifier must be an art.estimators.classification.PyTorchClassifier, got {type(classifier).__name__}"
        )
    if classifier.clip_values is None:
        raise ValueError("classifier must have clip_values (e.g. clip_values=(0, 1)): eps is measured inside them")
    if classifier.preprocessing_defences:
        raise ValueError(
            "classifier must have no preprocessing_defences: adversarial training differentiates through the "
            "network and only the standardisation `preprocessing=(mean, std)` is supported"
        )
    if not classifier.channels_first:
        raise ValueError("classifier must be channels_first=True (NCHW inputs)")


def _standardisation(classifier: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Return ``(mean, std)`` of the classifier's preprocessing, or ``None`` when it is the identity."""
    preprocessing = getattr(classifier, "preprocessing", None)
    if preprocessing is None:
        return None
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)
    if np.all(mean == 0) and np.all(std == 1):
        return None
    return mean, std


def _broadcastable(values: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Shape per-channel (C,) values to (1, C, 1, 1, ...) the way ART broadcasts them for channels-first inputs."""
    if values.ndim == 1 and values.size > 1 and values.size == input_shape[0]:
        return values.reshape((1, -1) + (1,) * (len(input_shape) - 1))
    return values.reshape((1,) + values.shape) if values.ndim == len(input_shape) else values


def input_space_model(classifier: Any) -> nn.Module:
    """
    The classifier's network as a function of input-space images.

    Without preprocessing this is ``classifier.model`` itself (no wrapper, no overhead); with
    ``preprocessing=(mean, std)`` it is an :class:`InputSpaceModel` around it on the classifier's device.
    Build torchattacks attacks on this module when the classifier standardises its inputs.

    :param classifier: An ART ``PyTorchClassifier``.
    :return: A module mapping input-space images to logits.
    """
    standardisation = _standardisation(classifier)
    if standardisation is None:
        return classifier.model
    mean, std = (
        torch.from_numpy(_broadcastable(values, classifier.input_shape)).to(classifier.device)
        for values in standardisation
    )
    return InputSpaceModel(classifier.model, mean, std)


def clip_bounds(classifier: Any, device: torch.device) -> tuple[float | torch.Tensor, float | torch.Tensor]:
    """
    The classifier's ``clip_values``: floats when scalar (the cheap ``clamp`` path), else tensors broadcastable to a
    batch.

    :param classifier: An ART ``PyTorchClassifier`` with ``clip_values``.
    :param device: Where tensors are needed.
    :return: ``(low, high)``.
    """
    bounds = [np.asarray(value, dtype=np.float32) for value in classifier.clip_values]
    if all(bound.size == 1 for bound in bounds):
        return float(bounds[0]), float(bounds[1])
    low, high = (torch.as_tensor(np.broadcast_to(b, classifier.input_shape).copy(), device=device) for b in bounds)
    return low, high


def clip_range(classifier: Any) -> float:
    """The smallest width of the valid input range: the largest meaningful L-inf ``eps``."""
    low, high = (np.asarray(v, dtype=np.float64) for v in classifier.clip_values)
    return float(np.min(high - low))
