"""
What the engine's guards cost on protocol P1 (``mnist10k``), measured directly (issue 8).

Whole-run timings on this shared machine swing by 10-20% between runs, more than the guards cost, so this script
times the guards' own work inside real runs: every call of the engine's snapshot (the per-epoch copy of weights and
optimizer state that a non-finite loss restores), of the guards (the overfitting guard's PGD-5 check on the first
``--check-size`` training images when there is no validation data, and its copy of the best epoch's weights; early
stopping's copy of the best weights) and of the restores, against the epochs' own training seconds. For RAT
(PGD-10), Fast and GAAT, 3 epochs each:

- overfitting guard: ``overfitting_guard=0.2``, no validation data (the guard runs its own check);
- early stopping + guard: ``early_stopping=True, overfitting_guard=0.2`` with validation data (both read the
  per-epoch validation's PGD accuracy; the validation itself, PGD-10 on 512 images, is reported separately: it is
  the user's monitoring, which the guards reuse).

Target: the guards cost a few percent of training time at most (issue 8: under 2% with a 32-image check; issue 17
made the guard a default of the single-step methods and its check 128 images, one of Wong et al.'s minibatches).

    python benchmarks/guards.py --data-dir ../shared/data/mnist [--check-size 128] [--methods pgd,fast,gaat]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import benchmark_arguments  # noqa: E402

from art_fastat.trainers import AdversarialTrainerFast, AdversarialTrainerGAAT, AdversarialTrainerPGD  # noqa: E402


def timed_guards(trainer: Any) -> dict[str, float]:
    """
    Wrap the guard work (the per-epoch snapshot, the guards' checks, restores and best-epoch copies, and the restore at
    the end) so that its seconds add up in the returned dict.
    """
    seconds = {"guards": 0.0}
    for owner, name in ((trainer, "_snapshot"), (trainer.guards, "check_finite"), (trainer.guards, "after_epoch"),
                        (trainer.guards, "finish")):  # fmt: skip
        work = getattr(owner, name)

        def timed(*arguments: Any, work: Any = work) -> Any:
            started = time.perf_counter()
            try:
                return work(*arguments)
            finally:
                seconds["guards"] += time.perf_counter() - started

        setattr(owner, name, timed)
    return seconds


def main() -> None:
    args, protocol, data = benchmark_arguments(
        __doc__,
        n_pgd=0,
        n_cw=0,
        n_autoattack=0,
        extra=lambda parser: (
            parser.add_argument(
                "--check-size", type=int, default=128, help="overfitting_check_size of the guard's own check"
            ),
            parser.add_argument("--methods", default="pgd,fast,gaat", help="comma-separated subset of pgd,fast,gaat"),
        ),
    )
    x, y, x_test, y_test = data
    methods = {"pgd": ("RAT (PGD-10)", AdversarialTrainerPGD, {"steps": 10}),
               "fast": ("Fast", AdversarialTrainerFast, {}), "gaat": ("GAAT", AdversarialTrainerGAAT, {})}  # fmt: skip
    settings = {
        "overfitting guard": ({"overfitting_guard": 0.2, "overfitting_check_size": args.check_size}, None),
        "early stopping + guard": ({"overfitting_guard": 0.2, "early_stopping": True}, (x_test, y_test)),
    }
    print("| method | guards | training s (3 epochs) | guards s | guards / training | validation s |")
    print("|---|---|---:|---:|---:|---:|")
    for name, cls, options in (methods[key.strip()] for key in args.methods.split(",")):
        for label, (guards, validation) in settings.items():
            trainer = cls(protocol.make_classifier("cpu", seed=0), eps=protocol.eps, seed=0, **options, **guards,
                          **protocol.trainer_options())  # fmt: skip
            seconds = timed_guards(trainer)
            history = trainer.fit(x, y, validation_data=validation, batch_size=protocol.batch_size, nb_epochs=3)
            training = sum(record["seconds"] for record in history)
            validating = sum(record.get("val_seconds", 0.0) for record in history)
            print(f"| {name} | {label} | {training:.2f} | {seconds['guards']:.3f} | "
                  f"{100 * seconds['guards'] / training:.2f}% | {validating:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
