"""
Kill-and-resume matrix (issue 8): for every method, a run is killed with SIGKILL at each kill point, restarted with
``resume=True``, and its final weights (and L2L's RNN) compared bit for bit with an uninterrupted run of the same seed.

Kill points: the start of every minibatch of the run (between epochs when it is an epoch's first minibatch, during an
epoch otherwise) and the write of every checkpoint (after its payload is on disk, before the rename). Digits (P0),
192 training images in 3 minibatches of 64, 3 passes over the data, CPU.

    python benchmarks/kill_resume.py [--methods pgd free ...]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from art_fastat.engine import read_checkpoint
from art_fastat.protocols import get_protocol
from art_fastat.trainers import TRAINERS

N, BATCH, DATA_PASSES = 192, 64, 3
#: Small settings per method and its nb_epochs for 3 passes over the data (Free and ATCD count replays).
METHODS: dict[str, tuple[dict[str, Any], int]] = {
    "natural": ({}, 3),
    "pgd": ({"steps": 2}, 3),
    "fast": ({}, 3),
    "nfgsm": ({}, 3),
    "gradalign": ({}, 3),
    "gaat": ({"steps": 2}, 3),
    "dat": ({"switch_epoch": 1, "inner_options": {"steps": 2}}, 3),
    "dat+gaat": ({"switch_epoch": 1, "inner_options": {"steps": 2}}, 3),
    "free": ({"replays": 2}, 6),
    "atcd": ({"repeats": 1, "trajectory_length": 2}, 6),
    "atlas": ({}, 3),
    "l2l": ({"steps": 2}, 3),
    "l2l-trades": ({"steps": 2}, 3),
}

WORKER = """
import os, signal, sys
sys.path.insert(0, {here!r})
from kill_resume import build
from art_fastat.engine import checkpoints

method, checkpoint_dir, kill_at, where = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
trainer, fit = build(method, checkpoint_dir)
count = [0]
if where == "batch":  # SIGKILL when the kill_at-th minibatch of the run (0-based) starts
    train_batch = trainer._train_batch
    def counted(*arguments):
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        count[0] += 1
        return train_batch(*arguments)
    trainer._train_batch = counted
else:  # SIGKILL while the kill_at-th checkpoint (1-based) is written: its payload is on disk, not yet renamed
    replace = checkpoints.os.replace
    def killed_replace(source, destination):
        count[0] += 1
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return replace(source, destination)
    checkpoints.os.replace = killed_replace
fit()
"""


def build(method: str, checkpoint_dir: str | Path | None = None) -> tuple[Any, Any]:
    """A fresh trainer of ``method`` on a fresh digits classifier, and a function that runs its whole ``fit``."""
    protocol = get_protocol("digits")
    x, y, _, _ = protocol.load()
    options, nb_epochs = METHODS[method]
    checkpointing = {} if checkpoint_dir is None else {"checkpoint_dir": checkpoint_dir, "resume": True}
    trainer = TRAINERS[method](protocol.make_classifier("cpu", seed=0), eps=protocol.eps, seed=3, **options,
                               **checkpointing)  # fmt: skip
    return trainer, lambda: trainer.fit(x[:N], y[:N], batch_size=BATCH, nb_epochs=nb_epochs)


def final_state(trainer: Any) -> list[torch.Tensor]:
    """The weights, and the learned optimizer's for L2L."""
    tensors = [p.detach().clone() for p in trainer._classifier.model.parameters()]
    if hasattr(trainer, "rnn"):
        tensors += [p.detach().clone() for p in trainer.rnn.parameters()]
    return tensors


def uninterrupted_state(method: str) -> list[torch.Tensor]:
    """The final state of an uninterrupted run (what every resumed run must equal)."""
    trainer, fit = build(method)
    fit()
    return final_state(trainer)


def kill_and_resume(
    method: str, kill_at: int, where: str, folder: Path, expected: list[torch.Tensor] | None = None
) -> tuple[bool, int, bool]:
    """
    Run ``method`` in a child process that SIGKILLs itself at the kill point, then resume it here.

    :param expected: The uninterrupted run's final state, if already known.
    :return: (the resumed run's final state equals an uninterrupted run's, the epoch of the checkpoint it resumed,
             whether the kill left a half-written ``checkpoint.tmp`` beside it).
    """
    script = folder / "worker.py"
    script.write_text(WORKER.format(here=str(Path(__file__).resolve().parent)))
    checkpoint_dir = folder / f"{method}-{where}-{kill_at}"
    completed = subprocess.run([sys.executable, str(script), method, str(checkpoint_dir), str(kill_at), where],
                               capture_output=True, text=True, timeout=600)  # fmt: skip
    if completed.returncode != -signal.SIGKILL:
        raise RuntimeError(f"{method}: the worker was not killed (exit {completed.returncode}): {completed.stderr}")
    path = checkpoint_dir / "checkpoint.pt"
    resumed_from = read_checkpoint(path)["epoch"] if path.exists() else 0
    partial_write = (checkpoint_dir / "checkpoint.tmp").exists()
    expected = uninterrupted_state(method) if expected is None else expected
    resumed, fit = build(method, checkpoint_dir)
    fit()
    same = all(torch.equal(a, b) for a, b in zip(expected, final_state(resumed), strict=True))
    return same, resumed_from, partial_write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    args = parser.parse_args()
    batches = DATA_PASSES * (N // BATCH)
    print("| method | kill points | resumed bit-identically | resumed from checkpoints of epochs |")
    print("|---|---:|---:|---|")
    total = identical = 0
    with tempfile.TemporaryDirectory() as folder:
        for method in args.methods:
            points = [(k, "batch") for k in range(batches)] + [(k, "checkpoint") for k in range(1, DATA_PASSES + 1)]
            expected = uninterrupted_state(method)
            results = [kill_and_resume(method, k, where, Path(folder), expected) for k, where in points]
            same = sum(ok for ok, _, _ in results)
            total, identical = total + len(results), identical + same
            epochs = sorted({epoch for _, epoch, _ in results})
            print(f"| {method} | {len(results)} | {same} | {', '.join(map(str, epochs))} |", flush=True)
    print(f"\n{identical} of {total} kill points resumed bit-identically")


if __name__ == "__main__":
    main()
