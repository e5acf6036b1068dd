"""
DAT+GAAT (paper 000, Table 4): natural training first, switching to GAAT when the natural training loss stops falling
(or at a fixed epoch). The history records when it switched; the result is compared with natural training.

    python examples/dat_gaat.py [--epochs 30] [--n-eval 297]
"""

from __future__ import annotations

import argparse

import art_fastat
from art_fastat import NaturalTrainer
from art_fastat.protocols import get_protocol
from art_fastat.trainers import dat_gaat


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n-eval", type=int, default=297)
    args = parser.parse_args(argv)

    digits = get_protocol("digits")
    x_train, y_train, x_test, y_test = digits.load()
    x_eval, y_eval = x_test[: args.n_eval], y_test[: args.n_eval]
    accuracy = {}
    for name, trainer_factory in (("natural", NaturalTrainer), ("DAT+GAAT", dat_gaat)):
        classifier = digits.make_classifier("cpu", seed=0)
        trainer = trainer_factory(classifier, eps=digits.eps, verbose=False)
        history = trainer.fit(x_train, y_train, batch_size=64, nb_epochs=args.epochs)
        if name == "DAT+GAAT":
            switched = [record["epoch"] for record in history if record.get("adversarial")]
            print(f"DAT+GAAT trained naturally, then with GAAT from epoch {switched[0] if switched else 'never'}")
        report = art_fastat.evaluate(classifier, x_eval, y_eval, eps=digits.eps, attacks="pgd",
                                     **digits.evaluation_options())  # fmt: skip
        accuracy[name] = report.robust_accuracy["pgd"]
        print(f"{name}: clean {report.clean_accuracy:.3f}, PGD-50 {report.robust_accuracy['pgd']:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
