"""
One run of a method under a benchmark protocol: train, save, evaluate. ``art-fastat train`` (:mod:`art_fastat.cli`)
runs one; ``art-fastat bench`` (:mod:`art_fastat.bench`) runs one per method. Both get the same files in their output
directory:

- ``model.pt``: the trained weights (``state_dict``);
- ``config.json``: method, protocol, eps, seed, the trainer's options, processes, training and wall seconds, passes
  per batch, why training stopped early (``stop_reason``) and the epoch whose weights were kept (``best_epoch``);
- ``history.json``: the per-epoch history;
- ``report.json`` and ``report.md``: the evaluation (:func:`art_fastat.evaluation.evaluate`);
- ``checkpoint/``: the engine's checkpoint, written after every epoch (``resume=True`` continues from it).

Every epoch is validated (``val_accuracy``, ``val_pgd_accuracy``, and what the overfitting guard reads) on the first
:data:`~art_fastat.evaluation.validation.VALIDATION_SIZE` images of the training split, never on the test split: the
guard and early stopping choose the epoch whose weights are kept, so validating on test images would let the test set
choose the model it then scores. The protocols have no held-out split (P1's 8000 training images are the protocol's),
and a catastrophic overfit shows on training images as on any others (Wong et al. 2020 check a training minibatch).

Under ``torchrun`` every rank trains; only rank 0 writes and evaluates (the ranks hold identical weights).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from art_fastat._validation import check_positive_int
from art_fastat.anchors import ANCHORS, ARTAnchor
from art_fastat.evaluation import ATTACKS, RobustnessReport, evaluate
from art_fastat.evaluation.validation import VALIDATION_SIZE
from art_fastat.protocols import Protocol
from art_fastat.trainers import TRAINERS

#: A protocol's splits: ``(x_train, y_train, x_test, y_test)``, as :meth:`Protocol.load` returns them.
Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class MethodRun:
    """
    What :func:`run_method` did.

    :param method: The method's name.
    :param protocol: The protocol's name.
    :param eps: The L-inf radius it trained and was evaluated at.
    :param seed: Seed of the initialisation, the training and the attacks.
    :param options: The trainer's arguments beyond eps and seed (the protocol's engine options and the caller's).
    :param processes: Processes that trained (the torchrun world size).
    :param training_seconds: The epochs' own time (validation excluded).
    :param wall_seconds: Wall-clock time of ``fit``.
    :param passes_per_batch: Forward+backward passes per minibatch of the method's algorithm.
    :param history: The per-epoch history.
    :param report: The evaluation; ``None`` on the ranks other than 0 under torchrun.
    :param stop_reason: Why training stopped early (``"catastrophic_overfitting"``, ``"collapse"``,
                        ``"early_stopping"``) or None.
    :param best_epoch: The earlier epoch whose weights a guard restored (1-based), or None: the last epoch's.
    """

    method: str
    protocol: str
    eps: float
    seed: int
    options: dict[str, Any]
    processes: int
    training_seconds: float
    wall_seconds: float
    passes_per_batch: float
    history: list[dict[str, float]]
    report: RobustnessReport | None = None
    stop_reason: str | None = None
    best_epoch: int | None = None

    def config(self) -> dict[str, Any]:
        """:return: The content of ``config.json``."""
        return {
            "method": self.method,
            "protocol": self.protocol,
            "eps": self.eps,
            "seed": self.seed,
            "options": self.options,
            "processes": self.processes,
            "training_seconds": self.training_seconds,
            "wall_seconds": self.wall_seconds,
            "passes_per_batch": self.passes_per_batch,
            "stop_reason": self.stop_reason,
            "best_epoch": self.best_epoch,
        }


def run_method(
    method: str,
    *,
    protocol: Protocol,
    data: Data,
    out: Path,
    eps: float | None = None,
    device: str | None = None,
    seed: int = 0,
    lr: float | None = None,
    batch_size: int | None = None,
    epochs: int | None = None,
    options: dict[str, Any] | None = None,
    resume: bool = False,
    attacks: Sequence[str] = ATTACKS,
    n_eval: int | None = None,
    attack_sizes: Mapping[str, int] | None = None,
    verbose: bool = True,
    callbacks: Sequence[Callable[[Any, dict[str, Any]], Any]] = (),
) -> MethodRun:
    """
    Train ``method`` under ``protocol`` on a fresh classifier, save it to ``out`` and evaluate it there (see the
    module's description for the files).

    :param method: A key of :data:`art_fastat.trainers.TRAINERS`, or an ART anchor (a key of
                   :data:`art_fastat.anchors.ANCHORS`).
    :param protocol: The protocol: model, optimizer, batch size, epochs, schedules, evaluation settings.
    :param data: Its splits ``(x_train, y_train, x_test, y_test)``; the first ``VALIDATION_SIZE`` training images
                 validate every epoch (never the test split: see the module's description).
    :param out: Output directory.
    :param eps: L-inf radius (default: the protocol's).
    :param device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or None (CUDA when available).
    :param seed: Seed of the initialisation, the training and the attacks.
    :param lr: Peak learning rate (default: the protocol's).
    :param batch_size: Minibatch size (default: the protocol's).
    :param epochs: Epochs (default: the protocol's).
    :param options: The trainer's own arguments, added to the protocol's engine options (none for the anchors).
    :param resume: Continue from ``out/checkpoint`` if present.
    :param attacks: Attacks of :func:`~art_fastat.evaluation.evaluate`.
    :param n_eval: Evaluate on the first ``n_eval`` test images (default: all).
    :param attack_sizes: Run each attack named here on the first that many of those images only (see
                         :func:`~art_fastat.evaluation.evaluate`).
    :param verbose: Progress bar over the batches.
    :param callbacks: Per-epoch callbacks of the trainer's ``fit`` (e.g. a
                      :class:`~art_fastat.monitoring.TensorBoardLogger`); not for the ART anchors.
    :return: The run; its ``report`` is None on the ranks other than 0 under torchrun, which write nothing.
    """
    if n_eval is not None:
        check_positive_int(n_eval, "n_eval")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file, not a directory")
    x_train, y_train, x_test, y_test = data
    classifier = protocol.make_classifier(device, seed, lr)
    eps = protocol.eps if eps is None else eps
    if method in ANCHORS:
        if options:
            raise ValueError(f"method {method!r} (an ART trainer) takes no options, got {options!r}")
        if callbacks:
            raise ValueError(f"method {method!r} (an ART trainer) takes no callbacks")
        options = {}
        trainer: Any = ARTAnchor(classifier, eps, method, protocol, seed)
    else:
        options = {**protocol.trainer_options(), **(options or {})}
        trainer = TRAINERS[method](
            classifier, eps=eps, seed=seed, checkpoint_dir=out / "checkpoint", resume=resume, verbose=verbose,
            **options,
        )  # fmt: skip
    started = time.perf_counter()
    history = trainer.fit(
        x_train, y_train, validation_data=(x_train[:VALIDATION_SIZE], y_train[:VALIDATION_SIZE]),
        batch_size=protocol.batch_size if batch_size is None else batch_size,
        nb_epochs=protocol.nb_epochs if epochs is None else epochs,
        **({"callbacks": list(callbacks)} if callbacks else {}),
    )  # fmt: skip
    wall_seconds = time.perf_counter() - started
    run = MethodRun(
        method=method, protocol=protocol.name, eps=eps, seed=seed, options=options, processes=trainer.world_size,
        training_seconds=sum(epoch["seconds"] for epoch in history), wall_seconds=wall_seconds,
        passes_per_batch=trainer.passes_per_batch, history=history,
        stop_reason=getattr(trainer, "stop_reason", None), best_epoch=getattr(trainer, "best_epoch", None),
    )  # fmt: skip
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return run  # the ranks hold identical weights: rank 0 writes and evaluates
    out.mkdir(parents=True, exist_ok=True)
    torch.save(classifier.model.state_dict(), out / "model.pt")
    (out / "config.json").write_text(json.dumps(run.config(), indent=2, default=str))
    (out / "history.json").write_text(json.dumps(history, indent=2))
    run.report = evaluate_and_write(classifier, protocol, x_test, y_test, eps, attacks=attacks, seed=seed,
                                    n_eval=n_eval, attack_sizes=attack_sizes, out=out)  # fmt: skip
    return run


def evaluate_and_write(
    classifier: Any,
    protocol: Protocol,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    *,
    attacks: Sequence[str] = ATTACKS,
    seed: int = 0,
    n_eval: int | None = None,
    attack_sizes: Mapping[str, int] | None = None,
    out: Path | None = None,
) -> RobustnessReport:
    """
    Evaluate ``classifier`` with the protocol's evaluation settings and write ``report.json`` and ``report.md``.

    :param classifier: The trained ART classifier.
    :param protocol: The protocol whose PGD settings apply.
    :param x: Test inputs.
    :param y: Test labels.
    :param eps: L-inf radius.
    :param attacks: Attacks of :func:`~art_fastat.evaluation.evaluate`.
    :param seed: Seed of the attacks.
    :param n_eval: Evaluate on the first ``n_eval`` samples (default: all).
    :param attack_sizes: Run each attack named here on the first that many of those samples only.
    :param out: Directory of the report files; None writes nothing.
    :return: The report.
    """
    if n_eval is not None:
        x, y = x[:n_eval], y[:n_eval]
    report = evaluate(classifier, x, y, eps, attacks=tuple(attacks), seed=seed, attack_sizes=attack_sizes,
                      **protocol.evaluation_options())  # fmt: skip
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(report.to_json())
        (out / "report.md").write_text(report.to_markdown())
    return report
