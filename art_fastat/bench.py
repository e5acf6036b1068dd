"""
``art-fastat bench``: train every requested method under one benchmark protocol, evaluate each with
:func:`art_fastat.evaluate` and write a RobustBench-style leaderboard (Markdown, JSON, CSV) with two plots: robust
accuracy against training time with the Pareto front (``pareto.png``), and per-epoch training loss and validation PGD
accuracy (``curves.png``).

Every method runs with the protocol's model, optimizer, batch size, epochs, learning-rate schedule and eps warm-up
(``shared/design/protocol.md``); its own arguments are the defaults of its trainer. ART's ``AdversarialTrainerMadryPGD``
and ``AdversarialTrainerFBFPyTorch`` run beside them as external anchors (see :class:`ARTAnchor`).

Resumable: each method's result is written to ``DIR/<method>/result.json`` when it is finished, and a re-run skips
the methods that have one; a method interrupted mid-training continues from its engine checkpoint
(``DIR/<method>/checkpoint``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from art_fastat._classifier import clip_bounds, input_space_model
from art_fastat._validation import check_choice, check_positive_int
from art_fastat.evaluation import ATTACKS, evaluate, leaderboard_accuracies
from art_fastat.evaluation.validation import VALIDATION_PGD_STEPS, VALIDATION_SIZE, validation_metrics
from art_fastat.protocols import Protocol, get_protocol
from art_fastat.trainers import TRAINERS
from art_fastat.trainers.schedules import lr_multiplier, warmed_up_eps

logger = logging.getLogger(__name__)

#: ART's own trainers, run as anchors: name -> (label, passes per batch).
ANCHORS: dict[str, tuple[str, float]] = {"art-madry": ("ART MadryPGD (PGD-10)", 11.0), "art-fbf": ("ART FBF", 2.0)}

#: Every method the bench knows, in the leaderboard's default order.
METHODS: tuple[str, ...] = (*TRAINERS, *ANCHORS)

LABELS: dict[str, str] = {
    "natural": "natural",
    "pgd": "RAT (PGD-10)",
    "fast": "Fast (FGSM-RS)",
    "gaat": "GAAT",
    "dat": "DAT",
    "dat+gaat": "DAT+GAAT",
    "free": "Free-8",
    "atcd": "ATCD (T=4, K=2)",
    "atlas": "ATLAS",
    "l2l": "L2L (T=5)",
    "l2l-trades": "L2L-TRADES (T=5)",
    **{name: label for name, (label, _) in ANCHORS.items()},
}

#: Where a point's label goes, relative to the point, as more labelled points crowd it.
LABEL_CORNERS = (((6, 5), "left"), ((-6, -13), "right"), ((6, -13), "left"), ((-6, 5), "right"))

COLUMNS = ("rank", "method", "clean", "autoattack", "pgd", "cw", "worst_case", "training_seconds", "vs_rat",
           "vs_natural", "passes_per_batch", "epochs")  # fmt: skip


class ARTAnchor:
    """
    ART's ``AdversarialTrainerMadryPGD`` (PGD-10, step eps/4) or ``AdversarialTrainerFBFPyTorch`` run through ART's
    public API one epoch at a time, so that the bench records their time and validation accuracy per epoch as it does
    for our trainers.

    ART's trainers take no learning-rate or eps schedule. For MadryPGD this class sets, before each epoch, the
    optimizer's learning rate and the attack's eps to the protocol's schedule at the epoch's middle (the protocol's
    per-iteration schedules at epoch granularity; without the eps warm-up PGD-AT collapses on P1). FBF sets its own
    learning rate on every batch (ART's CIFAR-10 cycle to 0.21), which this class leaves as ART runs it. Training
    loss is not reported by ART's trainers, so the anchors have no loss curve.

    :param classifier: The ART ``PyTorchClassifier`` to train in place.
    :param eps: L-inf radius.
    :param kind: ``"art-madry"`` or ``"art-fbf"``.
    :param protocol: The protocol whose schedules apply.
    :param seed: Seed of numpy's and torch's global random state, which ART's trainers draw from.
    """

    def __init__(self, classifier: Any, eps: float, kind: str, protocol: Protocol, seed: int = 0) -> None:
        self.classifier = classifier
        self.eps = eps
        self.kind = check_choice(kind, "kind", tuple(ANCHORS))
        self.protocol = protocol
        self.seed = seed
        self.passes_per_batch = ANCHORS[kind][1]
        self.history: list[dict[str, float]] = []

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        validation_data: tuple[np.ndarray, np.ndarray],
        batch_size: int,
        nb_epochs: int,
        validation_size: int = VALIDATION_SIZE,
    ) -> list[dict[str, float]]:
        """
        :param x: Training inputs.
        :param y: Integer training labels.
        :param validation_data: ``(x, y)`` of which the first ``validation_size`` are validated each epoch.
        :param batch_size: Minibatch size.
        :param nb_epochs: Epochs.
        :param validation_size: Validation samples per epoch.
        :return: The per-epoch history.
        """
        from art.defences.trainer import AdversarialTrainerFBFPyTorch, AdversarialTrainerMadryPGD

        one_hot = np.eye(self.classifier.nb_classes, dtype=np.float32)[y]  # ART's adversarial trainers want one-hot
        device = self.classifier.device
        x_val = torch.from_numpy(validation_data[0][:validation_size]).to(device)
        y_val = torch.from_numpy(validation_data[1][:validation_size]).to(device)
        low, high = clip_bounds(self.classifier, device)
        model = input_space_model(self.classifier)
        peak_lrs = [group["lr"] for group in self.classifier.optimizer.param_groups]
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        for epoch in range(nb_epochs):
            middle = epoch + 0.5
            started = time.perf_counter()
            if self.kind == "art-madry":
                eps = warmed_up_eps(self.eps, middle, self.protocol.eps_warmup_epochs)
                for group, peak in zip(self.classifier.optimizer.param_groups, peak_lrs, strict=True):
                    group["lr"] = peak * lr_multiplier(self.protocol.lr_schedule, middle / nb_epochs)
                trainer = AdversarialTrainerMadryPGD(self.classifier, nb_epochs=1, batch_size=batch_size, eps=eps,
                                                     eps_step=eps / 4, max_iter=10)  # fmt: skip
                trainer.attack.set_params(verbose=False)
                trainer.fit(x, one_hot)
            else:
                AdversarialTrainerFBFPyTorch(self.classifier, eps=self.eps).fit(
                    x, one_hot, batch_size=batch_size, nb_epochs=1
                )
            record = {"epoch": epoch + 1, "seconds": time.perf_counter() - started}
            model.eval()  # ART's next epoch puts it back in train mode
            record.update(validation_metrics(model, x_val, y_val, self.eps, VALIDATION_PGD_STEPS, low, high,
                                             self.seed + 1))  # fmt: skip
            self.history.append(record)
        return self.history


def run_method(
    method: str, protocol: Protocol, data: tuple, out: Path, device: str | None, seed: int, n_eval: int | None,
    attacks: Sequence[str], epochs: int | None, verbose: bool,
) -> dict[str, Any]:  # fmt: skip
    """
    Train one method under ``protocol`` and evaluate it.

    :return: The method's result: label, training seconds, passes per batch, history and the evaluation report.
    """
    x_train, y_train, x_test, y_test = data
    classifier = protocol.make_classifier(device, seed)
    nb_epochs = epochs or protocol.nb_epochs
    if method in ANCHORS:
        trainer: Any = ARTAnchor(classifier, protocol.eps, method, protocol, seed)
    else:
        trainer = TRAINERS[method](classifier, eps=protocol.eps, seed=seed, checkpoint_dir=out / method / "checkpoint",
                                   resume=True, verbose=verbose, **protocol.trainer_options())  # fmt: skip
    history = trainer.fit(x_train, y_train, validation_data=(x_test, y_test), batch_size=protocol.batch_size,
                          nb_epochs=nb_epochs)  # fmt: skip
    x_eval, y_eval = (x_test, y_test) if n_eval is None else (x_test[:n_eval], y_test[:n_eval])
    report = evaluate(classifier, x_eval, y_eval, protocol.eps, attacks=tuple(attacks), seed=seed,
                      **protocol.evaluation_options())  # fmt: skip
    return {
        "method": method,
        "label": LABELS.get(method, method),
        "protocol": protocol.name,
        "training_seconds": float(sum(record["seconds"] for record in history)),
        "passes_per_batch": float(trainer.passes_per_batch),
        "epochs": len(history),
        "history": history,
        "report": report.to_dict(),
    }


def leaderboard(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    RobustBench-style rows, best first: by AutoAttack accuracy when it was run, else by worst-case accuracy.
    Accuracies in percent; ``vs_rat`` / ``vs_natural`` are training-time ratios to RAT (PGD-10) and to natural
    training of the same run (None when that method was not run).

    :param results: Results of :func:`run_method`.
    :return: The rows.
    """
    seconds = {result["method"]: result["training_seconds"] for result in results}

    def ratio(value: float, reference: str) -> float | None:
        return round(value / seconds[reference], 2) if seconds.get(reference) else None

    rows = []
    for result in results:
        rows.append({
            "method": result["label"],
            **leaderboard_accuracies(result["report"]),
            "training_seconds": round(result["training_seconds"], 1),
            "vs_rat": ratio(result["training_seconds"], "pgd"),
            "vs_natural": ratio(result["training_seconds"], "natural"),
            "passes_per_batch": result["passes_per_batch"],
            "epochs": result["epochs"],
        })  # fmt: skip
    key = _robust_key(rows)
    rows.sort(key=lambda row: (-row[key], -(row["pgd"] or 0.0), -row["clean"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return [{column: row[column] for column in COLUMNS} for row in rows]


def to_markdown(rows: Sequence[dict[str, Any]], protocol: Protocol, n: int) -> str:
    """The leaderboard as a Markdown table."""

    def cell(value: Any, suffix: str = "") -> str:
        if value is None:
            return "-"
        return f"{value:g}{suffix}" if isinstance(value, float) else str(value)

    header = ["#", "method", "clean", "AutoAttack", "PGD", "CW", "worst case", "train s", "vs RAT", "vs natural",
              "passes/batch", "epochs"]  # fmt: skip
    lines = [
        f"Leaderboard: protocol {protocol.name}, L-inf eps = {protocol.eps:g}, {n} test images, accuracies in %",
        "",
        "| " + " | ".join(header) + " |",
        "|---:|---|" + "---:|" * (len(header) - 2),
    ]
    for row in rows:
        cells = [cell(row[column]) for column in COLUMNS]
        cells[8], cells[9] = cell(row["vs_rat"], "x"), cell(row["vs_natural"], "x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pareto_front(points: Sequence[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """
    :param points: ``(training seconds, robust accuracy, name)``.
    :return: The points no other point beats on both (less or equal time and higher accuracy), fastest first.
    """
    front: list[tuple[float, float, str]] = []
    best = -math.inf
    for point in sorted(points, key=lambda p: (p[0], -p[1])):
        if point[1] > best:
            front.append(point)
            best = point[1]
    return front


def _robust_key(rows: Sequence[dict[str, Any]]) -> str:
    """AutoAttack accuracy ranks the methods when it was run for all of them, else worst-case accuracy."""
    return "autoattack" if all(row["autoattack"] is not None for row in rows) else "worst_case"


def plot_pareto(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Robust accuracy against training seconds (log scale), every method a labelled point, the Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    robust_key = _robust_key(rows)
    points = sorted((row["training_seconds"], row[robust_key], row["method"]) for row in rows)
    front = pareto_front(points)
    figure, axes = plt.subplots(figsize=(8.5, 5.5))
    on_front = {name for _, _, name in front}
    span = max(1e-9, max(p[1] for p in points) - min(p[1] for p in points))
    placed: list[tuple[float, float]] = []
    for seconds, robust, name in sorted(points, key=lambda p: -p[1]):
        axes.scatter(seconds, robust, s=60, color="tab:red" if name in on_front else "tab:gray", zorder=3)
        # labels of points close to ones already labelled (similar time and accuracy) take the next free corner
        crowded = sum(abs(math.log(seconds / x)) < 0.4 and abs(robust - y) < 0.08 * span for x, y in placed)
        (dx, dy), side = LABEL_CORNERS[crowded % len(LABEL_CORNERS)]
        axes.annotate(name, (seconds, robust), textcoords="offset points", xytext=(dx, dy), ha=side, fontsize=9)
        placed.append((seconds, robust))
    axes.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", linewidth=1.5,
              label="Pareto front: no method is both faster and more robust")  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("training time (s, log scale)")
    axes.set_ylabel(f"{'AutoAttack' if robust_key == 'autoattack' else 'worst-case'} accuracy (%)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_curves(results: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Per-epoch training loss and validation PGD accuracy of every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axes, pgd_axes) = plt.subplots(1, 2, figsize=(14, 4.8))
    colours = plt.get_cmap("tab20").colors
    for index, result in enumerate(results):
        history = result["history"]
        epochs = [record["epoch"] for record in history]
        style = {"color": colours[(2 * index) % 20 + (index // 10) % 2], "linestyle": ("-", "--", ":")[index % 3],
                 "marker": "o", "markersize": 3, "label": result["label"]}  # fmt: skip
        if all("loss" in record for record in history):
            loss_axes.plot(epochs, [record["loss"] for record in history], **style)
        if all("val_pgd_accuracy" in record for record in history):
            pgd_axes.plot(epochs, [100 * record["val_pgd_accuracy"] for record in history], **style)
    loss_axes.set(xlabel="epoch (pass over the data)", ylabel="training loss (on the method's own inputs)",
                  title="training loss")  # fmt: skip
    pgd_axes.set(xlabel="epoch (pass over the data)", ylabel="validation PGD-10 accuracy (%)",
                 title="validation robustness")  # fmt: skip
    for axes in (loss_axes, pgd_axes):
        axes.grid(True, alpha=0.3)
    pgd_axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def bench(
    protocol: str,
    out: str | os.PathLike,
    methods: Sequence[str] = METHODS,
    data_dir: str | None = None,
    device: str | None = None,
    seed: int = 0,
    n_eval: int | None = None,
    attacks: Sequence[str] = ATTACKS,
    epochs: int | None = None,
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """
    Train and evaluate ``methods`` under ``protocol``; write ``leaderboard.md/.json/.csv``, ``pareto.png`` and
    ``curves.png`` to ``out``. Methods with a ``result.json`` in ``out`` are not run again.

    :param protocol: ``"digits"``, ``"mnist10k"`` or ``"cifar10"``.
    :param out: Output directory.
    :param methods: Method names: keys of :data:`art_fastat.trainers.TRAINERS` and ``"art-madry"``, ``"art-fbf"``.
    :param data_dir: Directory of the protocol's data files (mnist10k, cifar10).
    :param device: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
    :param seed: Seed of every method's initialisation, training and attacks.
    :param n_eval: Evaluate on the first ``n_eval`` test images (default: all).
    :param attacks: Attacks of :func:`art_fastat.evaluate`.
    :param epochs: Epochs of every method (default: the protocol's).
    :param verbose: Progress bars over methods and over each method's batches.
    :return: The leaderboard rows.
    """
    settings = get_protocol(protocol)
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError(f"methods must name at least one of {', '.join(METHODS)}")
    for method in methods:
        check_choice(method, "methods", METHODS)
    if n_eval is not None:
        n_eval = check_positive_int(n_eval, "n_eval")
    if epochs is not None:
        epochs = check_positive_int(epochs, "epochs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = settings.load(data_dir)
    results = []
    progress = tqdm(methods, desc="bench", unit="method", disable=not verbose)
    for method in progress:
        progress.set_postfix(method=method)
        result_path = out / method / "result.json"
        if result_path.exists():
            logger.info("%s: finished in an earlier run, read from %s", method, result_path)
            results.append(json.loads(result_path.read_text()))
            continue
        result = run_method(method, settings, data, out, device, seed, n_eval, attacks, epochs, verbose)
        result_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(result_path, json.dumps(result, indent=2))
        results.append(result)
    progress.close()
    rows = leaderboard(results)
    n = results[0]["report"]["n"]
    _write_atomically(out / "leaderboard.md", to_markdown(rows, settings, n) + "\n")
    _write_atomically(out / "leaderboard.json", json.dumps(rows, indent=2))
    with open(out / "leaderboard.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    title = f"{settings.name}, eps {settings.eps:g}, {n} test images"
    plot_pareto(rows, out / "pareto.png", f"Robustness against training time ({title})")
    plot_curves(results, out / "curves.png", f"Training curves ({settings.name})")
    return rows
