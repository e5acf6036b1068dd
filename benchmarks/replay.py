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
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import hand_written_free_epoch  # noqa: E402

from art_fastat.evaluation import evaluate  # noqa: E402
from art_fastat.protocols import get_protocol  # noqa: E402
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


def time_passes(data: tuple, repeats: int) -> dict[str, float]:
    """Median seconds of one pass over the data per configuration, the configurations interleaved."""
    protocol = get_protocol("mnist10k")
    x, y = data[0], data[1]
    runs = {**VARIANTS, "Free-8 hand-written": ("free-hand", {})}
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for repeat in range(repeats):
        for label, (name, options) in runs.items():
            classifier = protocol.make_classifier("cpu", seed=repeat)
            started = time.perf_counter()
            if name == "free-hand":
                hand_written_free_epoch(classifier, x, y, 8, repeat)
            else:
                trainer = TRAINERS[name](classifier, eps=protocol.eps, seed=repeat, **options)
                trainer.fit(x, y, batch_size=protocol.batch_size, nb_epochs=trainer.replays)
            seconds[label].append(time.perf_counter() - started)
            print(f"  repeat {repeat + 1}/{repeats} {label}: {seconds[label][-1]:.2f} s", flush=True)
    return {label: statistics.median(values) for label, values in seconds.items()}


def train_and_evaluate(label: str, name: str, options: dict[str, Any], data: tuple, args: argparse.Namespace) -> dict:
    protocol = get_protocol("mnist10k")
    x_train, y_train, x_test, y_test = data
    classifier = protocol.make_classifier("cpu", seed=0)
    trainer = TRAINERS[name](classifier, eps=protocol.eps, seed=0, **protocol.trainer_options(), **options)
    nb_epochs = args.replay_epochs if trainer.replays > 1 else protocol.nb_epochs
    started = time.perf_counter()
    history = trainer.fit(x_train, y_train, batch_size=protocol.batch_size, nb_epochs=nb_epochs)
    row = {"method": label, "train s": time.perf_counter() - started, "nb_epochs": nb_epochs, "data passes":
           len(history), "acceptance": history[-1].get("acceptance_rate")}  # fmt: skip
    options = protocol.evaluation_options()
    report = evaluate(classifier, x_test[: args.n_pgd], y_test[: args.n_pgd], protocol.eps, attacks=("pgd",), **options)
    row.update(clean=report.clean_accuracy, pgd=report.robust_accuracy["pgd"])
    for attack, n in (("cw", args.n_cw), ("autoattack", args.n_autoattack)):
        if n:
            report = evaluate(classifier, x_test[:n], y_test[:n], protocol.eps, attacks=(attack,))
            row[attack] = report.robust_accuracy[attack]
    nan = float("nan")
    print(f"  {label}: {row['train s']:.1f} s, clean {row['clean']:.3f}, PGD {row['pgd']:.3f}, "
          f"CW {row.get('cw', nan):.3f}, AA {row.get('autoattack', nan):.3f}", flush=True)  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files (default: ../shared/data/mnist)")
    parser.add_argument("--repeats", type=int, default=3, help="data passes timed per configuration")
    parser.add_argument("--replay-epochs", type=int, default=16, help="nb_epochs (passes) of Free-8 and ATCD")
    parser.add_argument("--n-pgd", type=int, default=1000, help="test images for clean and PGD-50-10 accuracy")
    parser.add_argument("--n-cw", type=int, default=100, help="test images for ART CW (0: skip)")
    parser.add_argument("--n-autoattack", type=int, default=200, help="test images for AutoAttack (0: skip)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = get_protocol("mnist10k")
    data = protocol.load(args.data_dir)

    print(f"1. Seconds per pass over the data (8000 images, batch 100), median of {args.repeats}, interleaved")
    median = time_passes(data, args.repeats)
    passes = {"natural": 1, "RAT (PGD-10)": 11, "Free-8": 8, "Free-8 hand-written": 8}
    print("\n| configuration | passes/minibatch | s/data pass | vs Free-8 | vs natural | s per pass |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, value in median.items():
        n = passes.get(label, 12)
        print(f"| {label} | {n} | {value:.2f} | {value / median['Free-8']:.2f}x | {value / median['natural']:.2f}x | "
              f"{value / n:.3f} |")  # fmt: skip
    print(f"\nFree-8 engine / hand-written: {median['Free-8'] / median['Free-8 hand-written']:.3f}x (target <= 1.05x); "
          f"ATCD / Free-8: {median['ATCD (T=4, K=2)'] / median['Free-8']:.3f}x (target <= 1.58x)")  # fmt: skip

    print(f"\n2. Accuracy (P1, eps {protocol.eps} warmed up over 3 passes, triangle lr)")
    rows = [train_and_evaluate(label, name, options, data, args)
            for label, (name, options) in {**VARIANTS, **INVESTIGATION}.items()]  # fmt: skip
    print(f"\n| method | nb_epochs | data passes | train s | clean | PGD-50-10 (n={args.n_pgd}) | CW (n={args.n_cw}) "
          f"| AA (n={args.n_autoattack}) | M-H acceptance |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        acceptance = "-" if row["acceptance"] is None else f"{row['acceptance']:.3f}"
        print(f"| {row['method']} | {row['nb_epochs']} | {row['data passes']} | {row['train s']:.1f} | "
              f"{row['clean']:.3f} | {row['pgd']:.3f} | {row.get('cw', float('nan')):.3f} | "
              f"{row.get('autoattack', float('nan')):.3f} | {acceptance} |")  # fmt: skip


if __name__ == "__main__":
    main()
