"""
Cost of streaming: an epoch of ``fit_generator`` from a torch DataLoader against an epoch of the in-memory ``fit``.

Protocol P1 (``mnist10k``: 8000 training images, ``MnistCNN``, batch 100, eps 0.3), Fast (FGSM-RS) and natural
training. The stream is a map-style ``Dataset`` of ``(image, label)`` tensors read through
``DataLoader(dataset, batch_size=100, shuffle=True, num_workers=W)`` in an ART ``PyTorchDataGenerator``: per batch the
loader collates 100 samples, the engine checks the batch and moves it to the device (``non_blocking``, pinned on
CUDA). ``fit`` moves the whole set to the device once and indexes it there. Both draw the same order from the same
seed, so they train on the same minibatches (the stream's weights equal fit's; checked on the first repeat).

The variants of a method run in turn on fresh classifiers, their order alternating between repeats, and the ratio
stream / in-memory of each repeat's pair is reported as a median over repeats (this machine is shared: whole runs one
after another give unstable ratios). The time is the epoch loop's own (the history's ``seconds``); a repeat is one
epoch, so with ``--workers`` > 0 it includes starting the loader's worker processes (once per ``fit_generator``).

    python benchmarks/streaming.py [--data-dir ../shared/data/mnist] [--repeats 5] [--methods fast natural]
                                   [--workers 0] [--device cpu] [--threads 2] [--samples 8000]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from art.data_generators import PyTorchDataGenerator
from torch.utils.data import DataLoader, TensorDataset

from art_fastat.protocols import get_protocol
from art_fastat.trainers import TRAINERS

VARIANTS = ("in-memory fit", "DataLoader fit_generator")


def one_epoch(method: str, variant: str, data: tuple[np.ndarray, np.ndarray], args: argparse.Namespace,
              seed: int) -> tuple[float, list[torch.Tensor]]:  # fmt: skip
    """Seconds of one epoch of ``method`` through ``variant`` on a fresh classifier, and its final weights."""
    protocol = get_protocol("mnist10k")
    classifier = protocol.make_classifier(args.device, seed=seed)
    eps = None if method == "natural" else protocol.eps
    trainer = TRAINERS[method](classifier, eps=eps, seed=seed)
    x, y = data
    if variant == VARIANTS[0]:
        history = trainer.fit(x, y, batch_size=protocol.batch_size, nb_epochs=1)
    else:
        dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))  # a map-style Dataset over the arrays
        loader = DataLoader(dataset, batch_size=protocol.batch_size, shuffle=True, num_workers=args.workers,
                            persistent_workers=args.workers > 0)  # fmt: skip
        generator = PyTorchDataGenerator(loader, size=len(x), batch_size=protocol.batch_size)
        history = trainer.fit_generator(generator, nb_epochs=1)
    return history[-1]["seconds"], [p.detach().cpu() for p in classifier.model.parameters()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files (default: ../shared/data/mnist)")
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per variant (median of paired ratios)")
    parser.add_argument("--methods", nargs="+", default=["fast", "natural"], choices=sorted(TRAINERS))
    parser.add_argument("--workers", type=int, default=0, help="DataLoader num_workers of the stream")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--samples", type=int, default=8000, help="training images used (the first ones)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y, _, _ = get_protocol("mnist10k").load(args.data_dir)
    data = (x[: args.samples], y[: args.samples])
    seconds: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for method in args.methods:
            order = VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]
            final = {}
            for variant in order:
                elapsed, final[variant] = one_epoch(method, variant, data, args, seed=repeat)
                seconds.setdefault((method, variant), []).append(elapsed)
                print(f"  repeat {repeat + 1}/{args.repeats} {method} {variant}: {elapsed:.2f} s", flush=True)
            if repeat == 0 and args.device == "cpu":  # same seed, same minibatches: the same weights
                same = all(torch.equal(a, b) for a, b in zip(*final.values(), strict=True))
                print(f"  {method}: stream and fit end with {'identical' if same else 'DIFFERENT'} weights")
    batch = get_protocol("mnist10k").batch_size
    print(f"\nP1 mnist10k, {len(data[0])} images, batch {batch}, device {args.device}, {args.threads} threads, "
          f"DataLoader num_workers={args.workers}, {args.repeats} interleaved epochs\n")  # fmt: skip
    print("| method | in-memory fit s/epoch | DataLoader s/epoch | stream / in-memory (median of paired ratios) |")
    print("|---|---:|---:|---:|")
    for method in args.methods:
        memory, stream = seconds[method, VARIANTS[0]], seconds[method, VARIANTS[1]]
        ratio = statistics.median(s / m for s, m in zip(stream, memory, strict=True))
        print(f"| {method} | {statistics.median(memory):.2f} | {statistics.median(stream):.2f} | {ratio:.3f}x |")


if __name__ == "__main__":
    main()
