"""
Seconds per epoch of any registered methods on protocol P1, measured side by side: one epoch of each method in turn,
repeated, median reported (these machines are shared and noisy, so whole runs one after another give unstable ratios).

    python benchmarks/timing.py --data-dir ../shared/data/mnist --methods natural,fast,pgd,gaat,gaat:hessian=diagonal
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from art_fastat.cli import parse_options
from art_fastat.protocols import get_protocol
from art_fastat.trainers import TRAINERS


def parse_method(text: str) -> tuple[str, dict[str, object]]:
    """``"gaat:hessian='diagonal';steps=5"`` -> ``("gaat", {"hessian": "diagonal", "steps": 5})``."""
    name, _, options = text.partition(":")
    return name, parse_options([pair for pair in options.split(";") if pair])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files")
    parser.add_argument("--methods", default="natural,fast,pgd,gaat,gaat:hessian=diagonal",
                        help="comma-separated NAME[:KEY=VALUE;KEY=VALUE]")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference", default="fast", help="method whose seconds per epoch divide the others")
    args = parser.parse_args()
    protocol = get_protocol("mnist10k")
    x, y, _, _ = protocol.load(args.data_dir)
    methods = [parse_method(text) for text in args.methods.split(",")]
    seconds: dict[str, list[float]] = {text: [] for text in args.methods.split(",")}
    for repeat in range(args.repeats):
        for label, (name, options) in zip(seconds, methods, strict=True):
            classifier = protocol.make_classifier("cpu", seed=repeat)
            trainer = TRAINERS[name](
                classifier, eps=protocol.eps, seed=repeat, **{"overfitting_guard": None, **options}
            )
            started = time.perf_counter()
            trainer.fit(x, y, batch_size=protocol.batch_size, nb_epochs=trainer.replays)  # one pass over the data
            seconds[label].append(time.perf_counter() - started)
            print(f"  repeat {repeat + 1}/{args.repeats} {label}: {seconds[label][-1]:.2f} s", flush=True)
    median = {label: statistics.median(values) for label, values in seconds.items()}
    reference = next(label for label in median if label.split(":")[0] == args.reference)
    print(f"\nP1 mnist10k, 8000 images, batch 100, eps {protocol.eps}; {torch.get_num_threads()} threads, median of "
          f"{args.repeats} interleaved epochs\n")  # fmt: skip
    print(f"| method | s/epoch | vs {reference} |")
    print("|---|---:|---:|")
    for label, value in median.items():
        print(f"| {label} | {value:.2f} | {value / median[reference]:.2f}x |")


if __name__ == "__main__":
    main()
