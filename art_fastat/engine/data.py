"""
The data path of the engine: minibatches on the classifier's device, shuffled with the trainer's seeded generator and
cut into per-rank shards under ``torch.distributed``. A source yields :class:`Batch` objects; the epoch loop trains on
them without knowing where they came from (the loop augments them with :mod:`~art_fastat.engine.augmentation`):
:class:`InMemorySource` (``fit``), :class:`StreamSource` (``fit_generator`` with a torch ``DataLoader``) and
:class:`GeneratorSource` (``fit_generator`` with any other ART ``DataGenerator``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from art_fastat.engine.augmentation import Augmentation, CropFlip, check_augmented

logger = logging.getLogger(__name__)


@dataclass
class Batch:
    """
    One minibatch of this rank.

    :param x: Clean inputs on the device.
    :param y: Integer labels on the device.
    :param loss_weight: Factor of this rank's update losses: its share of the global minibatch times the world size
                        (1 in one process), so that DDP's gradient average is the gradient of the global minibatch's
                        mean loss.
    """

    x: torch.Tensor
    y: torch.Tensor
    loss_weight: float = 1.0


def shard(
    order: torch.Tensor, batch_size: int, rank: int, world_size: int, smallest: int = 1
) -> Iterator[tuple[torch.Tensor, float]]:
    """
    This rank's indices of each global minibatch (``batch_size`` per rank, ``world_size * batch_size`` in all), with
    the step's loss weight: every index of ``order`` goes to exactly one rank once. A global minibatch is split as
    evenly as possible; a last one with fewer than ``smallest`` samples per rank is merged into the one before, so
    every rank has samples in every step (``smallest=2`` for a network with BatchNorm, which cannot train on one).
    """
    global_size = batch_size * world_size
    starts = list(range(0, len(order), global_size))
    if len(starts) > 1 and len(order) - starts[-1] < world_size * smallest:
        starts.pop()
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(order)
        pieces = torch.tensor_split(order[start:end], world_size)
        yield pieces[rank], len(pieces[rank]) * world_size / (end - start)


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1, smallest: int = 1) -> int:
    """Number of steps of :func:`shard` over ``n`` samples."""
    global_size = batch_size * world_size
    steps = -(-n // global_size)
    return steps - 1 if steps > 1 and n - (steps - 1) * global_size < world_size * smallest else steps


class InMemorySource:
    """
    ``fit``'s data: the whole set moved to the device once, a fresh permutation each epoch from ``generator`` (the
    same on every rank), each rank training on its shard of every global minibatch.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        generator: torch.Generator,
        rank: int = 0,
        world_size: int = 1,
        smallest: int = 1,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size, self.generator = batch_size, generator
        self.rank, self.world_size, self.smallest = rank, world_size, smallest

    def __len__(self) -> int:
        return steps_per_epoch(len(self.x), self.batch_size, self.world_size, self.smallest)

    def epoch(self) -> Iterator[Batch]:
        """The minibatches of one epoch."""
        order = torch.randperm(len(self.x), generator=self.generator, device=self.x.device)
        for indices, loss_weight in shard(order, self.batch_size, self.rank, self.world_size, self.smallest):
            yield Batch(self.x[indices], self.y[indices], loss_weight)


class GeneratorSource:
    """
    ``fit_generator``'s data: ``len(self)`` batches drawn from an ART ``DataGenerator`` per epoch, each checked. A
    batch with fewer than ``smallest`` samples (one sample, for a network with BatchNorm) is skipped with a warning.
    """

    def __init__(
        self, generator: Any, to_device: Callable[[Any], tuple[torch.Tensor, torch.Tensor]], smallest: int = 1
    ) -> None:
        """
        :param generator: An ``art.data_generators.DataGenerator``.
        :param to_device: Checks one ``(x, y)`` batch and returns it as tensors on the device.
        :param smallest: Fewest samples a batch must hold to be trained on.
        """
        self.generator, self.to_device, self.smallest = generator, to_device, smallest

    def __len__(self) -> int:
        return max(1, -(-self.generator.size // self.generator.batch_size))

    def epoch(self) -> Iterator[Batch]:
        """The minibatches of one epoch."""
        for _ in range(len(self)):
            batch = Batch(*self.to_device(self.generator.get_batch()))
            if len(batch.y) >= self.smallest:
                yield batch
            else:
                logger.warning("fit_generator: a batch of %d sample(s) was skipped: the network has BatchNorm, which "
                               "cannot train on fewer than %d", len(batch.y), self.smallest)  # fmt: skip


class PlannedBatches(Sampler[list[int]]):
    """
    The batch sampler of :class:`StreamSource`'s ``DataLoader``: yields the dataset indices of this rank's share of
    each step of the current epoch, as :func:`shard` cut them (``steps``, set before every epoch).
    """

    def __init__(self, length: int) -> None:
        """:param length: Steps per epoch (what ``len(loader)`` reports)."""
        self.length = length
        self.steps: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.steps)

    def __len__(self) -> int:
        return self.length


#: ``DataLoader`` settings :class:`StreamSource` carries over when it rebuilds the user's loader.
LOADER_SETTINGS = ("num_workers", "collate_fn", "timeout", "worker_init_fn", "multiprocessing_context", "generator",
                   "prefetch_factor", "persistent_workers", "pin_memory_device")  # fmt: skip


def engine_order(loader: DataLoader) -> bool | None:
    """
    Whether :class:`StreamSource` takes over ``loader``'s order, and how: ``True`` (shuffle with the trainer's
    generator) for ``shuffle=True`` (a ``RandomSampler`` over the whole dataset, without replacement) or a
    ``DistributedSampler`` with ``shuffle=True``; ``False`` (the dataset's order) for ``shuffle=False`` or a
    ``DistributedSampler`` with ``shuffle=False``; ``None`` (the loader is used as it is) for an ``IterableDataset``,
    any other sampler or batch sampler, or ``batch_size=None``.
    """
    if isinstance(loader.dataset, IterableDataset) or loader.batch_size is None:
        return None
    if type(loader.batch_sampler) is not BatchSampler:
        return None
    sampler = loader.sampler
    if type(sampler) is RandomSampler and not sampler.replacement and sampler.num_samples == len(loader.dataset):
        return True
    if type(sampler) is SequentialSampler:
        return False
    if type(sampler) is DistributedSampler:
        return bool(sampler.shuffle)
    return None


class StreamSource:
    """
    ``fit_generator``'s data from an ART ``PyTorchDataGenerator``: its ``DataLoader``'s batches stay torch tensors,
    checked with torch operations where the loader puts them (:func:`~art_fastat._validation.check_tensor_data`) and
    moved with ``.to(device, non_blocking=True)`` (from pinned memory when the device is CUDA).

    Which samples each step sees:

    - Map-style ``Dataset`` with ``shuffle=True``, ``shuffle=False`` or a ``DistributedSampler`` (the loaders one
      builds for ``fit``-like training): the engine plans every epoch as ``fit`` does. A permutation is drawn from
      the trainer's shuffle generator (``shuffle=True``; the identity for ``shuffle=False``), cut by :func:`shard`
      into global minibatches of ``loader.batch_size`` per rank, and the loader, rebuilt once over the same dataset
      with the user's other settings (``num_workers``, ``collate_fn``, ``worker_init_fn``, ``persistent_workers``,
      ...), loads this rank's indices of each step. So one seed gives identical runs, a resume at an epoch boundary
      continues exactly, and under torch.distributed every sample is seen once per epoch over all ranks, with the
      loss weights of :func:`shard` (a ``DistributedSampler``'s own sharding, padding and seed are replaced by this).
      As in ``fit``, nothing is dropped: ``drop_last`` is replaced by :func:`shard`'s rule (a last minibatch with
      fewer than ``smallest`` samples per rank joins the one before). The loader's ``generator`` still seeds its
      workers, not the order.
    - Any other loader (an ``IterableDataset``, a custom ``sampler`` or ``batch_sampler``, ``batch_size=None``) is
      used as it is, in one process only: its order is its own, ``len(loader)`` counts the steps of an epoch, and a
      batch with fewer than ``smallest`` samples is skipped with a warning. Under torch.distributed it is refused: the
      engine cannot give each rank a disjoint shard and the same number of steps.

    The loader is rebuilt with ``pin_memory=True`` when the device is CUDA (pinning is useless on CPU: off there),
    and with ``in_order=True`` where torch has it (2.6 on; the loss weights follow the steps' order).
    """

    def __init__(
        self,
        loader: DataLoader,
        device: torch.device,
        generator: torch.Generator,
        check: Callable[[Any, Any], tuple[torch.Tensor, torch.Tensor]],
        rank: int = 0,
        world_size: int = 1,
        smallest: int = 1,
    ) -> None:
        """
        :param loader: The ``DataLoader`` (``PyTorchDataGenerator.iterator``); not modified.
        :param device: The classifier's device.
        :param generator: The trainer's shuffle generator (the same seed on every rank).
        :param check: Checks one ``(x, y)`` batch where it lies; returns ``x`` and int64 labels.
        :param rank: This process's rank.
        :param world_size: Number of processes.
        :param smallest: Fewest samples per rank in a step (2 for a network with BatchNorm).
        :raises ValueError: A loader that cannot be trained on, naming ``generator.iterator``.
        """
        self.device, self.generator, self.check = device, generator, check
        self.rank, self.world_size, self.smallest = rank, world_size, smallest
        self.shuffle = engine_order(loader)
        self.dataset = loader.dataset
        settings = {name: getattr(loader, name) for name in LOADER_SETTINGS}
        settings["pin_memory"] = device.type == "cuda"
        if hasattr(loader, "in_order"):  # torch >= 2.6
            settings["in_order"] = True
        if self.shuffle is None:
            if world_size > 1:
                raise ValueError(
                    "generator.iterator must be a DataLoader over a map-style Dataset with shuffle=True, "
                    "shuffle=False or a DistributedSampler under torch.distributed (the engine gives every rank its "
                    f"shard of each epoch); got one with {self._describe(loader)}"
                )
            try:
                self.length = len(loader)
            except TypeError as error:
                raise ValueError(
                    "generator.iterator must have a length (its IterableDataset's __len__): the engine counts the "
                    "steps of an epoch for schedules and checkpoints"
                ) from error
            self.loader = loader
            if settings["pin_memory"] and not loader.pin_memory:
                self.loader = self._rebuilt_as_is(loader, settings)
            self.planned: PlannedBatches | None = None
        else:
            n = len(self.dataset)
            if n < world_size * smallest:
                reason = " (the network has BatchNorm)" if smallest > 1 else ""
                raise ValueError(f"generator.iterator's dataset must hold at least {smallest} sample(s) per "
                                 f"rank{reason}: {n} samples for {world_size} process(es)")  # fmt: skip
            self.batch_size = loader.batch_size
            self.length = steps_per_epoch(n, self.batch_size, world_size, smallest)
            self.planned = PlannedBatches(self.length)
            self.loader = DataLoader(self.dataset, batch_sampler=self.planned, **settings)

    @staticmethod
    def _describe(loader: DataLoader) -> str:
        if isinstance(loader.dataset, IterableDataset):
            return f"an IterableDataset ({type(loader.dataset).__name__})"
        if loader.batch_size is None and loader.batch_sampler is None:
            return "batch_size=None"
        if type(loader.batch_sampler) is not BatchSampler:
            return f"batch_sampler {type(loader.batch_sampler).__name__}"
        return f"sampler {type(loader.sampler).__name__}"

    @staticmethod
    def _rebuilt_as_is(loader: DataLoader, settings: dict[str, Any]) -> DataLoader:
        """``loader`` with the new pinning, its own sampling unchanged."""
        if isinstance(loader.dataset, IterableDataset):
            return DataLoader(loader.dataset, batch_size=loader.batch_size, drop_last=loader.drop_last, **settings)
        if loader.batch_sampler is None:
            return DataLoader(loader.dataset, batch_size=None, sampler=loader.sampler, **settings)
        return DataLoader(loader.dataset, batch_sampler=loader.batch_sampler, **settings)

    def __len__(self) -> int:
        return self.length

    def probe(self) -> tuple[Any, Any] | None:
        """
        When the engine plans the epochs: the dataset's first sample collated by the loader's ``collate_fn`` into a
        one-sample batch, for the pre-flight check of shapes, dtypes and the network before anything changes. None
        for a loader used as it is (its indices need not be 0..n-1): its first batch is checked when it arrives,
        before it is trained on.
        """
        if self.planned is None:
            return None
        return self.unpack(self.loader.collate_fn([self.dataset[0]]))

    @staticmethod
    def unpack(batch: Any) -> tuple[Any, Any]:
        """The ``(x, y)`` of one loader batch."""
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            described = f"a {type(batch).__name__} of {len(batch)} items" if isinstance(batch, tuple | list) else \
                type(batch).__name__  # fmt: skip
            raise ValueError(f"generator batches must be (x, y) pairs, got {described}")
        return batch[0], batch[1]

    def to_device(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """One loader batch, checked where it lies, on the device: x as float32, y as int64 class indices."""
        x, y = self.check(*self.unpack(batch))
        x = x.to(self.device, non_blocking=True).to(torch.float32)
        return x, y.to(self.device, non_blocking=True)

    def epoch(self) -> Iterator[Batch]:
        """The minibatches of one epoch."""
        if self.planned is None:
            for batch in self.loader:
                x, y = self.to_device(batch)
                if len(y) >= self.smallest:
                    yield Batch(x, y)
                else:
                    logger.warning("fit_generator: a batch of %d sample(s) was skipped: the network has BatchNorm, "
                                   "which cannot train on fewer than %d", len(y), self.smallest)  # fmt: skip
            return
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.generator.device).cpu()
        else:
            order = torch.arange(n)
        plan = list(shard(order, self.batch_size, self.rank, self.world_size, self.smallest))
        self.planned.steps = [indices.tolist() for indices, _ in plan]
        for (_, loss_weight), batch in zip(plan, self.loader, strict=True):
            yield Batch(*self.to_device(batch), loss_weight)


def augmented(
    batches: Iterable[Batch],
    augmentation: Augmentation | None,
    generator: torch.Generator,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Iterator[Batch]:
    """
    The batches with ``augmentation`` applied to their inputs, drawn from ``generator`` (the trainer's, so a resumed
    run stays bit-identical); unchanged without one. A user callable's output is checked on every batch. With
    ``memory_format=torch.channels_last`` the clean inputs are converted before the augmentation, and its output
    after it (a no-op when it kept the format), so the attack and the update see channels-last batches.
    """
    convert = memory_format is not torch.contiguous_format
    for batch in batches:
        if convert:
            batch = Batch(batch.x.contiguous(memory_format=memory_format), batch.y, batch.loss_weight)
        if augmentation is not None:
            with torch.no_grad():
                x = augmentation(batch.x, generator)
            if not isinstance(augmentation, CropFlip):
                check_augmented(x, batch.x)
            batch = Batch(x.contiguous(memory_format=memory_format) if convert else x, batch.y, batch.loss_weight)
        yield batch
