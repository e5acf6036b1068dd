"""
The trainer's process setup under ``torch.distributed``: rank and world size, the one DistributedDataParallel wrap, and
the reductions that keep every rank's decisions alike. In a single process every operation is the identity.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from art_fastat._classifier import InputSpaceModel


def rank_and_size() -> tuple[int, int]:
    """``(rank, world size)`` of an initialised ``torch.distributed`` process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ProcessSetup:
    """
    This process's place in the run. Built once per trainer; a trainer composed into another (DAT's inner method)
    shares its host's, so the network is wrapped in DDP once.
    """

    def __init__(self) -> None:
        self.rank, self.world_size = rank_and_size()

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1

    def wrap(self, network: nn.Module, model: nn.Module, device: torch.device) -> nn.Module:
        """
        Route every forward pass of ``model`` (the network, or its input-space wrapper) through
        ``DistributedDataParallel``, which also makes all ranks start from rank 0's weights. Attack passes differentiate
        with respect to the inputs only, so DDP's gradient hooks do not fire for them; the update's backward averages
        the weight gradients across ranks.

        :return: The module to call for logits.
        """
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(network, device_ids=[device] if device.type == "cuda" else None)
        return InputSpaceModel(ddp, model.mean, model.std) if isinstance(model, InputSpaceModel) else ddp

    def average_gradients(self, parameters: Iterable[nn.Parameter], loss_weight: float) -> None:
        """Average the gradients of parameters outside the DDP model (L2L's RNN) across ranks, weighted like DDP's."""
        if not self.distributed:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                parameter.grad.mul_(loss_weight / self.world_size)
                dist.all_reduce(parameter.grad)

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Elementwise sum over the ranks (float64)."""
        if not self.distributed:
            return values
        totals = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        return totals.tolist()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (``[value]`` in one process)."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        """Wait for every rank (a no-op in one process)."""
        if self.distributed:
            dist.barrier()
