"""``art-fastat bench``: the leaderboard's numbers, its files and plots, resuming, the ART anchors, bad input."""

from __future__ import annotations

import csv
import json

import pytest

from art_fastat import bench as bench_module
from art_fastat.anchors import ARTAnchor
from art_fastat.bench import bench, leaderboard, pareto_front
from art_fastat.cli import main
from art_fastat.protocols import get_protocol


def result(method: str, seconds: float, autoattack: float, pgd: float, clean: float = 0.99) -> dict:
    report = {"n": 100, "clean_accuracy": clean, "worst_case_accuracy": autoattack - 0.01,
              "robust_accuracy": {"pgd": pgd, "autoattack": autoattack}}  # fmt: skip
    return {"method": method, "label": method.upper(), "training_seconds": seconds, "passes_per_batch": 1.0,
            "epochs": 3, "history": [], "report": report}  # fmt: skip


def test_leaderboard_ranks_by_autoattack_and_gives_time_ratios_to_rat_and_natural():
    rows = leaderboard([result("natural", 2.0, 0.0, 0.01), result("pgd", 20.0, 0.80, 0.85),
                        result("fast", 4.0, 0.50, 0.70)])  # fmt: skip
    assert [row["method"] for row in rows] == ["PGD", "FAST", "NATURAL"]
    assert [row["rank"] for row in rows] == [1, 2, 3]
    fast = rows[1]
    assert fast["autoattack"] == 50.0 and fast["pgd"] == 70.0 and fast["cw"] is None
    assert fast["vs_rat"] == 0.2 and fast["vs_natural"] == 2.0
    assert leaderboard([result("fast", 4.0, 0.5, 0.7)])[0]["vs_rat"] is None  # no RAT in the run


def test_leaderboard_says_when_a_run_stopped_early_and_which_epoch_it_kept():
    stopped = {**result("gaat", 3.0, 0.25, 0.3), "epochs": 8, "stop_reason": "catastrophic_overfitting",
               "best_epoch": 6}  # fmt: skip
    rows = leaderboard([stopped, result("fast", 4.0, 0.5, 0.7)])  # the second as written before stops were recorded
    note = "catastrophic overfitting: epoch 6 kept"
    assert [(row["epochs"], row["stopped"]) for row in rows] == [(3, None), (8, note)]
    table = bench_module.to_markdown(rows, get_protocol("digits"), 100)
    assert table.splitlines()[2].endswith("| epochs | stopped |") and f"| 8 | {note} |" in table


def test_pareto_front_keeps_only_points_nothing_beats_on_time_and_robustness():
    points = [(10.0, 80.0, "rat"), (2.0, 50.0, "fast"), (1.0, 0.0, "natural"), (3.0, 40.0, "worse than fast"),
              (12.0, 79.0, "slower and weaker than rat"), (5.0, 75.0, "atlas")]  # fmt: skip
    assert [name for _, _, name in pareto_front(points)] == ["natural", "fast", "atlas", "rat"]


def test_bench_writes_the_leaderboard_and_plots_and_skips_finished_methods(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    rows = bench("digits", out, ["natural", "fast"], n_eval=100, attacks=("pgd",), epochs=4, verbose=False)
    by_method = {row["method"]: row for row in rows}
    assert set(by_method) == {"natural", "Fast (FGSM-RS)"}
    assert by_method["Fast (FGSM-RS)"]["pgd"] > by_method["natural"]["pgd"] + 20  # percent
    assert by_method["Fast (FGSM-RS)"]["passes_per_batch"] == 2 and by_method["natural"]["vs_natural"] == 1.0
    assert rows[0]["method"] == "Fast (FGSM-RS)"  # ranked by worst case when AutoAttack is not run
    for name in ("leaderboard.md", "leaderboard.json", "leaderboard.csv", "pareto.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "leaderboard.json").read_text()) == rows
    with open(out / "leaderboard.csv") as handle:
        assert [line["method"] for line in csv.DictReader(handle)] == [row["method"] for row in rows]
    history = json.loads((out / "fast" / "result.json").read_text())["history"]
    assert len(history) == 4 and all("loss" in r and "val_pgd_accuracy" in r for r in history)

    ran = []
    monkeypatch.setattr(bench_module, "bench_method", lambda method, **_: ran.append(method) or result(method, 1, 0, 0))
    again = bench("digits", out, ["natural", "fast", "pgd"], n_eval=100, attacks=("pgd",), epochs=4, verbose=False)
    assert ran == ["pgd"]  # natural and fast were finished
    assert {row["method"] for row in again} == {"natural", "Fast (FGSM-RS)", "PGD"}


def test_art_madry_anchor_follows_the_protocol_schedules_and_is_validated_each_epoch(digits):
    x_train, y_train, x_test, y_test = digits
    classifier = get_protocol("digits").make_classifier("cpu")
    protocol = get_protocol("mnist10k")  # triangle lr and a 3-epoch eps warm-up
    peak = classifier.optimizer.param_groups[0]["lr"]
    anchor = ARTAnchor(classifier, 0.2, "art-madry", protocol)
    history = anchor.fit(x_train[:256], y_train[:256], (x_test, y_test), batch_size=64, nb_epochs=2)
    assert [r["epoch"] for r in history] == [1, 2] and all(0 <= r["val_pgd_accuracy"] <= 1 for r in history)
    # epoch 2's middle (1.5 of 2 epochs) is on the triangle's way down from its peak at 40%: 0.5 / 0.6 of the peak
    assert classifier.optimizer.param_groups[0]["lr"] == pytest.approx(peak * (1 - 0.75) / 0.6)
    assert anchor.passes_per_batch == 11


def test_bench_command_prints_the_leaderboard(tmp_path, capsys):
    main(["bench", "--protocol", "digits", "--methods", "natural", "--epochs", "1", "--attacks", "pgd", "--n-eval",
          "30", "--quiet", "--out", str(tmp_path / "bench")])  # fmt: skip
    printed = capsys.readouterr().out
    assert "Leaderboard: protocol digits" in printed and "| 1 | natural |" in printed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--methods", "natural,madry"], "--methods"),
        (["--methods", "natural", "--eps", "0.1"], "--eps"),
    ],
)
def test_bench_command_refuses_bad_arguments(arguments, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["bench", "--protocol", "digits", *arguments, "--out", str(tmp_path)])
    assert message in capsys.readouterr().err + str(raised.value.code)
    assert not any(tmp_path.iterdir())


def test_bench_refuses_unknown_methods_and_bad_sizes_before_training(tmp_path):
    with pytest.raises(ValueError, match="methods"):
        bench("digits", tmp_path, ["natural", "nope"])
    with pytest.raises(ValueError, match="n_eval"):
        bench("digits", tmp_path, ["natural"], n_eval=0)
    assert not any(tmp_path.iterdir())
