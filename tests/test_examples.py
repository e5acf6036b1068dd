"""Every script in examples/ runs on tiny settings and shows what it claims."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_test():
    assert {path.stem for path in EXAMPLES.glob("*.py")} == {
        "art_pipeline", "torchattacks_attack", "autoattack_leaderboard", "dat_gaat"
    }  # fmt: skip


def test_art_pipeline_trains_a_model_that_art_pgd_cannot_break_like_an_undefended_one():
    accuracy = load("art_pipeline").main(["--epochs", "8", "--n-eval", "100"])
    assert accuracy["clean"] > 0.8 and accuracy["pgd"] > 0.3


def test_torchattacks_example_runs_our_attacks_alone_and_in_multiattack():
    accuracy = load("torchattacks_attack").main(["--epochs", "5", "--n-eval", "100"])
    assert accuracy["clean"] > 0.8
    singles = [accuracy[name] for name in ("torchattacks PGD-10", "art_fastat GAAT", "art_fastat HMC")]
    assert max(singles) < accuracy["clean"] - 0.3  # each attack breaks the undefended model
    assert accuracy["MultiAttack(GAAT, HMC, PGD)"] <= min(singles) + 1e-9  # the union is at least as strong


def test_autoattack_example_ranks_adversarial_training_above_natural():
    rows = load("autoattack_leaderboard").main(["--epochs", "4", "--n-eval", "20"])
    assert [row["method"] for row in rows][-1] == "natural"
    assert all(row["worst_case"] <= min(row["pgd"], row["autoattack"]) for row in rows)


def test_dat_gaat_example_switches_to_gaat_and_beats_natural(capsys):
    accuracy = load("dat_gaat").main(["--epochs", "6", "--n-eval", "100"])  # switch_epoch 0.5: 3 natural epochs
    assert "then with GAAT from epoch 4" in capsys.readouterr().out
    assert accuracy["DAT+GAAT"] > accuracy["natural"] + 0.2
