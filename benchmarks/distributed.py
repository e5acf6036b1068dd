"""
One epoch of protocol P1 (``mnist10k``) with 1 and 2 processes under torch.distributed (gloo on CPU; NCCL with one
GPU per process when ``--backend nccl``), as ``torchrun --nproc_per_node N`` would run them (issue 9).

Each configuration trains a fresh model for one epoch with the protocol's per-process batch (100; the global batch is
100 x processes) and reports the epoch's own seconds (from the history: no process start-up, no data loading). The
threads are split between the processes (``--threads`` in all), so on a 2-core machine 2 processes cannot be faster
than 1: the figure shows what the gradient all-reduce and the split cost.

    python benchmarks/distributed.py --data-dir ../shared/data/mnist [--methods pgd fast] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from art_fastat.protocols import get_protocol
from art_fastat.trainers import TRAINERS


def worker(rank: int, world: int, init_file: str, out: str, method: str, data_dir: str | None, threads: int,
           backend: str) -> None:  # fmt: skip
    torch.set_num_threads(max(1, threads // world))
    protocol = get_protocol("mnist10k")
    x, y, _, _ = protocol.load(data_dir)
    device = "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        trainer = TRAINERS[method](protocol.make_classifier(device, seed=0), eps=protocol.eps, seed=0,
                                   **protocol.trainer_options())  # fmt: skip
        history = trainer.fit(x, y, batch_size=protocol.batch_size, nb_epochs=1)
        if rank == 0:
            Path(out).write_text(str(history[0]["seconds"]))
    finally:
        dist.destroy_process_group()


def epoch_seconds(method: str, world: int, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "seconds")
        mp.spawn(worker, args=(world, os.path.join(folder, "init"), out, method, args.data_dir, args.threads,
                               args.backend), nprocs=world, join=True)  # fmt: skip
        return float(Path(out).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files (default: ../shared/data/mnist)")
    parser.add_argument("--methods", nargs="+", default=["pgd", "fast"], choices=sorted(TRAINERS))
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per configuration (median reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads in all")
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    args = parser.parse_args()
    seconds: dict[tuple[str, int], list[float]] = {}
    for repeat in range(args.repeats):
        for method in args.methods:
            for world in args.processes:
                seconds.setdefault((method, world), []).append(epoch_seconds(method, world, args))
                print(f"  repeat {repeat + 1}/{args.repeats} {method}, {world} process(es): "
                      f"{seconds[(method, world)][-1]:.2f} s", flush=True)  # fmt: skip
    print(f"\nP1, one epoch (8000 images, batch 100 per process), {args.backend}, {args.threads} threads in all, "
          f"median of {args.repeats}\n")  # fmt: skip
    print("| method | processes | s/epoch | vs 1 process |")
    print("|---|---:|---:|---:|")
    for (method, world), values in seconds.items():
        one = statistics.median(seconds[(method, args.processes[0])])
        print(f"| {method} | {world} | {statistics.median(values):.2f} | {statistics.median(values) / one:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
