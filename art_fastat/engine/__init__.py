"""
The parts of the training engine, one job each; :class:`~art_fastat.trainers.base.AdversarialTrainerBase` composes
them into ``fit`` and ``fit_generator``.

- :mod:`~art_fastat.engine.options`: pre-flight checks of every option and ``fit`` argument.
- :mod:`~art_fastat.engine.data`: device batches, seeded shuffling, per-rank shards, torch DataLoader streams.
- :mod:`~art_fastat.engine.augmentation`: on-device augmentation of the training minibatches (``CropFlip``).
- :mod:`~art_fastat.engine.step`: the forward pass (preprocessing, mixed precision), attack mode, weight update.
- :mod:`~art_fastat.engine.history`: the per-epoch records.
- :mod:`~art_fastat.engine.guards`: non-finite loss, catastrophic overfitting, early stopping.
- :mod:`~art_fastat.engine.checkpoints`: write, verify, read, capture and restore; :func:`read_model_state`.
- :mod:`~art_fastat.engine.distributed`: rank and world size, the DDP wrap, reductions.
- :mod:`~art_fastat.engine.external`: a torchattacks attack plugged in as the inner maximizer.
"""

from art_fastat.engine.checkpoints import read_checkpoint, read_model_state, write_checkpoint

__all__ = ["read_checkpoint", "read_model_state", "write_checkpoint"]
