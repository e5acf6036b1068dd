"""
Free-m and ATCD against natural training and RAT on protocol P1 (``mnist10k``), in one run (issue 4).

1. Cost, measured side by side (one pass over the data of each configuration in turn, median of ``--repeats``):
   natural, RAT (PGD-10), Free-8 on the engine and hand-written, ATCD (T=4, K=2) with and without M-H and the CD
   term. Targets: Free engine <= 1.05x hand-written; ATCD <= 1.05 x 12/8 = 1.58x Free-8 per pass over the data.
2. Accuracy at equal passes over the data for the replay methods (Free-8 and every ATCD variant run
   ``--replay-epochs`` = 16 passes, i.e. 2 passes over the data: P1's 10 epochs rounded up to whole data passes);
   natural and RAT run P1's 10 epochs. Clean and PGD-50-10 on ``--n-pgd`` test images, ART CW and AutoAttack
   standard on the first ``--n-cw`` / ``--n-autoattack``. Also the "prototype reading" (raw-gradient momentum) and
   half the position step, to explain the 0.000 PGD accuracy the method notes warn about.

    python benchmarks/replay.py --data-dir ../shared/data/mnist [--n-pgd 1000] [--n-cw 100] [--n-autoattack 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import benchmark_arguments, markdown_table, time_data_passes, train_and_evaluate, trainer_builder  # noqa: E402
from engine import hand_written_free_epoch  # noqa: E402

from art_fastat.trainers import TRAINERS  # noqa: E402

ATCD = {"trajectory_length": 2, "repeats": 4}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "natural": ("natural", {}),
    "RAT (PGD-10)": ("pgd", {"steps": 10}),
    "Free-8": ("free", {"replays": 8}),
    "ATCD (T=4, K=2)": ("atcd", ATCD),
    "ATCD without M-H": ("atcd", {**ATCD, "mh_correction": False}),
    "ATCD without CD term": ("atcd", {**ATCD, "rho": 0.0, "lam": 1.0}),
}
INVESTIGATION: dict[str, tuple[str, dict[str, Any]]] = {
    "ATCD, raw-gradient momentum": ("atcd", {**ATCD, "momentum_normalisation": "none"}),
    "ATCD, position step eps/2": ("atcd", {**ATCD, "position_step": 0.15}),
}


def replay_epochs(name: str, args: argparse.Namespace) -> int | None:
    """Free and ATCD run ``--replay-epochs`` passes; natural and RAT the protocol's epochs."""
    return args.replay_epochs if name in ("free", "atcd") else None


def main() -> None:
    args, protocol, data = benchmark_arguments(
        __doc__,
        n_pgd=1000,
        n_cw=100,
        n_autoattack=200,
        extra=lambda parser: parser.add_argument(
            "--replay-epochs", type=int, default=16, help="nb_epochs (passes) of Free-8 and ATCD"
        ),
    )

    print(f"1. Seconds per pass over the data (8000 images, batch 100), median of {args.repeats}, interleaved")
    x, y = data[0], data[1]

    builds = {
        label: trainer_builder(TRAINERS[name], protocol.eps, options) for label, (name, options) in VARIANTS.items()
    }
    builds["Free-8 hand-written"] = lambda classifier, seed: hand_written_free_epoch(classifier, x, y, 8, seed)
    median = time_data_passes(builds, protocol, data, args.repeats)
    passes = {"natural": 1, "RAT (PGD-10)": 11, "Free-8": 8, "Free-8 hand-written": 8}
    print("\n| configuration | passes/minibatch | s/data pass | vs Free-8 | vs natural | s per pass |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, value in median.items():
        n = passes.get(label, 12)
        print(f"| {label} | {n} | {value:.2f} | {value / median['Free-8']:.2f}x | {value / median['natural']:.2f}x | "
              f"{value / n:.3f} |")  # fmt: skip
    print(f"\nFree-8 engine / hand-written: {median['Free-8'] / median['Free-8 hand-written']:.3f}x (target <= 1.05x); "
          f"ATCD / Free-8: {median['ATCD (T=4, K=2)'] / median['Free-8']:.3f}x (target <= 1.58x)")  # fmt: skip
    if args.timing_only:
        return

    print(f"\n2. Accuracy (P1, eps {protocol.eps} warmed up over 3 passes, triangle lr; s/epoch is per data pass)")
    engine = protocol.trainer_options()
    rows = [
        train_and_evaluate(label, trainer_builder(TRAINERS[name], protocol.eps, options, **engine), protocol, data,
                           protocol.eps, args.n_pgd, args.n_autoattack, nb_epochs=replay_epochs(name, args),
                           n_cw=args.n_cw)
        for label, (name, options) in {**VARIANTS, **INVESTIGATION}.items()
    ]  # fmt: skip
    print()
    print(markdown_table(rows, {"vs Free-8": "Free-8", "vs RAT": "RAT (PGD-10)"}))
    print("\nM-H acceptance rate in the last data pass: " + ", ".join(
        f"{row['method']} {row['history'][-1]['acceptance_rate']:.3f}" for row in rows
        if "acceptance_rate" in row["history"][-1]))  # fmt: skip


if __name__ == "__main__":
    main()
