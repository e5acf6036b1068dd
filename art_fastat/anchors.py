"""
ART's own adversarial trainers, ``AdversarialTrainerMadryPGD``, ``AdversarialTrainerFBFPyTorch``,
``AdversarialTrainerTRADESPyTorch`` and ``AdversarialTrainerAWPPyTorch``, run as external anchors beside the
art_fastat trainers (``art-fastat bench``), one epoch at a time so that their time and validation accuracy are
recorded per epoch as the engine records them for its trainers.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from art_fastat._classifier import clip_bounds, input_space_model
from art_fastat._validation import check_choice
from art_fastat.engine.schedules import lr_multiplier, warmed_up_eps
from art_fastat.evaluation.validation import VALIDATION_PGD_STEPS, VALIDATION_SIZE, validation_metrics
from art_fastat.protocols import Protocol

#: PGD steps of the attack the MadryPGD, TRADES and AWP anchors train against (step eps/4, one random start).
ANCHOR_PGD_STEPS = 10

#: ART's own trainers, run as anchors: name -> (label, forward+backward passes per batch). PGD-K costs K passes; the
#: update 1 (MadryPGD, AWP's own step), TRADES's update 2 (the clean and the adversarial batch), AWP's proxy step 1.
ANCHORS: dict[str, tuple[str, float]] = {
    "art-madry": ("ART MadryPGD (PGD-10)", ANCHOR_PGD_STEPS + 1.0),
    "art-fbf": ("ART FBF", 2.0),
    "art-trades": ("ART TRADES (PGD-10, beta 6)", ANCHOR_PGD_STEPS + 2.0),
    "art-awp": ("ART AWP (PGD-10, gamma 0.01)", ANCHOR_PGD_STEPS + 2.0),
}

#: TRADES's ``beta`` (Zhang et al. 2019), ART's default: the weight of the KL term; also AWP's (unused in mode PGD).
TRADES_BETA = 6.0
#: AWP's relative weight-perturbation size ``gamma`` and warm-up epochs: ART's defaults, those of Wu et al.'s AT-AWP
#: code (https://github.com/csdongxian/AWP: ``--awp-gamma 0.01 --awp-warmup 0``).
AWP_GAMMA = 0.01
AWP_WARMUP = 0
#: Learning rate of the plain SGD that takes AWP's proxy step (Wu et al.'s code). AWP rescales each layer's step to
#: ``gamma`` times the layer's norm, so without momentum or weight decay this value cancels out.
AWP_PROXY_LR = 0.01


class ARTAnchor:
    """
    One of ART's adversarial trainers run through ART's public API one epoch at a time, so that the bench records its
    time and validation accuracy per epoch as it does for our trainers:

    - ``"art-madry"``: ``AdversarialTrainerMadryPGD`` (PGD-10, step eps/4, one random start; Madry et al. 2018);
    - ``"art-fbf"``: ``AdversarialTrainerFBFPyTorch`` (FGSM with random start; Wong et al. 2020);
    - ``"art-trades"``: ``AdversarialTrainerTRADESPyTorch`` (Zhang et al. 2019, https://arxiv.org/abs/1901.08573)
      with ``beta=6`` against ART's ``ProjectedGradientDescent`` on the cross-entropy, the attack of MadryPGD
      (ART's TRADES trains against any attack it is given; its own example passes this PGD, not the paper's KL attack);
    - ``"art-awp"``: ``AdversarialTrainerAWPPyTorch`` (Wu et al. 2020, https://arxiv.org/abs/2004.05884) in mode
      ``"PGD"`` (AT-AWP) with ``gamma=0.01``, no warm-up, the same PGD attack. Its proxy is a deep copy of the
      network in its own ``PyTorchClassifier`` with a plain SGD optimizer (lr 0.01); ART loads the network's weights
      into it before every proxy step, so only its architecture and optimizer matter.

    ART's trainers take no learning-rate or eps schedule (TRADES and AWP take a scheduler stepped once per epoch).
    For MadryPGD, TRADES and AWP this class sets, before each epoch, the optimizer's learning rate and the attack's
    eps to the protocol's schedule at the epoch's middle (the protocol's per-iteration schedules at epoch
    granularity; without the eps warm-up PGD-AT collapses on P1). FBF sets its own learning rate on every batch
    (ART's CIFAR-10 cycle to 0.21), which this class leaves as ART runs it. Training loss is not reported by ART's
    trainers, so the anchors have no loss curve.

    :param classifier: The ART ``PyTorchClassifier`` to train in place.
    :param eps: L-inf radius.
    :param kind: A key of :data:`ANCHORS`.
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
        from art.defences.trainer import AdversarialTrainerFBFPyTorch

        one_hot = np.eye(self.classifier.nb_classes, dtype=np.float32)[y]  # ART's adversarial trainers want one-hot
        device = self.classifier.device
        x_val = torch.from_numpy(validation_data[0][:validation_size]).to(device)
        y_val = torch.from_numpy(validation_data[1][:validation_size]).to(device)
        low, high = clip_bounds(self.classifier, device)
        model = input_space_model(self.classifier)
        peak_lrs = [group["lr"] for group in self.classifier.optimizer.param_groups]
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        proxy = self._proxy() if self.kind == "art-awp" else None
        for epoch in range(nb_epochs):
            middle = epoch + 0.5
            started = time.perf_counter()
            if self.kind == "art-fbf":
                AdversarialTrainerFBFPyTorch(self.classifier, eps=self.eps).fit(
                    x, one_hot, batch_size=batch_size, nb_epochs=1
                )
            else:
                eps = warmed_up_eps(self.eps, middle, self.protocol.eps_warmup_epochs)
                for group, peak in zip(self.classifier.optimizer.param_groups, peak_lrs, strict=True):
                    group["lr"] = peak * lr_multiplier(self.protocol.lr_schedule, middle / nb_epochs)
                self._epoch_trainer(eps, batch_size, epoch, proxy).fit(x, one_hot, batch_size=batch_size, nb_epochs=1)
            record = {"epoch": epoch + 1, "seconds": time.perf_counter() - started}
            model.eval()  # ART's next epoch puts it back in train mode
            record.update(validation_metrics(model, x_val, y_val, self.eps, VALIDATION_PGD_STEPS, low, high,
                                             self.seed + 1))  # fmt: skip
            self.history.append(record)
        return self.history

    def _epoch_trainer(self, eps: float, batch_size: int, epoch: int, proxy: Any) -> Any:
        """ART's trainer of this anchor for one epoch at radius ``eps`` (0-based ``epoch``)."""
        from art.attacks.evasion import ProjectedGradientDescent
        from art.defences.trainer import (
            AdversarialTrainerAWPPyTorch,
            AdversarialTrainerMadryPGD,
            AdversarialTrainerTRADESPyTorch,
        )

        if self.kind == "art-madry":
            trainer = AdversarialTrainerMadryPGD(self.classifier, nb_epochs=1, batch_size=batch_size, eps=eps,
                                                 eps_step=eps / 4, max_iter=ANCHOR_PGD_STEPS)  # fmt: skip
            trainer.attack.set_params(verbose=False)
            return trainer
        attack = ProjectedGradientDescent(self.classifier, norm=np.inf, eps=eps, eps_step=eps / 4,
                                          max_iter=ANCHOR_PGD_STEPS, num_random_init=1, batch_size=batch_size,
                                          verbose=False)  # fmt: skip
        if self.kind == "art-trades":
            return AdversarialTrainerTRADESPyTorch(self.classifier, attack, beta=TRADES_BETA)
        # ART applies the weight perturbation from the trainer's epoch ``warmup`` on, counted within its fit: a
        # trainer built per epoch gets warmup 0 once the anchor's warm-up is over, else 1 (nothing this epoch).
        return AdversarialTrainerAWPPyTorch(self.classifier, proxy, attack, mode="PGD", gamma=AWP_GAMMA,
                                            beta=TRADES_BETA, warmup=0 if epoch >= AWP_WARMUP else 1)  # fmt: skip

    def _proxy(self) -> Any:
        """
        AWP's proxy: a copy of the network in its own ``PyTorchClassifier``, with plain SGD (Wu et al.'s code). ART
        calls the proxy's network on inputs the trained classifier has already preprocessed, so it needs none.
        """
        from art.estimators.classification import PyTorchClassifier

        network = copy.deepcopy(self.classifier.model)
        return PyTorchClassifier(
            network,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=self.classifier.input_shape,
            nb_classes=self.classifier.nb_classes,
            optimizer=torch.optim.SGD(network.parameters(), lr=AWP_PROXY_LR),
            clip_values=self.classifier.clip_values,
            device_type="gpu" if self.classifier.device.type == "cuda" else "cpu",
        )
