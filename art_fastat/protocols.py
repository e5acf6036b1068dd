"""
The benchmark protocols of ``shared/design/protocol.md``: fixed data splits, model, optimizer, schedules, threat
model and evaluation settings, so every method, run and machine measures the same work.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from art_fastat import datasets
from art_fastat._validation import check_choice
from art_fastat.models import get_model

logger = logging.getLogger(__name__)

#: Environment variable naming the directory of MNIST / CIFAR-10 files when ``--data-dir`` is not given.
DATA_DIR_VARIABLE = "ART_FASTAT_DATA_DIR"


@dataclass(frozen=True)
class Protocol:
    """
    One benchmark protocol. ``load`` returns its splits, ``make_classifier`` a fresh ART classifier, and the remaining
    fields are the training and evaluation settings every method runs under (``augmentation``: the engine option of
    that name, or None).
    """

    name: str
    model: str
    input_shape: tuple[int, ...]
    eps: float
    batch_size: int
    nb_epochs: int
    optimizer: str
    lr: float
    lr_schedule: str
    eps_warmup_epochs: float
    pgd_steps: int
    pgd_step_size: float
    pgd_restarts: int
    momentum: float = 0.9
    weight_decay: float = 0.0
    needs_data_dir: bool = False
    augmentation: str | None = None

    def load(self, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """
        :param data_dir: Directory of the protocol's data files (``mnist10k``: the MNIST t10k idx files; ``cifar10``:
                         the CIFAR-10 python batches or archive). Defaults to ``$ART_FASTAT_DATA_DIR``, then
                         ``shared/data/mnist`` in or beside the working directory.
        :return: ``(x_train, y_train, x_test, y_test)``, float32 NCHW in [0, 1] and int64 labels.
        """
        if self.name == "digits":
            x, y = datasets.load_digits()
            order = np.random.RandomState(0).permutation(len(x))
            x, y = x[order], y[order]
            return x[:1500], y[:1500], x[1500:], y[1500:]
        root = _resolve_data_dir(data_dir, self.name)
        if self.name == "mnist10k":
            x, y = datasets.load_mnist(root, split="test")
            return x[:8000], y[:8000], x[8000:], y[8000:]
        (x_train, y_train), (x_test, y_test) = datasets.load_cifar10(root)
        return x_train, y_train, x_test, y_test

    def make_classifier(self, device: str | None = None, seed: int = 0, lr: float | None = None) -> Any:
        """
        :param device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available, as ART chooses).
        :param seed: Seed of the weight initialisation (the global random state is left untouched).
        :param lr: Peak learning rate; defaults to the protocol's.
        :return: A fresh ``PyTorchClassifier`` with the protocol's model and optimizer, ``clip_values=(0, 1)``.
        """
        from art.estimators.classification import PyTorchClassifier

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = get_model(self.model)
        lr = self.lr if lr is None else lr
        if self.optimizer == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                model.parameters(), lr=lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        device_type = (
            "gpu" if (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda") else "cpu"
        )
        return PyTorchClassifier(
            model,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=self.input_shape,
            nb_classes=10,
            optimizer=optimizer,
            clip_values=(0.0, 1.0),
            device_type=device_type,
        )

    def trainer_options(self) -> dict[str, Any]:
        """Engine options every trainer gets under this protocol (``augmentation`` only when the protocol has one)."""
        options: dict[str, Any] = {"eps_warmup_epochs": self.eps_warmup_epochs, "lr_schedule": self.lr_schedule}
        if self.augmentation is not None:
            options["augmentation"] = self.augmentation
        return options

    def evaluation_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`art_fastat.evaluate` under this protocol."""
        return {"pgd_steps": self.pgd_steps, "pgd_step_size": self.pgd_step_size, "pgd_restarts": self.pgd_restarts}


PROTOCOLS: dict[str, Protocol] = {
    # P0: embedded scikit-learn digits, seconds on a CPU.
    "digits": Protocol(
        name="digits", model="digits_cnn", input_shape=(1, 8, 8), eps=0.2, batch_size=64, nb_epochs=30,
        optimizer="adam", lr=1e-3, lr_schedule="constant", eps_warmup_epochs=0.0,
        pgd_steps=50, pgd_step_size=0.02, pgd_restarts=1,
    ),
    # P1: the official MNIST test set split 8000/2000; locuslab/fast_adversarial MNIST settings.
    "mnist10k": Protocol(
        name="mnist10k", model="mnist_cnn", input_shape=(1, 28, 28), eps=0.3, batch_size=100, nb_epochs=10,
        optimizer="adam", lr=5e-3, lr_schedule="triangle", eps_warmup_epochs=3.0,
        pgd_steps=50, pgd_step_size=0.01, pgd_restarts=10, needs_data_dir=True,
    ),
    # P2: CIFAR-10 with PreActResNet18 (GPU); locuslab/fast_adversarial CIFAR settings with their crop and flip.
    "cifar10": Protocol(
        name="cifar10", model="preact_resnet18", input_shape=(3, 32, 32), eps=8 / 255, batch_size=128, nb_epochs=15,
        optimizer="sgd", lr=0.2, lr_schedule="cyclic", eps_warmup_epochs=0.0, weight_decay=5e-4,
        pgd_steps=50, pgd_step_size=2 / 255, pgd_restarts=10, needs_data_dir=True, augmentation="crop_flip",
    ),
}  # fmt: skip


def get_protocol(name: str) -> Protocol:
    """
    :param name: ``"digits"``, ``"mnist10k"`` or ``"cifar10"``.
    :return: The protocol.
    """
    return PROTOCOLS[check_choice(name, "protocol", tuple(PROTOCOLS))]


def protocol(
    name: str, data_dir: str | os.PathLike | None = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """
    The train/test splits of a benchmark protocol (``shared/design/protocol.md``).

    :param name: ``"digits"`` (P0: scikit-learn digits shuffled with ``RandomState(0)``, first 1500 train, last 297
                 test), ``"mnist10k"`` (P1: official MNIST test set, images 0-7999 train, 8000-9999 test) or
                 ``"cifar10"`` (P2).
    :param data_dir: Directory of the data files for ``mnist10k`` / ``cifar10``; see :meth:`Protocol.load`.
    :return: ``((x_train, y_train), (x_test, y_test))``.
    """
    x_train, y_train, x_test, y_test = get_protocol(name).load(data_dir)
    return (x_train, y_train), (x_test, y_test)


def _resolve_data_dir(data_dir: str | os.PathLike | None, protocol: str) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    candidates = [os.environ.get(DATA_DIR_VARIABLE)] if os.environ.get(DATA_DIR_VARIABLE) else []
    if protocol == "mnist10k":
        candidates += [Path.cwd() / "shared" / "data" / "mnist", Path.cwd().parent / "shared" / "data" / "mnist"]
    for candidate in candidates:
        if Path(candidate).is_dir():
            logger.info("Reading %s data from %s", protocol, candidate)
            return Path(candidate)
    raise FileNotFoundError(
        f"protocol {protocol!r} needs its data files: pass data_dir (CLI: --data-dir DIR) or set ${DATA_DIR_VARIABLE}; "
        + (
            "DIR must hold t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
            if protocol == "mnist10k"
            else "DIR must hold cifar-10-python.tar.gz or the extracted cifar-10-batches-py/"
        )
    )
