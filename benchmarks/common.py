"""Shared by the method benchmarks: train one method under a protocol, evaluate it, print a table."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from art_fastat.evaluation import evaluate
from art_fastat.protocols import Protocol, get_protocol

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def benchmark_arguments(
    doc: str, n_pgd: int, n_cw: int, n_autoattack: int, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> tuple[argparse.Namespace, Protocol, Data]:
    """
    The command line every method benchmark on P1 takes; sets the torch threads and loads the data.

    :param doc: The script's docstring (its first line describes the script).
    :param n_pgd: Default test images for clean and PGD-50-10 accuracy.
    :param n_cw: Default test images for ART CW.
    :param n_autoattack: Default test images for AutoAttack.
    :param extra: Adds the script's own arguments.
    :return: ``(arguments, protocol P1, its data)``.
    """
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files (default: ../shared/data/mnist)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the data timed per configuration")
    parser.add_argument("--n-pgd", type=int, default=n_pgd, help="test images for clean and PGD-50-10 accuracy")
    parser.add_argument("--n-cw", type=int, default=n_cw, help="test images for ART CW (0: skip)")
    parser.add_argument("--n-autoattack", type=int, default=n_autoattack, help="test images for AutoAttack (0: skip)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--timing-only", action="store_true", help="measure the cost only")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = get_protocol("mnist10k")
    return args, protocol, protocol.load(args.data_dir)


def train_and_evaluate(
    name: str,
    build: Callable[[Any], Any],
    protocol: Protocol,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    eps: float,
    n_pgd: int,
    n_autoattack: int,
    nb_epochs: int | None = None,
    seed: int = 0,
    n_cw: int = 0,
) -> dict[str, Any]:
    """
    :param name: Row label.
    :param build: ``classifier -> trainer``.
    :param protocol: Data, model, optimizer and evaluation settings.
    :param data: ``(x_train, y_train, x_test, y_test)``.
    :param eps: Evaluation radius.
    :param n_pgd: Test images for clean accuracy and PGD-50-10 (the first ones).
    :param n_autoattack: Test images for AutoAttack standard (0 to skip).
    :param nb_epochs: Epochs (default: the protocol's).
    :param seed: Weight initialisation and trainer seed.
    :param n_cw: Test images for ART's Carlini-Wagner L-inf (0 to skip).
    :return: One row: seconds per epoch, passes per batch, accuracies, the trainer's history.
    """
    x_train, y_train, x_test, y_test = data
    classifier = protocol.make_classifier("cpu", seed=seed)
    trainer = build(classifier)
    started = time.perf_counter()
    history = trainer.fit(x_train, y_train, batch_size=protocol.batch_size, nb_epochs=nb_epochs or protocol.nb_epochs)
    wall = time.perf_counter() - started
    pgd = evaluate(classifier, x_test[:n_pgd], y_test[:n_pgd], eps, attacks=("pgd",), **protocol.evaluation_options())
    row = {
        "method": name,
        "s/epoch": float(np.mean([record["seconds"] for record in history])),
        "train s": wall,
        "passes": trainer.passes_per_batch,
        "clean": pgd.clean_accuracy,
        "pgd": pgd.robust_accuracy["pgd"],
        "history": history,
    }
    for attack, n in (("cw", n_cw), ("autoattack", n_autoattack)):
        if n:
            row[attack] = evaluate(classifier, x_test[:n], y_test[:n], eps, attacks=(attack,)).robust_accuracy[attack]
    print(f"  {name}: {row['s/epoch']:.2f} s/epoch, clean {row['clean']:.3f}, PGD {row['pgd']:.3f}"
          + (f", CW {row['cw']:.3f}" if n_cw else "") + (f", AA {row['autoattack']:.3f}" if n_autoattack else ""),
          flush=True)  # fmt: skip
    return row


def trainer_builder(factory: Callable[..., Any], eps: float, options: dict[str, Any], **engine: Any) -> Callable:
    """
    :param factory: A trainer class or factory (e.g. ``TRAINERS[name]``).
    :param eps: L-inf radius.
    :param options: The method's own arguments.
    :param engine: Engine options (warm-up, schedule); the overfitting guard is off unless given (the benchmarks
                   measure the methods themselves, catastrophic overfitting included, and time them without it).
    :return: ``(classifier, seed=0) -> factory(classifier, eps=eps, seed=seed, **engine, **options)``: a build for
             both :func:`time_data_passes` and :func:`train_and_evaluate`.
    """
    engine = {"overfitting_guard": None, **engine}
    return lambda classifier, seed=0: factory(classifier, eps=eps, seed=seed, **engine, **options)


def time_passes(
    builds: dict[str, Callable[[Any, int], Any]],
    make_classifier: Callable[[int], Any],
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    repeats: int,
) -> dict[str, list[float]]:
    """
    Seconds of one pass over ``(x, y)`` per configuration, the configurations interleaved (one of each in turn,
    ``repeats`` times): these machines are shared and noisy, so whole runs one after another give unstable ratios.
    A replay method's pass is ``nb_epochs=trainer.replays``.

    :param builds: Label -> ``(fresh classifier, seed) -> trainer`` (anything with ``fit(x, y, batch_size,
                   nb_epochs)``), or ``-> None`` for a function that trains one pass itself.
    :param make_classifier: ``seed -> fresh classifier``.
    :param x: Training inputs.
    :param y: Training labels.
    :param batch_size: Minibatch size.
    :param repeats: Passes timed per configuration.
    :return: Label -> seconds of each repeat.
    """
    seconds: dict[str, list[float]] = {label: [] for label in builds}
    for repeat in range(repeats):
        for label, build in builds.items():
            classifier = make_classifier(repeat)
            started = time.perf_counter()
            trainer = build(classifier, repeat)
            if trainer is not None:
                trainer.fit(x, y, batch_size=batch_size, nb_epochs=getattr(trainer, "replays", 1))
            seconds[label].append(time.perf_counter() - started)
            print(f"  repeat {repeat + 1}/{repeats} {label}: {seconds[label][-1]:.2f} s", flush=True)
    return seconds


def time_data_passes(
    builds: dict[str, Callable[[Any, int], Any]], protocol: Protocol, data: Data, repeats: int
) -> dict[str, float]:
    """
    :func:`time_passes` over a protocol's training data, with its classifiers and batch size.

    :param builds: Label -> ``(fresh classifier, seed) -> trainer`` (see :func:`time_passes`).
    :param protocol: Makes the classifiers; its batch size is used.
    :param data: ``(x_train, y_train, ...)``.
    :param repeats: Passes timed per configuration.
    :return: Label -> median seconds.
    """
    seconds = time_passes(builds, lambda seed: protocol.make_classifier("cpu", seed=seed), data[0], data[1],
                          protocol.batch_size, repeats)  # fmt: skip
    return {label: statistics.median(values) for label, values in seconds.items()}


def paired_ratio(seconds: dict[str, list[float]], numerator: str, denominator: str) -> tuple[float, list[float]]:
    """
    :param seconds: Label -> seconds per repeat of :func:`time_passes`.
    :param numerator: Label of the configuration measured.
    :param denominator: Label of the reference.
    :return: ``(median ratio, ratio per repeat)``, each ratio from the same repeat: load that drifts over the run
             affects both sides of a pair alike.
    """
    ratios = [a / b for a, b in zip(seconds[numerator], seconds[denominator], strict=True)]
    return statistics.median(ratios), ratios


def cost_table(median: dict[str, float], reference: dict[str, str]) -> str:
    """
    :param median: Label -> seconds of :func:`time_data_passes`.
    :param reference: Ratio column title -> label whose seconds is the denominator.
    :return: A markdown table of seconds per pass over the data and the ratios.
    """
    lines = ["| configuration | s/epoch | " + " | ".join(reference) + " |", "|---|---:|" + "---:|" * len(reference)]
    for label, value in median.items():
        ratios = " | ".join(f"{value / median[base]:.2f}x" for base in reference.values())
        lines.append(f"| {label} | {value:.2f} | {ratios} |")
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, Any]], reference: dict[str, str]) -> str:
    """
    :param rows: Rows of :func:`train_and_evaluate`.
    :param reference: Ratio column title -> method name whose seconds per epoch is the denominator.
    :return: A markdown table (CW and AutoAttack columns when any row has them).
    """
    by_name = {row["method"]: row for row in rows}
    extra = [(key, title) for key, title in (("cw", "CW"), ("autoattack", "AA")) if any(key in row for row in rows)]
    header = ["method", "s/epoch", *reference, "passes/batch", "clean", "PGD-50-10", *(title for _, title in extra)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        ratios = [f"{row['s/epoch'] / by_name[base]['s/epoch']:.2f}x" for base in reference.values()]
        accuracies = [f"{row[key]:.3f}" if key in row else "-" for key, _ in extra]
        cells = [row["method"], f"{row['s/epoch']:.2f}", *ratios, f"{row['passes']:g}", f"{row['clean']:.3f}",
                 f"{row['pgd']:.3f}", *accuracies]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
