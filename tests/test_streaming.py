"""
Streaming: ``fit_generator`` with an ART ``PyTorchDataGenerator`` trains from its torch ``DataLoader`` without a numpy
round trip, plans each epoch as ``fit`` does (same seed, same weights; the same weights as ``fit`` itself), refuses
bad batches before they are trained on, resumes exactly at an epoch boundary, and under two gloo processes gives each
rank its own shard of every epoch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from art.data_generators import PyTorchDataGenerator
from art.estimators.classification import PyTorchClassifier
from conftest import make_classifier, same_weights, tiny_network, weights
from test_distributed import assert_every_sample_once_per_epoch, indexed_digits
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, TensorDataset

from art_fastat.engine.data import StreamSource
from art_fastat.trainers import AdversarialTrainerFast, NaturalTrainer

N, BATCH = 128, 32


def digits_dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    """A map-style dataset of ``(image, label)`` tensors over the arrays, without copies."""
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


class Stream(IterableDataset):
    """An iterable-style dataset of ``(image, label)`` pairs, in order."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def __len__(self) -> int:
        return len(self.x)

    def __iter__(self):
        return zip(self.x, self.y, strict=True)


@pytest.fixture(scope="module")
def xy() -> tuple[np.ndarray, np.ndarray]:
    return indexed_digits(N)


def generator_of(loader: DataLoader) -> PyTorchDataGenerator:
    return PyTorchDataGenerator(loader, size=len(loader.dataset), batch_size=loader.batch_size)


def recording(trainer, seen: list, n: int = N) -> None:
    """Record the index (top-left pixel, :func:`indexed_digits` of ``n``) of every sample each step trains on, and
    the types that reach the step."""
    train_batch = trainer._train_batch

    def step(x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        seen.append((torch.round(x[:, 0, 0, 0] * n).long().tolist(), type(x), x.dtype, type(y), y.dtype))
        train_batch(x, y, eps)

    trainer._train_batch = step


def test_a_dataloader_trains_like_fit_and_one_seed_gives_identical_runs(xy):
    x, y = xy
    runs = []
    for seed, stream in ((3, True), (3, True), (3, False), (4, True)):
        classifier = make_classifier()
        trainer = AdversarialTrainerFast(classifier, eps=0.2, seed=seed)
        if stream:
            loader = DataLoader(digits_dataset(x, y), batch_size=BATCH, shuffle=True)
            history = trainer.fit_generator(generator_of(loader), nb_epochs=2)
        else:
            history = trainer.fit(x, y, batch_size=BATCH, nb_epochs=2)
        runs.append((weights(classifier), [record["loss"] for record in history]))
    assert not same_weights(runs[0][0], weights(make_classifier()), atol=1e-6)  # it trained
    assert same_weights(runs[0][0], runs[1][0])  # same seed, same weights
    assert same_weights(runs[0][0], runs[2][0]) and runs[0][1] == runs[2][1]  # exactly fit's run
    assert not same_weights(runs[0][0], runs[3][0], atol=1e-6)  # the seed draws the order


def test_batches_reach_the_step_as_tensors_with_no_numpy_round_trip(xy, monkeypatch):
    x, y = xy
    trainer = NaturalTrainer(make_classifier())
    seen: list = []
    recording(trainer, seen)
    generator = generator_of(DataLoader(digits_dataset(x, y), batch_size=BATCH, shuffle=False))

    def no_numpy(*arguments: object, **keywords: object) -> None:
        raise AssertionError("a batch went through numpy")

    monkeypatch.setattr(torch.Tensor, "numpy", no_numpy)
    monkeypatch.setattr("art_fastat.trainers.base.check_data", no_numpy)
    monkeypatch.setattr(generator, "get_batch", no_numpy)  # ART's path converts every batch to numpy
    trainer.fit_generator(generator, nb_epochs=2)
    # shuffle=False keeps the dataset's order; tensors of the right dtypes reach the step
    assert [step[0] for step in seen] == 2 * [list(range(i, i + BATCH)) for i in range(0, N, BATCH)]
    assert {step[1:] for step in seen} == {(torch.Tensor, torch.float32, torch.Tensor, torch.int64)}


def test_loader_workers_and_one_hot_labels_train_like_the_plain_loader(xy):
    x, y = xy
    runs = []
    for labels, options in ((y, {}), (np.eye(10, dtype=np.float32)[y], {"num_workers": 1, "persistent_workers": True})):
        classifier = make_classifier()
        loader = DataLoader(digits_dataset(x, labels), batch_size=BATCH, shuffle=True, **options)
        AdversarialTrainerFast(classifier, eps=0.2, seed=1).fit_generator(generator_of(loader), nb_epochs=2)
        runs.append(weights(classifier))
    assert same_weights(*runs)  # the workers load each new epoch's plan; one-hot rows are their class indices


def test_uint8_images_train_as_float32_like_fit(xy):
    x, y = xy
    images = np.round(x * 255).astype(np.uint8)
    runs = []
    for stream in (True, False):
        network = tiny_network()
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
        classifier = PyTorchClassifier(network, nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer, clip_values=(0, 255))
        trainer = NaturalTrainer(classifier, seed=1)
        if stream:
            loader = DataLoader(digits_dataset(images, y), batch_size=BATCH, shuffle=True)
            trainer.fit_generator(generator_of(loader), nb_epochs=1)
        else:
            trainer.fit(images.astype(np.float32), y, batch_size=BATCH, nb_epochs=1)
        runs.append(weights(classifier))
    assert same_weights(*runs)


def test_the_loader_is_rebuilt_with_the_users_settings_and_pinning_only_for_cuda(xy):
    x, y = xy

    def collate(samples: list) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])

    def init(worker: int) -> None:
        pass

    loader = DataLoader(digits_dataset(x, y), batch_size=BATCH, shuffle=True, num_workers=2, collate_fn=collate,
                        worker_init_fn=init, drop_last=True, pin_memory=False)  # fmt: skip
    generator = torch.Generator().manual_seed(0)

    def check(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a, b

    for device, pinned in (("cpu", False), ("cuda", True)):
        source = StreamSource(loader, torch.device(device), generator, check)
        rebuilt = source.loader
        assert rebuilt.pin_memory is pinned and rebuilt is not loader
        assert (rebuilt.num_workers, rebuilt.collate_fn, rebuilt.worker_init_fn) == (2, collate, init)
        assert len(source) == len(rebuilt) == N // BATCH and not loader.pin_memory  # the user's loader is untouched
    # drop_last does not drop: 130 samples are 5 steps (4 of 32, then 2), as in fit
    assert len(StreamSource(DataLoader(digits_dataset(*indexed_digits(130)), batch_size=BATCH, drop_last=True),
                            torch.device("cpu"), generator, check)) == 5  # fmt: skip


def test_batchnorm_merges_a_one_sample_last_minibatch_as_fit_does(xy):
    x, y = indexed_digits(N + 1)
    trainer = NaturalTrainer(make_classifier(tiny_network(batch_norm=True)))
    seen: list = []
    recording(trainer, seen, N + 1)
    trainer.fit_generator(generator_of(DataLoader(digits_dataset(x, y), batch_size=BATCH, shuffle=True)), nb_epochs=1)
    assert [len(step[0]) for step in seen] == [BATCH] * 3 + [BATCH + 1]
    assert sorted(i for step in seen for i in step[0]) == list(range(N + 1))


def test_a_custom_sampler_or_iterable_dataset_is_used_as_it_is_in_one_process(xy):
    x, y = xy
    reverse = list(range(N - 1, -1, -1))
    for loader in (DataLoader(digits_dataset(x, y), batch_size=BATCH, sampler=reverse),
                   DataLoader(Stream(x[::-1].copy(), y[::-1].copy()), batch_size=BATCH)):  # fmt: skip
        trainer = NaturalTrainer(make_classifier())
        seen: list = []
        recording(trainer, seen)
        trainer.fit_generator(generator_of(loader), nb_epochs=1)
        assert [i for step in seen for i in step[0]] == reverse
        with pytest.raises(ValueError, match="under torch.distributed"):  # where the engine cannot shard it
            StreamSource(loader, torch.device("cpu"), torch.Generator(), lambda a, b: (a, b), rank=0, world_size=2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, y: (x[:, :, :, :7], y), r"batch x must have shape \(n,\) \+ \(1, 8, 8\), got \(1, 1, 8, 7\)"),
        (lambda x, y: (x * 2, y), r"generator batch x must lie inside the classifier's clip_values 0..1"),
        (lambda x, y: (np.where(np.arange(N)[:, None, None, None] == 0, np.float32(np.nan), x), y), "x must be finite"),
        (lambda x, y: (x, y + 5), r"generator batch y must be class indices in \[0, 9\], got 5..14"),
        (lambda x, y: (x, y + 0.5), r"generator batch y must hold integer class indices"),
        (lambda x, y: (x, np.eye(10, dtype=np.float32)[y] * 2), "batch y given as a 2-D tensor must be one-hot"),
        (lambda x, y: (x.astype(bool), y), r"generator batch x must have a numeric dtype"),
    ],
)  # fmt: skip
def test_bad_batches_are_refused_by_name_before_anything_changes(xy, change, message):
    x, y = change(*xy)
    classifier = make_classifier()
    before = weights(classifier)
    loader = DataLoader(TensorDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)),
                        batch_size=BATCH, shuffle=True)  # fmt: skip
    with pytest.raises((ValueError, TypeError), match=message):
        AdversarialTrainerFast(classifier, eps=0.2).fit_generator(generator_of(loader), nb_epochs=1)
    assert same_weights(before, weights(classifier)) and not classifier.optimizer.state


def test_refusals_come_before_a_resume_loads_anything_and_a_late_bad_batch_is_never_trained_on(xy, tmp_path):
    x, y = xy
    good = DataLoader(digits_dataset(x, y), batch_size=BATCH, shuffle=False)
    AdversarialTrainerFast(make_classifier(), eps=0.2, checkpoint_dir=tmp_path).fit_generator(generator_of(good), 1)
    classifier = make_classifier()
    before = weights(classifier)
    three_items = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(y)), BATCH)
    resuming = AdversarialTrainerFast(classifier, eps=0.2, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"generator batches must be \(x, y\) pairs, got a list of 3 items"):
        resuming.fit_generator(generator_of(three_items), nb_epochs=2)
    assert same_weights(before, weights(classifier))  # the checkpoint was not loaded
    late = x.copy()
    late[3 * BATCH + 1] = np.nan  # in the fourth batch of the dataset's order
    trainer = NaturalTrainer(make_classifier())
    seen: list = []
    recording(trainer, seen)
    with pytest.raises(ValueError, match="generator batch x must be finite"):
        trainer.fit_generator(generator_of(DataLoader(digits_dataset(late, y), batch_size=BATCH)), nb_epochs=1)
    assert len(seen) == 3


def test_a_stream_resumes_at_an_epoch_boundary_bit_identically(xy, tmp_path):
    x, y = xy
    x_val, y_val = indexed_digits(N + 64)
    options = {"eps": 0.2, "seed": 2, "early_stopping": True, "validation_size": 64, "validation_pgd_steps": 2,
               "lr_schedule": "cosine"}  # fmt: skip

    def fit(classifier, kill_after: int | None = None, **engine: object) -> list[dict]:
        loader = DataLoader(digits_dataset(x, y), batch_size=BATCH, shuffle=True)
        trainer = AdversarialTrainerFast(classifier, **options, **engine)
        if kill_after is not None:  # dies during the next epoch's end, its checkpoint holding epoch kill_after

            def die(record: dict) -> None:
                if record["epoch"] > kill_after:
                    raise KeyboardInterrupt

            trainer._end_epoch = die
        return trainer.fit_generator(generator_of(loader), 4, validation_data=(x_val[N:], y_val[N:]))

    straight = make_classifier()
    expected = fit(straight)
    with pytest.raises(KeyboardInterrupt):
        fit(make_classifier(), kill_after=2, checkpoint_dir=tmp_path)
    resumed = make_classifier()  # a new process's classifier: everything comes from the checkpoint
    history = fit(resumed, checkpoint_dir=tmp_path, resume=True)
    assert same_weights(weights(straight), weights(resumed))

    def timeless(records: list[dict]) -> list[dict]:
        return [{key: value for key, value in record.items() if not key.endswith("seconds")} for record in records]

    assert timeless(history) == timeless(expected) and len(history) == 4 and "val_pgd_accuracy" in history[-1]


# ---------------------------------------------------------------- two gloo processes

WORLD = 2


def train_both(n: int, nb_epochs: int) -> dict:
    """On this rank: fit_generator over a DataLoader with a DistributedSampler, then fit on the same arrays."""
    x, y = indexed_digits(n)
    results = {}
    for kind in ("stream", "fit"):
        classifier = make_classifier()
        trainer = AdversarialTrainerFast(classifier, eps=0.2, seed=1)
        seen: list = []
        recording(trainer, seen, n)
        if kind == "stream":
            dataset = digits_dataset(x, y)
            loader = DataLoader(dataset, batch_size=BATCH // 2, sampler=DistributedSampler(dataset, shuffle=True))
            history = trainer.fit_generator(generator_of(loader), nb_epochs=nb_epochs)
        else:
            history = trainer.fit(x, y, batch_size=BATCH // 2, nb_epochs=nb_epochs)
        results[kind] = {"weights": [w.numpy() for w in weights(classifier)], "history": history,
                         "seen": [step[0] for step in seen]}  # fmt: skip
    return results


def worker(rank: int, init_file: str, out: str, n: int, nb_epochs: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.save(train_both(n, nb_epochs), os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_stream_disjoint_shards_of_every_epoch_as_fit_does(tmp_path):
    n, nb_epochs = 97, 2  # 3 global minibatches of 32 and one sample, merged into the third step
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path), n, nb_epochs), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]
    streams = [rank["stream"] for rank in ranks]
    for a, b in zip(streams[0]["weights"], streams[1]["weights"], strict=True):
        assert np.array_equal(a, b)  # identical weights on both ranks
    for step_0, step_1 in zip(streams[0]["seen"], streams[1]["seen"], strict=True):
        assert not set(step_0) & set(step_1)  # each rank's shard of a step is its own
    assert_every_sample_once_per_epoch(streams, n, 3)
    assert [len(step) for step in streams[0]["seen"][:3]] == [16, 16, 17]
    for rank in ranks:  # the stream is fit's run: same shards, same weights, same history
        assert rank["stream"]["seen"] == rank["fit"]["seen"]
        for a, b in zip(rank["stream"]["weights"], rank["fit"]["weights"], strict=True):
            assert np.array_equal(a, b)
        assert rank["stream"]["history"][-1]["loss"] == rank["fit"]["history"][-1]["loss"]
