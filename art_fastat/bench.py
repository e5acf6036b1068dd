"""
``art-fastat bench``: train every requested method under one benchmark protocol, evaluate each with
:func:`art_fastat.evaluate` and write a RobustBench-style leaderboard (Markdown, JSON, CSV) with two plots: robust
accuracy against training time with the Pareto front (``pareto.png``), and per-epoch training loss and validation PGD
accuracy (``curves.png``).

Every method runs with the protocol's model, optimizer, batch size, epochs, learning-rate schedule and eps warm-up
(``shared/design/protocol.md``); its own arguments are the defaults of its trainer. ART's ``AdversarialTrainerMadryPGD``
and ``AdversarialTrainerFBFPyTorch`` run beside them as external anchors (see :class:`~art_fastat.anchors.ARTAnchor`).
Each method is trained, saved and evaluated by :func:`art_fastat.runs.run_method`, as ``art-fastat train`` does, in
``DIR/<method>`` (``model.pt``, ``config.json``, ``history.json``, ``report.json``, ``report.md``).

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from art_fastat._validation import check_choice, check_positive_int
from art_fastat.anchors import ANCHORS
from art_fastat.evaluation import ATTACKS, leaderboard_accuracies
from art_fastat.protocols import Protocol, get_protocol
from art_fastat.runs import Data, run_method
from art_fastat.trainers import TRAINERS

logger = logging.getLogger(__name__)

#: Every method the bench knows, in the leaderboard's default order.
METHODS: tuple[str, ...] = (*TRAINERS, *ANCHORS)

LABELS: dict[str, str] = {
    "natural": "natural",
    "pgd": "RAT (PGD-10)",
    "fast": "Fast (FGSM-RS)",
    "nfgsm": "N-FGSM",
    "gradalign": "GradAlign",
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


def bench_method(
    method: str,
    *,
    protocol: Protocol,
    data: Data,
    out: Path,
    device: str | None,
    seed: int,
    n_eval: int | None,
    attacks: Sequence[str],
    epochs: int | None,
    verbose: bool,
) -> dict[str, Any]:
    """
    Train, save and evaluate one method under ``protocol`` with :func:`~art_fastat.runs.run_method`, in
    ``out/<method>``.

    :return: The method's result (its ``result.json``): label, training seconds, passes per batch, history and the
             evaluation report.
    """
    run = run_method(method, protocol=protocol, data=data, out=out / method, device=device, seed=seed,
                     epochs=epochs, resume=True, attacks=attacks, n_eval=n_eval, verbose=verbose)  # fmt: skip
    if run.report is None:
        raise RuntimeError("the bench runs in one process: ranks other than 0 of a process group evaluate nothing")
    return {
        "method": method,
        "label": LABELS.get(method, method),
        "protocol": protocol.name,
        "training_seconds": float(run.training_seconds),
        "passes_per_batch": float(run.passes_per_batch),
        "epochs": len(run.history),
        "history": run.history,
        "report": run.report.to_dict(),
    }


def leaderboard(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    RobustBench-style rows, best first: by AutoAttack accuracy when it was run, else by worst-case accuracy.
    Accuracies in percent; ``vs_rat`` / ``vs_natural`` are training-time ratios to RAT (PGD-10) and to natural
    training of the same run (None when that method was not run).

    :param results: Results of :func:`bench_method`.
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
        result = bench_method(method, protocol=settings, data=data, out=out, device=device, seed=seed, n_eval=n_eval,
                              attacks=attacks, epochs=epochs, verbose=verbose)  # fmt: skip
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
