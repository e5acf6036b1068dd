"""The per-epoch history: running totals that a method records into, reduced to one record per epoch."""

from __future__ import annotations

import torch

from art_fastat.engine.distributed import ProcessSetup


class EpochTotals:
    """
    Sums of per-sample quantities over an epoch (tensors stay on the device until the epoch ends, so recording never
    synchronises). A method records ``(total over n samples, n)``; the epoch's record holds ``total / n`` per name.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor | float] = {}
        self.weights: dict[str, float] = {}

    def record(self, name: str, total: torch.Tensor | float, weight: float) -> None:
        """Add ``total`` (a sum over ``weight`` samples) to the epoch mean reported as ``name``."""
        self.sums[name] = self.sums.get(name, 0.0) + total
        self.weights[name] = self.weights.get(name, 0.0) + weight

    def clear(self) -> None:
        """Start a new epoch."""
        self.sums, self.weights = {}, {}

    def means(self, process: ProcessSetup, device: torch.device) -> dict[str, float]:
        """The epoch means, summed over the ranks first (every rank records the same names) so all ranks agree."""
        names = sorted(self.sums)
        totals = process.sum(
            [float(self.sums[name]) for name in names] + [self.weights[name] for name in names], device
        )
        means = {name: totals[index] / totals[len(names) + index] for index, name in enumerate(names)}
        return {name: means[name] for name in self.sums}  # in the order they were first recorded


def format_record(record: dict[str, float]) -> str:
    """One epoch's record for the log."""
    return ", ".join(f"{key}={value:.4g}" for key, value in record.items() if key != "epoch")
