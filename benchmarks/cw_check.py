"""
ART's Carlini-Wagner L-inf against P1's naturally trained network, which PGD-50-10 breaks on every test image: how many
of the first ``--images`` test images ``CarliniLInfMethod`` finds an adversarial example for, with the evaluation's
settings, ART's defaults and 100 iterations at learning rate 0.01 (docs/reliability.md, evaluation sanity).

    python benchmarks/cw_check.py --data-dir ../shared/data/mnist [--images 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from art.attacks.evasion import CarliniLInfMethod

from art_fastat.evaluation.cw import CW_LINF_CONST_FACTOR, CW_LINF_DECREASE_FACTOR
from art_fastat.protocols import get_protocol
from art_fastat.trainers import NaturalTrainer

SETTINGS = {
    "the evaluation's": {"learning_rate": 0.1, "max_iter": 10, "decrease_factor": CW_LINF_DECREASE_FACTOR,
                         "const_factor": CW_LINF_CONST_FACTOR},
    "ART's defaults": {},
    "100 iterations at lr 0.01": {"learning_rate": 0.01, "max_iter": 100, "decrease_factor": CW_LINF_DECREASE_FACTOR,
                                  "const_factor": CW_LINF_CONST_FACTOR},
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files (default: ../shared/data/mnist)")
    parser.add_argument("--images", type=int, default=8, help="test images attacked")
    args = parser.parse_args()
    protocol = get_protocol("mnist10k")
    x, y, x_test, y_test = protocol.load(args.data_dir)
    classifier = protocol.make_classifier("cpu", seed=0)
    NaturalTrainer(classifier, **protocol.trainer_options(), seed=0).fit(x, y, batch_size=protocol.batch_size,
                                                                          nb_epochs=protocol.nb_epochs)  # fmt: skip
    images, labels = x_test[: args.images], y_test[: args.images]
    print(f"P1 natural network, first {args.images} test images\n")
    print("| CW-Linf settings | adversarial examples found | seconds |\n|---|---:|---:|")
    for name, settings in SETTINGS.items():
        started = time.perf_counter()
        adversarial = CarliniLInfMethod(classifier, verbose=False, **settings).generate(images, labels)
        fooled = int(np.sum(classifier.predict(adversarial).argmax(axis=1) != labels))
        print(f"| {name} | {fooled} of {args.images} | {time.perf_counter() - started:.1f} |", flush=True)


if __name__ == "__main__":
    main()
