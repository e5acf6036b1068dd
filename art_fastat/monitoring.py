"""
Live monitoring of long runs: :class:`TensorBoardLogger`, a ``fit`` / ``fit_generator`` callback that writes the
per-epoch history to TensorBoard (``art-fastat train --tensorboard DIR``). TensorBoard is an optional dependency
(``pip install tensorboard``); it is imported only when a logger is created.
"""

from __future__ import annotations

import logging
import numbers
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install tensorboard (or pip install 'art-fastat[tensorboard]')"


def _summary_writer() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(f"TensorBoard logging needs the tensorboard package: {INSTALL_HINT}") from error
    return SummaryWriter


class TensorBoardLogger:
    """
    A callback of ``fit`` / ``fit_generator`` (``callbacks=[TensorBoardLogger("runs/tb")]``) that writes every number
    of each epoch's history record as a TensorBoard scalar: the tag is the record's key (``loss``, ``accuracy``,
    ``val_pgd_accuracy``, ``lr``, ``eps``, ``seconds``, ...), the step its ``epoch``. The events are flushed after
    every epoch, so ``tensorboard --logdir DIR`` shows a running fit live. Under torch.distributed only rank 0 writes
    (the records are the same on every rank). Use one logger (one directory) per run; :meth:`close` it at the end, or
    use it as a context manager.

    :param log_dir: Directory of the event files (created at the first epoch).
    :raises ImportError: tensorboard is not installed (raised here, before any training).
    """

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.log_dir = Path(log_dir)
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise ValueError(f"log_dir {self.log_dir} is a file, not a directory")
        self._writer_class = _summary_writer()
        self._writer: Any = None

    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        """Write ``record``'s numbers at step ``record["epoch"]`` (rank 0 only)."""
        if getattr(trainer, "rank", 0) != 0:
            return
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.log_dir))
        step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self._writer.add_scalar(key, float(value), step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
