#!/usr/bin/env bash
# Downloads the wheels that benchmarks/gpu.py needs on a GPU machine without a package registry (python3 3.12 with a
# CUDA torch >= 2.11 already there) into ./.whl: ART, torchattacks and pyautoattack, without their dependencies
# (numpy, scipy, scikit-learn, tqdm, six, requests and safetensors are on such machines; torchattacks' torchvision
# is never imported).
# On the GPU machine, from the repository root (see docs/gpu.md):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
#   python3 benchmarks/gpu.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    adversarial-robustness-toolbox==1.20.1 torchattacks==3.5.1 pyautoattack==0.2.0
ls -l .whl
