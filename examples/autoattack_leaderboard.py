"""
A RobustBench-style evaluation: train natural, Fast and GAAT models, evaluate each with ``art_fastat.evaluate``
(clean, ART PGD, AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square) and print one leaderboard row per model,
ranked by AutoAttack accuracy, with the worst case over all attacks.

    python examples/autoattack_leaderboard.py [--epochs 30] [--n-eval 100]
"""

from __future__ import annotations

import argparse
import time

import art_fastat
from art_fastat import AdversarialTrainerFast, AdversarialTrainerGAAT, NaturalTrainer
from art_fastat.protocols import get_protocol


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n-eval", type=int, default=100)
    args = parser.parse_args(argv)

    digits = get_protocol("digits")
    x_train, y_train, x_test, y_test = digits.load()
    x_eval, y_eval = x_test[: args.n_eval], y_test[: args.n_eval]
    rows = []
    for name, trainer_class in (("natural", NaturalTrainer), ("Fast", AdversarialTrainerFast),
                                ("GAAT", AdversarialTrainerGAAT)):  # fmt: skip
        classifier = digits.make_classifier("cpu", seed=0)
        started = time.perf_counter()
        trainer_class(classifier, eps=digits.eps, verbose=False).fit(x_train, y_train, batch_size=64,
                                                                     nb_epochs=args.epochs)  # fmt: skip
        seconds = time.perf_counter() - started
        report = art_fastat.evaluate(classifier, x_eval, y_eval, eps=digits.eps, attacks=("pgd", "autoattack"),
                                     **digits.evaluation_options())  # fmt: skip
        rows.append(report.leaderboard_row(name, training_seconds=seconds))
    rows.sort(key=lambda row: -row["autoattack"])
    print(f"| method | clean | AutoAttack | PGD | worst case | train s |   (digits, eps {digits.eps}, n={args.n_eval})")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['method']} | {row['clean']:.2f} | {row['autoattack']:.2f} | {row['pgd']:.2f} | "
              f"{row['worst_case']:.2f} | {row['training_seconds']:.1f} |")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
