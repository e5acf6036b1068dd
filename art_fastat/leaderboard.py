"""
The leaderboard of ``art-fastat bench`` (:mod:`art_fastat.bench`) from its per-run results: per method the mean and
standard error over seeds of every accuracy and of the training time, a Markdown table, a Pareto plot with error bars,
training curves, and the seed papers' relative claims measured against it (:func:`relative_claims`).

A result is what :func:`art_fastat.bench.bench_method` writes to ``result.json`` for one (method, seed): ``method``,
``label``, ``seed``, ``training_seconds``, ``passes_per_batch``, ``epochs``, ``history``, ``stop_reason`` and the
evaluation ``report`` (:meth:`~art_fastat.evaluation.RobustnessReport.to_dict`).

The standard error is the sample standard deviation over seeds (``ddof=1``) divided by the square root of the number
of seeds: the spread of training seeds (initialisation, data order, the attacks' random starts), not the sampling
error of the test images, which every method shares because all are evaluated on the same images. It is None with one
seed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from art_fastat.evaluation.report import leaderboard_accuracies
from art_fastat.protocols import Protocol

#: The accuracies of a row, in percent: the clean one, one per attack, the per-sample worst case.
ACCURACIES: tuple[str, ...] = ("clean", "autoattack", "pgd", "cw", "worst_case")
#: The attacks whose numbers of images a row reports, and their short names in the Markdown table.
ATTACK_NAMES: dict[str, str] = {"pgd": "PGD", "autoattack": "AA", "cw": "CW"}

COLUMNS: tuple[str, ...] = (
    "rank", "method", "seeds",
    *(name + suffix for name in ACCURACIES for suffix in ("", "_se")),
    "training_seconds", "training_seconds_se", "vs_rat", "vs_natural", "passes_per_batch", "epochs", "images",
    "stopped_early",
)  # fmt: skip

#: The seed papers' claims measured by :func:`relative_claims`: (method, reference, what the paper claims). The
#: comparisons with N-FGSM (de Jorge et al. 2022, a one-step method of 2 passes) are the project's, not the papers', as
#: is ART's MadryPGD against RAT (the same method: a check of the engine); TRADES and AWP are measured against MadryPGD.
CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("gaat", "pgd", "GAAT (Gong): up to 60% less training time than RAT with comparable clean and robust accuracy"),
    ("atcd", "free", "ATCD: more robust than Free-8 at the same T K = 8 budget and about the same training time"),
    ("atlas", "fast", "ATLAS: with one-step adversaries, more robust than one-step adversarial training, near "
                      "strong-adversary training, at a lower cost than it"),
    ("l2l", "pgd", "L2L: a learned RNN maximizer noticeably improves the robust accuracy of PGD adversarial training"),
    ("l2l-trades", "pgd", "L2L-TRADES: the learned maximizer with TRADES's objective, against PGD adversarial "
                          "training"),
    ("art-madry", "pgd", "not a paper's claim: ART's MadryPGD trainer runs RAT's method (PGD-10, step eps/4), so the "
                         "two should agree"),
    ("art-trades", "art-madry", "TRADES (Zhang et al. 2019): a better trade-off of robust and clean accuracy than "
                                "PGD adversarial training"),
    ("art-awp", "art-madry", "AWP (Wu et al. 2020): weight perturbation makes PGD adversarial training more robust"),
    *((method, "nfgsm", "not claimed by the paper: against N-FGSM, the modern one-step baseline (2 passes)")
      for method in ("gaat", "atcd", "atlas", "l2l")),
)  # fmt: skip

#: Where a point's label goes first, relative to the point (offset in points, alignment), as labels crowd it.
LABEL_CORNERS = (((6, 5), "left"), ((-6, -13), "right"), ((6, -13), "left"), ((-6, 5), "right"))
#: Points (1/72 inch) between successive label offsets: a line of the plot's 9-point labels.
LABEL_STEP = 12
#: Steps a crowded label may move away from its point, up or down.
LABEL_STEPS = 11
#: The line from a label placed away from its point to the point.
LEADER_LINE = {"arrowstyle": "-", "color": "0.6", "linewidth": 0.6}
#: Half the side, in pixels, of the square around a marker that no label may cover.
MARKER_RADIUS = 6


def mean_and_se(values: Sequence[float]) -> tuple[float | None, float | None]:
    """
    :param values: One value per seed.
    :return: The mean and its standard error (sample standard deviation / sqrt(count)); None for a missing mean and
             for the error of fewer than two values.
    """
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) >= 2 else None
    return mean, se


def by_method(results: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """:return: The results grouped by method, in order of first appearance, each group sorted by seed."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(result["method"], []).append(result)
    return {method: sorted(group, key=lambda r: r.get("seed", 0)) for method, group in groups.items()}


def image_counts(report: dict[str, Any]) -> dict[str, int]:
    """
    :param report: An evaluation report as a dict.
    :return: The number of test images of ``"clean"``, each attack run and ``"worst_case"`` (all ``n`` for reports
             written before per-attack sizes existed).
    """
    sizes = report.get("sizes", {})
    return {name: int(sizes.get(name, report["n"])) for name in ("clean", *report["robust_accuracy"], "worst_case")}


def leaderboard(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    RobustBench-style rows, one per method, best first: by mean AutoAttack accuracy when every method has one, else
    by mean worst-case accuracy. Accuracies in percent, each with its standard error over seeds (``<name>_se``, None
    with one seed); ``vs_rat`` / ``vs_natural`` are ratios of mean training time to RAT's (``pgd``) and to natural
    training's (None when that method was not run); ``images`` the test images of each accuracy per seed;
    ``stopped_early`` one line per seed whose run a guard stopped early.

    :param results: Results of :func:`art_fastat.bench.bench_method`, any number of seeds per method.
    :return: The rows, with the keys of :data:`COLUMNS`.
    """
    groups = by_method(results)
    seconds = {method: mean_and_se([r["training_seconds"] for r in group])[0] for method, group in groups.items()}

    def ratio(value: float, reference: str) -> float | None:
        return round(value / seconds[reference], 2) if seconds.get(reference) else None

    rows = []
    for group in groups.values():
        row: dict[str, Any] = {"method": group[0]["label"], "seeds": len(group)}
        accuracies = [leaderboard_accuracies(result["report"]) for result in group]
        for name in ACCURACIES:
            mean, se = mean_and_se([a[name] for a in accuracies if a[name] is not None])
            row[name], row[name + "_se"] = _rounded(mean), _rounded(se)
        mean, se = mean_and_se([result["training_seconds"] for result in group])
        row["training_seconds"], row["training_seconds_se"] = round(mean, 1), _rounded(se, 1)
        row["vs_rat"], row["vs_natural"] = ratio(mean, "pgd"), ratio(mean, "natural")
        row["passes_per_batch"] = group[0]["passes_per_batch"]
        epochs = [result["epochs"] for result in group]
        row["epochs"] = epochs[0] if len(set(epochs)) == 1 else round(math.fsum(epochs) / len(epochs), 1)
        counts = [image_counts(result["report"]) for result in group]
        row["images"] = {name: [c[name] for c in counts if name in c] for name in ("clean", *ATTACK_NAMES, "worst_case")
                         if any(name in c for c in counts)}  # fmt: skip
        row["stopped_early"] = [_stopped(r) for r in group if r.get("stop_reason")]
        rows.append(row)
    key = robust_key(rows)
    rows.sort(key=lambda row: (-(row[key] or 0.0), -(row["pgd"] or 0.0), -(row["clean"] or 0.0)))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return [{column: row[column] for column in COLUMNS} for row in rows]


def robust_key(rows: Sequence[dict[str, Any]]) -> str:
    """AutoAttack accuracy ranks the methods when it was run for all of them, else worst-case accuracy."""
    return "autoattack" if all(row["autoattack"] is not None for row in rows) else "worst_case"


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _mean_cell(mean: Any, se: Any) -> str:
    if mean is None:
        return "-"
    return f"{mean:g}" if se is None else f"{mean:g} ± {se:g}"


def images_cell(images: dict[str, list[int]]) -> str:
    """``{"pgd": [2000, 2000], "autoattack": [500, 200]}`` -> ``"PGD 2000, AA 500/200"`` (one count when the seeds
    agree)."""
    cells = []
    for name, short in ATTACK_NAMES.items():
        if name in images:
            counts = images[name]
            cells.append(f"{short} {counts[0] if len(set(counts)) == 1 else '/'.join(map(str, counts))}")
    return ", ".join(cells)


def csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """A leaderboard row with its ``images`` and ``stopped_early`` as text, for a CSV file."""
    return {**row, "images": images_cell(row["images"]), "stopped_early": "; ".join(row["stopped_early"])}


def to_markdown(rows: Sequence[dict[str, Any]], protocol: Protocol) -> str:
    """
    :param rows: Rows of :func:`leaderboard`.
    :param protocol: The :class:`~art_fastat.protocols.Protocol` they ran under.
    :return: The leaderboard as a Markdown table: mean ± standard error over the seeds of each row.
    """
    header = ["#", "method", "seeds", "clean", "AutoAttack", "PGD", "CW", "worst case", "train s", "vs RAT",
              "vs natural", "passes/batch", "epochs", "images per seed", "stopped early"]  # fmt: skip
    clean = sorted({n for row in rows for n in row["images"].get("clean", [])})
    lines = [
        f"Leaderboard: protocol {protocol.name}, L-inf eps = {protocol.eps:g}, accuracies in % (mean ± standard error "
        f"over seeds), clean accuracy on the first {'/'.join(map(str, clean))} test images, each attack on the first "
        "images of its count in 'images per seed', the worst case on the images every attack saw (or an attack's "
        "own accuracy where lower: an attack run on fewer images can leave a worst case above another attack's)",
        "",
        "| " + " | ".join(header) + " |",
        "|---:|---|---:|" + "---:|" * (len(header) - 5) + "---|---|",
    ]
    for row in rows:
        cells = [str(row["rank"]), row["method"], str(row["seeds"])]
        cells += [_mean_cell(row[name], row[name + "_se"]) for name in ACCURACIES]
        cells.append(_mean_cell(row["training_seconds"], row["training_seconds_se"]))
        cells += ["-" if row[key] is None else f"{row[key]:g}x" for key in ("vs_rat", "vs_natural")]
        cells += [f"{row['passes_per_batch']:g}", f"{row['epochs']:g}", images_cell(row["images"])]
        cells.append("; ".join(row["stopped_early"]) or "-")
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


#: Where the Pareto plot draws a run whose training seconds round to 0 in the table.
MIN_PLOTTED_SECONDS = 0.05


def plot_pareto(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """
    Robust accuracy against training seconds (log scale), every method a labelled point with error bars of one
    standard error on both axes (none with one seed), the Pareto front of the means drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = robust_key(rows)
    # the time axis is logarithmic: a run shorter than the table's 0.1 s resolution is drawn at 0.05 s
    points = sorted((max(row["training_seconds"], MIN_PLOTTED_SECONDS), row[key] or 0.0, row["method"]) for row in rows)
    errors = {row["method"]: (row["training_seconds_se"] or 0.0, row[key + "_se"] or 0.0) for row in rows}
    front = pareto_front(points)
    on_front = {name for _, _, name in front}
    figure, axes = plt.subplots(figsize=(8.5, 5.5))
    for seconds, robust, name in points:
        x_error, y_error = errors[name]
        axes.errorbar(seconds, robust, xerr=x_error, yerr=y_error, fmt="o", markersize=7, capsize=3, zorder=3,
                      color="tab:red" if name in on_front else "tab:gray")  # fmt: skip
    axes.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", linewidth=1.5,
              label="Pareto front of the means: no method is both faster and more robust")  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("training time (s, log scale; mean ± standard error over seeds)")
    axes.set_ylabel(f"{'AutoAttack' if key == 'autoattack' else 'worst-case'} accuracy (%, mean ± standard error)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    _place_labels(axes, sorted(points, key=lambda p: -p[1]))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _place_labels(axes: Any, points: Sequence[tuple[float, float, str]]) -> None:
    """
    Labels each point at the first of :data:`LABEL_CORNERS`, then of ever farther offsets above and below it (with a
    leader line), whose text covers no marker and no label already placed and stays inside the axes; the layout must
    be final.
    """
    from matplotlib.transforms import Bbox

    renderer = axes.figure.canvas.get_renderer()
    inside = axes.get_window_extent(renderer)
    farther = [((dx, dy + step * LABEL_STEP * (1 if dy > 0 else -1)), side)
               for step in range(1, LABEL_STEPS + 1) for (dx, dy), side in LABEL_CORNERS]  # fmt: skip
    candidates = [*LABEL_CORNERS, *farther]
    # the markers are taken from the start: no label covers a point
    taken = [Bbox.from_extents(x - MARKER_RADIUS, y - MARKER_RADIUS, x + MARKER_RADIUS, y + MARKER_RADIUS)
             for x, y in axes.transData.transform([(seconds, robust) for seconds, robust, _ in points])]  # fmt: skip
    for seconds, robust, name in points:
        for index, (offset, side) in enumerate(candidates):
            label = axes.annotate(name, (seconds, robust), textcoords="offset points", xytext=offset, ha=side,
                                  fontsize=9)  # fmt: skip
            box = label.get_window_extent(renderer)
            fits = inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
            if (fits and not any(box.overlaps(other) for other in taken)) or index == len(candidates) - 1:
                taken.append(box)
                if index >= len(LABEL_CORNERS):  # away from its point: a leader line says whose label it is
                    label.remove()
                    axes.annotate(name, (seconds, robust), textcoords="offset points", xytext=offset, ha=side,
                                  fontsize=9, arrowprops=LEADER_LINE)  # fmt: skip
                break
            label.remove()


def plot_curves(results: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Per-epoch training loss and validation PGD accuracy (on the run's validation images: the first training images,
    see :mod:`art_fastat.runs`) of every method, each epoch the mean over the seeds that reached it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axes, pgd_axes) = plt.subplots(1, 2, figsize=(14, 4.8))
    colours = plt.get_cmap("tab20").colors
    for index, group in enumerate(by_method(results).values()):
        label = group[0]["label"] + (f" ({len(group)} seeds)" if len(group) > 1 else "")
        style = {"color": colours[(2 * index) % 20 + (index // 10) % 2], "linestyle": ("-", "--", ":")[index % 3],
                 "marker": "o", "markersize": 3, "label": label}  # fmt: skip
        for axes, name, scale in ((loss_axes, "loss", 1.0), (pgd_axes, "val_pgd_accuracy", 100.0)):
            if all(name in record for result in group for record in result["history"]):
                epochs, means = _mean_curve([result["history"] for result in group], name)
                axes.plot(epochs, [scale * value for value in means], **style)
    loss_axes.set(xlabel="epoch (pass over the data)", ylabel="training loss (on the method's own inputs)",
                  title="training loss")  # fmt: skip
    pgd_axes.set(xlabel="epoch (pass over the data)", ylabel="PGD-10 accuracy (%), first 512 training images",
                 title="validation robustness (training images)")  # fmt: skip
    for axes in (loss_axes, pgd_axes):
        axes.grid(True, alpha=0.3)
    pgd_axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _mean_curve(histories: Sequence[Sequence[dict[str, Any]]], name: str) -> tuple[list[int], list[float]]:
    """The per-epoch mean of ``name`` over the histories that have that epoch."""
    values: dict[int, list[float]] = {}
    for history in histories:
        for record in history:
            values.setdefault(int(record["epoch"]), []).append(float(record[name]))
    epochs = sorted(values)
    return epochs, [math.fsum(values[epoch]) / len(values[epoch]) for epoch in epochs]


def relative_claims(
    results: Sequence[dict[str, Any]], claims: Sequence[tuple[str, str, str]] = CLAIMS
) -> list[dict[str, Any]]:
    """
    The seed papers' relative claims against the bench: for each ``(method, reference, claim)`` whose two methods
    were both run, the paired differences over the seeds both ran (the same seed trains both from the same
    initialisation and they are evaluated on the same images), each as mean and standard error: robust accuracy
    (AutoAttack when every one of those runs has it, else the worst case), PGD and clean accuracy in percentage
    points (method minus reference), and the ratio of training times (method / reference). ``reading`` says whether
    the robust difference exceeds two standard errors.

    :param results: Results of :func:`art_fastat.bench.bench_method`.
    :param claims: ``(method, reference, what the paper claims)``; default :data:`CLAIMS`.
    :return: One dict per claim whose methods share at least one seed.
    """
    groups = {method: {r.get("seed", 0): r for r in group} for method, group in by_method(results).items()}
    measured = []
    for method, reference, claim in claims:
        if method not in groups or reference not in groups:
            continue
        seeds = sorted(set(groups[method]) & set(groups[reference]))
        if not seeds:
            continue
        pairs = [(groups[method][seed], groups[reference][seed]) for seed in seeds]
        accuracies = [(leaderboard_accuracies(a["report"]), leaderboard_accuracies(b["report"])) for a, b in pairs]
        robust = "autoattack" if all(a["autoattack"] is not None and b["autoattack"] is not None
                                     for a, b in accuracies) else "worst_case"  # fmt: skip
        entry: dict[str, Any] = {"method": method, "reference": reference, "label": pairs[0][0]["label"],
                                 "reference_label": pairs[0][1]["label"], "claim": claim, "seeds": seeds,
                                 "robust_metric": robust}  # fmt: skip
        for name, key in (("robust", robust), ("pgd", "pgd"), ("clean", "clean")):
            differences = [a[key] - b[key] for a, b in accuracies if a[key] is not None and b[key] is not None]
            mean, se = mean_and_se(differences)
            entry[name + "_difference"], entry[name + "_difference_se"] = _rounded(mean), _rounded(se)
        mean, se = mean_and_se([a["training_seconds"] / b["training_seconds"] for a, b in pairs])
        entry["time_ratio"], entry["time_ratio_se"] = _rounded(mean), _rounded(se)
        entry["reading"] = _reading(entry["robust_difference"], entry["robust_difference_se"])
        measured.append(entry)
    return measured


def _reading(difference: float | None, se: float | None) -> str:
    if difference is None:
        return "not measured"
    if se is None:
        return "one seed: no standard error"
    if difference > 2 * se:
        return "more robust (by over 2 SE)"
    if difference < -2 * se:
        return "less robust (by over 2 SE)"
    return "robustness within 2 SE"


def claims_markdown(claims: Sequence[dict[str, Any]], protocol: Protocol) -> str:
    """
    :param claims: Entries of :func:`relative_claims`.
    :param protocol: The protocol the bench ran.
    :return: A Markdown table of the claims and what the bench measured.
    """
    lines = [
        f"Seed papers' relative claims on protocol {protocol.name} (eps = {protocol.eps:g}): method minus reference "
        "in percentage points and the ratio of training times, mean ± standard error of the per-seed differences "
        "over the seeds both methods ran",
        "",
        "| method vs reference | paper's claim | seeds | robust (pp) | PGD (pp) | clean (pp) | time ratio | reading |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for entry in claims:
        metric = "AA" if entry["robust_metric"] == "autoattack" else "worst case"
        cells = [
            f"{entry['label']} vs {entry['reference_label']}",
            entry["claim"],
            str(len(entry["seeds"])),
            f"{_signed_cell(entry['robust_difference'], entry['robust_difference_se'])} ({metric})",
            _signed_cell(entry["pgd_difference"], entry["pgd_difference_se"]),
            _signed_cell(entry["clean_difference"], entry["clean_difference_se"]),
            _mean_cell(entry["time_ratio"], entry["time_ratio_se"]) + "x",
            entry["reading"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if not claims:
        lines.append("| no claim's two methods were both run | | | | | | | |")
    return "\n".join(lines)


def _signed_cell(mean: float | None, se: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:+g}" if se is None else f"{mean:+g} ± {se:g}"


def _stopped(result: dict[str, Any]) -> str:
    """One seed's note on a run a guard stopped: why, when, and the epoch whose weights were kept, if an earlier one."""
    note = f"seed {result.get('seed', 0)}: {result['stop_reason']} after epoch {result['epochs']}"
    kept = result.get("best_epoch")
    return note + (f", epoch {kept} kept" if kept else "")
