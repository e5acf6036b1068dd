"""
N-FGSM and GradAlign beside Fast on protocol P1 (``mnist10k``), in one run (issue 17).

1. Cost: one epoch (8000 images, batch 100, full eps, constant lr) of Fast, N-FGSM and GradAlign in turn, ``--repeats``
   rounds, the order alternating between rounds; each method's time over the Fast epoch of the same round, the
   median of these paired ratios (wall and process CPU time; the CPU time does not count what the host gives to
   other processes, most of the noise on a shared machine).
2. Accuracy under P1's settings (10 epochs, eps 0.3 warmed up over 3 epochs, triangle lr to 5e-3): Fast, N-FGSM with
   each ``--noise-magnitudes`` k and GradAlign with each ``--lambdas`` value (0 is FGSM training from a zero start),
   clean and PGD-50-10 accuracy on the first ``--n-pgd`` test images, AutoAttack standard on the first
   ``--n-autoattack``: how GradAlign's lambda for P1's eps was chosen (the paper publishes none beyond 16/255).

    python benchmarks/single_step.py --data-dir ../shared/data/mnist [--repeats 7] [--timing-only]
    python benchmarks/single_step.py --data-dir ../shared/data/mnist --skip-timing --lambdas 0 0.5 2

``--train-samples N`` trains on the first N of P1's 8000 training images (a shorter run on a busy machine).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import benchmark_arguments, markdown_table, train_and_evaluate, trainer_builder  # noqa: E402

from art_fastat.trainers import TRAINERS  # noqa: E402

METHODS = ("fast", "nfgsm", "gradalign")
LABELS = {"fast": "Fast", "nfgsm": "N-FGSM", "gradalign": "GradAlign"}


def paired_cost(protocol: Any, data: Any, repeats: int) -> None:
    """Print the median over rounds of each method's epoch time over Fast's in the same round."""
    x, y = data[0], data[1]
    wall: dict[str, list[float]] = {method: [] for method in METHODS}
    cpu: dict[str, list[float]] = {method: [] for method in METHODS}
    for repeat in range(repeats):
        for method in METHODS if repeat % 2 == 0 else METHODS[::-1]:
            classifier = protocol.make_classifier("cpu", seed=repeat)
            trainer = TRAINERS[method](classifier, eps=protocol.eps, seed=repeat)
            started, started_cpu = time.perf_counter(), time.process_time()
            trainer.fit(x, y, batch_size=protocol.batch_size, nb_epochs=1)
            wall[method].append(time.perf_counter() - started)
            cpu[method].append(time.process_time() - started_cpu)
            print(f"  round {repeat + 1}/{repeats} {LABELS[method]}: {wall[method][-1]:.2f} s", flush=True)
    print(f"\nP1 mnist10k, {len(x)} images, batch {protocol.batch_size}, eps {protocol.eps}; {repeats} rounds\n")
    print("| method | passes/batch | median s/epoch | paired ratio to Fast, wall | paired ratio to Fast, CPU |")
    print("|---|---:|---:|---:|---:|")
    for method in METHODS:
        ratios = [a / b for a, b in zip(wall[method], wall["fast"], strict=True)]
        cpu_ratios = [a / b for a, b in zip(cpu[method], cpu["fast"], strict=True)]
        passes = TRAINERS[method](protocol.make_classifier("cpu"), eps=protocol.eps).passes_per_batch
        print(f"| {LABELS[method]} | {passes:g} | {statistics.median(wall[method]):.2f} | "
              f"{statistics.median(ratios):.2f}x | {statistics.median(cpu_ratios):.2f}x |")  # fmt: skip


def main() -> None:
    def extra(parser: Any) -> None:
        parser.add_argument("--lambdas", type=float, nargs="*", default=[],
                            help="GradAlign lambdas to train under P1 (none: the default lambda)")  # fmt: skip
        parser.add_argument("--noise-magnitudes", type=float, nargs="*", default=[2.0],
                            help="N-FGSM noise magnitudes k to train under P1 (none: skip N-FGSM)")  # fmt: skip
        parser.add_argument("--skip-timing", action="store_true", help="only the accuracy part")
        parser.add_argument("--train-samples", type=int, default=8000, help="training images (P1: 8000)")

    args, protocol, data = benchmark_arguments(__doc__, n_pgd=500, n_cw=0, n_autoattack=0, extra=extra)
    data = (data[0][: args.train_samples], data[1][: args.train_samples], data[2], data[3])
    if not args.skip_timing:
        print(f"1. Cost: paired epochs, {args.repeats} rounds")
        paired_cost(protocol, data, args.repeats)
    if args.timing_only:
        return

    print(
        f"\n2. Accuracy (P1: {protocol.nb_epochs} epochs, eps {protocol.eps} warmed up over 3 epochs, triangle lr; "
        f"{len(data[0])} training images)"
    )
    configurations: dict[str, tuple[str, dict[str, Any]]] = {"Fast": ("fast", {})}
    for k in args.noise_magnitudes:
        configurations["N-FGSM" if k == 2 else f"N-FGSM k={k:g}"] = ("nfgsm", {"noise_magnitude": k})
    for lam in args.lambdas or [None]:
        label = "GradAlign" if lam is None else f"GradAlign lambda={lam:g}"
        configurations[label] = ("gradalign", {} if lam is None else {"grad_align_lambda": lam})
    engine = protocol.trainer_options()
    rows = [train_and_evaluate(label, trainer_builder(TRAINERS[name], protocol.eps, options, **engine), protocol,
                               data, protocol.eps, args.n_pgd, args.n_autoattack)
            for label, (name, options) in configurations.items()]  # fmt: skip
    print()
    print(markdown_table(rows, {"vs Fast": "Fast"}))
    print("\nGradient misalignment (1 - mean cos) per epoch: " + "; ".join(
        f"{row['method']}: " + " ".join(f"{record['gradient_misalignment']:.3f}" for record in row["history"])
        for row in rows if "gradient_misalignment" in row["history"][-1]))  # fmt: skip


if __name__ == "__main__":
    main()
