"""
``art-fastat bench``: train every requested method under one benchmark protocol with one or more seeds, evaluate each
run with :func:`art_fastat.evaluate`, and write (:mod:`art_fastat.leaderboard`) a RobustBench-style leaderboard of
means and standard errors over the seeds (Markdown, JSON, CSV), the seed papers' relative claims measured on it
(``claims.md``, ``claims.json``) and two plots: robust accuracy against training time with error bars and the Pareto
front (``pareto.png``), and per-epoch training loss and validation PGD accuracy (``curves.png``).

Every method runs with the protocol's model, optimizer, batch size, epochs, learning-rate schedule and eps warm-up
(``shared/design/protocol.md``); its own arguments are the defaults of its trainer. ART's
``AdversarialTrainerMadryPGD``, ``AdversarialTrainerFBFPyTorch``, ``AdversarialTrainerTRADESPyTorch`` and
``AdversarialTrainerAWPPyTorch`` run beside them as external anchors (see :class:`~art_fastat.anchors.ARTAnchor`).
Each (method, seed) is trained, saved and evaluated by :func:`art_fastat.runs.run_method`, as ``art-fastat train``
does, in ``DIR/seed-<seed>/<method>`` (``model.pt``, ``config.json``, ``history.json``, ``report.json``,
``report.md``).

Evaluation: clean accuracy on the first ``n_eval`` test images (default all), each attack on the first
``attack_sizes[attack]`` of them (default all), which may differ between the first seed and the others, so that the
slow attacks (AutoAttack, CW) can run on fewer images and fewer for the later seeds.

Resumable: each run's result is written to ``DIR/seed-<seed>/<method>/result.json`` when it is finished, and a re-run
skips the runs that have one, re-evaluating (from ``model.pt``, without training) those whose evaluation lacks a
requested attack or covers fewer images than requested; a run interrupted mid-training continues from its engine
checkpoint (``checkpoint/``).
"""

from __future__ import annotations

import csv
import json
import logging
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from art_fastat._validation import check_choice, check_positive_int
from art_fastat.anchors import ANCHORS
from art_fastat.evaluation import ATTACKS
from art_fastat.leaderboard import (
    COLUMNS,
    claims_markdown,
    csv_row,
    image_counts,
    leaderboard,
    plot_curves,
    plot_pareto,
    relative_claims,
    to_markdown,
)
from art_fastat.protocols import Protocol, get_protocol
from art_fastat.runs import Data, evaluate_and_write, run_method
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
    attack_sizes: Mapping[str, int] | None = None,
    epochs: int | None,
    verbose: bool,
) -> dict[str, Any]:
    """
    Train, save and evaluate one method with one seed under ``protocol`` with :func:`~art_fastat.runs.run_method`,
    in ``out/<method>``.

    :return: The run's result (its ``result.json``): method, label, seed, training seconds, passes per batch, epochs,
             history, ``stop_reason`` (why a guard stopped training early, or None), ``best_epoch`` (the epoch whose
             weights a guard kept, or None) and the evaluation report.
    """
    run = run_method(method, protocol=protocol, data=data, out=out / method, device=device, seed=seed,
                     epochs=epochs, resume=True, attacks=attacks, n_eval=n_eval, attack_sizes=attack_sizes,
                     verbose=verbose)  # fmt: skip
    if run.report is None:
        raise RuntimeError("the bench runs in one process: ranks other than 0 of a process group evaluate nothing")
    return {
        "method": method,
        "label": LABELS.get(method, method),
        "protocol": protocol.name,
        "seed": seed,
        "training_seconds": float(run.training_seconds),
        "passes_per_batch": float(run.passes_per_batch),
        "epochs": len(run.history),
        "stop_reason": run.stop_reason,
        "best_epoch": run.best_epoch,
        "history": run.history,
        "report": run.report.to_dict(),
    }


def check_seeds(seeds: Any) -> list[int]:
    """
    :param seeds: A non-empty sequence of integer seeds, e.g. ``(0, 1, 2)``.
    :return: The seeds, without repeats, in the caller's order.
    """
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence) or not seeds:
        raise TypeError(f"seeds must be a non-empty sequence of integers >= 0, e.g. (0, 1, 2), got {seeds!r}")
    return list(dict.fromkeys(check_positive_int(seed, "seeds", minimum=0, maximum=2**32 - 1) for seed in seeds))


def check_attack_sizes(attack_sizes: Any, attacks: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
    """
    :param attack_sizes: None, or a mapping from attacks in ``attacks`` to a number of test images (every seed) or a
                         pair ``(first seed, other seeds)``.
    :param attacks: The attacks the bench runs.
    :return: The sizes of the first seed and those of the other seeds (attacks not named: absent, i.e. all images).
    """
    first: dict[str, int] = {}
    others: dict[str, int] = {}
    if attack_sizes is None:
        return first, others
    if not isinstance(attack_sizes, Mapping):
        raise TypeError(f"attack_sizes must be a mapping from attack names to a size or a pair of sizes, got "
                        f"{attack_sizes!r}")  # fmt: skip
    for name, size in attack_sizes.items():
        if name not in attacks:
            raise ValueError(f"attack_sizes names {name!r}, which is not among the attacks run: {', '.join(attacks)}")
        pair = (size, size) if isinstance(size, numbers.Integral) else size
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"attack_sizes[{name!r}] must be an integer >= 1 or a pair (first seed, other seeds) "
                             f"of them, got {size!r}")  # fmt: skip
        first[name] = check_positive_int(pair[0], f"attack_sizes[{name!r}]")
        others[name] = check_positive_int(pair[1], f"attack_sizes[{name!r}]")
    return first, others


def _covers(report: dict[str, Any], n: int, attacks: Sequence[str], sizes: Mapping[str, int]) -> bool:
    """Whether a stored evaluation ran every requested attack on at least the requested numbers of images."""
    counts = image_counts(report)
    if counts["clean"] < n:
        return False
    return all(name in counts and counts[name] >= min(n, sizes.get(name, n)) for name in attacks)


def _reevaluate(
    result: dict[str, Any],
    directory: Path,
    *,
    protocol: Protocol,
    data: Data,
    device: str | None,
    n_eval: int | None,
    attacks: Sequence[str],
    attack_sizes: Mapping[str, int],
) -> dict[str, Any]:
    """Evaluate the run's saved ``model.pt`` again with the requested attacks and sizes (no training)."""
    from art_fastat.engine import read_model_state

    classifier = protocol.make_classifier(device, result.get("seed", 0))
    classifier.model.load_state_dict(read_model_state(directory / "model.pt", classifier.device))
    report = evaluate_and_write(classifier, protocol, data[2], data[3], protocol.eps, attacks=attacks,
                                seed=result.get("seed", 0), n_eval=n_eval, attack_sizes=attack_sizes,
                                out=directory)  # fmt: skip
    return {**result, "report": report.to_dict()}


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
    seeds: Sequence[int] = (0,),
    n_eval: int | None = None,
    attacks: Sequence[str] = ATTACKS,
    attack_sizes: Mapping[str, int | Sequence[int]] | None = None,
    epochs: int | None = None,
    verbose: bool = True,
    finished_only: bool = False,
) -> list[dict[str, Any]]:
    """
    Train and evaluate ``methods`` under ``protocol`` with every seed of ``seeds``; write ``leaderboard.md/.json/.csv``,
    ``claims.md/.json``, ``pareto.png`` and ``curves.png`` to ``out``. Runs with a ``result.json`` in ``out`` are not
    trained again (see the module's description).

    Seeds run one after another, every method of a seed before the next seed, so an interrupted bench has whole
    seeds of the leaderboard first.

    :param protocol: ``"digits"``, ``"mnist10k"`` or ``"cifar10"``.
    :param out: Output directory.
    :param methods: Method names: keys of :data:`art_fastat.trainers.TRAINERS` and of
                    :data:`art_fastat.anchors.ANCHORS`.
    :param data_dir: Directory of the protocol's data files (mnist10k, cifar10).
    :param device: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
    :param seeds: The seeds, e.g. ``(0, 1, 2)``: each seeds one run of every method (initialisation, training and
                  attacks); the leaderboard reports mean and standard error over them.
    :param n_eval: Evaluate on the first ``n_eval`` test images (default: all).
    :param attacks: Attacks of :func:`art_fastat.evaluate`.
    :param attack_sizes: Run an attack on the first that many of those images only: an integer for every seed or a
                         pair ``(first seed, other seeds)``, e.g. ``{"autoattack": (500, 200), "cw": (100, 50)}``;
                         attacks not named run on every image. The worst case of a run is taken over the images all
                         its attacks saw.
    :param epochs: Epochs of every method (default: the protocol's).
    :param verbose: Progress bars over runs and over each run's batches.
    :param finished_only: Train and evaluate nothing: write the leaderboard, claims and plots from the runs of
                          ``methods`` and ``seeds`` already finished in ``out`` (a bench run in parts, read between
                          them); the runs not finished are left out and logged. Nothing is checked against the data.
    :return: The leaderboard rows (:func:`art_fastat.leaderboard.leaderboard`).
    """
    settings = get_protocol(protocol)
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError(f"methods must name at least one of {', '.join(METHODS)}")
    for method in methods:
        check_choice(method, "methods", METHODS)
    seeds = check_seeds(seeds)
    if n_eval is not None:
        n_eval = check_positive_int(n_eval, "n_eval")
    attacks = tuple(dict.fromkeys(attacks))
    for name in attacks:
        check_choice(name, "attacks", ATTACKS)
    first_sizes, other_sizes = check_attack_sizes(attack_sizes, attacks)
    if epochs is not None:
        epochs = check_positive_int(epochs, "epochs")
    out = Path(out)
    runs = [(seed, method) for seed in seeds for method in methods]
    if finished_only:
        results = _finished(out, runs)
        if not results:
            raise ValueError(f"finished_only: {out} holds no finished run of the methods and seeds asked for")
        return _write_leaderboard(out, results, settings)
    data = settings.load(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(data[2]) if n_eval is None else min(n_eval, len(data[2]))
    results = []
    progress = tqdm(runs, desc="bench", unit="run", disable=not verbose)
    for seed, method in progress:
        progress.set_postfix(method=method, seed=seed)
        sizes = first_sizes if seed == seeds[0] else other_sizes
        directory = out / f"seed-{seed}" / method
        result_path = directory / "result.json"
        if result_path.exists():
            result = _read_result(result_path)
            if _covers(result["report"], n, attacks, sizes):
                logger.info("%s, seed %d: finished in an earlier run, read from %s", method, seed, result_path)
                results.append(result)
                continue
            if not (directory / "model.pt").exists():
                logger.warning("%s, seed %d: %s evaluated fewer attacks or images than requested and has no model.pt "
                               "to evaluate again: kept as it is", method, seed, result_path)  # fmt: skip
                results.append(result)
                continue
            logger.info("%s, seed %d: evaluating model.pt again with the requested attacks and sizes", method, seed)
            result = _reevaluate(result, directory, protocol=settings, data=data, device=device, n_eval=n_eval,
                                 attacks=attacks, attack_sizes=sizes)  # fmt: skip
        else:
            result = bench_method(method, protocol=settings, data=data, out=directory.parent, device=device,
                                  seed=seed, n_eval=n_eval, attacks=attacks, attack_sizes=sizes, epochs=epochs,
                                  verbose=verbose)  # fmt: skip
        result_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(result_path, json.dumps(result, indent=2))
        results.append(result)
    progress.close()
    return _write_leaderboard(out, results, settings)


def _read_result(path: Path) -> dict[str, Any]:
    """A run's ``result.json``; one written before results recorded ``best_epoch`` gets it from ``config.json``."""
    result = json.loads(path.read_text())
    config = path.parent / "config.json"
    if "best_epoch" not in result and config.exists():
        result["best_epoch"] = json.loads(config.read_text()).get("best_epoch")
    return result


def _finished(out: Path, runs: Sequence[tuple[int, str]]) -> list[dict[str, Any]]:
    """The results of the ``(seed, method)`` runs that have a ``result.json`` in ``out``; the others are logged."""
    results, missing = [], []
    for seed, method in runs:
        path = out / f"seed-{seed}" / method / "result.json"
        if path.exists():
            results.append(_read_result(path))
        else:
            missing.append(f"{method} (seed {seed})")
    if missing:
        logger.warning("finished_only: %d run(s) not finished, left out of the leaderboard: %s", len(missing),
                       ", ".join(missing))  # fmt: skip
    return results


def _write_leaderboard(out: Path, results: list[dict[str, Any]], settings: Protocol) -> list[dict[str, Any]]:
    """Write the leaderboard files, the claims and the plots of ``results`` to ``out``; return the rows."""
    rows = leaderboard(results)
    _write_atomically(out / "leaderboard.md", to_markdown(rows, settings) + "\n")
    _write_atomically(out / "leaderboard.json", json.dumps(rows, indent=2))
    with open(out / "leaderboard.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(csv_row(row) for row in rows)
    claims = relative_claims(results)
    _write_atomically(out / "claims.md", claims_markdown(claims, settings) + "\n")
    _write_atomically(out / "claims.json", json.dumps(claims, indent=2))
    seeds = len({result["seed"] for result in results})
    title = f"{settings.name}, eps {settings.eps:g}, {seeds} seed{'s' if seeds > 1 else ''}"
    plot_pareto(rows, out / "pareto.png", f"Robustness against training time ({title})")
    plot_curves(results, out / "curves.png", f"Training curves ({settings.name})")
    return rows
