"""
Training under torch.distributed: 2 CPU processes with the gloo backend (as ``torchrun --nproc_per_node 2`` runs
them). Both ranks end with identical weights, a deterministic method gives the single-process result of the global
minibatch, every sample is seen exactly once per epoch, L2L's RNN stays one RNN, and a run resumes exactly.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import make_classifier, weights

from art_fastat.protocols import get_protocol
from art_fastat.trainers import TRAINERS

WORLD = 2
BATCH = 16  # per rank: the global minibatch is 32


def indexed_digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Digits whose top-left pixel (background in every digit) encodes the sample's index, to track who saw what."""
    x, y, _, _ = get_protocol("digits").load()
    x, y = x[:n].copy(), y[:n].copy()
    x[:, 0, 0, 0] = np.arange(n) / n
    return x, y


def run(method: str, options: dict, n: int, nb_epochs: int, checkpoint_dir: str | None = None) -> dict:
    """Train in this process (one rank, or the single-process reference); record which samples each step saw."""
    x, y = indexed_digits(n)
    checkpointing = {} if checkpoint_dir is None else {"checkpoint_dir": checkpoint_dir}
    trainer = TRAINERS[method](make_classifier(), eps=0.2, seed=1, **checkpointing, **options)
    seen: list[list[int]] = []
    train_batch = trainer._train_batch

    def recording(batch_x: torch.Tensor, *arguments: object) -> None:
        seen.append(torch.round(batch_x[:, 0, 0, 0] * n).long().tolist())
        train_batch(batch_x, *arguments)

    trainer._train_batch = recording
    batch_size = BATCH if dist.is_initialized() else BATCH * WORLD
    if checkpoint_dir is not None:  # stop after half the epochs, then resume in a new trainer
        trainer.fit(x, y, batch_size=batch_size, nb_epochs=nb_epochs // 2)
        resumed = TRAINERS[method](trainer._classifier, eps=0.2, seed=1, checkpoint_dir=checkpoint_dir, resume=True,
                                   **options)  # fmt: skip
        resumed._train_batch = recording
        trainer = resumed
    trainer.fit(x, y, batch_size=batch_size, nb_epochs=nb_epochs)
    state = [w.numpy() for w in weights(trainer._classifier)]
    if hasattr(trainer, "rnn"):
        state += [p.detach().numpy().copy() for p in trainer.rnn.parameters()]
    return {"weights": state, "seen": seen, "history": trainer.history, "rank": trainer.rank,
            "world_size": trainer.world_size}  # fmt: skip


def worker(rank: int, init_file: str, out: str, method: str, options: dict, n: int, nb_epochs: int,
           checkpoint_dir: str | None) -> None:  # fmt: skip
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.save(run(method, options, n, nb_epochs, checkpoint_dir), os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def spawn(tmp_path: Path, method: str, options: dict, n: int, nb_epochs: int, resume: bool = False) -> list[dict]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = str(tmp_path / "checkpoint") if resume else None
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path), method, options, n, nb_epochs, checkpoint_dir),
             nprocs=WORLD, join=True)  # fmt: skip
    return [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


def assert_every_sample_once_per_epoch(ranks: list[dict], n: int, steps_per_epoch: int) -> None:
    steps = [rank["seen"] for rank in ranks]
    assert len(steps[0]) == len(steps[1])  # the ranks take the same number of steps (DDP needs it)
    for epoch in range(len(steps[0]) // steps_per_epoch):
        window = slice(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch)
        indices = sorted(i for rank in steps for step in rank[window] for i in step)
        assert indices == list(range(n)), f"epoch {epoch + 1}: a sample was dropped or seen twice"


def test_two_gloo_ranks_match_one_process_with_the_global_batch(tmp_path):
    n, nb_epochs = 96, 3
    ranks = spawn(tmp_path, "natural", {}, n, nb_epochs)
    assert [rank["rank"] for rank in ranks] == [0, 1] and ranks[0]["world_size"] == 2
    for a, b in zip(ranks[0]["weights"], ranks[1]["weights"], strict=True):
        assert np.array_equal(a, b)  # identical weights on both ranks
    single = run("natural", {}, n, nb_epochs)
    assert single["world_size"] == 1
    for a, b in zip(ranks[0]["weights"], single["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert ranks[0]["history"][-1]["loss"] == pytest.approx(single["history"][-1]["loss"], rel=1e-4)
    assert_every_sample_once_per_epoch(ranks, n, n // (BATCH * WORLD))
    # each global minibatch of the single process is the union of the ranks' shards of the same step
    assert [sorted(a + b) for a, b in zip(ranks[0]["seen"], ranks[1]["seen"], strict=True)] == [
        sorted(step) for step in single["seen"]
    ]


def test_uneven_data_l2l_keeps_one_rnn_and_every_sample(tmp_path):
    n = 97  # 3 global minibatches of 32 and 1 sample: merged into the third step, so no rank is ever empty
    ranks = spawn(tmp_path, "l2l", {"steps": 2}, n, 2)
    for a, b in zip(ranks[0]["weights"], ranks[1]["weights"], strict=True):
        assert np.array_equal(a, b)  # classifier and RNN identical on both ranks
    assert_every_sample_once_per_epoch(ranks, n, 3)
    assert [len(step) for step in ranks[0]["seen"][:3]] == [16, 16, 17]


def test_dat_wraps_once_and_ends_with_identical_weights_on_both_ranks(tmp_path):
    n = 96
    ranks = spawn(tmp_path, "dat", {"inner": "fast", "switch_epoch": 1}, n, 2)
    for a, b in zip(ranks[0]["weights"], ranks[1]["weights"], strict=True):
        assert np.array_equal(a, b)
    assert [record["adversarial"] for record in ranks[0]["history"]] == [0, 1]
    assert_every_sample_once_per_epoch(ranks, n, n // (BATCH * WORLD))


def test_free_resumes_exactly_under_two_ranks(tmp_path):
    options, n, nb_epochs = {"replays": 2}, 64, 4  # 2 passes over the data; killed after the first
    resumed = spawn(tmp_path / "resumed", "free", options, n, nb_epochs, resume=True)
    straight = spawn(tmp_path / "straight", "free", options, n, nb_epochs)
    for rank in range(WORLD):
        for a, b in zip(resumed[rank]["weights"], straight[rank]["weights"], strict=True):
            assert np.array_equal(a, b)


def test_cli_train_runs_unchanged_under_torchrun(tmp_path):
    import subprocess

    out = tmp_path / "run"
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "art_fastat.cli", "train",
         "--method", "fast", "--protocol", "digits", "--device", "cpu", "--epochs", "2", "--attacks", "pgd",
         "--n-eval", "30", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["processes"] == 2 and (out / "model.pt").is_file()
    assert completed.stdout.count("## fast on digits") == 1  # rank 0 alone reports
