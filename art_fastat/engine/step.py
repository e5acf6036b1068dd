"""
One training step's mechanics, shared by every method: the forward pass of input-space images (preprocessing, mixed
precision, the channels-last memory format and ``torch.compile`` when asked for), the mode of attack passes, and the
weight update (loss scaling, per-rank loss weight, optimizer step).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

ATTACK_MODES = ("train", "eval")


class Step:
    """
    :param network: The classifier's network (what the optimizer trains).
    :param model: The module to call for logits of input-space images (the network, its standardising wrapper, or
                  their DDP wrap).
    :param optimizer: The classifier's optimizer.
    :param use_amp: Run forward passes under ``torch.autocast``.
    :param amp_dtype: ``torch.bfloat16`` (no loss scaling needed) or ``torch.float16`` (with a ``GradScaler``).
    :param device: The classifier's device.
    :param channels_last: Train the network and every batch in the channels-last memory format.
    :param compile_options: Keyword arguments of ``torch.compile`` for the forward pass, or None (eager).
    """

    def __init__(
        self,
        network: nn.Module,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        use_amp: bool,
        amp_dtype: torch.dtype,
        device: torch.device,
        channels_last: bool = False,
        compile_options: dict[str, Any] | None = None,
    ) -> None:
        self.network, self.model, self.optimizer = network, model, optimizer
        self.use_amp, self.amp_dtype, self.device = use_amp, amp_dtype, device
        #: ``torch.channels_last`` or ``torch.contiguous_format``: the layout of the network's weights and batches.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.compile_options = compile_options
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
        self.batch_norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        #: This rank's loss weight for the current batch (see :class:`~art_fastat.engine.data.Batch`).
        self.loss_weight = 1.0

    def build(self, wrap: Callable[[nn.Module, nn.Module], nn.Module]) -> None:
        """
        Once, before the first step: the network converted in place to the memory format (before DDP, which builds its
        gradient buckets from the parameters' layout), ``model`` wrapped by ``wrap`` (the process setup's DDP wrap),
        then compiled (compiling the DDP-wrapped module is PyTorch's documented order). The network itself is never
        replaced: the optimizer trains it and checkpoints save its ``state_dict`` (no ``_orig_mod.`` prefix), so
        checkpoints load whether or not either run compiled.
        """
        if self.memory_format is torch.channels_last:
            self.network.to(memory_format=torch.channels_last)
        model = wrap(self.network, self.model)
        self.model = model if self.compile_options is None else torch.compile(model, **self.compile_options)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context of the mixed precision (a no-op without ``use_amp``)."""
        if not self.use_amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of input-space images, with preprocessing and mixed precision applied."""
        with self.autocast():
            return self.model(x)

    @property
    def loss_scale(self) -> float:
        """Factor for attack losses so fp16 input gradients do not underflow (signs are unaffected)."""
        return float(self.scaler.get_scale()) if self.scaler.is_enabled() else 1.0

    @contextlib.contextmanager
    def attack(self, mode: str = "train") -> Iterator[None]:
        """
        The network in the mode of attack passes for the block, back in train mode after: ``"train"`` with BatchNorm
        running statistics frozen (only update passes move them), or ``"eval"``.
        """
        if mode == "eval":
            self.network.eval()
            try:
                yield
            finally:
                self.network.train()
            return
        saved = [(bn, bn.momentum, bn.num_batches_tracked.clone()) for bn in self.batch_norms if bn.track_running_stats]
        for bn, _, _ in saved:
            bn.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: statistics frozen
        try:
            yield
        finally:
            for bn, momentum, tracked in saved:
                bn.momentum = momentum
                bn.num_batches_tracked.copy_(tracked)

    def optimize(self, loss: torch.Tensor) -> None:
        """Backward on this rank's weighted (and, in fp16, scaled) loss and one optimizer step."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * self.loss_weight if self.loss_weight != 1.0 else loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
