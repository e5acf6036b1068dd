"""
The result of :func:`art_fastat.evaluation.evaluate`: :class:`RobustnessReport` (JSON, Markdown, a leaderboard row)
and its consistency checks (:func:`sanity_flags`).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(eq=False)
class RobustnessReport:
    """
    The result of :func:`evaluate`. Accuracies are fractions in [0, 1].

    :param n: Number of evaluated samples (of the clean accuracy; see ``sizes``).
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
    :param sizes: How many samples, from the first, each accuracy is over: ``"clean"``, each attack and
                  ``"worst_case"`` (``evaluate``'s ``attack_sizes``); a name missing here means all ``n``.
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
    sizes: dict[str, int] = field(default_factory=dict)

    def size(self, name: str) -> int:
        """:return: How many samples the accuracy ``name`` (``"clean"``, an attack, ``"worst_case"``) is over."""
        return int(self.sizes.get(name, self.n))

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
            "sizes": {name: self.size(name) for name in ("clean", *self.robust_accuracy, "worst_case")},
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
        fewer = [f"{name} on the first {self.size(name)}" for name in (*self.robust_accuracy, "worst_case")
                 if self.size(name) < self.n]  # fmt: skip
        lines = [
            f"Robustness on {self.n} samples{' (' + ', '.join(fewer) + ')' if fewer else ''}, {self.norm} "
            f"eps = {self.eps:g}",
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


def claimed_accuracy(report: dict[str, Any]) -> float:
    """
    A run's robust-accuracy claim: the worst case over its attacks, or an attack's own accuracy where lower. The worst
    case is taken on the images every attack saw; when an attack ran on fewer images than another (e.g. CW on 25,
    AutoAttack on 500), that smaller sample may score above what the other attack measured on its own images, and a
    claim above a measured attack's accuracy would overstate the model.

    :param report: :meth:`RobustnessReport.to_dict` (also as read back from JSON).
    """
    return min(report["worst_case_accuracy"], *report["robust_accuracy"].values())


def leaderboard_accuracies(report: dict[str, Any]) -> dict[str, float | None]:
    """
    The accuracies of a leaderboard row, in percent rounded to two decimals as RobustBench reports them.

    :param report: :meth:`RobustnessReport.to_dict` (also as read back from JSON).
    :return: ``clean, autoattack, pgd, cw, worst_case`` (:func:`claimed_accuracy`); None for attacks that were not
             run.
    """

    def percent(value: float | None) -> float | None:
        return None if value is None else round(100.0 * float(value), 2)

    robust = report["robust_accuracy"]
    return {
        "clean": percent(report["clean_accuracy"]),
        "autoattack": percent(robust.get("autoattack")),
        "pgd": percent(robust.get("pgd")),
        "cw": percent(robust.get("cw")),
        "worst_case": percent(claimed_accuracy(report)),
    }


#: Attacks from weaker to stronger: an attack's accuracy should not exceed that of an attack before it on the
#: same points (AutoAttack's first attack, APGD-CE, is a stronger PGD).
ATTACK_STRENGTH_ORDER: tuple[tuple[str, str], ...] = (("pgd", "autoattack"),)


def sanity_flags(report: RobustnessReport) -> list[str]:
    """
    The consistency checks of a report (the lesson of gradient masking, Athalye et al. 2018): an attack cannot leave
    more points correct than there are clean correct points, and a stronger attack (AutoAttack) should not leave
    correct a point that a weaker one (PGD) broke. A flag does not prove the defence broken; it says the evaluation
    needs a closer look (more restarts, an adaptive attack). CW leaving correct a point PGD broke is flagged as a miss
    of the CW attack (it minimises the perturbation and is not a stronger PGD).

    :param report: A report of :func:`evaluate` (per-sample results needed).
    :return: One message per failed check.
    """
    flags = []
    for name, accuracy in report.robust_accuracy.items():
        clean = report.clean_accuracy
        if report.size(name) < report.n and "clean" in report.per_sample:  # the clean accuracy on the same samples
            clean = float(np.mean(report.per_sample["clean"][: report.size(name)]))
        if accuracy > clean:
            flags.append(f"{name} accuracy {accuracy:.2%} is above the clean accuracy {clean:.2%}")
    for weaker, stronger in ATTACK_STRENGTH_ORDER:
        if weaker in report.per_sample and stronger in report.per_sample:
            common = min(len(report.per_sample[weaker]), len(report.per_sample[stronger]))  # the samples both saw
            survived = int(np.sum(report.per_sample[stronger][:common] & ~report.per_sample[weaker][:common]))
            if survived:
                flags.append(
                    f"{stronger} (the stronger attack) leaves {survived} point(s) correct that {weaker} broke "
                    f"({report.robust_accuracy[stronger]:.2%} vs {report.robust_accuracy[weaker]:.2%}): a sign "
                    "of gradient masking or of randomness in the model"
                )
    if "cw" in report.per_sample and "pgd" in report.per_sample:
        common = min(len(report.per_sample["cw"]), len(report.per_sample["pgd"]))
        missed = int(np.sum(report.per_sample["cw"][:common] & ~report.per_sample["pgd"][:common]))
        if missed:
            flags.append(
                f"cw leaves {missed} point(s) correct that pgd broke within eps: ART's Carlini-Wagner {report.norm} "
                "looks for the smallest perturbation and can miss adversarial examples PGD finds (ART issue #1374); "
                "its accuracy here is not a robustness claim"
            )
    return flags
