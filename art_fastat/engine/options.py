"""
Pre-flight checks of the engine: every option and ``fit`` argument is checked before anything changes (weights,
optimizer state, buffers, files, the caller's arrays), and each refusal names the argument and what was expected.
"""

from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from art_fastat._classifier import clip_bounds, clip_range
from art_fastat._validation import check_choice, check_data, check_eps, check_non_negative_float, check_positive_int
from art_fastat.engine.augmentation import resolve_augmentation
from art_fastat.engine.schedules import LR_SCHEDULES

if TYPE_CHECKING:
    from art_fastat.trainers.base import AdversarialTrainerBase

logger = logging.getLogger(__name__)

#: The keyword options every trainer takes (:class:`~art_fastat.trainers.base.AdversarialTrainerBase`).
ENGINE_OPTIONS = (
    "eps_warmup_epochs", "lr_schedule", "lr_schedule_interval", "use_amp", "amp_dtype", "seed", "validation_size",
    "validation_pgd_steps", "checkpoint_dir", "resume", "overfitting_guard", "overfitting_check_size",
    "early_stopping", "early_stopping_patience", "augmentation", "channels_last", "compile", "verbose",
)  # fmt: skip


def check_engine_options(classifier: Any, eps: Any, options: dict[str, Any]) -> dict[str, Any]:
    """
    :param classifier: The checked ``PyTorchClassifier``.
    :param eps: The trainer's ``eps`` (None: no threat model, e.g. natural training).
    :param options: Every name of :data:`ENGINE_OPTIONS` with the user's value.
    :return: The checked values, with ``eps``, a ``Path`` for ``checkpoint_dir``, the callable ``augmentation``
             (``"crop_flip"``: a :class:`~art_fastat.engine.augmentation.CropFlip`) and ``compile`` as None (eager) or
             the keyword arguments of ``torch.compile``.
    """
    if classifier.optimizer is None:
        raise ValueError("classifier must have an optimizer (PyTorchClassifier(..., optimizer=...)) to be trained")
    if not isinstance(classifier.loss, nn.CrossEntropyLoss):
        logger.warning("The classifier's loss is %s; art_fastat trains on the cross-entropy.", classifier.loss)
    checked = dict(options, eps=None if eps is None else check_eps(eps, clip_range(classifier)))
    warmup = options["eps_warmup_epochs"]
    if isinstance(warmup, str) and warmup != "auto":
        raise ValueError(f"eps_warmup_epochs must be a number >= 0 or 'auto', got {warmup!r}")
    if not isinstance(warmup, str):
        checked["eps_warmup_epochs"] = check_non_negative_float(warmup, "eps_warmup_epochs")
    schedule = options["lr_schedule"]
    if isinstance(schedule, str):
        check_choice(schedule, "lr_schedule", (*LR_SCHEDULES, "paper"))
    elif not callable(getattr(schedule, "step", None)):
        raise TypeError(f"lr_schedule must be a schedule name or an object with .step(), got {schedule!r}")
    interval = check_choice(options["lr_schedule_interval"], "lr_schedule_interval", ("step", "epoch"))
    checked.update(lr_schedule_interval=interval, use_amp=bool(options["use_amp"]))
    if options["amp_dtype"] not in (None, torch.bfloat16, torch.float16):
        raise ValueError(f"amp_dtype must be torch.bfloat16 or torch.float16, got {options['amp_dtype']}")
    checked["amp_dtype"] = options["amp_dtype"] or torch.bfloat16
    checked["seed"] = check_positive_int(options["seed"], "seed", minimum=0)
    for name in ("validation_size", "validation_pgd_steps", "overfitting_check_size"):
        checked[name] = check_positive_int(options[name], name)
    checked["checkpoint_dir"] = None if options["checkpoint_dir"] is None else Path(options["checkpoint_dir"])
    if options["resume"] and checked["checkpoint_dir"] is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")
    checked["resume"] = bool(options["resume"])
    guard = options["overfitting_guard"]
    if isinstance(guard, str):
        if guard != "auto":
            raise ValueError(f"overfitting_guard must be a fraction in (0, 1), 'auto' or None, got {guard!r}")
    elif guard is not None:
        guard = check_non_negative_float(guard, "overfitting_guard")
        if not 0 < guard < 1:
            raise ValueError(f"overfitting_guard must be a fraction in (0, 1), 'auto' or None, got {guard}")
    checked["overfitting_guard"] = guard
    checked["early_stopping"] = bool(options["early_stopping"])
    patience = options["early_stopping_patience"]
    checked["early_stopping_patience"] = (
        None if patience is None else check_positive_int(patience, "early_stopping_patience")
    )
    if (guard not in (None, "auto") or checked["early_stopping"]) and not checked["eps"]:
        raise ValueError("overfitting_guard and early_stopping watch a PGD accuracy: they need eps > 0")
    low, high = clip_bounds(classifier, torch.device("cpu"))
    checked["augmentation"] = resolve_augmentation(options["augmentation"], classifier.input_shape, low, high)
    checked.update(check_gpu_options(options["channels_last"], options["compile"], classifier.input_shape))
    checked["verbose"] = bool(options["verbose"])
    return checked


@dataclass
class FitArguments:
    """The checked arguments of one ``fit`` / ``fit_generator`` call."""

    batch_size: int
    nb_epochs: int
    validation: tuple[torch.Tensor, torch.Tensor] | None
    verbose: bool


def check_fit_arguments(
    trainer: AdversarialTrainerBase,
    caller: str,
    kwargs: dict[str, Any],
    batch_size: Any,
    nb_epochs: Any,
    validation_data: Any,
) -> FitArguments:
    """
    The arguments of ``fit`` / ``fit_generator`` beside the data, and what the trainer's options need from them.

    :param caller: ``"fit"`` or ``"fit_generator"``, named in the messages.
    :param kwargs: The call's extra keyword arguments (only ``verbose`` is accepted).
    :return: The checked arguments; the validation subset is on the trainer's device.
    """
    verbose = bool(kwargs.pop("verbose", trainer.verbose))
    if kwargs:
        raise TypeError(f"{caller} got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
    batch_size = check_positive_int(batch_size, "batch_size")
    nb_epochs = check_positive_int(nb_epochs, "nb_epochs")
    validation = None
    if validation_data is None:
        if trainer.early_stopping:
            raise ValueError(f"early_stopping=True needs validation_data=(x_val, y_val) in {caller}")
    else:
        if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
            raise ValueError(f"validation_data of {caller} must be a tuple (x_val, y_val)")
        x_val, y_val = check_data(*validation_data, trainer.classifier, "validation_data x", "validation_data y")
        subset = slice(0, trainer.validation_size)
        validation = tuple(torch.from_numpy(v[subset]).to(trainer.device) for v in (x_val, y_val))
    explicit_guard = trainer.overfitting_guard not in (None, "auto")  # "auto" warns in the epoch loop instead
    if caller == "fit_generator" and explicit_guard and validation_data is None:
        raise ValueError("overfitting_guard needs fit_generator(..., validation_data=(x_val, y_val)) to watch")
    if trainer.checkpoint_dir is not None:
        check_checkpoint_dir(trainer.checkpoint_dir, trainer.rank)
        if not trainer.resume and trainer.checkpoint_path.exists():
            logger.warning("%s: %s holds a checkpoint and resume=False: this %s starts over and overwrites it after "
                           "its first epoch", trainer.method, trainer.checkpoint_path, caller)  # fmt: skip
    return FitArguments(batch_size, nb_epochs, validation, verbose)


def check_checkpoint_dir(directory: Path, rank: int = 0) -> None:
    """
    Refuse, before training, a checkpoint directory that cannot be created or written (e.g. a file, or below one, or
    read-only), rather than after the first epoch. Nothing is left behind: the probe file is written in the directory
    or its nearest existing ancestor and removed again; the first checkpoint creates the directory.
    """
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"checkpoint_dir {directory} is a file, not a directory")
    existing = next(folder for folder in (directory, *directory.absolute().parents) if folder.exists())
    probe = existing / f".art_fastat-write-test-{rank}"
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"checkpoint_dir {directory} cannot be written: {error}") from error


def check_network(trainer: AdversarialTrainerBase, x: np.ndarray | torch.Tensor) -> None:
    """
    One forward pass of one sample in eval mode, without gradients and unseen by the network's hooks (it is not a
    training pass): refuses a network that cannot take the data (e.g. float64 parameters for float32 inputs) or whose
    output is not ``nb_classes`` logits, before anything changes.

    :param x: At least one checked input (a numpy array, or a tensor of a ``DataLoader`` batch).
    """
    network, nb_classes = trainer.network, trainer.classifier.nb_classes
    modules = list(network.modules())
    saved = [(m, m.training, m._forward_hooks, m._forward_pre_hooks) for m in modules]
    try:
        for module in modules:
            module.training, module._forward_hooks, module._forward_pre_hooks = False, OrderedDict(), OrderedDict()
        with torch.no_grad():
            sample = x[:1] if isinstance(x, torch.Tensor) else torch.from_numpy(x[:1])
            logits = trainer.model(sample.to(trainer.device, torch.float32))
    except RuntimeError as error:
        dtypes = sorted({str(p.dtype) for p in network.parameters()})
        raise ValueError(
            f"classifier.model cannot take the data (float32 of shape {tuple(x.shape[1:])}; its parameters are "
            f"{', '.join(dtypes)}): {error}"
        ) from error
    finally:
        for module, training, hooks, pre_hooks in saved:
            module.training, module._forward_hooks, module._forward_pre_hooks = training, hooks, pre_hooks
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (1, nb_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"classifier.model must return nb_classes={nb_classes} logits per sample, got {shape}")
    if not logits.is_floating_point():
        raise ValueError(f"classifier.model must return floating-point logits, got {logits.dtype}")


def check_plan(trainer: AdversarialTrainerBase, data_epochs: int, steps_per_epoch: int) -> float:
    """
    Before training: refuse a learning-rate scheduler object that would run out of steps mid-run, and warn (WARNING)
    when the eps warm-up is longer than the epochs it applies to, so eps never reaches the value asked for. A method
    adds its own refusals in ``_adversarial_epochs`` (DAT: a switch after the last epoch).

    :param data_epochs: Passes over the data this ``fit`` runs.
    :param steps_per_epoch: Minibatches per pass.
    :return: The epochs the eps warm-up applies to (what ``eps_warmup_epochs="auto"`` takes its share of).
    """
    adversarial_epochs = trainer._adversarial_epochs()
    warmup = trainer.eps_warmup_epochs
    if trainer.eps and warmup != "auto" and warmup > adversarial_epochs:
        logger.warning(
            "%s: eps_warmup_epochs=%g is longer than the %g epoch(s) it applies to: eps only reaches %.4g of the "
            "eps=%g asked for", trainer.method, warmup, adversarial_epochs, trainer.eps * adversarial_epochs / warmup,
            trainer.eps,
        )  # fmt: skip
    total_steps = getattr(trainer.lr_schedule, "total_steps", None)
    if isinstance(total_steps, int):
        per_epoch = steps_per_epoch * trainer.updates_per_batch if trainer.lr_schedule_interval == "step" else 1
        needed = data_epochs * per_epoch
        if needed > total_steps:
            raise ValueError(
                f"lr_schedule {type(trainer.lr_schedule).__name__} has total_steps={total_steps}, fewer than the "
                f"{needed} steps this fit takes ({data_epochs} epochs x {per_epoch}, lr_schedule_interval="
                f"{trainer.lr_schedule_interval!r})"
            )
    return adversarial_epochs


def check_gpu_options(channels_last: Any, compile: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """
    :param channels_last: ``True`` or ``False``; True needs an ``input_shape`` ``(channels, height, width)``.
    :param compile: ``False``, ``True`` or a dict of keyword arguments of ``torch.compile`` (e.g.
                    ``{"mode": "max-autotune"}``; ``model`` excluded).
    :param input_shape: The classifier's input shape.
    :return: ``channels_last`` as a bool and ``compile`` as None (eager) or the dict of ``torch.compile`` arguments.
    """
    if not isinstance(channels_last, bool | np.bool_):
        raise TypeError(f"channels_last must be True or False, got {channels_last!r}")
    if channels_last and len(input_shape) != 3:
        raise ValueError(f"channels_last=True needs images of input_shape (channels, height, width); the classifier's "
                         f"input_shape is {tuple(input_shape)}")  # fmt: skip
    if isinstance(compile, bool | np.bool_):
        return {"channels_last": bool(channels_last), "compile": {} if compile else None}
    if not isinstance(compile, dict):
        raise TypeError(f"compile must be True, False or a dict of torch.compile keyword arguments, got {compile!r}")
    accepted = set(inspect.signature(torch.compile).parameters) - {"model"}
    unknown = sorted(str(key) for key in compile if key not in accepted)
    if unknown:
        raise ValueError(f"compile has keys torch.compile does not take: {', '.join(unknown)} (it takes "
                         f"{', '.join(sorted(accepted))})")  # fmt: skip
    return {"channels_last": bool(channels_last), "compile": dict(compile)}
