"""
ART's own adversarial trainers, ``AdversarialTrainerMadryPGD`` and ``AdversarialTrainerFBFPyTorch``, run as external
anchors beside the art_fastat trainers (``art-fastat bench``), one epoch at a time so that their time and validation
accuracy are recorded per epoch as the engine records them for its trainers.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from art_fastat._classifier import clip_bounds, input_space_model
from art_fastat._validation import check_choice
from art_fastat.engine.schedules import lr_multiplier, warmed_up_eps
from art_fastat.evaluation.validation import VALIDATION_PGD_STEPS, VALIDATION_SIZE, validation_metrics
from art_fastat.protocols import Protocol

#: ART's own trainers, run as anchors: name -> (label, passes per batch).
ANCHORS: dict[str, tuple[str, float]] = {"art-madry": ("ART MadryPGD (PGD-10)", 11.0), "art-fbf": ("ART FBF", 2.0)}


class ARTAnchor:
    """
    ART's ``AdversarialTrainerMadryPGD`` (PGD-10, step eps/4) or ``AdversarialTrainerFBFPyTorch`` run through ART's
    public API one epoch at a time, so that the bench records their time and validation accuracy per epoch as it does
    for our trainers.

    ART's trainers take no learning-rate or eps schedule. For MadryPGD this class sets, before each epoch, the
    optimizer's learning rate and the attack's eps to the protocol's schedule at the epoch's middle (the protocol's
    per-iteration schedules at epoch granularity; without the eps warm-up PGD-AT collapses on P1). FBF sets its own
    learning rate on every batch (ART's CIFAR-10 cycle to 0.21), which this class leaves as ART runs it. Training
    loss is not reported by ART's trainers, so the anchors have no loss curve.

    :param classifier: The ART ``PyTorchClassifier`` to train in place.
    :param eps: L-inf radius.
    :param kind: ``"art-madry"`` or ``"art-fbf"``.
    :param protocol: The protocol whose schedules apply.
    :param seed: Seed of numpy's and torch's global random state, which ART's trainers draw from.
    """

    def __init__(self, classifier: Any, eps: float, kind: str, protocol: Protocol, seed: int = 0) -> None:
        self.classifier = classifier
        self.eps = eps
        self.kind = check_choice(kind, "kind", tuple(ANCHORS))
        self.protocol = protocol
        self.seed = seed
        self.passes_per_batch = ANCHORS[kind][1]
        #: ART's trainers run in one process.
        self.world_size = 1
        self.history: list[dict[str, float]] = []

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        validation_data: tuple[np.ndarray, np.ndarray],
        batch_size: int,
        nb_epochs: int,
        validation_size: int = VALIDATION_SIZE,
    ) -> list[dict[str, float]]:
        """
        :param x: Training inputs.
        :param y: Integer training labels.
        :param validation_data: ``(x, y)`` of which the first ``validation_size`` are validated each epoch.
        :param batch_size: Minibatch size.
        :param nb_epochs: Epochs.
        :param validation_size: Validation samples per epoch.
        :return: The per-epoch history.
        """
        from art.defences.trainer import AdversarialTrainerFBFPyTorch, AdversarialTrainerMadryPGD

        one_hot = np.eye(self.classifier.nb_classes, dtype=np.float32)[y]  # ART's adversarial trainers want one-hot
        device = self.classifier.device
        x_val = torch.from_numpy(validation_data[0][:validation_size]).to(device)
        y_val = torch.from_numpy(validation_data[1][:validation_size]).to(device)
        low, high = clip_bounds(self.classifier, device)
        model = input_space_model(self.classifier)
        peak_lrs = [group["lr"] for group in self.classifier.optimizer.param_groups]
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        for epoch in range(nb_epochs):
            middle = epoch + 0.5
            started = time.perf_counter()
            if self.kind == "art-madry":
                eps = warmed_up_eps(self.eps, middle, self.protocol.eps_warmup_epochs)
                for group, peak in zip(self.classifier.optimizer.param_groups, peak_lrs, strict=True):
                    group["lr"] = peak * lr_multiplier(self.protocol.lr_schedule, middle / nb_epochs)
                trainer = AdversarialTrainerMadryPGD(self.classifier, nb_epochs=1, batch_size=batch_size, eps=eps,
                                                     eps_step=eps / 4, max_iter=10)  # fmt: skip
                trainer.attack.set_params(verbose=False)
                trainer.fit(x, one_hot)
            else:
                AdversarialTrainerFBFPyTorch(self.classifier, eps=self.eps).fit(
                    x, one_hot, batch_size=batch_size, nb_epochs=1
                )
            record = {"epoch": epoch + 1, "seconds": time.perf_counter() - started}
            model.eval()  # ART's next epoch puts it back in train mode
            record.update(validation_metrics(model, x_val, y_val, self.eps, VALIDATION_PGD_STEPS, low, high,
                                             self.seed + 1))  # fmt: skip
            self.history.append(record)
        return self.history
