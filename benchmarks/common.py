"""Shared by the method benchmarks: train one method under a protocol, evaluate it, print a table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from art_fastat.evaluation import evaluate
from art_fastat.protocols import Protocol


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


def time_interleaved(runs: dict[str, Callable[[Any, int], None]], protocol: Protocol, repeats: int) -> dict[str, float]:
    """
    Median seconds of one call per configuration, the configurations interleaved (one of each in turn, ``repeats``
    times): these machines are shared and noisy, so whole runs one after another give unstable ratios.

    :param runs: Label -> ``(fresh classifier, seed) -> None``, e.g. one pass over the data.
    :param protocol: Makes the classifiers.
    :param repeats: Calls timed per configuration.
    :return: Label -> median seconds.
    """
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for repeat in range(repeats):
        for label, run in runs.items():
            classifier = protocol.make_classifier("cpu", seed=repeat)
            started = time.perf_counter()
            run(classifier, repeat)
            seconds[label].append(time.perf_counter() - started)
            print(f"  repeat {repeat + 1}/{repeats} {label}: {seconds[label][-1]:.2f} s", flush=True)
    return {label: statistics.median(values) for label, values in seconds.items()}


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
