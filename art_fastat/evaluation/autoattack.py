"""
The ``"autoattack"`` runner of :func:`art_fastat.evaluation.evaluate`: ``pyautoattack.AutoAttack`` on
:func:`~art_fastat.input_space_model` of the classifier, on the classifier's device, and AutoAttack's own checks of
the model (:func:`model_checks`), which :func:`~art_fastat.evaluation.evaluate` runs whichever attacks run.

AutoAttack works in [0, 1]; other ``clip_values`` are mapped there affinely (with ``eps`` divided by the clip width),
which needs one clip width for every feature. The targeted attacks use at most ``nb_classes - 1`` target classes. A
sample is robust if the model classifies AutoAttack's output correctly (AutoAttack returns misclassified points
unchanged). AutoAttack's output (its logging and any print) goes through the logger of
:mod:`art_fastat.evaluation`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from pyautoattack import AutoAttack, checks
from torch import nn

from art_fastat._classifier import input_space_model
from art_fastat.evaluation.runners import AttackResult, AttackTask, check_budget, predict_labels

#: AutoAttack's progress and warnings are re-emitted here: the logger :func:`~art_fastat.evaluation.evaluate`'s
#: ``verbose`` documents (the package's).
output_logger = logging.getLogger("art_fastat.evaluation")

#: Logger of ``pyautoattack``.
AUTOATTACK_LOGGER = "auto-attack"


def run(task: AttackTask) -> AttackResult:
    """
    :param task: Options ``version``, ``attacks`` (those of ``version="custom"``) and ``box`` (``(low, width)`` of
                 the map of ``clip_values`` onto [0, 1]). AutoAttack gets every point (it skips misclassified ones
                 itself) so that its log matches the report.
    :return: Robust: correct on AutoAttack's output. Settings: ``version``, ``attacks``, ``eps_in_unit_box`` and,
             for the targeted attacks, ``n_target_classes``. Warnings: those AutoAttack logged while it ran.
    """
    options = task.options
    x_adv, settings, warnings = _autoattack(
        task.classifier,
        task.x,
        task.labels,
        task.eps,
        task.norm_name,
        options["version"],
        options["attacks"],
        options["box"],
        task.batch_size,
        task.seed,
        task.verbose,
    )
    check_budget("autoattack", x_adv, task.x, task.eps + task.tolerance, task.norm_name)
    robust = predict_labels(task.classifier, x_adv, task.batch_size) == task.labels
    return AttackResult(robust, settings, warnings)


class _ContiguousGradient(torch.autograd.Function):
    """The identity, whose backward makes the input gradient contiguous: AutoAttack reshapes input gradients with
    ``.view``, which the gradients of a channels-last network (``channels_last=True``) would refuse."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, gradient: torch.Tensor) -> torch.Tensor:
        return gradient.contiguous()


class _AutoAttackModel(nn.Module):
    """``model(low + z * width)``: a model of inputs in ``clip_values`` seen as a model of ``z`` in [0, 1], whose input
    gradients are contiguous whatever the network's memory format."""

    def __init__(self, model: nn.Module, low: torch.Tensor | float = 0.0, width: float = 1.0) -> None:
        """
        :param model: Model of input-space images.
        :param low: Lower clip values, broadcastable to a batch.
        :param width: The clip width.
        """
        super().__init__()
        self.model = model
        self.register_buffer("low", torch.as_tensor(low))
        self.width = width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """
        :param z: Inputs in [0, 1].
        :return: The model's logits.
        """
        return self.model(self.low + _ContiguousGradient.apply(z) * self.width)


def _autoattack(
    classifier: Any,
    x: np.ndarray,
    labels: np.ndarray,
    eps: float,
    norm_name: str,
    version: str,
    attacks: list[str] | None,
    box: tuple[np.ndarray, float],
    batch_size: int,
    seed: int,
    verbose: bool,
) -> tuple[np.ndarray, dict[str, Any], list[str]]:
    """
    Run AutoAttack on input-space images.

    :return: Its adversarial examples (in input space), its settings and the warnings it logged.
    """
    low, width = box
    unit = bool(np.all(low == 0)) and width == 1.0
    offset = 0.0 if unit else torch.from_numpy(low[np.newaxis])
    model = _AutoAttackModel(input_space_model(classifier), offset, width).to(classifier.device)
    model.eval()
    with _autoattack_output(verbose) as output:
        adversary = AutoAttack(
            model,
            attacks=attacks,
            device=classifier.device,
            eps=eps / width,
            norm=norm_name,
            seed=seed,
            version=version,
        )
        # AutoAttack's targeted attacks use 9 target classes: more than there are with fewer than 10 classes.
        targets = min(adversary.apgd_targeted.n_target_classes, classifier.nb_classes - 1)
        adversary.apgd_targeted.n_target_classes = adversary.fab.n_target_classes = targets
        settings: dict[str, Any] = {
            "version": version,
            "attacks": list(adversary.attacks_to_run),
            "eps_in_unit_box": eps / width,
        }
        if {"apgd-t", "fab-t"} & set(adversary.attacks_to_run):
            settings["n_target_classes"] = targets
        z = x if unit else np.clip((x - low) / width, 0.0, 1.0).astype(np.float32)
        z_adv, _ = adversary.run_standard_evaluation(torch.tensor(z), torch.from_numpy(labels), batch_size=batch_size)
    x_adv = z_adv.detach().cpu().numpy().astype(np.float32)
    if not unit:
        x_adv = np.clip(low + x_adv * width, low, low + width).astype(np.float32)
    return x_adv, settings, output.warnings


class _ForwardToLogger(logging.Handler):
    """Re-emits AutoAttack's records on :data:`output_logger`: progress at INFO (verbose) or DEBUG, warnings as is."""

    def __init__(self, verbose: bool) -> None:
        """
        :param verbose: Log progress at INFO rather than DEBUG.
        """
        super().__init__(logging.DEBUG)
        self.progress_level = logging.INFO if verbose else logging.DEBUG
        #: The warnings AutoAttack logged (its sanity checks), each once.
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """
        :param record: A record of ``pyautoattack``.
        """
        level = record.levelno if record.levelno >= logging.WARNING else self.progress_level
        output_logger.log(level, "AutoAttack: %s", record.getMessage())
        warning = f"AutoAttack: {record.getMessage()}"
        # APGD repeats its checks in every run (APGD-T: once per target class): a flag is kept once
        if record.levelno >= logging.WARNING and warning not in self.warnings:
            self.warnings.append(warning)


@contextlib.contextmanager
def _autoattack_output(verbose: bool) -> Iterator[_ForwardToLogger]:
    """
    Route AutoAttack's output through :data:`output_logger` while it runs.

    ``pyautoattack`` logs to the ``"auto-attack"`` logger (progress at DEBUG/INFO, its sanity checks at WARNING) and
    prints only from sub-attacks it builds with ``verbose=False``; any such print is captured and logged at DEBUG
    unless ``verbose``. Its check for dynamic defences calls ``sys.settrace(None)``, which would switch off a
    debugger or coverage: the previous trace function is put back.
    """
    autoattack_logger = logging.getLogger(AUTOATTACK_LOGGER)
    handler = _ForwardToLogger(verbose)
    saved_level, saved_propagate = autoattack_logger.level, autoattack_logger.propagate
    autoattack_logger.addHandler(handler)
    autoattack_logger.propagate = False
    autoattack_logger.setLevel(logging.DEBUG)
    tracer = sys.gettrace()
    printed = io.StringIO()
    try:
        with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(printed):
            yield handler
    finally:
        sys.settrace(tracer)
        autoattack_logger.removeHandler(handler)
        autoattack_logger.setLevel(saved_level)
        autoattack_logger.propagate = saved_propagate
        for line in printed.getvalue().splitlines():
            if line.strip():
                output_logger.debug("AutoAttack: %s", line)


def _dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """AutoAttack's difference-of-logits-ratio loss (Croce & Hein 2020, eq. 6), whose gradient APGD-T checks."""
    ordered, indices = logits.sort(dim=1)
    correct = logits.gather(1, y[:, None]).squeeze(1)
    best_other = torch.where(indices[:, -1] == y, ordered[:, -2], ordered[:, -1])
    return -(correct - best_other) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


def model_checks(classifier: Any, x: np.ndarray, labels: np.ndarray) -> list[str]:
    """
    AutoAttack's own checks on one batch of clean points, whichever attacks run: a randomised model (five forward passes
    that disagree), outputs that look like probabilities rather than logits, and inputs where the gradient of the DLR
    loss (the one APGD-T checks) is exactly zero.

    :return: The checks' warnings.
    """
    model = _AutoAttackModel(input_space_model(classifier)).to(classifier.device)
    model.eval()
    inputs = torch.from_numpy(x).to(classifier.device)
    targets = torch.from_numpy(labels).to(classifier.device)
    collected: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(f"AutoAttack check: {record.getMessage()}")

    check_logger = logging.getLogger(f"{__name__}.checks")
    check_logger.propagate = False
    check_logger.handlers = [Collect()]
    checks.check_randomized(model, inputs, targets, bs=len(inputs), logger=check_logger)
    checks.check_range_output(model, inputs, logger=check_logger)
    if classifier.nb_classes >= 3:  # the DLR loss compares the three largest logits
        with torch.enable_grad():
            inputs.requires_grad_(True)
            (gradient,) = torch.autograd.grad(_dlr_loss(model(inputs), targets).sum(), inputs)
        checks.check_zero_gradients(gradient, logger=check_logger)
    return collected
