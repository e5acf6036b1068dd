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

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    benchmark_arguments,
    cost_table,
    markdown_table,
    time_data_passes,
    train_and_evaluate,
    trainer_builder,
)  # noqa: E402

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
    args, protocol, data = benchmark_arguments(__doc__, n_pgd=500, n_cw=0, n_autoattack=200)

    print(f"1. Seconds per epoch (8000 images, batch 100), median of {args.repeats}, interleaved")
    builds = {label: trainer_builder(TRAINERS[name], protocol.eps, options)
              for label, (name, options) in CONFIGURATIONS.items()}  # fmt: skip
    median = time_data_passes(builds, protocol, data, args.repeats)
    print("\n" + cost_table(median, {"vs Fast": "Fast", "vs RAT": "RAT (PGD-10)"}))
    print(f"\nATLAS one-step / Fast: {median['ATLAS one-step'] / median['Fast']:.2f}x (target <= 2.6x)")
    if args.timing_only:
        return

    print(f"\n2. Accuracy (P1: {protocol.nb_epochs} epochs, eps {protocol.eps} warmed up over 3 epochs, triangle lr)")
    engine = protocol.trainer_options()
    rows = [train_and_evaluate(label, trainer_builder(TRAINERS[name], protocol.eps, options, **engine), protocol, data,
                               protocol.eps, args.n_pgd, args.n_autoattack, n_cw=args.n_cw)
            for label, (name, options) in CONFIGURATIONS.items()]  # fmt: skip
    print()
    print(markdown_table(rows, {"vs Fast": "Fast", "vs RAT": "RAT (PGD-10)"}))
    print("\nLoss terms in the last epoch: " + "; ".join(
        f"{row['method']}: " + ", ".join(f"{key} {row['history'][-1][key]:.3f}" for key in ("ce", "local_kl",
                                         "global_kl") if key in row["history"][-1])
        for row in rows if "ce" in row["history"][-1]))  # fmt: skip


if __name__ == "__main__":
    main()
