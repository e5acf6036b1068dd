"""
torch.compile against eager on CPU, on protocol P1 (``mnist10k``): seconds per epoch of Fast and RAT (PGD-10) with
``compile=True`` and without, the configurations interleaved.

Each configuration keeps one trainer for the whole run (a fresh network would be compiled again): its first epoch is
the warm-up, timed and reported apart (for the compiled trainers it holds the compilation of every variant of the
forward pass), then ``--repeats`` epochs of each configuration run in turn, the order alternating, and the table
gives the medians and the median of the paired ratios eager / compiled (above 1: compiling is faster). Wall and
process CPU time are both reported: on a shared machine the CPU time is the steadier one.

    python benchmarks/compile.py --data-dir ../shared/data/mnist [--repeats 5] [--threads 2] [--only Fast RAT]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from art_fastat.protocols import get_protocol
from art_fastat.trainers import AdversarialTrainerFast, AdversarialTrainerPGD

EPS, STEPS, ALPHA = 0.3, 10, 0.3 / 4
METHODS = {
    "Fast": lambda classifier, **engine: AdversarialTrainerFast(classifier, eps=EPS, **engine),
    "RAT": lambda classifier, **engine: AdversarialTrainerPGD(classifier, eps=EPS, alpha=ALPHA, steps=STEPS, **engine),
}


def timed_epoch(trainer: Any, x: Any, y: Any, batch_size: int) -> tuple[float, float]:
    """Wall and process CPU seconds of one ``fit`` epoch."""
    started, started_cpu = time.perf_counter(), time.process_time()
    trainer.fit(x, y, batch_size=batch_size, nb_epochs=1)
    return time.perf_counter() - started, time.process_time() - started_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files (default: ../shared/data/mnist)")
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per configuration after the warm-up")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--samples", type=int, default=8000, help="training images per epoch (P1: 8000)")
    parser.add_argument("--only", nargs="+", choices=list(METHODS), default=list(METHODS), help="methods to time")
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: torch's default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = get_protocol("mnist10k")
    x, y, _, _ = protocol.load(args.data_dir)
    x, y = x[: args.samples], y[: args.samples]
    compile_options = {"mode": args.mode} if args.mode else True

    trainers = {}
    for method in args.only:
        for label, compiled in (("eager", False), ("compiled", compile_options)):
            trainers[f"{method} {label}"] = METHODS[method](protocol.make_classifier("cpu", seed=0), compile=compiled)
    warm_up: dict[str, tuple[float, float]] = {}
    for name, trainer in trainers.items():
        warm_up[name] = timed_epoch(trainer, x, y, protocol.batch_size)
        print(f"  warm-up {name}: {warm_up[name][0]:.2f} s", flush=True)
    wall: dict[str, list[float]] = {name: [] for name in trainers}
    cpu: dict[str, list[float]] = {name: [] for name in trainers}
    for repeat in range(args.repeats):
        # Alternate the order so that neither side of a pair always runs first (caches, a busy neighbour's phase).
        for name in list(trainers) if repeat % 2 == 0 else list(trainers)[::-1]:
            seconds, seconds_cpu = timed_epoch(trainers[name], x, y, protocol.batch_size)
            wall[name].append(seconds)
            cpu[name].append(seconds_cpu)
            print(f"  repeat {repeat + 1}/{args.repeats} {name}: {seconds:.2f} s", flush=True)

    print(f"\nP1 mnist10k, {len(x)} images, batch {protocol.batch_size}, eps {EPS}, RAT PGD-{STEPS}; torch "
          f"{torch.__version__}, {args.threads} threads, compile mode {args.mode or 'default'}; median of "
          f"{args.repeats} epochs per configuration after one warm-up epoch\n")  # fmt: skip
    print("| configuration | s/epoch wall | s/epoch CPU | warm-up epoch wall | warm-up - median, wall |")
    print("|---|---:|---:|---:|---:|")
    for name in trainers:
        median = statistics.median(wall[name])
        print(f"| {name} | {median:.2f} | {statistics.median(cpu[name]):.2f} | {warm_up[name][0]:.2f} | "
              f"{warm_up[name][0] - median:.2f} |")  # fmt: skip
    print("\neager / compiled (above 1: compiled is faster)\n")
    print("| method | ratio of medians, wall | median of paired ratios, wall | median of paired ratios, CPU |")
    print("|---|---:|---:|---:|")
    for method in args.only:
        eager, compiled = f"{method} eager", f"{method} compiled"
        paired_wall = statistics.median(e / c for e, c in zip(wall[eager], wall[compiled], strict=True))
        paired_cpu = statistics.median(e / c for e, c in zip(cpu[eager], cpu[compiled], strict=True))
        ratio = statistics.median(wall[eager]) / statistics.median(wall[compiled])
        print(f"| {method} | {ratio:.3f}x | {paired_wall:.3f}x | {paired_cpu:.3f}x |")


if __name__ == "__main__":
    main()
