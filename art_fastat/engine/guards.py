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


#: The drop ``overfitting_guard="auto"`` tolerates for a single-step method (Wong et al. 2020's 20% of PGD accuracy).
AUTO_OVERFITTING_GUARD = 0.2


class Guards:
    """
    :param method: The method's name, for messages.
    :param overfitting_guard: Largest tolerated drop of the watched PGD accuracy below the best epoch's, or None (the
                              trainer sets it for every ``fit``, with ``"auto"`` resolved).
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
        #: How the guard was set, for its messages (e.g. "overfitting_guard='auto', on for single-step methods").
        self.setting = f"overfitting_guard={overfitting_guard}"
        self.reset()

    def reset(self) -> None:
        """Forget the previous ``fit``."""
        #: Why training stopped early ("catastrophic_overfitting", "early_stopping", "callback": set by the trainer
        #: when a fit callback asks to stop) or None.
        self.stop_reason: str | None = None
        self.state: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (the best epochs' snapshots included)."""
        return {**self.state, "stop_reason": self.stop_reason}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        state = dict(state)
        self.stop_reason = state.pop("stop_reason")
        self.state = state

    @property
    def restored_epoch(self) -> int | None:
        """The epoch (1-based) whose weights the overfitting guard restored in this ``fit``, or None."""
        return self.state.get("restored_epoch")

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
        self, record: dict[str, Any], check: Callable[[], dict[str, float]] | None, chance: float = 0.0
    ) -> None:
        """
        The overfitting guard and early stopping; each reports in ``record`` and the log.

        The overfitting guard compares the watched PGD accuracy with the best of the earlier epochs of this ``fit``
        (a copy of that epoch's weights and optimizer state is kept): a fall of more than ``overfitting_guard``
        below it restores that epoch and stops training. Against the best rather than the previous epoch, a collapse
        spread over several epochs is caught as well as one within an epoch. An epoch whose clean accuracy on the
        watched set is no better than ``chance`` has learned nothing (a constant prediction is "robust" on the
        samples of its class) and is never the best; one whose best epoch had learned (a clean accuracy at least
        halfway from ``chance`` to 1) is a collapse (a diverging run, e.g. GradAlign at P1's peak learning rate): the
        best epoch is restored and training stops (``stop_reason="collapse"``).

        :param check: Measures ``val_accuracy`` and ``val_pgd_accuracy`` of the watched set when the record has no
                      validation ones (None: the guard has nothing to watch).
        :param chance: The watched set's share of its most frequent label: a constant prediction's accuracy.
        """
        epoch = record["epoch"]
        if self.overfitting_guard is not None and check is not None:
            metrics = record if "val_pgd_accuracy" in record else check()
            robust = metrics["val_pgd_accuracy"]
            record["guard_pgd_accuracy"] = robust
            best = self.state.get("guard_best_accuracy")
            learned = metrics["val_accuracy"] > chance
            # a model that had learned (its best epoch at least halfway from chance to 1) and now predicts one class:
            # its "robust" accuracy is that class's share; one still near chance only fluctuates around it
            collapsed = not learned and self.state.get("guard_best_clean", 0.0) >= (1.0 + chance) / 2
            if best is not None and (best - robust > self.overfitting_guard or collapsed):
                best_epoch = int(self.state["guard_best_epoch"])
                self.restore(self.state["guard_best"])
                self.stop_reason = "collapse" if collapsed else "catastrophic_overfitting"
                self.state["restored_epoch"] = best_epoch
                record.update(overfitting_stop=1.0, restored_epoch=best_epoch)
                if collapsed:
                    logger.warning(
                        "%s: collapse in epoch %d: clean accuracy %.4f on the watched set, no better than always "
                        "predicting its most frequent label (%.4f) (%s): the weights of epoch %d (PGD accuracy %.4f) "
                        "were restored and training stopped", self.method, epoch, metrics["val_accuracy"], chance,
                        self.setting, best_epoch, best,
                    )  # fmt: skip
                    return
                logger.warning(
                    "%s: catastrophic overfitting in epoch %d: PGD accuracy %.4f, more than %.2f below the %.4f of "
                    "epoch %d (%s): the weights of epoch %d were restored and training stopped",
                    self.method, epoch, robust, self.overfitting_guard, best, best_epoch, self.setting, best_epoch,
                )  # fmt: skip
                return
            self.state.update(guard_chance=chance, guard_epochs=self.state.get("guard_epochs", 0) + 1)
            if learned and (best is None or robust >= best):  # on a tie the later, longer-trained epoch
                self.state.update(guard_best=self.take_snapshot(), guard_best_accuracy=robust, guard_best_epoch=epoch,
                                  guard_best_clean=metrics["val_accuracy"])  # fmt: skip
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
        """
        At the end of ``fit``: with early stopping, restore the best epoch and return it (1-based); else the epoch the
        overfitting guard restored, or None (the weights are the last epoch's). Warns when the overfitting guard found
        no epoch that learned anything.
        """
        if self.state.get("guard_epochs") and "guard_best" not in self.state:
            logger.warning(
                "%s: in %d epoch(s) the clean accuracy on the set the overfitting guard watches never rose above "
                "%.4f, what always predicting its most frequent label scores: the model learned nothing (an eps too "
                "large to start from? see eps_warmup_epochs)", self.method, self.state["guard_epochs"],
                self.state["guard_chance"],
            )  # fmt: skip
        if not self.early_stopping or "best" not in self.state:
            return self.restored_epoch
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
