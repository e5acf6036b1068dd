"""
GAAT, DAT+GAAT and the baselines on protocol P1 (``mnist10k``), in one run (issue 3).

1. Seconds per epoch of natural training, Fast, RAT (PGD-10), GAAT Gauss-Newton, GAAT diagonal and DAT+GAAT under
   P1's settings (eps 0.3 warmed up over 3 epochs, triangle lr, 10 epochs); ratios to RAT and Fast; clean, PGD-50-10
   and AutoAttack accuracy.
2. The paper's MNIST setting ``{T, alpha, eps} = {100, 0.01, 0.1}``: RAT against GAAT, accuracy and time, beside the
   paper's Table 2 row (RAT 99.31 / 96.13, GAAT 99.30 / 95.13, 12.5% of the time saved).
3. How often ``1 + <J, delta_0> < 0`` (GAAT-GN moving down the loss), per epoch.

    python benchmarks/gaat.py --data-dir ../shared/data/mnist [--n-pgd 2000] [--n-autoattack 2000]

``--cost`` measures only the cost of GAAT-GN (T=10 and the paper's MNIST T=100) against Fast on P1 (issue 16: target
T=10 <= 1.10x Fast): one epoch of each in turn, the order alternating, ``--repeats`` times; the medians of the paired
ratios (each epoch against the Fast epoch next to it), wall and process CPU time:

    python benchmarks/gaat.py --data-dir ../shared/data/mnist --cost [--repeats 9] [--threads 2] [--samples 8000]

(``--samples`` times a slice of the 8000 training images instead of whole epochs. On a machine other jobs load, use
``--threads 1``: two torch threads there wait on each other, and an epoch took 7 to 15 times longer.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, train_and_evaluate  # noqa: E402

from art_fastat.protocols import Protocol, get_protocol  # noqa: E402
from art_fastat.trainers import TRAINERS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files (default: ../shared/data/mnist)")
    parser.add_argument("--n-pgd", type=int, default=2000, help="test images for clean and PGD-50-10 accuracy")
    parser.add_argument("--n-autoattack", type=int, default=2000, help="test images for AutoAttack (0: skip)")
    parser.add_argument("--paper-epochs", type=int, default=10, help="epochs of the paper-setting runs (0: skip)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--cost", action="store_true", help="only GAAT-GN's cost against Fast, interleaved epochs")
    parser.add_argument("--repeats", type=int, default=9, help="epochs of each method timed with --cost")
    parser.add_argument("--samples", type=int, default=8000, help="training images per timed epoch with --cost")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = get_protocol("mnist10k")
    data = protocol.load(args.data_dir)
    engine = {**protocol.trainer_options(), "overfitting_guard": None}  # GAAT's own behaviour, catastrophes included
    eps = protocol.eps
    if args.cost:
        measure_cost(protocol, (data[0][: args.samples], data[1][: args.samples]), args.repeats)
        return

    def method(name: str, **options: object):
        return lambda classifier: TRAINERS[name](classifier, eps=eps, **engine, **options)

    print(f"1. P1 mnist10k, eps {eps}, {protocol.nb_epochs} epochs", flush=True)
    runs = {
        "natural": method("natural"),
        "Fast": method("fast"),
        "RAT (PGD-10)": method("pgd", steps=10),
        "GAAT-GN (T=10)": method("gaat", steps=10),
        "GAAT-diagonal (T=10, 1 probe)": method("gaat", steps=10, hessian="diagonal"),
        "DAT+GAAT (switch at 5)": method("dat+gaat", switch_epoch=0.5, inner_options={"steps": 10}),
    }
    rows = [train_and_evaluate(name, build, protocol, data, eps, args.n_pgd, args.n_autoattack)
            for name, build in runs.items()]  # fmt: skip
    print()
    print(markdown_table(rows, {"vs RAT": "RAT (PGD-10)", "vs Fast": "Fast", "vs natural": "natural"}))

    print("\n3. Fraction of samples with 1 + <J, delta_0> < 0 per epoch (GAAT-GN descending)")
    for row in rows:
        fractions = [record.get("descent_fraction") for record in row["history"]]
        if any(f is not None for f in fractions):
            print(f"   {row['method']}: " + ", ".join("-" if f is None else f"{f:.4f}" for f in fractions))

    if args.paper_epochs:
        print(f"\n2. Paper's MNIST setting {{T, alpha, eps}} = {{100, 0.01, 0.1}}, {args.paper_epochs} epochs, "
              "otherwise P1", flush=True)  # fmt: skip
        paper = {"eps_warmup_epochs": 0.0, "lr_schedule": protocol.lr_schedule, "overfitting_guard": None}

        def paper_method(name: str):
            return lambda classifier: TRAINERS[name](classifier, eps=0.1, alpha=0.01, steps=100, **paper)

        paper_rows = [
            train_and_evaluate(name, paper_method(key), protocol, data, 0.1, args.n_pgd, 0, args.paper_epochs)
            for name, key in (("RAT (PGD-100)", "pgd"), ("GAAT-GN (T=100)", "gaat"))
        ]
        print()
        print(markdown_table(paper_rows, {"vs RAT": "RAT (PGD-100)"}))
        saved = 1 - paper_rows[1]["s/epoch"] / paper_rows[0]["s/epoch"]
        print(f"\nGAAT saves {saved:.1%} of RAT's time here; the paper's Table 2 (MNIST, 512 batch, 200 epochs): RAT "
              "99.31 / 96.13, GAAT 99.30 / 95.13, 12.5% saved.")  # fmt: skip


def measure_cost(protocol: Protocol, data: tuple, repeats: int) -> None:
    """Seconds of one epoch of Fast and GAAT-GN in turn (order alternating), and the medians of paired ratios."""
    x, y = data[0], data[1]
    engine = {**protocol.trainer_options(), "eps_warmup_epochs": 0.0}  # the full eps: the cost of most P1 epochs
    builds = {
        "Fast": lambda classifier, seed: TRAINERS["fast"](classifier, eps=protocol.eps, seed=seed, **engine),
        "GAAT-GN (T=10)": lambda classifier, seed: TRAINERS["gaat"](classifier, eps=protocol.eps, steps=10, seed=seed,
                                                                    **engine),
        "GAAT-GN (T=100)": lambda classifier, seed: TRAINERS["gaat"](classifier, eps=protocol.eps, steps=100,
                                                                     alpha=protocol.eps / 40, seed=seed, **engine),
    }  # fmt: skip
    wall: dict[str, list[float]] = {label: [] for label in builds}
    cpu: dict[str, list[float]] = {label: [] for label in builds}
    for repeat in range(repeats):
        for label in list(builds) if repeat % 2 == 0 else list(builds)[::-1]:
            trainer = builds[label](protocol.make_classifier("cpu", seed=repeat), repeat)
            started, started_cpu = time.perf_counter(), time.process_time()
            trainer.fit(x, y, batch_size=protocol.batch_size, nb_epochs=1)
            wall[label].append(time.perf_counter() - started)
            cpu[label].append(time.process_time() - started_cpu)
            print(f"  repeat {repeat + 1}/{repeats} {label}: {wall[label][-1]:.2f} s", flush=True)
    print(f"\nP1 mnist10k, {len(x)} images, batch {protocol.batch_size}, eps {protocol.eps} (no warm-up); "
          f"{torch.get_num_threads()} threads, {repeats} interleaved epochs each\n")  # fmt: skip
    print("| method | s/epoch (median) | vs Fast, median of paired ratios, wall | ... CPU |")
    print("|---|---:|---:|---:|")
    for label in builds:
        paired_wall = statistics.median(a / b for a, b in zip(wall[label], wall["Fast"], strict=True))
        paired_cpu = statistics.median(a / b for a, b in zip(cpu[label], cpu["Fast"], strict=True))
        print(f"| {label} | {statistics.median(wall[label]):.2f} | {paired_wall:.3f}x | {paired_cpu:.3f}x |")


if __name__ == "__main__":
    main()
