"""
art_fastat: fast adversarial training methods as native ART trainers, on one device-agnostic PyTorch engine.

``art_fastat.trainers`` holds the trainers, ``art_fastat.attacks`` the torchattacks-compatible attacks,
``art_fastat.evaluate`` evaluates a classifier with ART's PGD and CW and with AutoAttack, ``art_fastat.load_model``
reads a model exported by ``art-fastat export`` and ``art_fastat.TensorBoardLogger`` monitors a fit.
"""

import logging
from typing import Any

from art_fastat import attacks
from art_fastat._classifier import input_space_model
from art_fastat.export import export_run, load_classifier, load_model
from art_fastat.monitoring import TensorBoardLogger
from art_fastat.trainers import (
    AdversarialTrainerATCD,
    AdversarialTrainerATLAS,
    AdversarialTrainerBase,
    AdversarialTrainerDAT,
    AdversarialTrainerFast,
    AdversarialTrainerFree,
    AdversarialTrainerGAAT,
    AdversarialTrainerGradAlign,
    AdversarialTrainerL2L,
    AdversarialTrainerNFGSM,
    AdversarialTrainerPGD,
    NaturalTrainer,
)

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    # Evaluation pulls in AutoAttack and ART's attacks: loaded on first use, not at import.
    if name in ("evaluate", "RobustnessReport"):
        from art_fastat import evaluation

        return getattr(evaluation, name)
    raise AttributeError(f"module 'art_fastat' has no attribute {name!r}")


__all__ = [
    "AdversarialTrainerATCD",
    "AdversarialTrainerATLAS",
    "AdversarialTrainerBase",
    "AdversarialTrainerDAT",
    "AdversarialTrainerFast",
    "AdversarialTrainerFree",
    "AdversarialTrainerGAAT",
    "AdversarialTrainerGradAlign",
    "AdversarialTrainerL2L",
    "AdversarialTrainerNFGSM",
    "AdversarialTrainerPGD",
    "NaturalTrainer",
    "RobustnessReport",
    "TensorBoardLogger",
    "attacks",
    "evaluate",
    "export_run",
    "input_space_model",
    "load_classifier",
    "load_model",
    "__version__",
]
