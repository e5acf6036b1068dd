"""
GAAT's default run on P1 (issue 17): what ``AdversarialTrainerGAAT(classifier).fit(x, y)`` hands back with the
overfitting guard off (the default before issue 17) and with the defaults (``overfitting_guard="auto"``: on for the
single-step methods), against natural training, on P1's classifier (Adam, lr 5e-3) and data.

Settings (``--settings``, comma-separated):

- ``protocol``: GAAT's own defaults under P1's engine options (3-epoch eps warm-up, triangle schedule), batch 100, 10
  epochs, as ``art-fastat bench`` trains it but without validation data, so the guard runs its own check (PGD-5 on
  the first 128 training images);
- ``bench``: the same with validation data as the bench passes it, the first 512 training images (the guard then
  reads the validation's PGD-10 on them);
- ``defaults``: every default of the trainer and of ``fit`` (batch 128, 20 epochs, the optimizer's constant lr,
  GAAT's ``eps_warmup_epochs="auto"``: eps ramps up over the first 6 of the 20 epochs).

``natural``: natural training under the protocol's settings, the reference. Evaluation: clean and ART PGD-50-10
(step 0.01) on the first ``--n-pgd`` test images (2000-image test split: images 8000-9999 of MNIST's test set),
AutoAttack standard on the first ``--n-autoattack``. The guard's WARNINGs are printed as they happen. The guard does
not change training until it acts (its check has its own random stream), so each pair of runs is identical up to the
epoch where the guard stops.

    python benchmarks/safe_defaults.py --data-dir ../shared/data/mnist --threads 1 [--settings natural,protocol]
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import benchmark_arguments  # noqa: E402

from art_fastat.evaluation import evaluate  # noqa: E402
from art_fastat.evaluation.validation import VALIDATION_SIZE  # noqa: E402
from art_fastat.trainers import AdversarialTrainerGAAT, NaturalTrainer  # noqa: E402

SETTINGS = ("natural", "protocol", "bench", "defaults")


def main() -> None:
    args, protocol, (x, y, x_test, y_test) = benchmark_arguments(
        __doc__,
        n_pgd=500,
        n_cw=0,
        n_autoattack=0,
        extra=lambda parser: parser.add_argument(
            "--settings", default="natural,protocol,defaults", help=f"comma-separated subset of {','.join(SETTINGS)}"
        ),
    )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = [name.strip() for name in args.settings.split(",")]
    if not set(settings) <= set(SETTINGS):
        raise SystemExit(f"--settings must be a comma-separated subset of {','.join(SETTINGS)}")
    on_protocol = ({**protocol.trainer_options()}, {"batch_size": protocol.batch_size, "nb_epochs": protocol.nb_epochs})
    runs: list[tuple[str, str, Any, dict[str, Any], dict[str, Any]]] = []
    for setting in settings:
        if setting == "natural":
            runs.append(("protocol", "-", NaturalTrainer, *on_protocol))
            continue
        engine, fit = on_protocol if setting != "defaults" else ({}, {})
        if setting == "bench":
            fit = {**fit, "validation_data": (x[:VALIDATION_SIZE], y[:VALIDATION_SIZE])}
        runs += [(setting, guard, AdversarialTrainerGAAT, engine, fit) for guard in ("off", "auto")]

    print(
        "| setting | method | overfitting_guard | epochs run | stop reason | epoch kept | train s | clean | "
        f"PGD-50-10 ({args.n_pgd}) |" + (f" AutoAttack ({args.n_autoattack}) |" if args.n_autoattack else "")
    )
    print("|---|---|---|---:|---|---:|---:|---:|---:|" + ("---:|" if args.n_autoattack else ""), flush=True)
    for setting, guard, trainer_class, engine, fit in runs:
        classifier = protocol.make_classifier("cpu", seed=0)
        trainer = trainer_class(classifier, **engine, overfitting_guard="auto" if guard == "auto" else None)
        started = time.perf_counter()
        history = trainer.fit(x, y, **fit)
        seconds = time.perf_counter() - started
        pgd = evaluate(classifier, x_test[: args.n_pgd], y_test[: args.n_pgd], protocol.eps, attacks=("pgd",),
                       **protocol.evaluation_options())  # fmt: skip
        cells = [setting, trainer.method, guard, str(len(history)), trainer.stop_reason or "-",
                 str(trainer.best_epoch or "-"), f"{seconds:.1f}", f"{pgd.clean_accuracy:.3f}",
                 f"{pgd.robust_accuracy['pgd']:.3f}"]  # fmt: skip
        if args.n_autoattack:
            n = args.n_autoattack
            report = evaluate(classifier, x_test[:n], y_test[:n], protocol.eps, attacks=("autoattack",))
            cells.append(f"{report.robust_accuracy['autoattack']:.3f}")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
