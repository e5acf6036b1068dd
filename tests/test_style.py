"""The code base is ruff-clean (lint and format); no module imports torchvision, nor tensorboard at import."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


def test_ruff_lint_and_format():
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=REPO_ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_importing_the_package_does_not_import_torchvision_or_the_optional_tensorboard():
    code = ("import sys, art_fastat, art_fastat.cli, art_fastat.trainers, art_fastat.export, art_fastat.monitoring\n"
            "assert 'torchvision' not in sys.modules\n"
            "assert not [m for m in sys.modules if 'tensorboard' in m]")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
