"""
The training engine that every method of art_fastat runs on.

:class:`AdversarialTrainerBase` is an ART :class:`~art.defences.trainer.Trainer`: it takes a ``PyTorchClassifier``
and trains it in place from numpy arrays (``fit``) or an ART ``DataGenerator`` (``fit_generator``). It owns
everything that is not a method's own mathematics: validation of inputs, batching on the classifier's device,
preprocessing, mixed precision, learning-rate and eps schedules, model modes, the per-epoch history, validation,
checkpoints and resume. A method subclasses it and implements :meth:`_train_batch` with the engine's helpers
:meth:`_forward`, :meth:`_attack_context`, :meth:`_update` and :meth:`_optimize`.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from art.defences.trainer import Trainer
from torch import nn
from tqdm.auto import tqdm

from art_fastat._classifier import InputSpaceModel, check_classifier, clip_bounds, clip_range, input_space_model
from art_fastat._validation import (
    check_choice,
    check_data,
    check_eps,
    check_non_negative_float,
    check_positive_int,
)
from art_fastat.evaluation.validation import VALIDATION_PGD_STEPS, VALIDATION_SIZE, validation_metrics
from art_fastat.perturbation import pgd
from art_fastat.trainers.schedules import LR_SCHEDULES, lr_multiplier, warmed_up_eps

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "art_fastat.checkpoint/2"
#: PGD steps of the catastrophic-overfitting guard's own check (Wong et al. 2020's check: PGD-5 on a training batch).
OVERFITTING_CHECK_STEPS = 5
#: First bytes of a checkpoint file, before the payload's SHA-256 digest.
DIGEST_HEADER = b"art_fastat-checkpoint sha256 "
CHECKPOINT_NAME = "checkpoint.pt"


class AdversarialTrainerBase(Trainer, abc.ABC):
    """
    Base class of every art_fastat trainer (the engine). Subclasses implement :meth:`_train_batch` only.

    Decisions the engine takes for every method:

    - Attacks work in input space, inside ``clip_values``; the classifier's ``preprocessing=(mean, std)`` is applied
      differentiably inside the forward pass, so a normalised classifier trains exactly like an un-normalised
      network that standardises internally.
    - Weight updates run in train mode (BatchNorm statistics update). The attack passes run in the mode named by the
      method's ``attack_mode``: ``"train"`` (default; the attack maximises the very loss that is then minimised, as
      in locuslab/fast_adversarial, and BatchNorm running statistics are frozen during the attack so only the
      update pass moves them) or ``"eval"``.
    - The data are moved to the classifier's device once per ``fit`` and shuffled there with the trainer's own
      seeded generator, which also draws every random start: two runs with the same ``seed`` are identical on CPU.
    - Losses are the cross-entropy on the network's logits, as in every paper implemented here, whatever loss the
      classifier was built with.
    """

    #: Short name used by the CLI, the history and checkpoints.
    method: ClassVar[str] = "base"
    #: Mode of the network during attack passes: "train" or "eval" (see the class docstring).
    attack_mode: ClassVar[str] = "train"
    #: The schedule ``lr_schedule="paper"`` selects.
    paper_lr_schedule: ClassVar[str] = "constant"

    def __init__(
        self,
        classifier: Any,
        eps: float | None = None,
        *,
        eps_warmup_epochs: float = 0.0,
        lr_schedule: str | Any = "constant",
        lr_schedule_interval: str = "step",
        use_amp: bool = False,
        amp_dtype: torch.dtype | None = None,
        seed: int = 0,
        validation_size: int = VALIDATION_SIZE,
        validation_pgd_steps: int = VALIDATION_PGD_STEPS,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
        overfitting_guard: float | None = None,
        overfitting_check_size: int = 32,
        early_stopping: bool = False,
        early_stopping_patience: int | None = None,
        verbose: bool = False,
    ) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place; its optimizer is used.
        :param eps: L-inf radius of the threat model, inside the width of ``clip_values``.
        :param eps_warmup_epochs: Ramp eps linearly per iteration from 0 over this many epochs (step sizes scale with
                                  it); 0 disables the ramp.
        :param lr_schedule: ``"constant"`` (keep the optimizer's learning rate), a name from
                            :data:`~art_fastat.trainers.schedules.LR_SCHEDULES` (the optimizer's learning rate is the
                            peak), ``"paper"`` (the method's paper schedule) or any scheduler object with ``.step()``
                            built on the classifier's optimizer (e.g. ``torch.optim.lr_scheduler.OneCycleLR``).
        :param lr_schedule_interval: When a scheduler object is stepped: ``"step"`` (every weight update) or
                                     ``"epoch"``.
        :param use_amp: Mixed precision through ``torch.amp`` autocast (bf16 by default; fp16 with a gradient scaler).
        :param amp_dtype: ``torch.bfloat16`` or ``torch.float16``.
        :param seed: Seed of the trainer's generator (shuffling and random starts).
        :param validation_size: Number of validation samples (the first ones) used each epoch when ``fit`` gets
                                ``validation_data``.
        :param validation_pgd_steps: PGD steps (step eps/4, random start, full eps) of the per-epoch validation.
        :param checkpoint_dir: If given, model, optimizer, schedule, random state, history and method state are written
                               there atomically after every epoch.
        :param resume: Continue from the checkpoint in ``checkpoint_dir`` if one exists.
        :param overfitting_guard: Catastrophic-overfitting guard (Wong et al. 2020): after every epoch the PGD accuracy
                                  of a fixed set (the validation subset when ``fit`` gets ``validation_data``, else
                                  the first ``overfitting_check_size`` training samples with PGD-5, step eps/4, as
                                  Wong et al.'s check) is compared with the previous epoch's; if it
                                  fell by more than this fraction (e.g. 0.2), the previous epoch's weights and optimizer
                                  state are restored and training stops. None disables it.
        :param overfitting_check_size: Training samples the guard checks when there is no validation data.
        :param early_stopping: Validation early stopping (Rice et al. 2020): keep the weights of the epoch with the best
                               validation PGD accuracy and restore them when ``fit`` ends. Needs ``validation_data``.
        :param early_stopping_patience: Also stop after this many epochs without a better validation PGD accuracy
                                        (None: run every epoch).
        :param verbose: Show a tqdm progress bar.
        """
        check_classifier(classifier)
        super().__init__(classifier)
        if classifier.optimizer is None:
            raise ValueError("classifier must have an optimizer (PyTorchClassifier(..., optimizer=...)) to be trained")
        if not isinstance(classifier.loss, nn.CrossEntropyLoss):
            logger.warning("The classifier's loss is %s; art_fastat trains on the cross-entropy.", classifier.loss)
        self.eps = None if eps is None else check_eps(eps, clip_range(classifier))
        self.eps_warmup_epochs = check_non_negative_float(eps_warmup_epochs, "eps_warmup_epochs")
        if isinstance(lr_schedule, str):
            if lr_schedule != "paper":
                check_choice(lr_schedule, "lr_schedule", (*LR_SCHEDULES, "paper"))
        elif not callable(getattr(lr_schedule, "step", None)):
            raise TypeError(f"lr_schedule must be a schedule name or an object with .step(), got {lr_schedule!r}")
        self.lr_schedule = self.paper_lr_schedule if lr_schedule == "paper" else lr_schedule
        self.lr_schedule_interval = check_choice(lr_schedule_interval, "lr_schedule_interval", ("step", "epoch"))
        self.use_amp = bool(use_amp)
        if amp_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"amp_dtype must be torch.bfloat16 or torch.float16, got {amp_dtype}")
        self.amp_dtype = amp_dtype or torch.bfloat16
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.validation_size = check_positive_int(validation_size, "validation_size")
        self.validation_pgd_steps = check_positive_int(validation_pgd_steps, "validation_pgd_steps")
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        if resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir to resume from")
        self.resume = bool(resume)
        if overfitting_guard is not None:
            overfitting_guard = check_non_negative_float(overfitting_guard, "overfitting_guard")
            if not 0 < overfitting_guard < 1:
                raise ValueError(f"overfitting_guard must be a fraction in (0, 1) or None, got {overfitting_guard}")
        self.overfitting_guard = overfitting_guard
        self.overfitting_check_size = check_positive_int(overfitting_check_size, "overfitting_check_size")
        self.early_stopping = bool(early_stopping)
        self.early_stopping_patience = (
            None
            if early_stopping_patience is None
            else check_positive_int(early_stopping_patience, "early_stopping_patience")
        )
        if (self.overfitting_guard is not None or self.early_stopping) and not self.eps:
            raise ValueError("overfitting_guard and early_stopping watch a PGD accuracy: they need eps > 0")
        self.verbose = bool(verbose)
        #: Why the last ``fit`` stopped early ("catastrophic_overfitting", "early_stopping") or None.
        self.stop_reason: str | None = None
        #: The epoch whose weights early stopping kept (1-based), or None.
        self.best_epoch: int | None = None
        self._guard_state: dict[str, Any] = {}

        self.device = classifier.device
        self.network: nn.Module = classifier.model
        self.model = input_space_model(classifier)
        self.optimizer: torch.optim.Optimizer = classifier.optimizer
        self.low, self.high = clip_bounds(classifier, self.device)
        self.rank, self.world_size = distributed_rank_and_size()
        #: Draws every random start (per rank under torch.distributed: seeded with ``seed + rank``).
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed + self.rank)
        #: Shuffles the data: the trainer's generator in one process; under torch.distributed one of its own, seeded
        #: alike on every rank, so that all ranks cut the same permutation into their shards.
        self.shuffle_generator = self.generator
        #: Factor of this rank's update losses: its share of the global minibatch times the world size (1 in one
        #: process), so that DDP's gradient average is the gradient of the global minibatch's mean loss.
        self._loss_weight = 1.0
        if self.world_size > 1:
            self.shuffle_generator = torch.Generator(device=self.device)
            self.shuffle_generator.manual_seed(self.seed)
            self._wrap_for_distributed()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.history: list[dict[str, float]] = []
        self._batch_norms = [m for m in self.network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self._peak_lrs: list[float] | None = None
        self._progress = 0.0
        self._nb_epochs = 1
        self._sums: dict[str, torch.Tensor] = {}
        self._weights: dict[str, float] = {}

    # ------------------------------------------------------------------ what a method provides

    @abc.abstractmethod
    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        """
        Train on one minibatch: build the adversarial input and call :meth:`_update` (or :meth:`_optimize`).

        :param x: Clean inputs on the classifier's device.
        :param y: Integer labels.
        :param eps: The radius to use now (the warm-up schedule applied to ``self.eps``).
        """

    @property
    def passes_per_batch(self) -> float:
        """Forward+backward passes per minibatch that the method's algorithm implies (cost accounting)."""
        return 1.0

    @property
    def replays(self) -> int:
        """
        What one minibatch counts for in ``nb_epochs`` (Free: its ``m`` replays; ATCD: its ``T K`` trajectory steps).
        For a replaying method ``fit`` runs ``ceil(nb_epochs / replays)`` passes over the data, and schedules and
        warm-up progress in these units.
        """
        return 1

    def _method_state(self) -> dict[str, Any]:
        """State a method keeps across batches, saved in checkpoints (tensors, numbers, strings, containers)."""
        return {}

    def _load_method_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_method_state` returned."""

    def _end_epoch(self, record: dict[str, Any]) -> None:
        """Called after every epoch with its history record, which a method may extend."""

    def _begin_fit(self, x: torch.Tensor) -> None:
        """Called once per fresh (not resumed) ``fit`` with its first batch, before training on it (e.g. to size a
        buffer)."""

    # ------------------------------------------------------------------ torch.distributed

    def _wrap_for_distributed(self) -> None:
        """
        Route every forward pass through ``DistributedDataParallel`` (which also makes all ranks start from rank 0's
        weights). Attack passes differentiate with respect to the inputs only, so DDP's gradient hooks do not fire
        for them; the update's backward averages the weight gradients across ranks.
        """
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device] if self.device.type == "cuda" else None
        self._ddp = DistributedDataParallel(self.network, device_ids=device_ids)
        if isinstance(self.model, InputSpaceModel):
            self.model = InputSpaceModel(self._ddp, self.model.mean, self.model.std)
        else:
            self.model = self._ddp

    def _shard(self, order: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        """
        This rank's indices of each global minibatch (``batch_size`` per rank, ``world_size * batch_size`` in all):
        every index of ``order`` goes to exactly one rank once. A global minibatch is split as evenly as possible; a
        last one smaller than the world size is merged into the one before, so every rank has samples in every step.
        Sets the loss weight of each step (see ``_loss_weight``).
        """
        global_size = batch_size * self.world_size
        starts = list(range(0, len(order), global_size))
        if len(starts) > 1 and len(order) - starts[-1] < self.world_size:
            starts.pop()
        for index, start in enumerate(starts):
            end = starts[index + 1] if index + 1 < len(starts) else len(order)
            pieces = torch.tensor_split(order[start:end], self.world_size)
            self._loss_weight = len(pieces[self.rank]) * self.world_size / (end - start)
            yield pieces[self.rank]

    def _global_batches(self, n: int, batch_size: int) -> int:
        """Number of steps per epoch of :meth:`_shard`."""
        global_size = batch_size * self.world_size
        steps = -(-n // global_size)
        return steps - 1 if steps > 1 and n - (steps - 1) * global_size < self.world_size else steps

    def _all_reduce_gradients(self, parameters: Any) -> None:
        """Average the gradients of parameters outside the DDP model (L2L's RNN) across ranks, weighted like DDP's."""
        if self.world_size == 1:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                parameter.grad.mul_(self._loss_weight / self.world_size)
                dist.all_reduce(parameter.grad)

    def _reduce_epoch_sums(self) -> None:
        """Sum the history's per-epoch totals over the ranks (every rank records the same names)."""
        if self.world_size == 1:
            return
        names = sorted(self._sums)
        totals = torch.tensor([float(self._sums[name]) for name in names] + [self._weights[name] for name in names],
                              dtype=torch.float64, device=self.device)  # fmt: skip
        dist.all_reduce(totals)
        for index, name in enumerate(names):
            self._sums[name], self._weights[name] = float(totals[index]), float(totals[len(names) + index])

    # ------------------------------------------------------------------ helpers for methods

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context of the trainer's mixed precision (a no-op without ``use_amp``)."""
        if not self.use_amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of input-space images, with preprocessing and mixed precision applied."""
        with self._autocast():
            return self.model(x)

    @property
    def _attack_loss_scale(self) -> float:
        """Factor for attack losses so fp16 input gradients do not underflow (signs are unaffected)."""
        return float(self.scaler.get_scale()) if self.scaler.is_enabled() else 1.0

    def _step_size(self, alpha: float, eps: float) -> float:
        """A step size given for the full eps, scaled with the warm-up (alpha * eps_now / eps)."""
        return alpha * eps / self.eps if self.eps else alpha

    @contextlib.contextmanager
    def _attack_context(self) -> Iterator[None]:
        """Put the network in the mode of the attack pass (see ``attack_mode``) and back into train mode after."""
        if self.attack_mode == "eval":
            self.network.eval()
            try:
                yield
            finally:
                self.network.train()
            return
        saved = [
            (bn, bn.momentum, bn.num_batches_tracked.clone()) for bn in self._batch_norms if bn.track_running_stats
        ]
        for bn, _, _ in saved:
            bn.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: statistics frozen
        try:
            yield
        finally:
            for bn, momentum, tracked in saved:
                bn.momentum = momentum
                bn.num_batches_tracked.copy_(tracked)

    def _pgd(self, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, random_start: bool) -> Any:
        """PGD of :func:`art_fastat.perturbation.pgd` on this trainer's model, range and generator."""
        with self._attack_context():
            return pgd(
                self._forward,
                x,
                y,
                eps,
                alpha,
                steps,
                self.low,
                self.high,
                random_start,
                self.generator,
                self._attack_loss_scale,
            )

    def _update(self, x_input: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """
        One weight update on ``CE(f(x_input), y)``. If ``x_input`` depends on a leaf that requires grad (Free's
        persistent delta), that leaf's ``.grad`` is filled by the same backward pass.

        :return: The logits of the update's forward pass (detached).
        """
        logits = self._forward(x_input)
        loss = F.cross_entropy(logits.float(), y)
        self._optimize(loss, logits, y)
        return logits.detach()

    def _optimize(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """
        Backward on ``loss``, an optimizer step and the per-step schedule; records loss and accuracy for the history.

        :param loss: Batch-mean training loss, built in train mode.
        :param logits: Logits whose accuracy is reported (those of the adversarial inputs).
        :param y: Labels.
        """
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * self._loss_weight if self.world_size > 1 else loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if not isinstance(self.lr_schedule, str) and self.lr_schedule_interval == "step":
            self.lr_schedule.step()
        n = len(y)
        self._record("loss", loss.detach() * n, n)
        self._record("accuracy", (logits.detach().argmax(1) == y).sum(), n)

    def _record(self, name: str, total: torch.Tensor | float, weight: float) -> None:
        """Add ``total`` (a sum over ``weight`` samples) to the epoch mean reported as ``name`` in the history."""
        self._sums[name] = self._sums.get(name, 0.0) + total
        self._weights[name] = self._weights.get(name, 0.0) + weight

    def _check_attack(self, attack: Any) -> Any:
        """
        Accept a torchattacks attack as a pluggable inner maximizer. It receives and returns input-space images. It
        must be built on the classifier's model: directly when the classifier has no preprocessing, or on the module
        of :func:`art_fastat.input_space_model` (or with ``set_normalization_used(mean, std)``) when it has.
        """
        import torchattacks

        if not isinstance(attack, torchattacks.attack.Attack):
            raise TypeError(f"attack must be a torchattacks.Attack, got {type(attack).__name__}")
        model = attack.model
        if model is not self.network and getattr(model, "model", None) is not self.network:
            raise ValueError("attack must be built on classifier.model (or art_fastat.input_space_model(classifier))")
        if model is self.network and self.model is not self.network and not attack._normalization_applied:
            raise ValueError(
                "attack is built on classifier.model but the classifier standardises its inputs: build it on "
                "art_fastat.input_space_model(classifier) or call attack.set_normalization_used(mean, std)"
            )
        if self.eps_warmup_epochs > 0:
            raise ValueError("eps_warmup_epochs must be 0 with an external attack: its eps is its own and fixed")
        return attack

    def _run_attack(self, attack: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Run a checked torchattacks attack on input-space images; returns the perturbation."""
        if attack.model is self.network and attack._normalization_applied:
            mean, std = self.model.mean, self.model.std
            return attack((x - mean) / std, y) * std + mean - x
        return attack(x, y) - x

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        batch_size: int = 128,
        nb_epochs: int = 20,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        """
        Train the classifier in place.

        :param x: Training inputs, shape ``(n,) + input_shape``, inside ``clip_values``. Never modified.
        :param y: Integer labels ``(n,)`` or one-hot labels ``(n, nb_classes)``.
        :param validation_data: Optional ``(x_val, y_val)``: clean and PGD accuracy on its first ``validation_size``
                                samples are added to the history each epoch.
        :param batch_size: Minibatch size.
        :param nb_epochs: Number of epochs (passes over ``x``).
        :param kwargs: ``verbose`` overrides the constructor's value.
        :return: The per-epoch history (also kept in ``self.history``).
        """
        verbose = self._pop_verbose(kwargs)
        x, labels = check_data(x, y, self._classifier)
        batch_size = check_positive_int(batch_size, "batch_size")
        nb_epochs = check_positive_int(nb_epochs, "nb_epochs")
        validation = self._prepare_validation(validation_data)
        x_all = torch.from_numpy(x).to(self.device)
        y_all = torch.from_numpy(labels).to(self.device)
        if len(x_all) < self.world_size:
            raise ValueError(f"x must hold at least one sample per rank: {len(x_all)} < world size {self.world_size}")
        n_batches = self._global_batches(len(x_all), batch_size)
        check = (x_all[: self.overfitting_check_size], y_all[: self.overfitting_check_size])

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            order = torch.randperm(len(x_all), generator=self.shuffle_generator, device=self.device)
            for index in self._shard(order, batch_size):
                yield x_all[index], y_all[index]

        return self._train(batches, n_batches, nb_epochs, validation, verbose, check)

    def fit_generator(self, generator: Any, nb_epochs: int = 20, **kwargs: Any) -> list[dict[str, float]]:
        """
        Train the classifier in place from an ART ``DataGenerator``; each batch is checked before it is used.

        :param generator: An ``art.data_generators.DataGenerator`` yielding numpy or torch ``(x, y)`` batches.
        :param nb_epochs: Number of epochs (``generator.size / generator.batch_size`` batches each).
        :param kwargs: ``verbose`` overrides the constructor's value.
        :return: The per-epoch history.
        """
        from art.data_generators import DataGenerator

        if not isinstance(generator, DataGenerator):
            raise TypeError(f"generator must be an art.data_generators.DataGenerator, got {type(generator).__name__}")
        verbose = self._pop_verbose(kwargs)
        nb_epochs = check_positive_int(nb_epochs, "nb_epochs")
        if self.overfitting_guard is not None or self.early_stopping:
            raise ValueError(
                "overfitting_guard and early_stopping need fit(x, y, validation_data=...), not fit_generator"
            )
        n_batches = max(1, -(-generator.size // generator.batch_size))

        def to_tensors(batch: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = (b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else b for b in batch)
            x, labels = check_data(x, y, self._classifier, "generator batch x", "generator batch y")
            return torch.from_numpy(x).to(self.device), torch.from_numpy(labels).to(self.device)

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for _ in range(n_batches):
                yield to_tensors(generator.get_batch())

        return self._train(batches, n_batches, nb_epochs, None, verbose)

    def _pop_verbose(self, kwargs: dict[str, Any]) -> bool:
        verbose = bool(kwargs.pop("verbose", self.verbose))
        if kwargs:
            raise TypeError(f"fit got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        return verbose

    def _prepare_validation(self, validation_data: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        if validation_data is None:
            if self.early_stopping:
                raise ValueError("early_stopping=True needs validation_data=(x_val, y_val) in fit")
            return None
        if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
            raise ValueError("validation_data must be a tuple (x_val, y_val)")
        x_val, y_val = check_data(*validation_data, self._classifier, "validation_data x", "validation_data y")
        subset = slice(0, self.validation_size)
        return torch.from_numpy(x_val[subset]).to(self.device), torch.from_numpy(y_val[subset]).to(self.device)

    def _train(
        self,
        batches: Any,
        n_batches: int,
        nb_epochs: int,
        validation: tuple[torch.Tensor, torch.Tensor] | None,
        verbose: bool,
        check: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> list[dict[str, float]]:
        data_epochs = -(-nb_epochs // self.replays)
        if data_epochs * self.replays != nb_epochs:
            logger.warning("%s: nb_epochs=%d is not a multiple of replays=%d; running %d passes over the data",
                           self.method, nb_epochs, self.replays, data_epochs)  # fmt: skip
        self._nb_epochs = data_epochs * self.replays
        self.stop_reason, self.best_epoch, self._guard_state = None, None, {}
        start_epoch = self._restore() if self.resume else 0
        starting = start_epoch == 0
        if starting:
            self.history = []
            self._peak_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.network.train()
        epochs = range(start_epoch, data_epochs) if self.stop_reason is None else range(0)
        progress_bar = tqdm(total=len(epochs) * n_batches, disable=not verbose or self.rank != 0, desc=self.method)
        for epoch in epochs:
            self._sums, self._weights = {}, {}
            last_good = self._snapshot()  # the weights at the end of the previous epoch
            started = time.perf_counter()
            for index, (x, y) in enumerate(batches(epoch)):
                if starting:
                    self._begin_fit(x)
                    starting = False
                self._progress = (epoch + index / n_batches) * self.replays
                self._apply_lr_schedule()
                self._train_batch(x, y, self._current_eps())
                progress_bar.update(1)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            record = {"epoch": epoch + 1, "seconds": time.perf_counter() - started}
            if self.replays > 1:
                record["passes"] = (epoch + 1) * self.replays
            self._reduce_epoch_sums()
            record.update({name: float(total) / self._weights[name] for name, total in self._sums.items()})
            record.update(lr=float(self.optimizer.param_groups[0]["lr"]), eps=self._current_eps())
            if not np.isfinite(record.get("loss", 0.0)):
                self._load_snapshot(last_good)
                raise FloatingPointError(
                    f"{self.method}: the training loss became non-finite in epoch {epoch + 1}; the weights and "
                    f"optimizer state of the end of epoch {epoch} were restored"
                )
            if not isinstance(self.lr_schedule, str) and self.lr_schedule_interval == "epoch":
                self.lr_schedule.step()
            if validation is not None:
                record.update(self._validate(*validation))
            self._apply_guards(record, last_good, validation if validation is not None else check)
            self._end_epoch(record)
            self.history.append(record)
            progress_bar.set_postfix(loss=f"{record.get('loss', 0):.3f}", acc=f"{record.get('accuracy', 0):.3f}")
            if self.rank == 0:
                logger.info("%s epoch %d/%d: %s", self.method, epoch + 1, data_epochs, _format(record))
            if self.checkpoint_dir is not None:
                self._save_checkpoint(epoch + 1)
            if self.stop_reason is not None:
                break
        progress_bar.close()
        if self.early_stopping and "best" in self._guard_state:
            self.best_epoch = int(self._guard_state["best_epoch"])
            self._load_snapshot(self._guard_state["best"])
            logger.info("%s: early stopping kept the weights of epoch %d (validation PGD accuracy %.4f)",
                        self.method, self.best_epoch, self._guard_state["best_accuracy"])  # fmt: skip
        return self.history

    def _snapshot(self) -> dict[str, Any]:
        """Copies of the weights and the optimizer state (what the guards restore)."""
        return {
            "model": {name: value.detach().clone() for name, value in self.network.state_dict().items()},
            "optimizer": _clone(self.optimizer.state_dict()),
        }

    def _load_snapshot(self, snapshot: dict[str, Any]) -> None:
        self.network.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])

    def _apply_guards(
        self, record: dict[str, Any], last_good: dict[str, Any], check: tuple[torch.Tensor, torch.Tensor] | None
    ) -> None:
        """The catastrophic-overfitting guard and early stopping; each reports in ``record`` and the log."""
        state = self._guard_state
        epoch = record["epoch"]
        if self.overfitting_guard is not None and check is not None:
            if "val_pgd_accuracy" in record:
                robust = record["val_pgd_accuracy"]
            else:
                robust = self._validate(*check, OVERFITTING_CHECK_STEPS, seed_offset=2)["val_pgd_accuracy"]
            record["guard_pgd_accuracy"] = robust
            previous = state.get("guard_accuracy")
            if previous is not None and previous - robust > self.overfitting_guard:
                self._load_snapshot(last_good)
                self.stop_reason = "catastrophic_overfitting"
                record["overfitting_stop"] = 1.0
                logger.warning(
                    "%s: catastrophic overfitting in epoch %d (PGD accuracy %.4f -> %.4f, a drop over %.2f): the "
                    "weights of epoch %d were restored and training stopped",
                    self.method, epoch, previous, robust, self.overfitting_guard, epoch - 1,
                )  # fmt: skip
                return
            state["guard_accuracy"] = robust
        if self.early_stopping:
            accuracy = record["val_pgd_accuracy"]
            if "best" not in state or accuracy > state["best_accuracy"]:
                state.update(best=self._snapshot(), best_accuracy=accuracy, best_epoch=epoch)
            record["best_epoch"] = state["best_epoch"]
            patience = self.early_stopping_patience
            if patience is not None and epoch - state["best_epoch"] >= patience:
                self.stop_reason = "early_stopping"
                record["early_stop"] = 1.0
                logger.warning("%s: no better validation PGD accuracy for %d epochs: stopping after epoch %d",
                               self.method, patience, epoch)  # fmt: skip

    def _current_eps(self) -> float:
        return warmed_up_eps(self.eps or 0.0, self._progress, self.eps_warmup_epochs)

    def _apply_lr_schedule(self) -> None:
        if not isinstance(self.lr_schedule, str) or self.lr_schedule == "constant":
            return
        multiplier = lr_multiplier(self.lr_schedule, self._progress / self._nb_epochs)
        for group, peak in zip(self.optimizer.param_groups, self._peak_lrs, strict=True):
            group["lr"] = peak * multiplier

    def _validate(
        self, x: torch.Tensor, y: torch.Tensor, pgd_steps: int | None = None, seed_offset: int = 1
    ) -> dict[str, float]:
        """
        Clean and PGD accuracy of a fixed set, in eval mode, with a fixed random stream: the per-epoch validation
        (``validation_pgd_steps``) and the overfitting guard's own check.
        """
        self.network.eval()
        try:
            steps = self.validation_pgd_steps if pgd_steps is None else pgd_steps
            seed = self.seed + seed_offset
            return validation_metrics(self._forward, x, y, self.eps, steps, self.low, self.high, seed)
        finally:
            self.network.train()

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_path(self) -> Path | None:
        """Where the checkpoint is written, if ``checkpoint_dir`` was given."""
        return None if self.checkpoint_dir is None else self.checkpoint_dir / CHECKPOINT_NAME

    def _save_checkpoint(self, epochs_done: int) -> None:
        """Write the checkpoint atomically and with its digest (see :func:`write_checkpoint`)."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "method": self.method,
            "epoch": epochs_done,
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if isinstance(self.lr_schedule, str) else self.lr_schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "peak_lrs": self._peak_lrs,
            "history": self.history,
            "guards": {**self._guard_state, "stop_reason": self.stop_reason},
            **self._rank_state(),
        }
        if self.world_size > 1:
            # Every rank's random streams and method state (Free's perturbation, ATCD's chain, ...) go in the file.
            ranks: list[Any] = [None] * self.world_size
            dist.all_gather_object(ranks, self._rank_state())
            state.update(ranks=ranks, shuffle_generator=self.shuffle_generator.get_state())
        if self.rank == 0:
            write_checkpoint(state, self.checkpoint_path)
        if self.world_size > 1:
            dist.barrier()

    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: the random streams and the method's own state."""
        return {
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "method_state": self._method_state(),
        }

    def _restore(self) -> int:
        """Load the verified checkpoint (no arbitrary unpickling) and return the epochs it completed."""
        path = self.checkpoint_path
        if not path.exists():
            logger.info("resume=True but %s does not exist: starting from scratch", path)
            return 0
        state = read_checkpoint(path, self.device)
        if state["method"] != self.method:
            raise ValueError(f"checkpoint_dir holds a checkpoint of method {state['method']!r}, not {self.method!r}")
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None and not isinstance(self.lr_schedule, str):
            self.lr_schedule.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self._peak_lrs = state["peak_lrs"]
        ranks = state.get("ranks", [state])
        if len(ranks) != self.world_size:
            raise ValueError(f"{path} was written by {len(ranks)} process(es); resume it with as many, "
                             f"not {self.world_size}")  # fmt: skip
        if self.world_size > 1:
            self.shuffle_generator.set_state(state["shuffle_generator"].cpu())
        state = {**state, **ranks[self.rank]}
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        self.history = list(state["history"])
        self._load_method_state(state["method_state"])
        guards = dict(state["guards"])
        self.stop_reason = guards.pop("stop_reason")
        self._guard_state = guards
        logger.info("%s: resumed from %s after epoch %d", self.method, path, state["epoch"])
        return int(state["epoch"])


def distributed_rank_and_size() -> tuple[int, int]:
    """``(rank, world size)`` of an initialised ``torch.distributed`` process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def write_checkpoint(state: dict[str, Any], path: Path) -> None:
    """
    Write ``state`` so that a reader never loads a partial or damaged file: the payload (``torch.save``) follows a
    header line with its SHA-256 digest, and it goes to a temporary file that is flushed to disk and then renamed over
    ``path`` (atomic on POSIX and Windows), so a process killed mid-write leaves the previous checkpoint intact.

    :param state: Tensors and plain Python values only (what ``torch.load(weights_only=True)`` accepts).
    :param path: Destination.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(DIGEST_HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n")
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """
    Read a checkpoint written by :func:`write_checkpoint`: the digest is verified before anything is unpickled, and
    unpickling is ``weights_only=True`` (tensors and plain values: no code runs).

    :param path: The checkpoint file.
    :param map_location: Device for the tensors.
    :return: The state.
    :raises ValueError: A foreign, damaged, truncated or unsafe file, with what is wrong.
    """
    data = Path(path).read_bytes()
    header, newline, payload = data.partition(b"\n")
    if not header.startswith(DIGEST_HEADER) or not newline:
        raise ValueError(f"{path} is not an art_fastat checkpoint (it has no art_fastat digest header)")
    if hashlib.sha256(payload).hexdigest().encode() != header[len(DIGEST_HEADER) :]:
        raise ValueError(f"{path} is damaged or incomplete: its content does not match its SHA-256 digest")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} holds an unreadable or unsafe checkpoint: {error}") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an art_fastat checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def _clone(value: Any) -> Any:
    """A deep copy of a state dict's tensors (plain values are shared: they are not modified in place)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clone(item) for item in value)
    return value


def _format(record: dict[str, float]) -> str:
    return ", ".join(f"{key}={value:.4g}" for key, value in record.items() if key != "epoch")
