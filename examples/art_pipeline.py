"""
An ART pipeline: build a ``PyTorchClassifier``, train it with ``AdversarialTrainerGAAT`` (numpy in, like every ART
trainer), then attack the result with ART's own ``ProjectedGradientDescent``.

    python examples/art_pipeline.py [--epochs 30] [--n-eval 297]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from art.attacks.evasion import ProjectedGradientDescent
from art.estimators.classification import PyTorchClassifier

from art_fastat import AdversarialTrainerGAAT
from art_fastat.models import DigitsCNN
from art_fastat.protocols import protocol


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n-eval", type=int, default=297)
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = protocol("digits")  # embedded scikit-learn digits, (N, 1, 8, 8) in [0, 1]
    x_test, y_test = x_test[: args.n_eval], y_test[: args.n_eval]
    torch.manual_seed(0)
    model = DigitsCNN()
    classifier = PyTorchClassifier(
        model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        clip_values=(0.0, 1.0),
    )
    AdversarialTrainerGAAT(classifier, eps=0.2, verbose=False).fit(
        x_train, y_train, batch_size=64, nb_epochs=args.epochs
    )

    attack = ProjectedGradientDescent(classifier, eps=0.2, eps_step=0.02, max_iter=50, verbose=False)
    x_adv = attack.generate(x_test)
    clean = float(np.mean(classifier.predict(x_test).argmax(1) == y_test))
    robust = float(np.mean(classifier.predict(x_adv).argmax(1) == y_test))
    print(f"GAAT-trained DigitsCNN: clean accuracy {clean:.3f}, ART PGD-50 (eps 0.2) accuracy {robust:.3f}")
    return {"clean": clean, "pgd": robust}


if __name__ == "__main__":
    main()
