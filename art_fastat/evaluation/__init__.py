"""
Robustness evaluation of an ART ``PyTorchClassifier``: clean accuracy, ART's PGD, ART's Carlini-Wagner and
AutoAttack, with per-sample results and a per-sample worst case.

Every attack works in input space, inside the classifier's ``clip_values``, with the classifier's own
``preprocessing=(mean, std)`` applied inside the forward pass, so ``eps`` means the same thing as during training.
A sample counts as robust under an attack only if it is classified correctly on the clean input *and* the attack does
not change that (points that are already misclassified are not attacked: they count as non-robust everywhere).

The network is evaluated in eval mode; the training flag of every submodule, the parameters' ``requires_grad`` and
``.grad``, and the global numpy and torch random states are all restored afterwards, also when an attack raises.

The package: :func:`evaluate` (here) checks its arguments (:mod:`~art_fastat.evaluation.arguments`) and runs every
requested attack through its runner in the registry :data:`~art_fastat.evaluation.runners.RUNNERS`, one module per
attack (:mod:`~art_fastat.evaluation.pgd`, :mod:`~art_fastat.evaluation.cw`,
:mod:`~art_fastat.evaluation.autoattack`, imported on first use); :mod:`~art_fastat.evaluation.report` holds
:class:`RobustnessReport` and its sanity checks, and :mod:`~art_fastat.evaluation.validation` the per-epoch validation
the training engine and the bench share (it imports only torch).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from art_fastat.evaluation.arguments import AUTOATTACK_ATTACKS, AUTOATTACK_VERSIONS, NORM_TOLERANCE, check_arguments
from art_fastat.evaluation.report import ATTACK_STRENGTH_ORDER, RobustnessReport, leaderboard_accuracies, sanity_flags
from art_fastat.evaluation.runners import ATTACKS, AttackTask, get_runner, predict_labels

logger = logging.getLogger(__name__)

__all__ = [
    "ATTACKS",
    "ATTACK_STRENGTH_ORDER",
    "AUTOATTACK_ATTACKS",
    "AUTOATTACK_VERSIONS",
    "NORM_TOLERANCE",
    "RobustnessReport",
    "evaluate",
    "leaderboard_accuracies",
    "sanity_flags",
]

#: Constants of the runner modules, loaded with them on first access (they import ART's attacks or AutoAttack).
_RUNNER_CONSTANTS: dict[str, str] = {
    "CW_DEFAULT_LEARNING_RATE": "art_fastat.evaluation.cw",
    "CW_LINF_DECREASE_FACTOR": "art_fastat.evaluation.cw",
    "CW_LINF_CONST_FACTOR": "art_fastat.evaluation.cw",
    "AUTOATTACK_LOGGER": "art_fastat.evaluation.autoattack",
}


def __getattr__(name: str) -> Any:
    if name in _RUNNER_CONSTANTS:
        return getattr(importlib.import_module(_RUNNER_CONSTANTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def evaluate(
    classifier: Any,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    norm: float | int | str = np.inf,
    attacks: Sequence[str] | str = ATTACKS,
    *,
    pgd_steps: int = 50,
    pgd_step_size: float | None = None,
    pgd_restarts: int = 1,
    cw_max_iter: int = 10,
    cw_learning_rate: float | None = None,
    autoattack_version: str = "standard",
    autoattack_attacks: Sequence[str] | None = None,
    attack_sizes: Mapping[str, int] | None = None,
    batch_size: int = 128,
    seed: int = 0,
    verbose: bool = False,
) -> RobustnessReport:
    """
    Evaluate the robustness of a classifier against PGD, Carlini-Wagner and AutoAttack.

    All arguments are checked before anything runs; ``x`` and ``y`` are never modified and the classifier's weights
    are unchanged. The network runs in eval mode; every submodule's training flag is restored afterwards.

    - **pgd**: ART's ``ProjectedGradientDescent`` with the true labels. With ``pgd_restarts > 1`` ART keeps, per
      sample, the result of the first run and replaces it by the result of every later restart that fools the model,
      so a sample counts as robust only if it survives every restart.
    - **cw**: ART's ``CarliniLInfMethod`` (L-inf) or ``CarliniL2Method`` (L2). They look for the smallest
      perturbation, unbounded, so a sample counts as robust if the attack fails to change the prediction *or* its
      perturbation is larger than ``eps`` (plus ``NORM_TOLERANCE`` times the clip width), measured in ``norm``.
      For L-inf the tau and constant schedules are coarser than ART's defaults (``CW_LINF_DECREASE_FACTOR``,
      ``CW_LINF_CONST_FACTOR``): ART's L-inf CW treats one sample at a time and is very slow.
    - **autoattack**: ``pyautoattack.AutoAttack`` on :func:`~art_fastat.input_space_model` of the classifier, on the
      classifier's device. AutoAttack works in [0, 1]; other ``clip_values`` are mapped there affinely (with
      ``eps`` divided by the clip width), which needs one clip width for every feature. The targeted attacks use at
      most ``nb_classes - 1`` target classes. A sample is robust if the model classifies AutoAttack's output
      correctly (AutoAttack returns misclassified points unchanged).

    The worst case of a sample is: correct on the clean input and robust under every attack run.

    ``attack_sizes`` runs the slow attacks on fewer samples: attack ``name`` runs on the first
    ``attack_sizes[name]`` samples only (e.g. ``{"autoattack": 500, "cw": 100}`` with 2000 samples), its accuracy is
    a fraction of those, and the worst case is taken over the samples every attack saw (the first ``min`` of the
    sizes). The clean accuracy is always measured on every sample. ``report.sizes`` says how many samples each
    accuracy is over.

    :param classifier: An ART ``PyTorchClassifier`` with ``clip_values``.
    :param x: Inputs of shape ``(n,) + classifier.input_shape`` inside ``clip_values``.
    :param y: Integer labels of shape ``(n,)`` or one-hot labels of shape ``(n, nb_classes)``.
    :param eps: Perturbation budget in the units of ``clip_values``: in ``(0, clip width]`` for L-inf, in
                ``(0, clip width * sqrt(input size)]`` (the diameter of the input box) for L2.
    :param norm: Threat model: ``np.inf`` or ``"inf"`` (L-inf), or ``2`` (L2).
    :param attacks: Which of ``"pgd"``, ``"cw"``, ``"autoattack"`` to run (a name or a sequence of names).
    :param pgd_steps: PGD iterations (default 50, the usual PGD-50 evaluation).
    :param pgd_step_size: PGD step size; ``None`` means ``2.5 * eps / pgd_steps`` (Madry et al.: enough to cross the
                          eps-ball 2.5 times).
    :param pgd_restarts: Number of PGD runs from a uniformly random start in the eps-ball (default 1, as in Madry et
                         al.); ``0`` means one run from the clean input.
    :param cw_max_iter: Optimisation steps per CW sub-problem (default 10, ART's default).
    :param cw_learning_rate: CW learning rate; ``None`` means 0.1 for L-inf and 0.01 (ART's default) for L2. ART's
                             0.01 barely moves L-inf CW: it optimises in tanh space, where pixels at the clip bounds
                             move very slowly.
    :param autoattack_version: ``"standard"`` (APGD-CE, APGD-T, FAB-T, Square: the RobustBench evaluation),
                               ``"plus"``, ``"rand"`` (randomised defences) or ``"custom"``.
    :param autoattack_attacks: The attacks of ``autoattack_version="custom"`` (required then, refused otherwise),
                               from ``"apgd-ce"``, ``"apgd-dlr"``, ``"fab"``, ``"square"``, ``"apgd-t"``,
                               ``"fab-t"``; e.g. ``["apgd-ce"]`` for a quick check.
    :param attack_sizes: Samples, from the first, each attack runs on, by attack name (only attacks in
                         ``attacks``; integers >= 1, capped at ``len(x)``); attacks not named run on every sample.
    :param batch_size: Batch size of every attack and of the clean pass.
    :param seed: Seed of every attack's randomness (numpy and torch are seeded before each attack, and their global
                 states restored afterwards), so results are reproducible and independent of which attacks run.
    :param verbose: Show ART's progress bars and log AutoAttack's progress at INFO level on this module's logger
                    (DEBUG otherwise). AutoAttack's warnings are always logged here as warnings.
    :return: A :class:`RobustnessReport`.
    :raises TypeError: If ``classifier`` is not a ``PyTorchClassifier`` or an argument has the wrong type.
    :raises ValueError: If an argument has a wrong value (each message names the argument and what is expected).
    """
    arguments = check_arguments(
        classifier,
        x,
        y,
        eps,
        norm,
        attacks,
        pgd_steps=pgd_steps,
        pgd_step_size=pgd_step_size,
        pgd_restarts=pgd_restarts,
        cw_max_iter=cw_max_iter,
        cw_learning_rate=cw_learning_rate,
        autoattack_version=autoattack_version,
        autoattack_attacks=autoattack_attacks,
        attack_sizes=attack_sizes,
        batch_size=batch_size,
        seed=seed,
        verbose=verbose,
    )
    # Each attack's module (ART's attacks, AutoAttack) is imported here, once, outside the timed attacks.
    runners = {name: get_runner(name) for name in arguments.attacks}
    from art_fastat.evaluation.autoattack import model_checks  # AutoAttack's checks run whichever attacks run

    x, labels, batch_size, seed = arguments.x, arguments.labels, arguments.batch_size, arguments.seed
    n, sizes = len(x), arguments.sizes
    settings: dict[str, Any] = {"batch_size": batch_size, "seed": seed, "attacks": list(arguments.attacks)}
    attack_warnings: list[str] = []
    per_sample: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}

    with _random_state_preserved(), _evaluation_mode(classifier.model):
        started = time.perf_counter()
        clean = predict_labels(classifier, x, batch_size) == labels
        seconds["clean"] = time.perf_counter() - started
        per_sample["clean"] = clean
        logger.info("Clean accuracy: %.2f%% on %d samples", 100 * clean.mean(), n)
        # Misclassified points are not attacked: they are non-robust under every attack.
        attacked = np.flatnonzero(clean)

        for name in arguments.attacks:
            started = time.perf_counter()
            _seed(seed)
            size = sizes[name]
            task = AttackTask(
                classifier=classifier,
                x=x[:size],
                labels=labels[:size],
                attacked=attacked[attacked < size],
                eps=arguments.eps,
                norm_name=arguments.norm_name,
                tolerance=arguments.tolerance,
                batch_size=batch_size,
                seed=seed,
                verbose=arguments.verbose,
                options=arguments.options[name],
            )
            result = runners[name](task)
            settings[name] = result.settings
            attack_warnings += result.warnings
            seconds[name] = time.perf_counter() - started
            per_sample[name] = result.robust & clean[:size]
            logger.info("Robust accuracy under %s: %.2f%% on %d samples (%.1f s)", name,
                        100 * per_sample[name].mean(), size, seconds[name])  # fmt: skip

    # the samples every attack saw
    worst_case = clean[: min(sizes.values())].copy()
    for name in arguments.attacks:
        worst_case &= per_sample[name][: len(worst_case)]
    per_sample["worst_case"] = worst_case
    with _random_state_preserved(), _evaluation_mode(classifier.model):
        model_warnings = model_checks(classifier, x[:batch_size], labels[:batch_size])
    report = RobustnessReport(
        n=n,
        eps=arguments.eps,
        norm=arguments.norm_name,
        clean_accuracy=float(clean.mean()),
        robust_accuracy={name: float(per_sample[name].mean()) for name in arguments.attacks},
        worst_case_accuracy=float(worst_case.mean()),
        seconds=seconds,
        per_sample=per_sample,
        settings=settings,
        sizes={"clean": n, **sizes, "worst_case": len(worst_case)},
    )
    report.flags = sanity_flags(report) + attack_warnings + model_warnings
    for flag in report.flags:
        logger.warning("Evaluation sanity: %s", flag)
    return report


@contextlib.contextmanager
def _evaluation_mode(model: nn.Module) -> Iterator[None]:
    """
    Eval mode and frozen parameters for the duration of the block; restores exactly what was there.

    Parameters stop requiring gradients (the attacks need gradients with respect to the inputs only) and their
    ``.grad`` is set aside, so ART's ``zero_grad`` cannot clear the caller's accumulated gradients.
    """
    modes = [(module, module.training) for module in model.modules()]
    parameters = [(parameter, parameter.requires_grad, parameter.grad) for parameter in model.parameters()]
    try:
        model.eval()
        for parameter, _, _ in parameters:
            parameter.requires_grad_(False)
            parameter.grad = None
        yield
    finally:
        for parameter, requires_grad, grad in parameters:
            parameter.requires_grad_(requires_grad)
            parameter.grad = grad
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def _random_state_preserved() -> Iterator[None]:
    """
    Restore numpy's and torch's global random states after the block (ART's ``predict`` alone draws from torch's:
    its ``DataLoader`` takes a base seed from it).
    """
    numpy_state = np.random.get_state()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if cuda else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(numpy_state)


def _seed(seed: int) -> None:
    """Seed numpy's and torch's global generators (ART's PGD draws its random starts from numpy's)."""
    np.random.seed(seed)
    torch.manual_seed(seed)
