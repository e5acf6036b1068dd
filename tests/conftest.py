"""Shared fixtures: the embedded digits data and small ART classifiers built from a fixed seed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_fastat.protocols import get_protocol

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Protocol P0 splits: 1500 train, 297 test, float32 (n, 1, 8, 8) in [0, 1]."""
    return get_protocol("digits").load()


class Standardise(nn.Module):
    """``(x - mean) / std`` inside the network: the un-normalised twin of a classifier with ``preprocessing``."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def tiny_network(seed: int = 0, batch_norm: bool = False) -> nn.Module:
    """A small digits CNN (optionally with BatchNorm) with weights fixed by ``seed``."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 8, 3, 2, 1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10)]
    return nn.Sequential(*layers)


@pytest.fixture(scope="session")
def train_subset(digits) -> tuple[np.ndarray, np.ndarray]:
    """The first 256 P0 training images and labels: enough for one-batch and few-epoch checks."""
    x, y, _, _ = digits
    return x[:256], y[:256]


@pytest.fixture(scope="session")
def trained_network(digits) -> nn.Module:
    """:func:`tiny_network` trained naturally on the digits (300 Adam steps), then frozen: attacks on it have a real
    loss surface to climb (an untrained network's loss is flat near log 10)."""
    x, y = torch.from_numpy(digits[0]), torch.from_numpy(digits[1])
    model = tiny_network()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(300):
        index = torch.arange(step * 64, step * 64 + 64) % len(x)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()
    return model.requires_grad_(False)


def make_classifier(network: nn.Module | None = None, lr: float = 1e-3, **kwargs: object) -> PyTorchClassifier:
    network = tiny_network() if network is None else network
    return PyTorchClassifier(
        network,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        optimizer=torch.optim.Adam(network.parameters(), lr=lr),
        clip_values=(0.0, 1.0),
        **kwargs,
    )


@pytest.fixture
def classifier_factory() -> Callable[..., PyTorchClassifier]:
    return make_classifier


def weights(classifier: PyTorchClassifier) -> list[torch.Tensor]:
    return [p.detach().clone() for p in classifier.model.parameters()]


def same_weights(a: list[torch.Tensor], b: list[torch.Tensor], atol: float = 0.0) -> bool:
    return all(
        torch.allclose(p, q, atol=atol, rtol=0) if atol else torch.equal(p, q) for p, q in zip(a, b, strict=True)
    )
