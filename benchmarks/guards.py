"""
What the engine's guards cost on protocol P1 (``mnist10k``), measured side by side in one run (issue 8).

For RAT (PGD-10) and Fast, one epoch (8000 images, batch 100) of each configuration in turn, median of ``--repeats``:

- plain: no guard (the engine still snapshots the weights once per epoch, to restore them on a non-finite loss);
- overfitting guard: ``overfitting_guard=0.2`` checking PGD-5 accuracy on the first 100 training images each epoch
  (Wong et al. 2020's check);
- validated: ``fit(validation_data=...)`` with the default per-epoch validation (PGD-10 on 512 test images);
- validated + early stopping: the same with ``early_stopping=True`` (keeps a copy of the best epoch's weights) and the
  overfitting guard, which then reads the validation's PGD accuracy instead of running its own check.

Target: the guards cost under 2% of training time (plain vs overfitting guard; validated vs validated + early
stopping: the validation itself is the user's monitoring, which early stopping reuses).

    python benchmarks/guards.py --data-dir ../shared/data/mnist [--repeats 5]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import benchmark_arguments, cost_table, time_data_passes  # noqa: E402

from art_fastat.trainers import AdversarialTrainerFast, AdversarialTrainerPGD  # noqa: E402


class Validated:
    """A trainer whose ``fit`` also validates on the test split every epoch."""

    def __init__(self, trainer: Any, validation_data: tuple) -> None:
        self.trainer, self.validation_data = trainer, validation_data
        self.replays = 1

    def fit(self, x: Any, y: Any, batch_size: int, nb_epochs: int) -> Any:
        return self.trainer.fit(x, y, validation_data=self.validation_data, batch_size=batch_size, nb_epochs=nb_epochs)


def main() -> None:
    args, protocol, data = benchmark_arguments(__doc__, n_pgd=0, n_cw=0, n_autoattack=0)
    validation = (data[2], data[3])
    methods = {"RAT (PGD-10)": (AdversarialTrainerPGD, {"steps": 10}), "Fast": (AdversarialTrainerFast, {})}
    builds = {}
    for name, (cls, options) in methods.items():

        def build(guards: dict, validated: bool, cls: Any = cls, options: dict = options) -> Any:
            def make(classifier: Any, seed: int) -> Any:
                trainer = cls(classifier, eps=protocol.eps, seed=seed, **options, **guards)
                return Validated(trainer, validation) if validated else trainer

            return make

        builds[f"{name}, plain"] = build({}, False)
        builds[f"{name}, overfitting guard"] = build({"overfitting_guard": 0.2}, False)
        builds[f"{name}, validated"] = build({}, True)
        builds[f"{name}, validated + early stopping + guard"] = build(
            {"overfitting_guard": 0.2, "early_stopping": True}, True
        )
    print(f"Seconds per epoch (8000 images, batch 100), median of {args.repeats}, interleaved")
    median = time_data_passes(builds, protocol, data, args.repeats)
    print("\n" + cost_table(median, {"vs RAT, plain": "RAT (PGD-10), plain", "vs Fast, plain": "Fast, plain"}))
    print("\n| method | overfitting guard / plain | early stopping + guard / validated |")
    print("|---|---:|---:|")
    for name in methods:
        guard = median[f"{name}, overfitting guard"] / median[f"{name}, plain"]
        stopping = median[f"{name}, validated + early stopping + guard"] / median[f"{name}, validated"]
        print(f"| {name} | {guard:.3f}x | {stopping:.3f}x |")


if __name__ == "__main__":
    main()
