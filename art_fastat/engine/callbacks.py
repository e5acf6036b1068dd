"""
Per-epoch callbacks of ``fit`` / ``fit_generator``: live monitoring (e.g.
:class:`~art_fastat.monitoring.TensorBoardLogger`) and stops decided by the user's code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from art_fastat.trainers.base import AdversarialTrainerBase

#: ``callback(trainer, record)``: called after every epoch; returning True stops training after that epoch.
Callback = Callable[[Any, dict[str, Any]], Any]


def check_callbacks(callbacks: Any, caller: str = "fit") -> tuple[Callback, ...]:
    """
    :param callbacks: None, one callable ``(trainer, record)`` or an iterable of them.
    :param caller: ``"fit"`` or ``"fit_generator"``, named in the message.
    :return: The callbacks as a tuple.
    :raises TypeError: Anything else.
    """
    if callbacks is None:
        return ()
    if callable(callbacks):
        return (callbacks,)
    if isinstance(callbacks, str | bytes) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks of {caller} must be a callable (trainer, record) or a list of them, got "
                        f"{type(callbacks).__name__}")  # fmt: skip
    callbacks = tuple(callbacks)
    for callback in callbacks:
        if not callable(callback):
            raise TypeError(f"callbacks of {caller} must be callables (trainer, record), got {callback!r} in the list")
    return callbacks


def run_callbacks(trainer: AdversarialTrainerBase, callbacks: tuple[Callback, ...], record: dict[str, Any]) -> bool:
    """
    Call every callback with the epoch's record (all of them, also after one asked to stop).

    :return: Whether one of them returned True, on any rank (the ranks then stop together).
    """
    stop = False
    for callback in callbacks:
        answer = callback(trainer, record)
        stop |= isinstance(answer, bool | np.bool_) and bool(answer)
    if trainer.process.distributed:
        stop = trainer.process.sum([float(stop)], trainer.device)[0] > 0
    return stop
