"""
Why the random start is not clipped to the valid range (commit "Do not clip the random start to the valid range").

On protocol P1 without eps warm-up (eps 0.3, alpha 0.375, triangle lr to 5e-3, 10 epochs), seeds 0 and 1, PGD-50-10 on
the first 500 test images: a hand-written locuslab/fast_adversarial MNIST FGSM-RS loop (its start is not clipped), and
the engine's Fast with the start unclipped (the engine's behaviour) and clipped into [0, 1] (the earlier behaviour).

    python benchmarks/random_start.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

import art_fastat.perturbation as perturbation
from art_fastat.evaluation import evaluate
from art_fastat.protocols import get_protocol
from art_fastat.trainers import AdversarialTrainerFast

EPS, ALPHA, EPOCHS = 0.3, 0.375, 10


def hand_written_fgsm_rs(classifier: object, x: np.ndarray, y: np.ndarray, seed: int) -> None:
    """locuslab/fast_adversarial train_mnist.py, FGSM with random init, triangle lr; the start is not clipped."""
    model, optimizer = classifier.model, classifier.optimizer
    images_all, labels_all = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    batches = -(-len(x) // 100)
    iteration = 0
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 100):
            index = order[start : start + 100]
            images, labels = images_all[index], labels_all[index]
            lr = np.interp([iteration / batches], [0, EPOCHS * 2 // 5, EPOCHS], [0, 5e-3, 0])[0]
            iteration += 1
            for group in optimizer.param_groups:
                group["lr"] = lr
            delta = torch.zeros_like(images).uniform_(-EPS, EPS).requires_grad_(True)
            F.cross_entropy(model(images + delta), labels).backward()
            delta = torch.clamp(delta.detach() + ALPHA * delta.grad.sign(), -EPS, EPS)
            delta = torch.max(torch.min(1 - images, delta), 0 - images)
            loss = F.cross_entropy(model(images + delta), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def clipped_start(x: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The earlier start: U(-eps, eps) clipped so that x + delta_0 lies in [0, 1]."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return perturbation.project(x, (2 * noise - 1) * eps, eps, 0.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files")
    parser.add_argument("--n-pgd", type=int, default=500)
    args = parser.parse_args()
    protocol = get_protocol("mnist10k")
    x_train, y_train, x_test, y_test = protocol.load(args.data_dir)
    unclipped_start = perturbation.uniform_start

    def engine_fast(start: object) -> object:
        def run(classifier: object, seed: int) -> None:
            perturbation.uniform_start = start
            try:
                AdversarialTrainerFast(
                    classifier, eps=EPS, lr_schedule="triangle", seed=seed, overfitting_guard=None
                ).fit(  # Fast's own behaviour, overfitting included
                    x_train, y_train, batch_size=100, nb_epochs=EPOCHS
                )
            finally:
                perturbation.uniform_start = unclipped_start

        return run

    runs = {
        "hand-written locuslab FGSM-RS": lambda classifier, seed: hand_written_fgsm_rs(
            classifier, x_train, y_train, seed
        ),
        "engine Fast, unclipped start": engine_fast(unclipped_start),
        "engine Fast, clipped start": engine_fast(clipped_start),
    }
    print("| run | seed | clean | PGD-50-10 |\n|---|---:|---:|---:|")
    for name, run in runs.items():
        for seed in (0, 1):
            classifier = protocol.make_classifier("cpu", seed=seed)
            run(classifier, seed)
            report = evaluate(classifier, x_test[: args.n_pgd], y_test[: args.n_pgd], EPS, attacks=("pgd",),
                              **protocol.evaluation_options())  # fmt: skip
            print(
                f"| {name} | {seed} | {report.clean_accuracy:.3f} | {report.robust_accuracy['pgd']:.3f} |", flush=True
            )


if __name__ == "__main__":
    main()
