"""
The argument checks of :func:`art_fastat.evaluation.evaluate`: every argument is checked, in a fixed order, before
anything runs, and each message names the argument and what is expected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from art_fastat._classifier import check_classifier, clip_range
from art_fastat._validation import check_choice, check_data, check_eps, check_positive_int
from art_fastat.evaluation.runners import ATTACKS

#: The versions of AutoAttack (``pyautoattack``).
AUTOATTACK_VERSIONS: tuple[str, ...] = ("standard", "plus", "rand", "custom")
#: The attacks AutoAttack's ``version="custom"`` can combine.
AUTOATTACK_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
#: A CW adversarial counts as "within eps" if its distance is at most ``eps + NORM_TOLERANCE * clip width``.
NORM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Arguments:
    """
    The checked arguments of :func:`~art_fastat.evaluation.evaluate`.

    :param classifier: The ART ``PyTorchClassifier``.
    :param x: A private float32 copy of the inputs (nothing downstream can write into the caller's array).
    :param labels: Integer labels.
    :param eps: Perturbation budget.
    :param norm_name: ``"Linf"`` or ``"L2"``.
    :param attacks: Names of the attacks to run, without repeats, in the caller's order.
    :param sizes: How many samples, from the first, each attack runs on (``len(x)`` unless the caller asked for
                  fewer).
    :param options: Each attack's own options, by attack name: ``"pgd"``: ``steps``, ``step_size`` (``None``: the
                    default), ``restarts``; ``"cw"``: ``max_iter``, ``learning_rate`` (``None``: the default of the
                    norm); ``"autoattack"``: ``version``, ``attacks`` (the custom version's), ``box`` (``(low,
                    width)`` of the map onto [0, 1]; ``None`` when AutoAttack is not run).
    :param tolerance: ``NORM_TOLERANCE`` times the clip width.
    :param batch_size: Batch size of every attack and of the clean pass.
    :param seed: Seed of every attack's randomness.
    :param verbose: Show the attacks' progress.
    """

    classifier: Any
    x: np.ndarray
    labels: np.ndarray
    eps: float
    norm_name: str
    attacks: tuple[str, ...]
    sizes: dict[str, int]
    options: dict[str, dict[str, Any]]
    tolerance: float
    batch_size: int
    seed: int
    verbose: bool


def check_arguments(
    classifier: Any,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    norm: float | int | str,
    attacks: Sequence[str] | str,
    *,
    pgd_steps: int,
    pgd_step_size: float | None,
    pgd_restarts: int,
    cw_max_iter: int,
    cw_learning_rate: float | None,
    autoattack_version: str,
    autoattack_attacks: Sequence[str] | None,
    attack_sizes: Mapping[str, int] | None,
    batch_size: int,
    seed: int,
    verbose: bool,
) -> Arguments:
    """
    Check the arguments of :func:`~art_fastat.evaluation.evaluate` (documented there).

    :return: The checked arguments.
    :raises TypeError: If ``classifier`` is not a ``PyTorchClassifier`` or an argument has the wrong type.
    :raises ValueError: If an argument has a wrong value.
    """
    check_classifier(classifier)
    norm_name = check_norm(norm)
    attack_names = check_attacks(attacks)
    x, labels = check_data(x, y, classifier)
    eps = check_threat_eps(eps, norm_name, classifier)
    pgd_steps = check_positive_int(pgd_steps, "pgd_steps")
    pgd_restarts = check_positive_int(pgd_restarts, "pgd_restarts", minimum=0)
    pgd_step_size = None if pgd_step_size is None else positive_float(pgd_step_size, "pgd_step_size")
    cw_max_iter = check_positive_int(cw_max_iter, "cw_max_iter")
    cw_learning_rate = None if cw_learning_rate is None else positive_float(cw_learning_rate, "cw_learning_rate")
    autoattack_version = check_choice(autoattack_version, "autoattack_version", AUTOATTACK_VERSIONS)
    autoattack_attacks = check_autoattack_attacks(
        autoattack_attacks, autoattack_version, classifier.nb_classes if "autoattack" in attack_names else None
    )
    sizes = check_attack_sizes(attack_sizes, attack_names, len(x))
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_positive_int(seed, "seed", minimum=0)
    if seed > 2**32 - 1:
        raise ValueError(f"seed must be an integer in [0, 2**32 - 1], got {seed}")
    if not isinstance(verbose, bool):
        raise TypeError(f"verbose must be a bool, got {verbose!r}")
    box = unit_box(classifier) if "autoattack" in attack_names else None
    return Arguments(
        classifier=classifier,
        x=np.array(x, dtype=np.float32, copy=True),
        labels=labels,
        eps=eps,
        norm_name=norm_name,
        attacks=attack_names,
        sizes=sizes,
        options={
            "pgd": {"steps": pgd_steps, "step_size": pgd_step_size, "restarts": pgd_restarts},
            "cw": {"max_iter": cw_max_iter, "learning_rate": cw_learning_rate},
            "autoattack": {"version": autoattack_version, "attacks": autoattack_attacks, "box": box},
        },
        tolerance=NORM_TOLERANCE * clip_range(classifier),
        batch_size=batch_size,
        seed=seed,
        verbose=verbose,
    )


def check_norm(norm: Any) -> str:
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


def check_attacks(attacks: Any) -> tuple[str, ...]:
    """Names of the attacks to run, without repeats, in the caller's order."""
    if isinstance(attacks, str):
        attacks = (attacks,)
    if not isinstance(attacks, Sequence) or not attacks:
        raise ValueError(f"attacks must be a non-empty sequence of names from {ATTACKS}, got {attacks!r}")
    for name in attacks:
        check_choice(name, "attacks", ATTACKS)
    return tuple(dict.fromkeys(attacks))


def check_attack_sizes(attack_sizes: Any, attacks: tuple[str, ...], n: int) -> dict[str, int]:
    """
    How many samples, from the first, each attack runs on: ``attack_sizes[name]`` capped at ``n``, else ``n``.

    :param attack_sizes: None, or a mapping from attacks that are run to integers >= 1.
    :param attacks: The attacks that are run.
    :param n: The number of samples.
    """
    if attack_sizes is None:
        attack_sizes = {}
    if not isinstance(attack_sizes, Mapping):
        raise TypeError(f"attack_sizes must be None or a mapping from attack names to integers >= 1, got "
                        f"{attack_sizes!r}")  # fmt: skip
    for name in attack_sizes:
        if name not in attacks:
            raise ValueError(f"attack_sizes names {name!r}, which is not among the attacks run: {', '.join(attacks)}")
    return {name: min(n, check_positive_int(attack_sizes.get(name, n), f"attack_sizes[{name!r}]")) for name in attacks}


def check_threat_eps(eps: Any, norm_name: str, classifier: Any) -> float:
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


def positive_float(value: Any, name: str) -> float:
    """
    :param value: The user's value.
    :param name: The argument's name, for the message.
    :return: The value as a ``float``, finite and > 0.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_autoattack_attacks(attacks: Any, version: str, nb_classes: int | None) -> list[str] | None:
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


def unit_box(classifier: Any) -> tuple[np.ndarray, float]:
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
