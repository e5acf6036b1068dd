"""
Robustness evaluation of an ART ``PyTorchClassifier``: clean accuracy, ART's PGD, ART's Carlini-Wagner and
AutoAttack, with per-sample results and a per-sample worst case.

Every attack works in input space, inside the classifier's ``clip_values``, with the classifier's own
``preprocessing=(mean, std)`` applied inside the forward pass, so ``eps`` means the same thing as during training.
A sample counts as robust under an attack only if it is classified correctly on the clean input *and* the attack does
not change that (points that are already misclassified are not attacked: they count as non-robust everywhere).

The network is evaluated in eval mode; the training flag of every submodule, the parameters' ``requires_grad`` and
``.grad``, and the global numpy and torch random states are all restored afterwards, also when an attack raises.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import numbers
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from art.attacks.evasion import CarliniL2Method, CarliniLInfMethod, ProjectedGradientDescent
from pyautoattack import AutoAttack
from torch import nn

from art_fastat._classifier import check_classifier, clip_range, input_space_model
from art_fastat._validation import check_choice, check_data, check_eps, check_positive_int

logger = logging.getLogger(__name__)

__all__ = ["RobustnessReport", "evaluate"]

#: The attacks :func:`evaluate` can run, in the order they are reported.
ATTACKS: tuple[str, ...] = ("pgd", "cw", "autoattack")
#: The versions of AutoAttack (``pyautoattack``).
AUTOATTACK_VERSIONS: tuple[str, ...] = ("standard", "plus", "rand", "custom")
#: The attacks AutoAttack's ``version="custom"`` can combine.
AUTOATTACK_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
#: A CW adversarial counts as "within eps" if its distance is at most ``eps + NORM_TOLERANCE * clip width``.
NORM_TOLERANCE = 1e-6
#: ``cw_learning_rate=None`` means this, per norm (see :func:`evaluate`).
CW_DEFAULT_LEARNING_RATE: dict[str, float] = {"Linf": 0.1, "L2": 0.01}
#: ART's ``CarliniLInfMethod`` settings fixed by :func:`evaluate` (ART's defaults: 0.9 and 2.0). The coarser tau
#: and constant schedules make it about 15x faster; on a digits CNN it found the same perturbations.
CW_LINF_DECREASE_FACTOR = 0.5
CW_LINF_CONST_FACTOR = 4.0
#: Logger of ``pyautoattack``.
AUTOATTACK_LOGGER = "auto-attack"


@dataclass(eq=False)
class RobustnessReport:
    """
    The result of :func:`evaluate`. Accuracies are fractions in [0, 1].

    :param n: Number of evaluated samples.
    :param eps: Perturbation budget, in the units of the classifier's ``clip_values``.
    :param norm: Threat model: ``"Linf"`` or ``"L2"``.
    :param clean_accuracy: Accuracy on the clean inputs.
    :param robust_accuracy: Accuracy under each attack run, by attack name (``"pgd"``, ``"cw"``, ``"autoattack"``).
    :param worst_case_accuracy: Fraction of samples correct on the clean input and under every attack run.
    :param seconds: Wall-clock seconds of the clean pass (``"clean"``) and of each attack.
    :param per_sample: Boolean arrays of shape ``(n,)``: ``"clean"``, one per attack, and ``"worst_case"``.
    :param settings: The parameters every attack ran with (JSON-serialisable).
    :param flags: Warnings of the sanity checks (see :func:`sanity_flags`): signs of gradient masking or of a
                  broken evaluation. Empty when every check passed.
    """

    n: int
    eps: float
    norm: str
    clean_accuracy: float
    robust_accuracy: dict[str, float]
    worst_case_accuracy: float
    seconds: dict[str, float]
    per_sample: dict[str, np.ndarray] = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        """
        :param per_sample: Include the per-sample boolean arrays (as lists).
        :return: The report as plain Python types.
        """
        result: dict[str, Any] = {
            "n": int(self.n),
            "eps": float(self.eps),
            "norm": self.norm,
            "clean_accuracy": float(self.clean_accuracy),
            "robust_accuracy": {name: float(value) for name, value in self.robust_accuracy.items()},
            "worst_case_accuracy": float(self.worst_case_accuracy),
            "seconds": {name: float(value) for name, value in self.seconds.items()},
            "settings": json.loads(json.dumps(self.settings)),
            "flags": list(self.flags),
        }
        if per_sample:
            result["per_sample"] = {
                name: np.asarray(flags, dtype=bool).tolist() for name, flags in self.per_sample.items()
            }
        return result

    def to_json(self, per_sample: bool = False) -> str:
        """
        :param per_sample: Include the per-sample boolean arrays (as lists).
        :return: The report as a JSON document.
        """
        return json.dumps(self.to_dict(per_sample=per_sample), indent=2, allow_nan=False)

    def to_markdown(self) -> str:
        """
        :return: A Markdown table ``attack | accuracy | seconds`` with a clean row first and a worst-case row last
                 (whose seconds are the total). Accuracies are in percent with two decimals.
        """
        lines = [
            f"Robustness on {self.n} samples, {self.norm} eps = {self.eps:g}",
            "",
            "| attack | accuracy | seconds |",
            "|---|---:|---:|",
            f"| clean | {self.clean_accuracy:.2%} | {self.seconds.get('clean', 0.0):.2f} |",
        ]
        for name, accuracy in self.robust_accuracy.items():
            lines.append(f"| {name} | {accuracy:.2%} | {self.seconds.get(name, 0.0):.2f} |")
        lines.append(f"| worst case | {self.worst_case_accuracy:.2%} | {sum(self.seconds.values()):.2f} |")
        lines += ["", *(f"**Warning:** {flag}" for flag in self.flags)] if self.flags else []
        return "\n".join(lines)

    def leaderboard_row(self, name: str, training_seconds: float | None = None) -> dict[str, Any]:
        """
        One row of a RobustBench-style leaderboard. Accuracies are in percent, rounded to two decimals as
        RobustBench reports them; attacks that were not run are ``None``.

        :param name: The method's name (``"method"``).
        :param training_seconds: How long training took, if known.
        :return: ``method, clean, autoattack, pgd, cw, worst_case, eps, norm, n, training_seconds``.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if training_seconds is not None and (
            isinstance(training_seconds, bool)
            or not isinstance(training_seconds, numbers.Real)
            or not math.isfinite(training_seconds)
            or training_seconds < 0
        ):
            raise ValueError(f"training_seconds must be None or a finite number >= 0, got {training_seconds!r}")

        return {
            "method": name,
            **leaderboard_accuracies(self.to_dict()),
            "eps": float(self.eps),
            "norm": self.norm,
            "n": int(self.n),
            "training_seconds": None if training_seconds is None else float(training_seconds),
        }

    def __str__(self) -> str:
        return self.to_markdown()


def leaderboard_accuracies(report: dict[str, Any]) -> dict[str, float | None]:
    """
    The accuracies of a leaderboard row, in percent rounded to two decimals as RobustBench reports them.

    :param report: :meth:`RobustnessReport.to_dict` (also as read back from JSON).
    :return: ``clean, autoattack, pgd, cw, worst_case``; None for attacks that were not run.
    """

    def percent(value: float | None) -> float | None:
        return None if value is None else round(100.0 * float(value), 2)

    robust = report["robust_accuracy"]
    return {
        "clean": percent(report["clean_accuracy"]),
        "autoattack": percent(robust.get("autoattack")),
        "pgd": percent(robust.get("pgd")),
        "cw": percent(robust.get("cw")),
        "worst_case": percent(report["worst_case_accuracy"]),
    }


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
    :param batch_size: Batch size of every attack and of the clean pass.
    :param seed: Seed of every attack's randomness (numpy and torch are seeded before each attack, and their global
                 states restored afterwards), so results are reproducible and independent of which attacks run.
    :param verbose: Show ART's progress bars and log AutoAttack's progress at INFO level on this module's logger
                    (DEBUG otherwise). AutoAttack's warnings are always logged here as warnings.
    :return: A :class:`RobustnessReport`.
    :raises TypeError: If ``classifier`` is not a ``PyTorchClassifier`` or an argument has the wrong type.
    :raises ValueError: If an argument has a wrong value (each message names the argument and what is expected).
    """
    check_classifier(classifier)
    norm_name = _check_norm(norm)
    attack_names = _check_attacks(attacks)
    x, labels = check_data(x, y, classifier)
    eps = _check_threat_eps(eps, norm_name, classifier)
    pgd_steps = check_positive_int(pgd_steps, "pgd_steps")
    pgd_restarts = check_positive_int(pgd_restarts, "pgd_restarts", minimum=0)
    pgd_step_size = 2.5 * eps / pgd_steps if pgd_step_size is None else _positive_float(pgd_step_size, "pgd_step_size")
    cw_max_iter = check_positive_int(cw_max_iter, "cw_max_iter")
    cw_learning_rate = (
        CW_DEFAULT_LEARNING_RATE[norm_name]
        if cw_learning_rate is None
        else _positive_float(cw_learning_rate, "cw_learning_rate")
    )
    autoattack_version = check_choice(autoattack_version, "autoattack_version", AUTOATTACK_VERSIONS)
    autoattack_attacks = _check_autoattack_attacks(
        autoattack_attacks, autoattack_version, classifier.nb_classes if "autoattack" in attack_names else None
    )
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_positive_int(seed, "seed", minimum=0)
    if seed > 2**32 - 1:
        raise ValueError(f"seed must be an integer in [0, 2**32 - 1], got {seed}")
    if not isinstance(verbose, bool):
        raise TypeError(f"verbose must be a bool, got {verbose!r}")
    box = _unit_box(classifier) if "autoattack" in attack_names else None
    tolerance = NORM_TOLERANCE * clip_range(classifier)

    # A private copy: nothing downstream can write into the caller's array.
    x = np.array(x, dtype=np.float32, copy=True)
    n = len(x)
    settings: dict[str, Any] = {"batch_size": batch_size, "seed": seed, "attacks": list(attack_names)}
    autoattack_warnings: list[str] = []
    per_sample: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}

    with _random_state_preserved(), _evaluation_mode(classifier.model):
        started = time.perf_counter()
        clean = _predict_labels(classifier, x, batch_size) == labels
        seconds["clean"] = time.perf_counter() - started
        per_sample["clean"] = clean
        logger.info("Clean accuracy: %.2f%% on %d samples", 100 * clean.mean(), n)
        # Misclassified points are not attacked: they are non-robust under every attack.
        attacked = np.flatnonzero(clean)
        x_attacked, y_attacked = x[attacked], labels[attacked]

        for name in attack_names:
            started = time.perf_counter()
            robust = np.zeros(n, dtype=bool)
            _seed(seed)
            if name == "pgd":
                settings["pgd"] = {
                    "max_iter": pgd_steps,
                    "eps_step": pgd_step_size,
                    "num_random_init": pgd_restarts,
                }
                if len(attacked):
                    attack = ProjectedGradientDescent(
                        classifier,
                        norm=np.inf if norm_name == "Linf" else 2,
                        eps=eps,
                        eps_step=pgd_step_size,
                        max_iter=pgd_steps,
                        num_random_init=pgd_restarts,
                        batch_size=batch_size,
                        verbose=verbose,
                    )
                    x_adv = attack.generate(x_attacked, y_attacked)
                    _check_budget("pgd", x_adv, x_attacked, eps + tolerance, norm_name)
                    robust[attacked] = _predict_labels(classifier, x_adv, batch_size) == y_attacked
            elif name == "cw":
                attack, settings["cw"] = _carlini_wagner(
                    classifier, norm_name, cw_max_iter, cw_learning_rate, batch_size, verbose
                )
                settings["cw"]["tolerance"] = tolerance
                if len(attacked):
                    x_adv = attack.generate(x_attacked, y_attacked)
                    failed = _predict_labels(classifier, x_adv, batch_size) == y_attacked
                    too_large = _distances(x_adv, x_attacked, norm_name) > eps + tolerance
                    robust[attacked] = failed | too_large
            else:
                # AutoAttack gets every point (it skips misclassified ones itself) so that its log matches the report.
                assert box is not None
                x_adv, settings["autoattack"] = _autoattack(
                    classifier,
                    x,
                    labels,
                    eps,
                    norm_name,
                    autoattack_version,
                    autoattack_attacks,
                    box,
                    batch_size,
                    seed,
                    verbose,
                )
                autoattack_warnings = settings["autoattack"].pop("warnings")
                _check_budget("autoattack", x_adv, x, eps + tolerance, norm_name)
                robust = _predict_labels(classifier, x_adv, batch_size) == labels
            seconds[name] = time.perf_counter() - started
            per_sample[name] = robust & clean
            logger.info("Robust accuracy under %s: %.2f%% (%.1f s)", name, 100 * per_sample[name].mean(), seconds[name])

    worst_case = clean.copy()
    for name in attack_names:
        worst_case &= per_sample[name]
    per_sample["worst_case"] = worst_case
    with _random_state_preserved(), _evaluation_mode(classifier.model):
        model_warnings = _autoattack_checks(classifier, x[:batch_size], labels[:batch_size])
    report = RobustnessReport(
        n=n,
        eps=eps,
        norm=norm_name,
        clean_accuracy=float(clean.mean()),
        robust_accuracy={name: float(per_sample[name].mean()) for name in attack_names},
        worst_case_accuracy=float(worst_case.mean()),
        seconds=seconds,
        per_sample=per_sample,
        settings=settings,
    )
    report.flags = sanity_flags(report) + autoattack_warnings + model_warnings
    for flag in report.flags:
        logger.warning("Evaluation sanity: %s", flag)
    return report


#: Attacks from weaker to stronger: an attack's accuracy should not exceed that of an attack before it on the
#: same points (AutoAttack's first attack, APGD-CE, is a stronger PGD).
ATTACK_STRENGTH_ORDER: tuple[tuple[str, str], ...] = (("pgd", "autoattack"),)


def sanity_flags(report: RobustnessReport) -> list[str]:
    """
    The consistency checks of a report (the lesson of gradient masking, Athalye et al. 2018): an attack cannot leave
    more points correct than there are clean correct points, and a stronger attack (AutoAttack) should not leave
    correct a point that a weaker one (PGD) broke. A flag does not prove the defence broken; it says the evaluation
    needs a closer look (more restarts, an adaptive attack).

    :param report: A report of :func:`evaluate` (per-sample results needed).
    :return: One message per failed check.
    """
    flags = []
    for name, accuracy in report.robust_accuracy.items():
        if accuracy > report.clean_accuracy:
            flags.append(f"{name} accuracy {accuracy:.2%} is above the clean accuracy {report.clean_accuracy:.2%}")
    for weaker, stronger in ATTACK_STRENGTH_ORDER:
        if weaker in report.per_sample and stronger in report.per_sample:
            survived = int(np.sum(report.per_sample[stronger] & ~report.per_sample[weaker]))
            if survived:
                flags.append(
                    f"{stronger} (the stronger attack) leaves {survived} point(s) correct that {weaker} broke "
                    f"({report.robust_accuracy[stronger]:.2%} vs {report.robust_accuracy[weaker]:.2%}): a sign "
                    "of gradient masking or of randomness in the model"
                )
    return flags


def _dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """AutoAttack's difference-of-logits-ratio loss (Croce & Hein 2020, eq. 6), whose gradient APGD-T checks."""
    ordered, indices = logits.sort(dim=1)
    correct = logits.gather(1, y[:, None]).squeeze(1)
    best_other = torch.where(indices[:, -1] == y, ordered[:, -2], ordered[:, -1])
    return -(correct - best_other) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


def _autoattack_checks(classifier: Any, x: np.ndarray, labels: np.ndarray) -> list[str]:
    """
    AutoAttack's own checks on one batch of clean points, whichever attacks run: a randomised model (five forward passes
    that disagree), outputs that look like probabilities rather than logits, and inputs where the gradient of the DLR
    loss (the one APGD-T checks) is exactly zero.

    :return: The checks' warnings.
    """
    from pyautoattack import checks

    model = input_space_model(classifier)
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


def _check_norm(norm: Any) -> str:
    """Map ``np.inf``/``"inf"`` to ``"Linf"`` and ``2`` to ``"L2"``."""
    if isinstance(norm, str):
        if norm == "inf":
            return "Linf"
    elif isinstance(norm, numbers.Real) and not isinstance(norm, bool):
        if norm == np.inf:
            return "Linf"
        if norm == 2:
            return "L2"
    raise ValueError(f"norm must be np.inf, 'inf' or 2, got {norm!r}")


def _check_attacks(attacks: Any) -> tuple[str, ...]:
    """Names of the attacks to run, without repeats, in the caller's order."""
    if isinstance(attacks, str):
        attacks = (attacks,)
    if not isinstance(attacks, Sequence) or not attacks:
        raise ValueError(f"attacks must be a non-empty sequence of names from {ATTACKS}, got {attacks!r}")
    for name in attacks:
        check_choice(name, "attacks", ATTACKS)
    return tuple(dict.fromkeys(attacks))


def _check_threat_eps(eps: Any, norm_name: str, classifier: Any) -> float:
    """``eps`` inside the largest meaningful budget of the threat model."""
    if norm_name == "Linf":
        return check_eps(eps, clip_range(classifier))
    low, high = (np.asarray(v, dtype=np.float64) for v in classifier.clip_values)
    diameter = float(np.max(high - low)) * math.sqrt(math.prod(classifier.input_shape))
    try:
        return check_eps(eps, diameter)
    except ValueError:
        raise ValueError(
            f"eps must be in (0, {diameter:g}] (the L2 diameter of the input box of clip_values) for norm=2, got {eps}"
        ) from None


def _positive_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_autoattack_attacks(attacks: Any, version: str, nb_classes: int | None) -> list[str] | None:
    """
    The attacks of a custom AutoAttack, refused for the other versions.

    :param nb_classes: The classifier's number of classes, checked against the attacks run; ``None`` (AutoAttack is
                       not run) skips that check.
    """
    if version != "custom":
        if attacks is not None:
            raise ValueError(
                f"autoattack_attacks is only used with autoattack_version='custom', got {attacks!r} with "
                f"autoattack_version={version!r}"
            )
        run = {"standard": ["apgd-t"], "plus": ["apgd-dlr", "apgd-t"], "rand": ["apgd-dlr"]}[version]
    else:
        if isinstance(attacks, str):
            attacks = [attacks]
        if not isinstance(attacks, Sequence) or not attacks:
            raise ValueError(
                "autoattack_attacks must be a non-empty list of names from "
                f"{AUTOATTACK_ATTACKS} with autoattack_version='custom', got {attacks!r}"
            )
        for name in attacks:
            check_choice(name, "autoattack_attacks", AUTOATTACK_ATTACKS)
        attacks = list(dict.fromkeys(attacks))
        run = attacks
    # The DLR losses compare the three (targeted: four) largest logits.
    needed = 4 if "apgd-t" in run else 3 if "apgd-dlr" in run else 2
    if nb_classes is not None and nb_classes < needed:
        raise ValueError(
            f"autoattack_version={version!r} runs {', '.join(run)}, which need nb_classes >= {needed}, got "
            f"{nb_classes}: use autoattack_version='custom' with autoattack_attacks=['apgd-ce', 'fab-t', 'square']"
        )
    return attacks


def _unit_box(classifier: Any) -> tuple[np.ndarray, float]:
    """``(low, width)`` mapping ``clip_values`` onto AutoAttack's [0, 1]; refuses features of different widths."""
    low, high = (np.asarray(v, dtype=np.float32) for v in classifier.clip_values)
    widths = np.asarray(high - low, dtype=np.float64)
    width = float(np.max(widths))
    if np.any(np.abs(widths - width) > 1e-6 * width):
        raise ValueError(
            "attacks includes 'autoattack', which needs clip_values of one width for every feature (AutoAttack "
            f"works in [0, 1] and eps must scale uniformly), got widths {widths.min():g}..{widths.max():g}"
        )
    return np.broadcast_to(low, classifier.input_shape).astype(np.float32), width


def _predict_labels(classifier: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.argmax(classifier.predict(x, batch_size=batch_size), axis=1)


def _distances(x_adv: np.ndarray, x: np.ndarray, norm_name: str) -> np.ndarray:
    """Per-sample size of ``x_adv - x`` in the threat norm, in float64."""
    delta = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    if norm_name == "Linf":
        return np.abs(delta).max(axis=1)
    return np.sqrt(np.square(delta).sum(axis=1))


def _check_budget(name: str, x_adv: np.ndarray, x: np.ndarray, limit: float, norm_name: str) -> None:
    """Warn if an eps-bounded attack returned points outside the budget (the evaluation would be too pessimistic)."""
    largest = float(_distances(x_adv, x, norm_name).max())
    if largest > limit:
        logger.warning("%s returned perturbations of %s norm up to %g, above eps (%g)", name, norm_name, largest, limit)


def _carlini_wagner(
    classifier: Any, norm_name: str, max_iter: int, learning_rate: float, batch_size: int, verbose: bool
) -> tuple[CarliniLInfMethod | CarliniL2Method, dict[str, Any]]:
    """ART's Carlini-Wagner attack for the threat norm, and its settings."""
    if norm_name == "Linf":
        attack = CarliniLInfMethod(
            classifier,
            learning_rate=learning_rate,
            max_iter=max_iter,
            decrease_factor=CW_LINF_DECREASE_FACTOR,
            const_factor=CW_LINF_CONST_FACTOR,
            batch_size=batch_size,
            verbose=verbose,
        )
        names = ("learning_rate", "max_iter", "decrease_factor", "initial_const", "largest_const", "const_factor")
    else:
        attack = CarliniL2Method(
            classifier, learning_rate=learning_rate, max_iter=max_iter, batch_size=batch_size, verbose=verbose
        )
        names = ("learning_rate", "max_iter", "binary_search_steps", "initial_const", "max_halving", "max_doubling")
    settings = {"method": type(attack).__name__, **{key: getattr(attack, key) for key in names}}
    return attack, settings


class _UnitBoxModel(nn.Module):
    """``model(low + z * width)``: a model of inputs in ``clip_values`` seen as a model of ``z`` in [0, 1]."""

    def __init__(self, model: nn.Module, low: torch.Tensor, width: float) -> None:
        """
        :param model: Model of input-space images.
        :param low: Lower clip values, broadcastable to a batch.
        :param width: The clip width.
        """
        super().__init__()
        self.model = model
        self.register_buffer("low", low)
        self.width = width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """
        :param z: Inputs in [0, 1].
        :return: The model's logits.
        """
        return self.model(self.low + z * self.width)


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
) -> tuple[np.ndarray, dict[str, Any]]:
    """Run AutoAttack on input-space images; return its adversarial examples (in input space) and its settings."""
    low, width = box
    model = input_space_model(classifier)
    unit = bool(np.all(low == 0)) and width == 1.0
    if not unit:
        model = _UnitBoxModel(model, torch.from_numpy(low[np.newaxis]).to(classifier.device), width)
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
    settings["warnings"] = output.warnings
    x_adv = z_adv.detach().cpu().numpy().astype(np.float32)
    if not unit:
        x_adv = np.clip(low + x_adv * width, low, low + width).astype(np.float32)
    return x_adv, settings


class _ForwardToLogger(logging.Handler):
    """Re-emits AutoAttack's records on this module's logger: progress at INFO (verbose) or DEBUG, warnings as is."""

    def __init__(self, verbose: bool) -> None:
        """
        :param verbose: Log progress at INFO rather than DEBUG.
        """
        super().__init__(logging.DEBUG)
        self.progress_level = logging.INFO if verbose else logging.DEBUG
        #: The warnings AutoAttack logged (its sanity checks).
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """
        :param record: A record of ``pyautoattack``.
        """
        level = record.levelno if record.levelno >= logging.WARNING else self.progress_level
        logger.log(level, "AutoAttack: %s", record.getMessage())
        if record.levelno >= logging.WARNING:
            self.warnings.append(f"AutoAttack: {record.getMessage()}")


@contextlib.contextmanager
def _autoattack_output(verbose: bool) -> Iterator[_ForwardToLogger]:
    """
    Route AutoAttack's output through this module's logger while it runs.

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
                logger.debug("AutoAttack: %s", line)


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
