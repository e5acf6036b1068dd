"""
Guards that watch training after every epoch and restore earlier weights when it goes wrong: a non-finite loss, the
catastrophic-overfitting guard (Wong et al. 2020) and validation early stopping (Rice et al. 2020).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


def snapshot(network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Copies of the weights and the optimizer state (what the guards restore)."""
    return {
        "model": {name: value.detach().clone() for name, value in network.state_dict().items()},
        "optimizer": _clone(optimizer.state_dict()),
    }


def load_snapshot(network: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Put a :func:`snapshot` back."""
    network.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])


class Guards:
    """
    :param method: The method's name, for messages.
    :param overfitting_guard: Largest tolerated drop of the watched PGD accuracy from one epoch to the next, or None.
    :param early_stopping: Keep the weights of the best validation PGD accuracy.
    :param patience: Stop after this many epochs without a better one (None: never).
    :param restore: Puts a :func:`snapshot` back into the trainer.
    :param take_snapshot: Takes one.
    """

    def __init__(
        self,
        method: str,
        overfitting_guard: float | None,
        early_stopping: bool,
        patience: int | None,
        take_snapshot: Callable[[], dict[str, Any]],
        restore: Callable[[dict[str, Any]], None],
    ) -> None:
        self.method, self.overfitting_guard = method, overfitting_guard
        self.early_stopping, self.patience = early_stopping, patience
        self.take_snapshot, self.restore = take_snapshot, restore
        self.reset()

    def reset(self) -> None:
        """Forget the previous ``fit``."""
        #: Why training stopped early ("catastrophic_overfitting", "early_stopping", "callback": set by the trainer
        #: when a fit callback asks to stop) or None.
        self.stop_reason: str | None = None
        self.state: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (the best epoch's snapshot included)."""
        return {**self.state, "stop_reason": self.stop_reason}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        state = dict(state)
        self.stop_reason = state.pop("stop_reason")
        self.state = state

    def check_finite(self, record: dict[str, Any], last_good: dict[str, Any]) -> None:
        """Restore the end of the previous epoch and raise if the epoch's loss is not finite."""
        if not np.isfinite(record.get("loss", 0.0)):
            self.restore(last_good)
            epoch = record["epoch"]
            raise FloatingPointError(
                f"{self.method}: the training loss became non-finite in epoch {epoch}; the weights and optimizer "
                f"state of the end of epoch {epoch - 1} were restored"
            )

    def after_epoch(
        self, record: dict[str, Any], last_good: dict[str, Any], robust_accuracy: Callable[[], float] | None
    ) -> None:
        """
        The overfitting guard and early stopping; each reports in ``record`` and the log.

        :param robust_accuracy: Measures the watched PGD accuracy when the record has no validation one (None: the
                                guard has nothing to watch).
        """
        epoch = record["epoch"]
        if self.overfitting_guard is not None and robust_accuracy is not None:
            robust = record["val_pgd_accuracy"] if "val_pgd_accuracy" in record else robust_accuracy()
            record["guard_pgd_accuracy"] = robust
            previous = self.state.get("guard_accuracy")
            if previous is not None and previous - robust > self.overfitting_guard:
                self.restore(last_good)
                self.stop_reason = "catastrophic_overfitting"
                record["overfitting_stop"] = 1.0
                logger.warning(
                    "%s: catastrophic overfitting in epoch %d (PGD accuracy %.4f -> %.4f, a drop over %.2f): the "
                    "weights of epoch %d were restored and training stopped",
                    self.method, epoch, previous, robust, self.overfitting_guard, epoch - 1,
                )  # fmt: skip
                return
            self.state["guard_accuracy"] = robust
        if self.early_stopping:
            accuracy = record["val_pgd_accuracy"]
            if "best" not in self.state or accuracy > self.state["best_accuracy"]:
                self.state.update(best=self.take_snapshot(), best_accuracy=accuracy, best_epoch=epoch)
            record["best_epoch"] = self.state["best_epoch"]
            if self.patience is not None and epoch - self.state["best_epoch"] >= self.patience:
                self.stop_reason = "early_stopping"
                record["early_stop"] = 1.0
                logger.warning("%s: no better validation PGD accuracy for %d epochs: stopping after epoch %d",
                               self.method, self.patience, epoch)  # fmt: skip

    def finish(self) -> int | None:
        """At the end of ``fit``: with early stopping, restore the best epoch and return it (1-based)."""
        if not self.early_stopping or "best" not in self.state:
            return None
        self.restore(self.state["best"])
        best_epoch = int(self.state["best_epoch"])
        logger.info("%s: early stopping kept the weights of epoch %d (validation PGD accuracy %.4f)",
                    self.method, best_epoch, self.state["best_accuracy"])  # fmt: skip
        return best_epoch


def _clone(value: Any) -> Any:
    """A deep copy of a state dict's tensors (plain values are shared: they are not modified in place)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clone(item) for item in value)
    return value
