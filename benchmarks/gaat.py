"""
GAAT, DAT+GAAT and the baselines on protocol P1 (``mnist10k``), in one run (issue 3).

1. Seconds per epoch of natural training, Fast, RAT (PGD-10), GAAT Gauss-Newton, GAAT diagonal and DAT+GAAT under
   P1's settings (eps 0.3 warmed up over 3 epochs, triangle lr, 10 epochs); ratios to RAT and Fast; clean, PGD-50-10
   and AutoAttack accuracy.
2. The paper's MNIST setting ``{T, alpha, eps} = {100, 0.01, 0.1}``: RAT against GAAT, accuracy and time, beside the
   paper's Table 2 row (RAT 99.31 / 96.13, GAAT 99.30 / 95.13, 12.5% of the time saved).
3. How often ``1 + <J, delta_0> < 0`` (GAAT-GN moving down the loss), per epoch.

    python benchmarks/gaat.py --data-dir ../shared/data/mnist [--n-pgd 2000] [--n-autoattack 2000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, train_and_evaluate  # noqa: E402

from art_fastat.protocols import get_protocol  # noqa: E402
from art_fastat.trainers import TRAINERS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files (default: ../shared/data/mnist)")
    parser.add_argument("--n-pgd", type=int, default=2000, help="test images for clean and PGD-50-10 accuracy")
    parser.add_argument("--n-autoattack", type=int, default=2000, help="test images for AutoAttack (0: skip)")
    parser.add_argument("--paper-epochs", type=int, default=10, help="epochs of the paper-setting runs (0: skip)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = get_protocol("mnist10k")
    data = protocol.load(args.data_dir)
    engine = {**protocol.trainer_options(), "overfitting_guard": None}  # GAAT's own behaviour, catastrophes included
    eps = protocol.eps

    def method(name: str, **options: object):
        return lambda classifier: TRAINERS[name](classifier, eps=eps, **engine, **options)

    print(f"1. P1 mnist10k, eps {eps}, {protocol.nb_epochs} epochs", flush=True)
    runs = {
        "natural": method("natural"),
        "Fast": method("fast"),
        "RAT (PGD-10)": method("pgd", steps=10),
        "GAAT-GN (T=10)": method("gaat", steps=10),
        "GAAT-diagonal (T=10, 1 probe)": method("gaat", steps=10, hessian="diagonal"),
        "DAT+GAAT (switch at 5)": method("dat+gaat", switch_epoch=0.5, inner_options={"steps": 10}),
    }
    rows = [train_and_evaluate(name, build, protocol, data, eps, args.n_pgd, args.n_autoattack)
            for name, build in runs.items()]  # fmt: skip
    print()
    print(markdown_table(rows, {"vs RAT": "RAT (PGD-10)", "vs Fast": "Fast", "vs natural": "natural"}))

    print("\n3. Fraction of samples with 1 + <J, delta_0> < 0 per epoch (GAAT-GN descending)")
    for row in rows:
        fractions = [record.get("descent_fraction") for record in row["history"]]
        if any(f is not None for f in fractions):
            print(f"   {row['method']}: " + ", ".join("-" if f is None else f"{f:.4f}" for f in fractions))

    if args.paper_epochs:
        print(f"\n2. Paper's MNIST setting {{T, alpha, eps}} = {{100, 0.01, 0.1}}, {args.paper_epochs} epochs, "
              "otherwise P1", flush=True)  # fmt: skip
        paper = {"eps_warmup_epochs": 0.0, "lr_schedule": protocol.lr_schedule, "overfitting_guard": None}

        def paper_method(name: str):
            return lambda classifier: TRAINERS[name](classifier, eps=0.1, alpha=0.01, steps=100, **paper)

        paper_rows = [
            train_and_evaluate(name, paper_method(key), protocol, data, 0.1, args.n_pgd, 0, args.paper_epochs)
            for name, key in (("RAT (PGD-100)", "pgd"), ("GAAT-GN (T=100)", "gaat"))
        ]
        print()
        print(markdown_table(paper_rows, {"vs RAT": "RAT (PGD-100)"}))
        saved = 1 - paper_rows[1]["s/epoch"] / paper_rows[0]["s/epoch"]
        print(f"\nGAAT saves {saved:.1%} of RAT's time here; the paper's Table 2 (MNIST, 512 batch, 200 epochs): RAT "
              "99.31 / 96.13, GAAT 99.30 / 95.13, 12.5% saved.")  # fmt: skip


if __name__ == "__main__":
    main()
