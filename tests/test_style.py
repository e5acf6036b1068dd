"""The code base is ruff-clean (lint and format), and no module imports torchvision."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


def test_ruff_lint_and_format():
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=REPO_ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_importing_the_package_does_not_import_torchvision():
    code = "import sys, art_fastat, art_fastat.cli, art_fastat.trainers; assert 'torchvision' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
