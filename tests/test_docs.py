"""The documentation: it builds with mkdocs (strict, offline) and every method page covers what its trainer takes."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from art_fastat.trainers import TRAINERS, AdversarialTrainerBase

ROOT = Path(__file__).resolve().parent.parent
PAGES = {"pgd": "rat", "fast": "fast", "nfgsm": "nfgsm", "gradalign": "gradalign", "gaat": "gaat", "dat": "dat",
         "free": "free", "atcd": "atcd", "atlas": "atlas", "l2l": "l2l"}  # fmt: skip
ENGINE_PARAMETERS = set(inspect.signature(AdversarialTrainerBase.__init__).parameters)


def test_mkdocs_builds_strict_without_network(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "site" / "methods" / "atcd" / "index.html").is_file()


@pytest.mark.parametrize(("method", "page"), PAGES.items())
def test_method_page_documents_arguments_cost_and_measured_results(method, page):
    text = (ROOT / "docs" / "methods" / f"{page}.md").read_text()
    for section in ("## Decisions", "## Arguments", "## Cost", "## Measured"):
        assert section in text, f"docs/methods/{page}.md lacks a '{section}' section"
    own = set(inspect.signature(TRAINERS[method].__init__).parameters) - ENGINE_PARAMETERS - {"self", "kwargs"}
    arguments = text.split("## Arguments", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in own if f"`{name}`" not in arguments]
    assert not missing, f"docs/methods/{page}.md does not document {missing}"
    measured = text.split("## Measured", 1)[1].split("\n## ", 1)[0]
    assert "python benchmarks/" in measured or "art-fastat " in measured, "measured results need their command"
