"""
The training engine that every method of art_fastat runs on.

:class:`AdversarialTrainerBase` is an ART :class:`~art.defences.trainer.Trainer`: it takes a ``PyTorchClassifier``
and trains it in place from numpy arrays (``fit``) or an ART ``DataGenerator`` (``fit_generator``). It holds the
epoch loop and composes the engine's parts (:mod:`art_fastat.engine`): the data path, the step (forward, attack mode,
update), the history, the guards, checkpoints and the process setup. A method subclasses it and implements
:meth:`_train_batch` with the helpers :attr:`space`, :meth:`_forward`, :meth:`_attack_context`, :meth:`_update` and
:meth:`_optimize`.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from art.defences.trainer import Trainer
from tqdm.auto import tqdm

from art_fastat._classifier import check_classifier, clip_bounds, input_space_model
from art_fastat._validation import check_data, check_tensor_data
from art_fastat.engine import checkpoints
from art_fastat.engine.augmentation import Augmentation
from art_fastat.engine.callbacks import Callback, check_callbacks, run_callbacks
from art_fastat.engine.data import GeneratorSource, InMemorySource, StreamSource, augmented
from art_fastat.engine.distributed import ProcessSetup
from art_fastat.engine.guards import AUTO_OVERFITTING_GUARD, Guards, load_snapshot, snapshot
from art_fastat.engine.history import EpochTotals, format_record
from art_fastat.engine.options import (
    ENGINE_OPTIONS,
    check_engine_options,
    check_fit_arguments,
    check_network,
    check_plan,
)
from art_fastat.engine.schedules import AUTO_EPS_WARMUP, lr_multiplier, warmed_up_eps
from art_fastat.engine.step import Step
from art_fastat.evaluation.validation import VALIDATION_PGD_STEPS, VALIDATION_SIZE, validation_metrics
from art_fastat.trainers.method import TrainingMethod

logger = logging.getLogger(__name__)

#: PGD steps of the catastrophic-overfitting guard's own check (Wong et al. 2020's check: PGD-5 on a training batch).
OVERFITTING_CHECK_STEPS = 5


class AdversarialTrainerBase(TrainingMethod, Trainer):
    """
    Base class of every art_fastat trainer (the engine). Subclasses implement :meth:`_train_batch` only.

    Decisions the engine takes for every method:

    - Attacks work in input space, inside ``clip_values``; the classifier's ``preprocessing=(mean, std)`` is applied
      differentiably inside the forward pass, so a normalised classifier trains exactly like an un-normalised
      network that standardises internally.
    - Weight updates run in train mode (BatchNorm statistics update). The built-in attack passes run in the mode named
      by the method's ``attack_mode``: ``"train"`` (default; the attack maximises the very loss that is then minimised,
      as in locuslab/fast_adversarial, and BatchNorm running statistics are frozen during the attack so only the
      update pass moves them) or ``"eval"``. A plugged-in torchattacks attack runs in its own ``__call__``, which puts
      the model in eval mode for the attack (torchattacks' convention).
    - The data are moved to the classifier's device once per ``fit`` and shuffled there with the trainer's own
      seeded generator, which also draws every random start: two runs with the same ``seed`` are identical on CPU.
    - Losses are the cross-entropy on the network's logits, as in every paper implemented here, whatever loss the
      classifier was built with.
    - ``fit`` and ``fit_generator`` return the per-epoch history (a list of dicts, also ``trainer.history``), where
      ART's trainers return None.

    What a method implements, and the helpers it uses, are in :class:`~art_fastat.trainers.method.TrainingMethod`.
    """

    def __init__(
        self,
        classifier: Any,
        eps: float | None = None,
        *,
        eps_warmup_epochs: float | str = 0.0,
        lr_schedule: str | Any = "constant",
        lr_schedule_interval: str = "step",
        use_amp: bool = False,
        amp_dtype: torch.dtype | None = None,
        seed: int = 0,
        validation_size: int = VALIDATION_SIZE,
        validation_pgd_steps: int = VALIDATION_PGD_STEPS,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
        overfitting_guard: float | str | None = "auto",
        overfitting_check_size: int = 128,
        early_stopping: bool = False,
        early_stopping_patience: int | None = None,
        augmentation: str | Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
        verbose: bool = False,
    ) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place; its optimizer is used.
        :param eps: L-inf radius of the threat model, inside the width of ``clip_values``.
        :param eps_warmup_epochs: Ramp eps linearly per iteration from 0 over this many epochs (step sizes scale with
                                  it); 0 disables the ramp; ``"auto"``: over the first
                                  :data:`~art_fastat.engine.schedules.AUTO_EPS_WARMUP` (0.3) of the epochs of each
                                  ``fit`` that it applies to (e.g. 6 of 20; GAAT's default).
        :param lr_schedule: ``"constant"`` (keep the optimizer's learning rate), a name from
                            :data:`~art_fastat.engine.schedules.LR_SCHEDULES` (the optimizer's learning rate is the
                            peak), ``"paper"`` (the method's paper schedule) or any scheduler object with ``.step()``
                            built on the classifier's optimizer (e.g. ``torch.optim.lr_scheduler.OneCycleLR``).
        :param lr_schedule_interval: When a scheduler object is stepped: ``"step"`` (every weight update) or
                                     ``"epoch"``.
        :param use_amp: Mixed precision through ``torch.amp`` autocast: bf16 by default, the GPU default (Ampere and
                        later compute it natively, and its float32 range needs no loss scaling); fp16 with a gradient
                        scaler, for GPUs without bf16.
        :param amp_dtype: ``torch.bfloat16`` (default) or ``torch.float16``.
        :param seed: Seed of the trainer's generator (shuffling and random starts).
        :param validation_size: Number of validation samples (the first ones) used each epoch when ``fit`` gets
                                ``validation_data``.
        :param validation_pgd_steps: PGD steps (step eps/4, random start, full eps) of the per-epoch validation.
        :param checkpoint_dir: If given, model, optimizer, schedule, random state, history and method state are written
                               there atomically after every epoch.
        :param resume: Continue from the checkpoint in ``checkpoint_dir`` if one exists.
        :param overfitting_guard: Catastrophic-overfitting guard (Wong et al. 2020): after every epoch the PGD accuracy
                                  at the full eps of a fixed set (the validation subset when ``fit`` gets
                                  ``validation_data``, else the first ``overfitting_check_size`` training samples with
                                  PGD-5, step eps/4, as Wong et al.'s check) is compared with the best epoch's so far;
                                  if it fell more than this fraction (e.g. 0.2) below it, that epoch's weights and
                                  optimizer state are restored, training stops, and the history
                                  (``overfitting_stop``, ``restored_epoch``), ``stop_reason``, ``best_epoch`` and a
                                  WARNING say so. ``"auto"`` (default): 0.2 for the single-step methods (see
                                  :attr:`single_step`: Fast, GAAT, one-step ATLAS, DAT with one of them, ...), which
                                  overfit catastrophically, and off for the others; None disables it.
        :param overfitting_check_size: Training samples the guard checks when there is no validation data (the first
                                       ones; 128, one of Wong et al.'s minibatches, keeps the sampling noise of the
                                       accuracy near 0.04, well below the 0.2 the guard tolerates).
        :param early_stopping: Validation early stopping (Rice et al. 2020): keep the weights of the epoch with the best
                               validation PGD accuracy and restore them when ``fit`` ends. Needs ``validation_data``.
        :param early_stopping_patience: Also stop after this many epochs without a better validation PGD accuracy
                                        (None: run every epoch).
        :param augmentation: Augmentation of every clean training minibatch on the classifier's device, before the
                             method's step (its attack and update see the augmented images): ``None``, ``"crop_flip"``
                             (:class:`~art_fastat.engine.augmentation.CropFlip` with 4 pixels of zero padding, the
                             random crop and horizontal flip of locuslab/fast_adversarial's CIFAR-10 training; other
                             settings: a ``CropFlip(padding, flip)`` instance; needs ``input_shape`` ``(channels,
                             height, width)`` and 0 inside ``clip_values``) or a callable ``(x, generator) -> x``
                             returning a tensor of ``x``'s shape, dtype and device (checked on every batch, so a
                             wrong one is refused before the first update). The trainer's generator draws every
                             augmentation, so a resumed run stays bit-identical. The validation data and the
                             overfitting guard's check set are not augmented.
        :param channels_last: Train in the channels-last memory format (NHWC; faster convolutions on GPUs with tensor
                              cores, and under bf16/fp16 autocast): the network is converted in place when ``fit``
                              starts (its values are unchanged, and it stays channels-last after ``fit``), every
                              clean training minibatch is converted before augmentation and attack, so the
                              adversarial examples follow. Needs ``input_shape`` ``(channels, height, width)``.
        :param compile: ``torch.compile`` the forward pass that every attack and update of the method runs: ``True``,
                        or a dict of ``torch.compile`` keyword arguments (e.g. ``{"mode": "max-autotune"}``). The
                        network is compiled when ``fit`` starts, after the DDP wrap under torch.distributed; the
                        classifier keeps the uncompiled network, which the optimizer trains and checkpoints save (a
                        checkpoint loads with or without ``compile``). The first epoch's ``seconds`` include the
                        compilation; the forward is compiled again for each new variant of it (input gradients or
                        not, train or eval mode as in validation, BatchNorm frozen in attack passes, a new batch
                        size), up to ``torch.compile``'s recompile limit, after which it runs eagerly. A plugged-in
                        torchattacks attack runs its own (uncompiled) model.
        :param verbose: Show a tqdm progress bar.
        """
        check_classifier(classifier)
        super().__init__(classifier)
        given = locals()
        options = check_engine_options(classifier, eps, {name: given[name] for name in ENGINE_OPTIONS})
        self.eps: float | None = options["eps"]
        self.eps_warmup_epochs: float | str = options["eps_warmup_epochs"]
        self.lr_schedule = self.paper_lr_schedule if options["lr_schedule"] == "paper" else options["lr_schedule"]
        self.lr_schedule_interval: str = options["lr_schedule_interval"]
        self.use_amp: bool = options["use_amp"]
        self.amp_dtype: torch.dtype = options["amp_dtype"]
        self.seed: int = options["seed"]
        self.validation_size: int = options["validation_size"]
        self.validation_pgd_steps: int = options["validation_pgd_steps"]
        self.checkpoint_dir: Path | None = options["checkpoint_dir"]
        self.resume: bool = options["resume"]
        #: The ``overfitting_guard`` setting: ``"auto"``, a fraction or None (in effect: :attr:`overfitting_threshold`).
        self.overfitting_guard: float | str | None = options["overfitting_guard"]
        self.overfitting_check_size: int = options["overfitting_check_size"]
        self.early_stopping: bool = options["early_stopping"]
        self.early_stopping_patience: int | None = options["early_stopping_patience"]
        #: The checked ``augmentation``: None or the callable applied to every training minibatch.
        self.augmentation: Augmentation | None = options["augmentation"]
        self.channels_last: bool = options["channels_last"]
        #: The checked ``compile``: None (eager) or the keyword arguments of ``torch.compile``.
        self.compile: dict[str, Any] | None = options["compile"]
        self.verbose: bool = options["verbose"]
        #: The earlier epoch (1-based) whose weights the trainer holds after ``fit`` (early stopping's best epoch, or
        #: the one the overfitting guard restored), or None: the last epoch's.
        self.best_epoch: int | None = None
        self.history: list[dict[str, float]] = []

        self.device = classifier.device
        self.network = classifier.model
        #: The network as a function of input-space images (with the classifier's standardisation, if any).
        self.model = input_space_model(classifier)
        self.optimizer: torch.optim.Optimizer = classifier.optimizer
        self.low, self.high = clip_bounds(classifier, self.device)
        self.process = ProcessSetup()
        #: Draws every random start (per rank under torch.distributed: seeded with ``seed + rank``).
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed + self.process.rank)
        #: Shuffles the data: the trainer's generator in one process; under torch.distributed one of its own, seeded
        #: alike on every rank, so that all ranks cut the same permutation into their shards.
        self.shuffle_generator = self.generator
        if self.process.distributed:
            self.shuffle_generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.step = Step(self.network, self.model, self.optimizer, self.use_amp, self.amp_dtype, self.device,
                         self.channels_last, self.compile)  # fmt: skip
        self.totals = EpochTotals()
        # the overfitting guard's threshold is set by every fit ("auto" depends on the method's own arguments)
        self.guards = Guards(self.method, None, self.early_stopping, self.early_stopping_patience, self._snapshot,
                             self._load_snapshot)  # fmt: skip
        self._wrapped = False
        self._peak_lrs: list[float] | None = None
        self._progress = 0.0
        self._nb_epochs = 1
        self._warmup_span = 1.0  # the epochs the eps warm-up applies to in this fit (set with the plan)
        self._plan: dict[str, int] = {}

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        batch_size: int = 128,
        nb_epochs: int = 20,
        callbacks: Callback | list[Callback] | None = None,
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
        :param callbacks: Called after every epoch as ``callback(trainer, record)`` with the epoch's history record
                          (complete: validation and guards included; read it, do not modify it), e.g. a
                          :class:`~art_fastat.monitoring.TensorBoardLogger`; a callable or a list of them. A callback
                          that returns True stops training after that epoch (``stop_reason`` ``"callback"``,
                          ``callback_stop: 1`` in the record; the checkpoint records the stop, as for the guards).
                          Under torch.distributed every rank calls them with the same record, and a stop on any rank
                          stops all.
        :param kwargs: ``verbose`` overrides the constructor's value.
        :return: The per-epoch history (also kept in ``self.history``).
        """
        arguments = check_fit_arguments(self, "fit", kwargs, batch_size, nb_epochs, validation_data)
        callbacks = check_callbacks(callbacks, "fit")
        x, labels = check_data(x, y, self._classifier)
        smallest = self._smallest_batch
        if len(x) < self.world_size * smallest:
            reason = " (the network has BatchNorm)" if smallest > 1 else ""
            raise ValueError(f"x must hold at least {smallest} sample(s) per rank{reason}: {len(x)} samples for "
                             f"{self.world_size} process(es)")  # fmt: skip
        check_network(self, x)
        x_all, y_all = torch.from_numpy(x).to(self.device), torch.from_numpy(labels).to(self.device)
        source = InMemorySource(x_all, y_all, arguments.batch_size, self.shuffle_generator, self.rank,
                                self.world_size, smallest)  # fmt: skip
        check = (x_all[: self.overfitting_check_size], y_all[: self.overfitting_check_size])
        return self._train(source, arguments.nb_epochs, arguments.validation, arguments.verbose, check, callbacks)

    def fit_generator(
        self,
        generator: Any,
        nb_epochs: int = 20,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        callbacks: Callback | list[Callback] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        """
        Train the classifier in place from an ART ``DataGenerator``; each batch is checked before it is trained on.

        An ``art.data_generators.PyTorchDataGenerator`` is streamed from its ``DataLoader`` (``generator.iterator``,
        :class:`~art_fastat.engine.data.StreamSource`): its batches stay torch tensors (checked with torch operations,
        no numpy round trip) and go to the classifier's device with ``non_blocking=True``, from pinned memory on CUDA.
        For a map-style ``Dataset`` loaded with ``shuffle=True``, ``shuffle=False`` or a ``DistributedSampler``, the
        engine plans each epoch as :meth:`fit` does: the order is drawn from the trainer's seed (two runs with one
        seed are identical; a DataLoader over the arrays of :meth:`fit` trains exactly as :meth:`fit` with the
        loader's ``batch_size``), nothing is dropped, and under torch.distributed every rank loads its own shard of
        each global minibatch of ``batch_size`` per rank (every sample once per epoch over all ranks). Other loaders
        (an ``IterableDataset``, a custom sampler) are used as they are in one process and refused under
        torch.distributed. The dataset's first sample is checked with the network before anything changes (for a
        loader used as it is: its first batch, when it arrives). Resume restores the state at the end of the last
        complete epoch and continues with the next epoch's order (a stream resumes at an epoch boundary); with the
        engine's order the resumed run is bit-identical to an uninterrupted one.

        Any other ``DataGenerator`` gives ``generator.size / generator.batch_size`` batches per epoch through its
        ``get_batch``, each converted to numpy and checked; its sharding under torch.distributed is the user's.

        :param generator: An ``art.data_generators.DataGenerator`` yielding numpy or torch ``(x, y)`` batches; x
                          inside ``clip_values`` (any numeric dtype, trained on as float32), y integer or one-hot.
        :param nb_epochs: Number of epochs (passes over a ``DataLoader``; ``generator.size / generator.batch_size``
                          batches of another generator).
        :param validation_data: Optional ``(x_val, y_val)``, as in :meth:`fit` (what the overfitting guard and early
                                stopping watch here).
        :param callbacks: Called after every epoch, as in :meth:`fit`.
        :param kwargs: ``verbose`` overrides the constructor's value.
        :return: The per-epoch history.
        """
        from art.data_generators import DataGenerator, PyTorchDataGenerator

        if not isinstance(generator, DataGenerator):
            raise TypeError(f"generator must be an art.data_generators.DataGenerator, got {type(generator).__name__}")
        arguments = check_fit_arguments(self, "fit_generator", kwargs, 1, nb_epochs, validation_data)
        callbacks = check_callbacks(callbacks, "fit_generator")
        if isinstance(generator, PyTorchDataGenerator):
            source = self._stream_source(generator)
            return self._train(source, arguments.nb_epochs, arguments.validation, arguments.verbose,
                               callbacks=callbacks)  # fmt: skip

        checked_network = []

        def to_device(batch: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = (b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else b for b in batch)
            x, labels = check_data(x, y, self._classifier, "generator batch x", "generator batch y")
            if not checked_network:  # the first batch, before anything is trained on it
                check_network(self, x)
                checked_network.append(True)
            return torch.from_numpy(x).to(self.device), torch.from_numpy(labels).to(self.device)

        source = GeneratorSource(generator, to_device, self._smallest_batch)
        return self._train(source, arguments.nb_epochs, arguments.validation, arguments.verbose, callbacks=callbacks)

    def _stream_source(self, generator: Any) -> StreamSource:
        """``fit_generator``'s source for a ``PyTorchDataGenerator``, its loader and first sample checked."""
        loader = generator.iterator
        size = len(loader.dataset) if hasattr(loader.dataset, "__len__") else generator.size
        if (generator.size, generator.batch_size) != (size, loader.batch_size):
            logger.warning("%s: the PyTorchDataGenerator says size=%s, batch_size=%s; the DataLoader's own dataset "
                           "and batch_size are used", self.method, generator.size, generator.batch_size)  # fmt: skip
        low, high = clip_bounds(self._classifier, torch.device("cpu"))
        checked_network = []

        def check(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
            x, labels = check_tensor_data(x, y, self._classifier, low, high, "generator batch x", "generator batch y")
            if not checked_network:  # the first batch, before anything is trained on it
                check_network(self, x)
                checked_network.append(True)
            return x, labels

        source = StreamSource(loader, self.device, self.shuffle_generator, check, self.rank, self.world_size,
                              self._smallest_batch)  # fmt: skip
        probe = source.probe()
        if probe is not None:
            check(*probe)
        return source

    @property
    def _smallest_batch(self) -> int:
        """Fewest samples per rank in a minibatch: 2 with BatchNorm (train mode cannot normalise one sample)."""
        return 2 if self.step.batch_norms else 1

    def predict(self, x: np.ndarray, **kwargs: Any) -> np.ndarray:
        """
        The trained classifier's predictions, as ART's ``AdversarialTrainerFBF.predict`` gives them.

        :param x: Inputs.
        :param kwargs: Arguments of the classifier's ``predict`` (e.g. ``batch_size``).
        :return: Its outputs (logits or probabilities, as the classifier returns them).
        """
        return self._classifier.predict(x, **kwargs)

    def _train(
        self,
        source: InMemorySource | GeneratorSource | StreamSource,
        nb_epochs: int,
        validation: tuple[torch.Tensor, torch.Tensor] | None,
        verbose: bool,
        check: tuple[torch.Tensor, torch.Tensor] | None = None,
        callbacks: tuple[Callback, ...] = (),
    ) -> list[dict[str, float]]:
        """The epoch loop shared by ``fit`` and ``fit_generator``."""
        data_epochs = -(-nb_epochs // self.replays)
        if data_epochs * self.replays != nb_epochs:
            logger.warning("%s: nb_epochs=%d is not a multiple of replays=%d; running %d passes over the data",
                           self.method, nb_epochs, self.replays, data_epochs)  # fmt: skip
        self._nb_epochs = data_epochs * self.replays
        self._warmup_span = check_plan(self, data_epochs, len(source))
        #: What a checkpoint was written for: resuming into another plan is warned about.
        self._plan = {"nb_epochs": self._nb_epochs, "steps_per_epoch": len(source)}
        self.best_epoch = None
        self.guards.reset()
        self.guards.overfitting_guard = self.overfitting_threshold
        automatic = self.overfitting_guard == "auto" and self.overfitting_threshold is not None
        self.guards.setting = ("overfitting_guard='auto', on for single-step methods" if automatic
                               else f"overfitting_guard={self.overfitting_guard!r}")  # fmt: skip
        if not self._wrapped:
            self.step.build(functools.partial(self.process.wrap, device=self.device))
            self._wrapped = True
        start_epoch = checkpoints.resume(self) if self.resume else 0
        starting = start_epoch == 0
        if starting:
            self.history = []
            self._peak_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.network.train()
        epochs = range(start_epoch, data_epochs) if self.stop_reason is None else range(0)
        n_batches = len(source)
        progress_bar = tqdm(total=len(epochs) * n_batches, disable=not verbose or self.rank != 0, desc=self.method)
        watched = validation if validation is not None else check
        guard_check = None if watched is None else functools.partial(self._guard_check, *watched)
        chance = 0.0 if watched is None else float(torch.bincount(watched[1]).max()) / len(watched[1])
        if self.overfitting_threshold is not None and watched is None:
            logger.warning("%s: the overfitting guard (%s) has nothing to watch in fit_generator without "
                           "validation_data: a catastrophic overfit would go unnoticed", self.method,
                           self.guards.setting)  # fmt: skip
        for epoch in epochs:
            self.totals.clear()
            last_good = self._snapshot()  # the weights at the end of the previous epoch
            started = time.perf_counter()
            batches = augmented(source.epoch(), self.augmentation, self.generator, self.step.memory_format)
            for index, batch in enumerate(batches):
                if starting:
                    self._begin_fit(batch.x)
                    starting = False
                self._progress = (epoch + index / n_batches) * self.replays
                self._apply_lr_schedule()
                self.step.loss_weight = batch.loss_weight
                self._train_batch(batch.x, batch.y, self._current_eps())
                progress_bar.update(1)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            record: dict[str, Any] = {"epoch": epoch + 1, "seconds": time.perf_counter() - started}
            if self.replays > 1:
                record["passes"] = (epoch + 1) * self.replays
            record.update(self.totals.means(self.process, self.device))
            record.update(lr=float(self.optimizer.param_groups[0]["lr"]), eps=self._current_eps())
            self.guards.check_finite(record, last_good)
            if not isinstance(self.lr_schedule, str) and self.lr_schedule_interval == "epoch":
                self.lr_schedule.step()
            if validation is not None:
                record.update(self._validate(*validation))
            self.guards.after_epoch(record, guard_check, chance)
            self._end_epoch(record)
            self.history.append(record)
            if callbacks and run_callbacks(self, callbacks, record) and self.stop_reason is None:
                self.guards.stop_reason = "callback"
                record["callback_stop"] = 1.0
            progress_bar.set_postfix(loss=f"{record.get('loss', 0):.3f}", acc=f"{record.get('accuracy', 0):.3f}")
            if self.rank == 0:
                logger.info("%s epoch %d/%d: %s", self.method, epoch + 1, data_epochs, format_record(record))
            if self.checkpoint_dir is not None:
                checkpoints.save(self, epoch + 1)
            if self.stop_reason is not None:
                break
        progress_bar.close()
        self.best_epoch = self.guards.finish()
        return self.history

    # ------------------------------------------------------------------ schedules, validation, state

    @property
    def rank(self) -> int:
        """This process's rank under torch.distributed (0 in one process)."""
        return self.process.rank

    @property
    def world_size(self) -> int:
        """Number of training processes (1 without torch.distributed)."""
        return self.process.world_size

    @property
    def stop_reason(self) -> str | None:
        """Why the last ``fit`` stopped early ("catastrophic_overfitting", "collapse", "early_stopping", "callback") or
        None."""
        return self.guards.stop_reason

    @property
    def overfitting_threshold(self) -> float | None:
        """
        The drop of PGD accuracy the overfitting guard tolerates in this trainer: ``overfitting_guard`` with
        ``"auto"`` resolved (:data:`~art_fastat.engine.guards.AUTO_OVERFITTING_GUARD` for a single-step method, else
        None: off).
        """
        if self.overfitting_guard != "auto":
            return self.overfitting_guard
        return AUTO_OVERFITTING_GUARD if self.single_step and self.eps else None

    @property
    def eps_warmup(self) -> float:
        """The eps warm-up of this ``fit`` in epochs: ``eps_warmup_epochs`` with ``"auto"`` resolved to
        :data:`~art_fastat.engine.schedules.AUTO_EPS_WARMUP` of the epochs it applies to."""
        if self.eps_warmup_epochs != "auto":
            return float(self.eps_warmup_epochs)
        return AUTO_EPS_WARMUP * self._warmup_span

    def _current_eps(self) -> float:
        return warmed_up_eps(self.eps or 0.0, self._progress, self.eps_warmup)

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
        x = x.contiguous(memory_format=self.step.memory_format)
        try:
            steps = self.validation_pgd_steps if pgd_steps is None else pgd_steps
            seed = self.seed + seed_offset
            return validation_metrics(self._forward, x, y, self.eps, steps, self.low, self.high, seed)
        finally:
            self.network.train()

    def _guard_check(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """The overfitting guard's own check (clean and PGD-5 accuracy, its own random stream) when there is no
        validation data."""
        return self._validate(x, y, OVERFITTING_CHECK_STEPS, seed_offset=2)

    def _snapshot(self) -> dict[str, Any]:
        return snapshot(self.network, self.optimizer)

    def _load_snapshot(self, saved: dict[str, Any]) -> None:
        load_snapshot(self.network, self.optimizer, saved)

    @property
    def checkpoint_path(self) -> Path | None:
        """Where the checkpoint is written, if ``checkpoint_dir`` was given."""
        return None if self.checkpoint_dir is None else self.checkpoint_dir / checkpoints.FILE_NAME
