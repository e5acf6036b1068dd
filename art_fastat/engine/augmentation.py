"""
On-device data augmentation of the clean minibatches (the engine option ``augmentation``): :class:`CropFlip` is
the random crop and horizontal flip of locuslab/fast_adversarial's CIFAR-10 training (torchvision's
``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip()``), drawn per sample from the trainer's generator, without
torchvision and without a Python loop over the samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from art_fastat._validation import check_positive_int

logger = logging.getLogger(__name__)

#: What ``augmentation="crop_flip"`` means.
CROP_FLIP_PADDING = 4

#: A user augmentation: ``(x, generator) -> x`` with the same shape, dtype and device.
Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class CropFlip:
    """
    Random crop after zero padding, and random horizontal flip, per sample of an NCHW batch: each image is padded with
    ``padding`` zeros on every side, cut back to its size at an offset drawn uniformly in ``[0, 2 * padding]`` on each
    axis, and mirrored left-right with probability 1/2. One ``gather`` does it all, on the batch's device.
    """

    def __init__(self, padding: int = CROP_FLIP_PADDING, flip: bool = True) -> None:
        """
        :param padding: Zero pixels added on each side before the crop (0: no crop).
        :param flip: Whether to flip half the samples (at random) horizontally.
        """
        self.padding = check_positive_int(padding, "padding", minimum=0)
        self.flip = bool(flip)

    def __repr__(self) -> str:
        return f"CropFlip(padding={self.padding}, flip={self.flip})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """
        :param x: Images ``(n, channels, height, width)``.
        :param generator: Draws the offsets (first, when ``padding`` > 0), then the flips; on ``x``'s device.
        :return: The augmented images, of ``x``'s shape, dtype and device (``x`` itself when there is nothing to do).
        """
        if x.dim() != 4:
            raise ValueError(f"CropFlip takes NCHW images, got a tensor of shape {tuple(x.shape)}")
        n, channels, height, width = x.shape
        pad, device = self.padding, x.device
        if pad == 0 and not self.flip:
            return x
        rows = torch.arange(height, device=device).expand(n, height)
        columns = torch.arange(width, device=device).expand(n, width)
        if pad:
            offsets = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=generator, device=device)
            rows, x = rows + offsets[0], F.pad(x, (pad, pad, pad, pad))
        if self.flip:
            flipped = torch.randint(0, 2, (n, 1), generator=generator, device=device).bool()
            columns = torch.where(flipped, width - 1 - columns, columns)
        if pad:
            columns = columns + offsets[1]
        index = rows[:, :, None] * (width + 2 * pad) + columns[:, None, :]
        index = index.view(n, 1, height * width).expand(n, channels, height * width)
        return x.reshape(n, channels, -1).gather(2, index).view(n, channels, height, width)


def resolve_augmentation(value: Any, input_shape: tuple[int, ...], low: Any, high: Any) -> Augmentation | None:
    """
    The checked engine option ``augmentation``.

    :param value: ``None``, ``"crop_flip"``, a :class:`CropFlip` or a callable ``(x, generator) -> x``.
    :param input_shape: The classifier's ``input_shape``: a crop needs ``(channels, height, width)``.
    :param low: Lower ``clip_values`` (a float or a tensor): a crop's zero padding must lie inside them.
    :param high: Upper ``clip_values``.
    :return: ``None`` or the callable the epoch loop applies.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value != "crop_flip":
            raise ValueError(f"augmentation must be None, 'crop_flip' or a callable (x, generator) -> x, got {value!r}")
        value = CropFlip(CROP_FLIP_PADDING)
    elif isinstance(value, type):
        raise TypeError(f"augmentation takes an instance, e.g. {value.__name__}(), not the class {value.__name__}")
    elif not callable(value):
        raise TypeError(f"augmentation must be None, 'crop_flip' or a callable (x, generator) -> x, got {value!r}")
    if isinstance(value, CropFlip):
        check_positive_int(value.padding, "augmentation padding", minimum=0)
        if len(input_shape) != 3:
            raise ValueError(f"augmentation={value!r} crops and flips images (channels, height, width); the "
                             f"classifier's input_shape is {tuple(input_shape)}")  # fmt: skip
        if value.padding and not (bool((torch.as_tensor(low) <= 0).all()) and bool((torch.as_tensor(high) >= 0).all())):
            raise ValueError(f"augmentation={value!r} pads with zeros, which lie outside the classifier's clip_values")
    return value


def check_augmented(augmented: Any, x: torch.Tensor) -> None:
    """
    Refuse, before it is trained on, what a user augmentation returned unless it is a tensor of ``x``'s shape, dtype
    and device.
    """
    if not isinstance(augmented, torch.Tensor):
        raise ValueError(f"augmentation must return a torch.Tensor, got {type(augmented).__name__}")
    if (augmented.shape, augmented.dtype, augmented.device) != (x.shape, x.dtype, x.device):
        raise ValueError(f"augmentation must return a tensor of its input's shape, dtype and device, "
                         f"{_describe(x)}, got {_describe(augmented)}")  # fmt: skip


def _describe(x: torch.Tensor) -> str:
    return f"{tuple(x.shape)} {x.dtype} on {x.device}"
