"""
ATLAS against Fast and RAT on protocol P1 (``mnist10k``), in one run (issue 5).

1. Seconds per epoch measured side by side (one epoch of each configuration in turn, median of ``--repeats``): Fast,
   RAT (PGD-10), one-step ATLAS and its ablations, ATLAS with PGD-10 adversaries. Target: one-step ATLAS <= 2.6x Fast.
2. Accuracy under P1's settings (10 epochs, eps 0.3 warmed up over 3 epochs, triangle lr): clean and PGD-50-10 on
   ``--n-pgd`` test images, AutoAttack standard on the first ``--n-autoattack``. The paper's claim to test: one-step
   ATLAS reaches the robust accuracy of multi-step methods at a fraction of their cost.

    python benchmarks/atlas.py --data-dir ../shared/data/mnist [--n-pgd 500] [--n-autoattack 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, time_interleaved, train_and_evaluate  # noqa: E402

from art_fastat.protocols import get_protocol  # noqa: E402
from art_fastat.trainers import TRAINERS  # noqa: E402

PGD10 = {"adversary": "pgd", "steps": 10}
CONFIGURATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "Fast": ("fast", {}),
    "RAT (PGD-10)": ("pgd", {"steps": 10}),
    "ATLAS one-step": ("atlas", {}),
    "ATLAS one-step, no local term": ("atlas", {"local_term": False}),
    "ATLAS one-step, no global term": ("atlas", {"global_term": False}),
    "ATLAS PGD-10": ("atlas", PGD10),
    "ATLAS PGD-10, no local term": ("atlas", {**PGD10, "local_term": False}),
    "ATLAS PGD-10, no global term": ("atlas", {**PGD10, "global_term": False}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files (default: ../shared/data/mnist)")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per configuration")
    parser.add_argument("--n-pgd", type=int, default=500, help="test images for clean and PGD-50-10 accuracy")
    parser.add_argument("--n-autoattack", type=int, default=200, help="test images for AutoAttack (0: skip)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--timing-only", action="store_true", help="measure part 1 only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = get_protocol("mnist10k")
    data = protocol.load(args.data_dir)
    x, y = data[0], data[1]

    def build(name: str, options: dict[str, Any], seed: int = 0, **engine: Any):
        return lambda classifier: TRAINERS[name](classifier, eps=protocol.eps, seed=seed, **engine, **options)

    print(f"1. Seconds per epoch (8000 images, batch 100), median of {args.repeats}, interleaved")
    median = time_interleaved(
        {label: lambda classifier, seed, n=name, o=options: build(n, o, seed)(classifier).fit(
            x, y, batch_size=protocol.batch_size, nb_epochs=1) for label, (name, options) in CONFIGURATIONS.items()},
        protocol, args.repeats,
    )  # fmt: skip
    print("\n| configuration | s/epoch | vs Fast | vs RAT |")
    print("|---|---:|---:|---:|")
    for label, value in median.items():
        print(f"| {label} | {value:.2f} | {value / median['Fast']:.2f}x | {value / median['RAT (PGD-10)']:.2f}x |")
    print(f"\nATLAS one-step / Fast: {median['ATLAS one-step'] / median['Fast']:.2f}x (target <= 2.6x)")
    if args.timing_only:
        return

    print(f"\n2. Accuracy (P1: {protocol.nb_epochs} epochs, eps {protocol.eps} warmed up over 3 epochs, triangle lr)")
    engine = protocol.trainer_options()
    rows = [train_and_evaluate(label, build(name, options, **engine), protocol, data, protocol.eps, args.n_pgd,
                               args.n_autoattack) for label, (name, options) in CONFIGURATIONS.items()]  # fmt: skip
    print()
    print(markdown_table(rows, {"vs Fast": "Fast", "vs RAT": "RAT (PGD-10)"}))
    print("\nLoss terms in the last epoch: " + "; ".join(
        f"{row['method']}: " + ", ".join(f"{key} {row['history'][-1][key]:.3f}" for key in ("ce", "local_kl",
                                         "global_kl") if key in row["history"][-1])
        for row in rows if "ce" in row["history"][-1]))  # fmt: skip


if __name__ == "__main__":
    main()
