#!/usr/bin/env bash
# Development / CI install into ./.venv (never the system Python: torchattacks 3.5.1 pins requests~=2.25.1
# and ships a stray top-level `robustbench` package).
#
# Why the order and the --no-deps below: on these machines `torch==2.13.0` is a local CPU wheel, while an
# unpinned torch pulls a multi-GB CUDA build. torchattacks declares `torchvision` as a dependency (it never
# imports it), and PyPI's torchvision requires a newer CUDA torch, so torchattacks and this package are
# installed without dependency resolution after everything they really need is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip warns once per missing local index folder; those lines carry no information.
pip_install() { .venv/bin/python -m pip --disable-pip-version-check -q install "$@" 2>&1 | { grep -v "is ignored" || true; }; }
pip_install "torch==2.13.0"
pip_install -c <(echo "torch==2.13.0") \
    "numpy>=1.23" "adversarial-robustness-toolbox>=1.20" "pyautoattack>=0.2" "scikit-learn>=1.2" \
    "tqdm>=4.60" "matplotlib>=3.6" "safetensors>=0.4" "scipy" "pytest>=7" "ruff>=0.5" "mkdocs>=1.5" \
    "tensorboard>=2.10"
pip_install --no-deps "torchattacks>=3.5,<3.6" -e .
