"""
Cost of on-device augmentation (``augmentation="crop_flip"``) as a share of a training epoch.

On synthetic data of the protocols' shapes (fixed seed): P1-shaped (1x28x28, batch 100, ``MnistCNN``, eps 0.3) and
P2-shaped (3x32x32, batch 128, ``PreActResNet18``, eps 8/255). Per batch, measured side by side in one run
(augmentation and training interleaved, median over repeats):

- the augmentation call alone, ``CropFlip(4)`` on a minibatch already on the device;
- a Fast (FGSM-RS) training step, ``AdversarialTrainerFast`` without augmentation (the epoch's own time, from its
  history, over its batches).

Share of an epoch = augmentation / (augmentation + training): what ``crop_flip`` adds to an epoch of Fast, the
cheapest method here (every other method's share is smaller). The P2-shaped Fast step takes about 20 s per batch on
one CPU thread: on a CPU-only machine use few ``--samples`` or ``--only mnist10k``.

    python benchmarks/augmentation.py [--repeats 5] [--threads 2] [--samples 512] [--device cpu]
                                      [--only mnist10k cifar10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from art_fastat.engine.augmentation import CropFlip
from art_fastat.protocols import get_protocol
from art_fastat.trainers import AdversarialTrainerFast

SEED = 0
KINDS = ("augmentation", "training")


@dataclass(frozen=True)
class Setting:
    """One row: a protocol's network, input shape, batch size and eps, on synthetic data."""

    protocol: str
    label: str

    @property
    def batch_size(self) -> int:
        return get_protocol(self.protocol).batch_size


SETTINGS = [Setting("mnist10k", "P1-shaped 1x28x28, MnistCNN"), Setting("cifar10", "P2-shaped 3x32x32, PreActResNet18")]


def synthetic(protocol: str, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform images in [0, 1] of the protocol's input shape and uniform labels, from a fixed seed."""
    shape = get_protocol(protocol).input_shape
    random = np.random.RandomState(SEED)
    return random.rand(samples, *shape).astype(np.float32), random.randint(0, 10, samples).astype(np.int64)


def augmentation_seconds(x: np.ndarray, batch_size: int, device: torch.device) -> tuple[float, int]:
    """Seconds of ``CropFlip(4)`` over one epoch's minibatches, already on the device, and the number of batches."""
    generator = torch.Generator(device=device).manual_seed(SEED)
    order = torch.randperm(len(x), generator=generator, device=device)
    batches = torch.from_numpy(x).to(device)[order].split(batch_size)
    augment = CropFlip(4)
    synchronise(device)
    started = time.perf_counter()
    for batch in batches:
        augment(batch, generator)
    synchronise(device)
    return time.perf_counter() - started, len(batches)


def training_seconds(setting: Setting, x: np.ndarray, y: np.ndarray, device: str, seed: int) -> tuple[float, int]:
    """Seconds of one epoch of Fast (the epoch loop's own time) on a fresh classifier, and its number of batches."""
    protocol = get_protocol(setting.protocol)
    trainer = AdversarialTrainerFast(protocol.make_classifier(device, seed=seed), eps=protocol.eps, seed=seed)
    batches: list[int] = []
    step = trainer._train_batch

    def counted(x_batch: torch.Tensor, y_batch: torch.Tensor, eps: float) -> None:
        batches.append(len(x_batch))
        step(x_batch, y_batch, eps)

    trainer._train_batch = counted
    history = trainer.fit(x, y, batch_size=protocol.batch_size, nb_epochs=1)
    return history[-1]["seconds"], len(batches)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--samples", type=int, default=512, help="synthetic training images per setting")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--only", nargs="+", choices=[s.protocol for s in SETTINGS],
                        default=[s.protocol for s in SETTINGS], help="settings to time")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    settings = [setting for setting in SETTINGS if setting.protocol in args.only]
    data = {setting.protocol: synthetic(setting.protocol, args.samples) for setting in settings}
    for setting in settings:  # warm-up: first calls, allocator, kernels
        augmentation_seconds(data[setting.protocol][0][: 2 * setting.batch_size], setting.batch_size, device)
    milliseconds: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        # Alternate the order so that neither measurement always runs first (caches, a busy neighbour's phase).
        for setting in settings if repeat % 2 == 0 else settings[::-1]:
            x, y = data[setting.protocol]
            for kind in KINDS if repeat % 2 == 0 else KINDS[::-1]:
                if kind == "augmentation":
                    seconds, batches = augmentation_seconds(x, setting.batch_size, device)
                else:
                    seconds, batches = training_seconds(setting, x, y, args.device, repeat)
                milliseconds.setdefault((setting.protocol, kind), []).append(1000 * seconds / batches)
                print(f"  repeat {repeat + 1}/{args.repeats} {setting.protocol} {kind}: "
                      f"{milliseconds[setting.protocol, kind][-1]:.2f} ms/batch", flush=True)  # fmt: skip
    print(f"\nCropFlip(4) vs a Fast step, {args.samples} synthetic images per setting, device {args.device}, "
          f"{args.threads} threads, median of {args.repeats} epochs per measurement\n")  # fmt: skip
    print("| setting | batch | augmentation ms/batch | training ms/batch (Fast) | share of an epoch |")
    print("|---|---:|---:|---:|---:|")
    for setting in settings:
        augmentation = statistics.median(milliseconds[setting.protocol, "augmentation"])
        training = statistics.median(milliseconds[setting.protocol, "training"])
        share = 100 * augmentation / (augmentation + training)
        print(f"| {setting.label} | {setting.batch_size} | {augmentation:.3f} | {training:.1f} | {share:.2f} % |")


if __name__ == "__main__":
    main()
