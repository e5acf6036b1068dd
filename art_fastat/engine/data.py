"""
The data path of the engine: minibatches on the classifier's device, shuffled with the trainer's seeded generator and
cut into per-rank shards under ``torch.distributed``. A source yields :class:`Batch` objects; the epoch loop trains on
them without knowing where they came from (the place where streaming plugs in; the loop augments them with
:mod:`~art_fastat.engine.augmentation`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

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
