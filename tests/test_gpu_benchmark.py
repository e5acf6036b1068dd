"""benchmarks/gpu.py --tiny: every code path of the GPU benchmark runs on CPU and its checks hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "gpu.md").read_text().startswith("# GPU benchmark")
    return json.loads((out / "gpu.json").read_text())


def test_every_method_trains_eager_and_compiled_and_is_compared_with_natural(tiny_report):
    for key in ("training_eager", "training_compiled"):
        rows = {row["method"]: row for row in tiny_report[key]}
        assert len(rows) == 10 and "hand-written natural" in rows
        for row in rows.values():
            assert "error" not in row, row
            assert row["images_per_second"] > 0
            assert row["epoch_seconds"] == pytest.approx(50_000 / row["images_per_second"])
        assert rows["natural"]["vs_natural"] == 1.0
        # an attack costs passes: PGD-10 trains on 11 per batch, natural on 1
        assert rows["RAT (PGD-10)"]["vs_natural"] > 2.0


def test_the_attacks_stay_in_the_ball_and_evaluate_torchrun_and_resume_work(tiny_report):
    assert [row["attack"] for row in tiny_report["attacks"]][0] == "torchattacks PGD-10"
    assert all(row["in_ball"] and row["images_per_second"] > 0 for row in tiny_report["attacks"])
    evaluation = tiny_report["evaluation"]
    assert 0.0 <= evaluation["autoattack_accuracy"] <= evaluation["clean_accuracy"] <= 1.0
    assert tiny_report["torchrun"]["ok"] and tiny_report["torchrun"]["backend"] == "gloo"
    resume = tiny_report["kill_resume"]
    assert resume["killed_by_signal"] and resume["equal"] and resume["tensors"] > 0
