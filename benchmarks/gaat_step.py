"""
Follow-up to ``benchmarks/gaat.py``: GAAT-GN's total step ``T * alpha`` and catastrophic overfitting on P1.

With the Gauss-Newton Hessian GAAT's adversary is ``clip(delta_0 + T alpha sign(J(x)))``; once ``T alpha`` exceeds
``2 eps`` it is FGSM at full eps from the natural point, whatever the random start. This runs, on P1 (eps 0.3, warm-up,
10 epochs): Fast with and without the eps warm-up (protocol.md's hand-written reference: FGSM-RS without warm-up
0.989 / 0.830 PGD-50), and GAAT-GN with ``T alpha`` = 2.5 eps (``alpha = eps / 4``, the default) and 1.25 eps
(Fast's step), each evaluated with PGD-50-10.

    python benchmarks/gaat_step.py --data-dir ../shared/data/mnist [--n-pgd 500]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, train_and_evaluate  # noqa: E402

from art_fastat.protocols import get_protocol  # noqa: E402
from art_fastat.trainers import TRAINERS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the MNIST t10k files")
    parser.add_argument("--n-pgd", type=int, default=500, help="test images for clean and PGD-50-10 accuracy")
    args = parser.parse_args()
    protocol = get_protocol("mnist10k")
    data = protocol.load(args.data_dir)
    eps, engine = protocol.eps, {**protocol.trainer_options(), "overfitting_guard": None}  # overfitting included
    runs = {
        "Fast (warm-up 3)": lambda c: TRAINERS["fast"](c, eps=eps, **engine),
        "Fast (no warm-up)": lambda c: TRAINERS["fast"](c, eps=eps, **{**engine, "eps_warmup_epochs": 0.0}),
        "GAAT-GN T=10, T alpha = 2.5 eps": lambda c: TRAINERS["gaat"](c, eps=eps, alpha=eps / 4, steps=10, **engine),
        "GAAT-GN T=10, T alpha = 1.25 eps": lambda c: TRAINERS["gaat"](
            c, eps=eps, alpha=0.125 * eps, steps=10, **engine
        ),  # fmt: skip
    }
    rows = [train_and_evaluate(name, build, protocol, data, eps, args.n_pgd, 0) for name, build in runs.items()]
    print()
    print(markdown_table(rows, {"vs Fast": "Fast (warm-up 3)"}))


if __name__ == "__main__":
    main()
