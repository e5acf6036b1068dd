"""
Attacking a trained model through the torchattacks API: our attacks (GAAT's Taylor-model PGD, the contrastive HMC
sampler) are ``torchattacks.Attack`` objects, so they run alone, beside torchattacks' PGD, and inside its
``MultiAttack`` (which keeps, per image, the first attack that succeeds).

    python examples/torchattacks_attack.py [--epochs 10] [--n-eval 297]
"""

from __future__ import annotations

import argparse

import torch
import torchattacks

import art_fastat
from art_fastat import NaturalTrainer
from art_fastat.protocols import get_protocol


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-eval", type=int, default=297)
    args = parser.parse_args(argv)

    digits = get_protocol("digits")
    x_train, y_train, x_test, y_test = digits.load()
    classifier = digits.make_classifier("cpu", seed=0)
    NaturalTrainer(classifier, verbose=False).fit(x_train, y_train, batch_size=64, nb_epochs=args.epochs)
    model = classifier.model.eval()
    images, labels = torch.from_numpy(x_test[: args.n_eval]), torch.from_numpy(y_test[: args.n_eval])

    eps = 0.2
    attacks = {
        "torchattacks PGD-10": torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=10),
        "art_fastat GAAT": art_fastat.attacks.GAAT(model, eps=eps, alpha=eps / 4, steps=10),
        "art_fastat HMC": art_fastat.attacks.HMC(model, eps=eps, position_step=eps / 4, steps=2, repeats=5),
    }
    attacks["MultiAttack(GAAT, HMC, PGD)"] = torchattacks.MultiAttack(list(attacks.values())[::-1])
    accuracy = {"clean": float((model(images).argmax(1) == labels).float().mean())}
    for name, attack in attacks.items():
        adversarial = attack(images, labels)
        assert float((adversarial - images).abs().max()) <= eps + 1e-6
        accuracy[name] = float((model(adversarial).argmax(1) == labels).float().mean())
    for name, value in accuracy.items():
        print(f"{name:>30}: accuracy {value:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
