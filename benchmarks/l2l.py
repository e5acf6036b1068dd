"""
L2L-RNN against RAT and ART's TRADES on protocol P1 (``mnist10k``), in one run (issue 6).

1. Seconds per epoch measured side by side (one epoch of each in turn, median of ``--repeats``): RAT with PGD-5 and
   PGD-10, L2L (T=5), L2L-TRADES (T=5), TRADES via ART's ``AdversarialTrainerTRADESPyTorch`` (ART PGD-10 inner
   attack). Target: L2L <= 1.25x RAT at the same T (PGD-5).
2. Accuracy under P1's settings (10 epochs, eps 0.3 warmed up over 3 epochs for our trainers; ART's TRADES trainer
   has no warm-up and runs at eps 0.3 throughout), clean / PGD-50-10 / ART CW / AutoAttack.
3. The inner loss per step t = 0..5 on held-out images against the L2L-trained model: its learned optimizer against
   PGD-5 with steps eps/4 and eps/2 from the same random start.

4. ``--pair``: only the cost ratio L2L (T=5) / RAT (PGD-5) on P1, the median of ratios of one epoch of each in turn.
5. ``--vgg16``: the same ratio on the paper's CIFAR-10 network (VGG16) with CIFAR-shaped inputs: ``--images`` (128)
   synthetic (3, 32, 32) images, batch ``--batch-size`` (64), eps 8/255; target <= 1.25x.

    python benchmarks/l2l.py --data-dir ../shared/data/mnist [--n-pgd 500] [--n-cw 50] [--n-autoattack 100]
    python benchmarks/l2l.py --data-dir ../shared/data/mnist --profile   # where an L2L batch spends its time
    python benchmarks/l2l.py --data-dir ../shared/data/mnist --timing-only --hidden-sizes 8 4 2   # smaller LSTMs
    python benchmarks/l2l.py --data-dir ../shared/data/mnist --pair --repeats 5   # L2L / RAT on P1
    python benchmarks/l2l.py --vgg16 --repeats 5 [--profile]   # L2L / RAT on VGG16, CIFAR-shaped inputs
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    benchmark_arguments,
    cost_table,
    markdown_table,
    paired_ratio,
    time_passes,
    train_and_evaluate,
    trainer_builder,
)  # noqa: E402

from art_fastat.attacks.l2l import learned_ascent  # noqa: E402
from art_fastat.perturbation import AttackSpace, pgd, uniform_start  # noqa: E402
from art_fastat.protocols import get_protocol  # noqa: E402
from art_fastat.trainers import TRAINERS  # noqa: E402

STEPS = 5
PAIR = {"RAT (PGD-5)": ("pgd", {"steps": 5}), "L2L (T=5)": ("l2l", {"steps": STEPS})}


class ARTTrades:
    """ART's TRADES trainer behind the ``fit(x, y, batch_size, nb_epochs)`` of our trainers (PGD-10, step eps/4)."""

    def __init__(self, classifier: Any, eps: float, beta: float = 6.0, **_: Any) -> None:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.defences.trainer import AdversarialTrainerTRADESPyTorch

        attack = ProjectedGradientDescent(classifier, eps=eps, eps_step=eps / 4, max_iter=10, verbose=False)
        self.trainer = AdversarialTrainerTRADESPyTorch(classifier, attack, beta=beta)
        self.passes_per_batch = 12.0
        self.history: list[dict[str, float]] = []

    def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int, nb_epochs: int) -> list[dict[str, float]]:
        for _ in range(nb_epochs):
            started = time.perf_counter()
            self.trainer.fit(x, np.eye(10, dtype=np.float32)[y], batch_size=batch_size, nb_epochs=1)
            self.history.append({"seconds": time.perf_counter() - started})
        return self.history


def inner_losses(model: torch.nn.Module, rnn: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict:
    """Mean CE after t = 0..T steps of the learned optimizer and of PGD (two step sizes), from one random start."""

    def mean_loss(delta: torch.Tensor) -> float:
        with torch.no_grad():
            return float(F.cross_entropy(model(x + delta), y))

    def seeded() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    deltas = learned_ascent(AttackSpace(model, generator=seeded()), x, y, rnn, eps, STEPS, meta_graph=False).deltas
    curves = {"learned (L2L's LSTM)": [mean_loss(delta) for delta in deltas]}
    for label, alpha in (("PGD, step eps/4", eps / 4), ("PGD, step eps/2", eps / 2)):
        curves[label] = [mean_loss(uniform_start(x, eps, seeded()))] + [
            mean_loss(pgd(AttackSpace(model, generator=seeded()), x, y, eps, alpha, steps))
            for steps in range(1, STEPS + 1)
        ]
    return curves


def profile_batch(protocol: Any, x: np.ndarray, y: np.ndarray) -> None:
    """Where one L2L (T=5) batch spends its time on one thread (``torch.profiler``)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    trainer = TRAINERS["l2l"](protocol.make_classifier("cpu", seed=0), eps=protocol.eps, steps=STEPS)
    x_batch, y_batch = torch.from_numpy(x), torch.from_numpy(y)
    trainer._train_batch(x_batch, y_batch, protocol.eps)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(3):
            trainer._train_batch(x_batch, y_batch, protocol.eps)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def time_pair(protocol: Any, x: np.ndarray, y: np.ndarray, batch_size: int, repeats: int, title: str) -> None:
    """L2L (T=5) / RAT (PGD-5): one epoch of each in turn, ``repeats`` times; the median of the paired ratios."""
    print(f"{title}, one epoch of each in turn, {repeats} times")
    builds = {label: trainer_builder(TRAINERS[name], protocol.eps, options) for label, (name, options) in PAIR.items()}
    seconds = time_passes(builds, lambda seed: protocol.make_classifier("cpu", seed=seed), x, y, batch_size, repeats)
    median, ratios = paired_ratio(seconds, "L2L (T=5)", "RAT (PGD-5)")
    print(f"\nL2L (T=5) / RAT (PGD-5): median {median:.3f}x of the paired ratios "
          f"{', '.join(f'{ratio:.3f}' for ratio in ratios)} (target <= 1.25x)")  # fmt: skip


def vgg16_cifar_shaped(images: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """P2's settings (eps 8/255, SGD) with VGG16, and ``images`` uniform random CIFAR-shaped inputs with labels."""
    generator = np.random.default_rng(0)
    x = generator.random((images, 3, 32, 32), dtype=np.float32)
    return dataclasses.replace(get_protocol("cifar10"), model="vgg16"), x, generator.integers(0, 10, images)


def main() -> None:
    args, protocol, data = benchmark_arguments(
        __doc__,
        n_pgd=500,
        n_cw=50,
        n_autoattack=100,
        extra=lambda parser: (
            parser.add_argument("--profile", action="store_true", help="profile one L2L batch and stop"),
            parser.add_argument("--pair", action="store_true", help="only L2L / RAT (PGD-5) on P1, paired ratios"),
            parser.add_argument("--vgg16", action="store_true", help="L2L / RAT (PGD-5) on VGG16, CIFAR-shaped"),
            parser.add_argument("--images", type=int, default=128, help="CIFAR-shaped images of --vgg16"),
            parser.add_argument("--batch-size", type=int, default=64, help="batch size of --vgg16"),
            parser.add_argument(
                "--hidden-sizes",
                type=int,
                nargs="*",
                default=[],
                help="also time L2L with these LSTM hidden sizes (the default is 16)",
            ),  # fmt: skip
        ),
    )
    if args.vgg16:
        vgg16, x, y = vgg16_cifar_shaped(args.images)
        if args.profile:
            profile_batch(vgg16, x[: args.batch_size], y[: args.batch_size])
        else:
            threads = torch.get_num_threads()
            title = f"VGG16, {args.images} CIFAR-shaped images, batch {args.batch_size}, {threads} threads"
            time_pair(vgg16, x, y, args.batch_size, args.repeats, title)
        return
    if args.profile:
        profile_batch(protocol, data[0][:100], data[1][:100])
        return
    if args.pair:
        time_pair(protocol, data[0], data[1], protocol.batch_size, args.repeats, "P1 (8000 images, batch 100)")
        return
    configurations: dict[str, tuple[str, dict[str, Any]]] = {
        "RAT (PGD-5)": ("pgd", {"steps": 5}),
        "RAT (PGD-10)": ("pgd", {"steps": 10}),
        "L2L (T=5)": ("l2l", {"steps": STEPS}),
        "L2L-TRADES (T=5)": ("l2l-trades", {"steps": STEPS}),
        "ART TRADES (PGD-10)": ("art-trades", {}),
    }
    timed = dict(configurations)
    for hidden_size in args.hidden_sizes:
        timed[f"L2L (T=5, hidden {hidden_size})"] = ("l2l", {"steps": STEPS, "hidden_size": hidden_size})

    factories = {**TRAINERS, "art-trades": ARTTrades}  # ARTTrades ignores seed and engine options
    print(f"1. Seconds per epoch (8000 images, batch 100), median of {args.repeats}, interleaved")
    builds = {label: trainer_builder(factories[name], protocol.eps, options)
              for label, (name, options) in timed.items()}  # fmt: skip
    seconds = time_passes(builds, lambda seed: protocol.make_classifier("cpu", seed=seed), data[0], data[1],
                          protocol.batch_size, args.repeats)  # fmt: skip
    median = {label: float(np.median(values)) for label, values in seconds.items()}
    print("\n" + cost_table(median, {"vs RAT (PGD-5)": "RAT (PGD-5)", "vs RAT (PGD-10)": "RAT (PGD-10)"}))
    print(f"\nL2L / RAT at T=5: median of the paired ratios {paired_ratio(seconds, 'L2L (T=5)', 'RAT (PGD-5)')[0]:.2f}x"
          " (target <= 1.25x)")  # fmt: skip
    if args.timing_only:
        return

    print(
        f"\n2. Accuracy (P1: {protocol.nb_epochs} epochs, eps {protocol.eps}; warm-up over 3 epochs except ART TRADES)"
    )
    engine = protocol.trainer_options()
    trainers: dict[str, Any] = {}

    def keep(label: str, build: Any):
        def build_and_keep(classifier: Any) -> Any:
            trainers[label] = build(classifier)
            return trainers[label]

        return build_and_keep

    rows = [train_and_evaluate(label, keep(label, trainer_builder(factories[name], protocol.eps, options, **engine)),
                               protocol, data, protocol.eps, args.n_pgd, args.n_autoattack, n_cw=args.n_cw)
            for label, (name, options) in configurations.items()]  # fmt: skip
    print()
    print(markdown_table(rows, {"vs RAT (PGD-5)": "RAT (PGD-5)", "vs RAT (PGD-10)": "RAT (PGD-10)"}))

    print("\n3. Mean CE per inner step on 500 test images against the L2L-trained model (same random start)")
    l2l = trainers["L2L (T=5)"]
    x_test, y_test = (torch.from_numpy(array[:500]) for array in data[2:])
    curves = inner_losses(l2l.model.eval(), l2l.rnn, x_test, y_test, protocol.eps)
    print("| inner optimizer | " + " | ".join(f"t={t}" for t in range(STEPS + 1)) + " |")
    print("|---|" + "---:|" * (STEPS + 1))
    for label, values in curves.items():
        print(f"| {label} | " + " | ".join(f"{value:.3f}" for value in values) + " |")
    print("\nTraining history, inner loss per step in the last epoch (L2L): " + ", ".join(
        f"t={t} {l2l.history[-1][f'inner_loss_{t}']:.3f}" for t in range(STEPS + 1)))  # fmt: skip


if __name__ == "__main__":
    main()
