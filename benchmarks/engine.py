"""
Engine overhead and speed against ART, on protocol P1 (``mnist10k``).

Seconds per epoch, measured side by side in one run (configurations interleaved, median over repeats), of:

- RAT (PGD-10) and Fast on the art_fastat engine;
- a hand-written PyTorch loop doing the same mathematics (locuslab/fast_adversarial style, input gradients with
  ``torch.autograd.grad`` as the engine takes them);
- Free-8 (one pass over the data, 8 replays per minibatch) on the engine and hand-written;
- ART's ``AdversarialTrainerMadryPGD`` with the same PGD-10 settings and ART's ``AdversarialTrainerFBFPyTorch``.

Targets: engine <= 1.05x the hand-written loop for RAT and Fast (engine v2, issue 14; 1.10x before), and RAT on the
engine >= 2x faster than ART's Madry trainer (issue 2); Free on the engine <= 1.05x the hand-written Free loop per pass
(issue 4).

    python benchmarks/engine.py --data-dir ../shared/data/mnist [--repeats 3] [--threads 2] [--only RAT Fast Free-8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from art_fastat.protocols import get_protocol
from art_fastat.trainers import AdversarialTrainerFast, AdversarialTrainerFree, AdversarialTrainerPGD

EPS, STEPS, REPLAYS = 0.3, 10, 8
METHODS = ["RAT", "Fast", "Free-8"]
ALPHA_PGD, ALPHA_FAST = EPS / 4, 1.25 * EPS


def hand_written_epoch(classifier: object, x: np.ndarray, y: np.ndarray, steps: int, alpha: float, seed: int) -> None:
    """One epoch of PGD-AT (``steps`` >= 2) or FGSM-RS (``steps`` = 1), written out as a researcher would."""
    model, optimizer = classifier.model, classifier.optimizer
    generator = torch.Generator().manual_seed(seed)
    x_all, y_all = torch.from_numpy(x), torch.from_numpy(y)
    order = torch.randperm(len(x_all), generator=generator)
    model.train()
    for start in range(0, len(order), 100):
        index = order[start : start + 100]
        images, labels = x_all[index], y_all[index]
        delta = (torch.rand(images.shape, generator=generator) * 2 - 1) * EPS
        delta = (images + delta).clamp(0, 1) - images
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(images + delta), labels, reduction="sum")
            (gradient,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + alpha * gradient.sign()).clamp(-EPS, EPS)
            delta = (images + delta).clamp(0, 1) - images
        loss = F.cross_entropy(model(images + delta), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def hand_written_free_epoch(classifier: object, x: np.ndarray, y: np.ndarray, replays: int, seed: int) -> None:
    """One pass over the data of Free-m: each replay one pass giving both gradients, a persistent perturbation."""
    model, optimizer = classifier.model, classifier.optimizer
    generator = torch.Generator().manual_seed(seed)
    x_all, y_all = torch.from_numpy(x), torch.from_numpy(y)
    order = torch.randperm(len(x_all), generator=generator)
    persistent = torch.zeros((100, *x.shape[1:]))
    model.train()
    for start in range(0, len(order), 100):
        index = order[start : start + 100]
        images, labels = x_all[index], y_all[index]
        delta = (images + persistent[: len(images)].clamp(-EPS, EPS)).clamp(0, 1) - images
        for _ in range(replays):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(images + delta), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            delta = (delta.detach() + EPS * delta.grad.sign()).clamp(-EPS, EPS)
            delta = (images + delta).clamp(0, 1) - images
        persistent[: len(images)] = delta


def configurations(x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[object, int], None]]:
    """Name -> function training one epoch on a fresh classifier."""
    from art.defences.trainer import AdversarialTrainerFBFPyTorch, AdversarialTrainerMadryPGD

    one_hot = np.eye(10, dtype=np.float32)[y]  # ART's FBF trainer needs one-hot labels

    def engine(cls: type, **kwargs: object) -> Callable[[object, int], None]:
        return lambda classifier, seed: cls(classifier, eps=EPS, seed=seed, overfitting_guard=None, **kwargs).fit(
            x, y, batch_size=100, nb_epochs=1
        )

    return {
        "RAT engine": engine(AdversarialTrainerPGD, alpha=ALPHA_PGD, steps=STEPS),
        "RAT hand-written": lambda classifier, seed: hand_written_epoch(classifier, x, y, STEPS, ALPHA_PGD, seed),
        "RAT ART MadryPGD": lambda classifier, seed: AdversarialTrainerMadryPGD(
            classifier, nb_epochs=1, batch_size=100, eps=EPS, eps_step=ALPHA_PGD, max_iter=STEPS
        ).fit(x, one_hot),
        "Fast engine": engine(AdversarialTrainerFast),
        "Fast hand-written": lambda classifier, seed: hand_written_epoch(classifier, x, y, 1, ALPHA_FAST, seed),
        "Fast ART FBF": lambda classifier, seed: AdversarialTrainerFBFPyTorch(classifier, eps=EPS).fit(
            x, one_hot, batch_size=100, nb_epochs=1
        ),
        "Free-8 engine": lambda classifier, seed: AdversarialTrainerFree(
            classifier, eps=EPS, replays=REPLAYS, seed=seed
        ).fit(x, y, batch_size=100, nb_epochs=REPLAYS),
        "Free-8 hand-written": lambda classifier, seed: hand_written_free_epoch(classifier, x, y, REPLAYS, seed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files (default: ../shared/data/mnist)")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per configuration (median reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--samples", type=int, default=8000, help="training images per epoch (P1: 8000)")
    parser.add_argument("--only", nargs="+", choices=METHODS, default=METHODS, help="methods to time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = get_protocol("mnist10k")
    x_train, y_train, _, _ = protocol.load(args.data_dir)
    x_train, y_train = x_train[: args.samples], y_train[: args.samples]
    runs = {name: run for name, run in configurations(x_train, y_train).items() if name.split()[0] in args.only}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        # Alternate the order so that neither side of a pair always runs first (caches, a busy neighbour's phase).
        for name in list(runs) if repeat % 2 == 0 else list(runs)[::-1]:
            classifier = protocol.make_classifier("cpu", seed=repeat)
            started, started_cpu = time.perf_counter(), time.process_time()
            runs[name](classifier, repeat)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
            print(f"  repeat {repeat + 1}/{args.repeats} {name}: {wall[name][-1]:.2f} s", flush=True)
    median = {name: statistics.median(values) for name, values in wall.items()}
    print(f"\nP1 mnist10k, {len(x_train)} images, batch 100, eps {EPS}, PGD-{STEPS}; {args.threads} threads, "
          f"median of {args.repeats} epochs per configuration\n")  # fmt: skip
    print("| configuration | s/epoch | vs hand-written | vs engine |")
    print("|---|---:|---:|---:|")
    for name, value in median.items():
        method = name.split()[0]
        hand, engine = median[f"{method} hand-written"], median[f"{method} engine"]
        print(f"| {name} | {value:.2f} | {value / hand:.2f}x | {value / engine:.2f}x |")
    # Process CPU time does not count time the host's scheduler gives to other machines, which is most of the
    # noise on shared CPUs; the paired median compares the two configurations timed next to each other.
    print("\nengine / hand-written (target: RAT, Fast and Free-8 <= 1.05x)\n")
    print("| method | ratio of medians, wall | ratio of medians, CPU | median of paired ratios, CPU |")
    print("|---|---:|---:|---:|")
    for method in args.only:
        engine, hand = f"{method} engine", f"{method} hand-written"
        paired = statistics.median(e / h for e, h in zip(cpu[engine], cpu[hand], strict=True))
        cpu_ratio = statistics.median(cpu[engine]) / statistics.median(cpu[hand])
        print(f"| {method} | {median[engine] / median[hand]:.3f}x | {cpu_ratio:.3f}x | {paired:.3f}x |")
    if "RAT" in args.only and "Fast" in args.only:
        print(
            f"\nART MadryPGD / RAT engine: {median['RAT ART MadryPGD'] / median['RAT engine']:.2f}x (target >= 2x); "
            f"ART FBF / Fast engine: {median['Fast ART FBF'] / median['Fast engine']:.2f}x"
        )


if __name__ == "__main__":
    main()
