"""``art-fastat bench``: the leaderboard's numbers over seeds, its files and plots, resuming, the ART anchors, the
seed papers' claims, bad input."""

from __future__ import annotations

import csv
import json
import math

import matplotlib.axes
import matplotlib.figure
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from art_fastat import bench as bench_module
from art_fastat.anchors import ARTAnchor
from art_fastat.bench import bench
from art_fastat.cli import main
from art_fastat.leaderboard import leaderboard, pareto_front, plot_pareto, relative_claims, to_markdown
from art_fastat.protocols import Protocol, get_protocol
from art_fastat.runs import run_method


def result(method: str, seconds: float, autoattack: float, pgd: float, clean: float = 0.99, seed: int = 0,
           sizes: dict | None = None, stop_reason: str | None = None) -> dict:  # fmt: skip
    report = {"n": 100, "clean_accuracy": clean, "worst_case_accuracy": autoattack - 0.01,
              "robust_accuracy": {"pgd": pgd, "autoattack": autoattack}}  # fmt: skip
    if sizes is not None:
        report["sizes"] = sizes
    return {"method": method, "label": method.upper(), "seed": seed, "training_seconds": seconds,
            "passes_per_batch": 1.0, "epochs": 3, "history": [], "stop_reason": stop_reason,
            "report": report}  # fmt: skip


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
    note = "seed 0: catastrophic_overfitting after epoch 8, epoch 6 kept"
    assert [(row["epochs"], row["stopped_early"]) for row in rows] == [(3, []), (8, [note])]
    assert f"| {note} |" in to_markdown(rows, get_protocol("digits"))


def test_a_worst_case_on_fewer_images_never_reads_above_an_attack_s_accuracy():
    # CW on 25 images, AutoAttack on 500: the worst case on the 25 (92%) scored above AutoAttack's 79.8%
    sizes = {"clean": 2000, "pgd": 2000, "cw": 25, "autoattack": 500, "worst_case": 25}
    run = result("pgd", 290.0, 0.798, 0.841, sizes=sizes)
    run["report"]["worst_case_accuracy"] = 0.92
    row = leaderboard([run])[0]
    assert (row["autoattack"], row["worst_case"]) == (79.8, 79.8)


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
    history = json.loads((out / "seed-0" / "fast" / "result.json").read_text())["history"]
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
    with pytest.raises(TypeError, match=r"seeds must be a non-empty sequence of integers >= 0, e.g. \(0, 1, 2\)"):
        bench("digits", tmp_path, ["natural"], seeds=3)
    with pytest.raises(ValueError, match="seeds must be an integer >= 0"):
        bench("digits", tmp_path, ["natural"], seeds=(0, -1))
    with pytest.raises(ValueError, match="attack_sizes names 'cw', which is not among the attacks run: pgd"):
        bench("digits", tmp_path, ["natural"], attacks=("pgd",), attack_sizes={"cw": 10})
    with pytest.raises(ValueError, match=r"attack_sizes\['pgd'\] must be an integer >= 1 or a pair"):
        bench("digits", tmp_path, ["natural"], attacks=("pgd",), attack_sizes={"pgd": (10, 5, 1)})
    with pytest.raises(ValueError, match=r"attack_sizes\['pgd'\] must be an integer >= 1"):
        bench("digits", tmp_path, ["natural"], attacks=("pgd",), attack_sizes={"pgd": (10, 0)})
    assert not any(tmp_path.iterdir())


def test_bench_command_takes_seeds_and_per_attack_sizes(tmp_path, monkeypatch, capsys):
    received = {}

    def fake_bench(protocol, out, methods, **kwargs):
        received.update(kwargs)
        (tmp_path / "leaderboard.md").write_text("table")

    monkeypatch.setattr(bench_module, "bench", fake_bench)
    main(["bench", "--methods", "natural", "--seeds", "0", "1", "2", "--n-eval-autoattack", "500", "200",
          "--n-eval-cw", "100", "--out", str(tmp_path)])  # fmt: skip
    assert received["seeds"] == [0, 1, 2] and received["attack_sizes"] == {"autoattack": (500, 200), "cw": (100, 100)}
    main(["bench", "--methods", "natural", "--seed", "4", "--out", str(tmp_path)])
    assert received["seeds"] == [4] and received["attack_sizes"] == {}
    for arguments, message in (
        (["--seed", "1", "--seeds", "0", "1"], "not both"),
        (["--n-eval-cw", "1", "2", "3"], "--n-eval-cw takes one or two numbers"),
        (["--attacks", "pgd", "--n-eval-cw", "10"], "--n-eval-cw sizes cw, which is not among --attacks pgd"),
    ):
        with pytest.raises(SystemExit):
            main(["bench", "--methods", "natural", *arguments, "--out", str(tmp_path)])
        assert message in capsys.readouterr().err


def test_leaderboard_reports_the_mean_and_standard_error_over_seeds():
    results = [
        result("pgd", 10.0, 0.80, 0.85, seed=0, sizes={"clean": 100, "pgd": 100, "autoattack": 50, "worst_case": 50}),
        result("pgd", 12.0, 0.84, 0.86, seed=1, sizes={"clean": 100, "pgd": 100, "autoattack": 20, "worst_case": 20}),
        result("pgd", 14.0, 0.82, 0.90, seed=2, sizes={"clean": 100, "pgd": 100, "autoattack": 20, "worst_case": 20}),
        result("fast", 3.0, 0.50, 0.70, seed=0),
    ]
    rows = {row["method"]: row for row in leaderboard(results)}
    rat = rows["PGD"]
    # AutoAttack 80, 84, 82: mean 82, sample standard deviation 2, standard error 2 / sqrt(3)
    assert rat["seeds"] == 3 and rat["autoattack"] == 82.0 and rat["autoattack_se"] == round(2 / math.sqrt(3), 2)
    # PGD 85, 86, 90: mean 87, deviations -2, -1, 3: variance 14 / 2 = 7
    assert rat["pgd"] == 87.0 and rat["pgd_se"] == round(math.sqrt(7 / 3), 2)
    assert rat["clean"] == 99.0 and rat["clean_se"] == 0.0
    assert rat["training_seconds"] == 12.0 and rat["training_seconds_se"] == round(2 / math.sqrt(3), 1)
    assert rat["images"]["autoattack"] == [50, 20, 20] and rat["images"]["pgd"] == [100, 100, 100]
    fast = rows["FAST"]
    assert fast["seeds"] == 1 and fast["autoattack"] == 50.0 and fast["autoattack_se"] is None
    assert fast["vs_rat"] == 0.25 and fast["images"]["autoattack"] == [100]  # a report without sizes: all n
    markdown = to_markdown(list(rows.values()), get_protocol("digits"))
    assert "| 82 ± 1.15 | 87 ± 1.53 |" in markdown and "PGD 100, AA 50/20/20" in markdown


def test_a_run_a_guard_stopped_is_marked_stopped_early(digits, tmp_path):
    marked = leaderboard([result("fast", 3.0, 0.5, 0.7, seed=0),
                          result("fast", 2.0, 0.4, 0.6, seed=1, stop_reason="catastrophic_overfitting")])  # fmt: skip
    assert marked[0]["stopped_early"] == ["seed 1: catastrophic_overfitting after epoch 3"]
    assert "seed 1: catastrophic_overfitting after epoch 3 |" in to_markdown(marked, get_protocol("digits"))
    assert leaderboard([result("fast", 3.0, 0.5, 0.7)])[0]["stopped_early"] == []
    # the trainer's stop_reason reaches the run: natural training never improves the validation PGD accuracy (0 at
    # eps 0.2), so early stopping with patience 1 stops it after its second epoch
    x_train, y_train, x_test, y_test = digits
    run = run_method("natural", protocol=get_protocol("digits"), data=(x_train[:256], y_train[:256], x_test[:64],
                     y_test[:64]), out=tmp_path, device="cpu", epochs=6, attacks=("pgd",), verbose=False,
                     options={"early_stopping": True, "early_stopping_patience": 1})  # fmt: skip
    assert run.stop_reason == "early_stopping" and len(run.history) == 2
    assert json.loads((tmp_path / "config.json").read_text())["stop_reason"] == "early_stopping"


def test_a_run_validates_on_training_images_never_on_the_test_split(digits, tmp_path):
    # the guard and early stopping pick the epoch that is kept: validated on test images, the test set would choose
    # the model it scores. Test labels shifted by one make every test image wrong for a model that has learned.
    x_train, y_train, x_test, y_test = digits
    data = (x_train[:512], y_train[:512], x_test[:64], (y_test[:64] + 1) % 10)
    run = run_method("natural", protocol=get_protocol("digits"), data=data, out=tmp_path, device="cpu", epochs=3,
                     attacks=("pgd",), verbose=False)  # fmt: skip
    assert run.history[-1]["val_accuracy"] > 0.8  # what the model scores on the training images it was validated on
    assert run.report.clean_accuracy < 0.2  # the shifted test labels, seen only by the evaluation


def test_the_epoch_a_guard_kept_reaches_the_result_and_older_results_get_it_from_their_config(tmp_path, monkeypatch):
    from art_fastat.evaluation import RobustnessReport
    from art_fastat.runs import MethodRun

    report = RobustnessReport(n=4, eps=0.2, norm="Linf", clean_accuracy=1.0, robust_accuracy={"pgd": 0.5},
                              worst_case_accuracy=0.5, seconds={}, per_sample={})  # fmt: skip
    run = MethodRun(method="gaat", protocol="digits", eps=0.2, seed=0, options={}, processes=1, training_seconds=1.0,
                    wall_seconds=1.0, passes_per_batch=2.0, history=[{"epoch": e, "loss": 1.0} for e in range(1, 9)],
                    report=report, stop_reason="catastrophic_overfitting", best_epoch=5)  # fmt: skip
    monkeypatch.setattr(bench_module, "run_method", lambda *_, **__: run)
    result = bench_module.bench_method("gaat", protocol=get_protocol("digits"), data=None, out=tmp_path, device=None,
                                       seed=0, n_eval=None, attacks=("pgd",), epochs=None, verbose=False)  # fmt: skip
    assert result["best_epoch"] == 5
    # a result.json written before results recorded best_epoch: its config.json has it
    directory = tmp_path / "seed-0" / "gaat"
    directory.mkdir(parents=True)
    older = {key: value for key, value in result.items() if key != "best_epoch"}
    (directory / "result.json").write_text(json.dumps({**older, "report": report.to_dict()}))
    (directory / "config.json").write_text(json.dumps({"best_epoch": 5}))
    (row,) = bench("digits", tmp_path, ["gaat"], finished_only=True, attacks=("pgd",), verbose=False)
    assert row["stopped_early"] == ["seed 0: catastrophic_overfitting after epoch 8, epoch 5 kept"]


def test_bench_runs_every_seed_in_its_own_directory_and_resumes_after_an_interruption(tmp_path, monkeypatch, capsys):
    calls, interrupted = [], []

    def fake_bench_method(method, *, out, seed, attack_sizes, **_):
        calls.append((method, seed, dict(attack_sizes)))
        if (method, seed) == ("fast", 1) and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt  # the bench is stopped in its fourth run
        (out / method).mkdir(parents=True, exist_ok=True)
        return result(method, 2.0 + seed, 0.5 + seed / 100, 0.6, seed=seed)

    monkeypatch.setattr(bench_module, "bench_method", fake_bench_method)
    arguments = {"methods": ["natural", "fast"], "attacks": ("pgd", "autoattack"), "verbose": False,
                 "attack_sizes": {"autoattack": (50, 20)}, "n_eval": 100}  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        bench("digits", tmp_path, seeds=(0, 1), **arguments)
    # seeds run one after another; the first seed's AutoAttack runs on 50 images, the others' on 20
    assert calls == [("natural", 0, {"autoattack": 50}), ("fast", 0, {"autoattack": 50}),
                     ("natural", 1, {"autoattack": 20}), ("fast", 1, {"autoattack": 20})]  # fmt: skip
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("seed-*/*/result.json")) == [
        "seed-0/fast/result.json", "seed-0/natural/result.json", "seed-1/natural/result.json"]  # fmt: skip
    # between the parts, the leaderboard of the finished runs, training and evaluating nothing
    partial = bench("digits", tmp_path, seeds=(0, 1), finished_only=True, **arguments)
    assert calls[4:] == [] and {row["method"]: row["seeds"] for row in partial} == {"NATURAL": 2, "FAST": 1}
    assert "| FAST |" in (tmp_path / "leaderboard.md").read_text()
    with pytest.raises(ValueError, match="no finished run"):
        bench("digits", tmp_path, seeds=(5,), finished_only=True, **arguments)
    main(["bench", "--protocol", "digits", "--methods", "natural,fast", "--seeds", "0", "1", "--finished-only",
          "--quiet", "--out", str(tmp_path)])  # fmt: skip
    assert "| FAST |" in capsys.readouterr().out and calls[4:] == []
    calls.clear()
    rows = bench("digits", tmp_path, seeds=(0, 1), **arguments)
    assert calls == [("fast", 1, {"autoattack": 20})]  # only the interrupted run
    fast = next(row for row in rows if row["method"] == "FAST")
    assert fast["seeds"] == 2 and fast["autoattack"] == 50.5 and fast["autoattack_se"] == 0.5
    for name in ("leaderboard.md", "leaderboard.json", "leaderboard.csv", "claims.md", "claims.json", "pareto.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_bench_evaluates_a_finished_run_again_when_more_images_are_asked_for(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    bench("digits", out, ["natural"], n_eval=40, attacks=("pgd",), attack_sizes={"pgd": 10}, epochs=1, verbose=False)
    first = json.loads((out / "seed-0" / "natural" / "result.json").read_text())
    assert first["report"]["sizes"]["pgd"] == 10 and first["report"]["n"] == 40
    monkeypatch.setattr(bench_module, "bench_method", lambda *_, **__: pytest.fail("trained again"))
    rows = bench("digits", out, ["natural"], n_eval=40, attacks=("pgd",), attack_sizes={"pgd": 30}, verbose=False)
    again = json.loads((out / "seed-0" / "natural" / "result.json").read_text())
    assert again["report"]["sizes"]["pgd"] == 30 and rows[0]["images"]["pgd"] == [30]
    assert again["report"]["clean_accuracy"] == first["report"]["clean_accuracy"]  # the saved model, not a new one
    assert again["history"] == first["history"]
    bench("digits", out, ["natural"], n_eval=40, attacks=("pgd",), attack_sizes={"pgd": 20}, verbose=False)
    assert json.loads((out / "seed-0" / "natural" / "result.json").read_text())["report"]["sizes"]["pgd"] == 30


@pytest.mark.parametrize("kind", ["art-trades", "art-awp"])
def test_art_trades_and_awp_anchors_train_through_art_with_the_protocol_schedules(kind, digits, monkeypatch):
    from art.defences.trainer import AdversarialTrainerAWPPyTorch, AdversarialTrainerTRADESPyTorch

    trainer_class = AdversarialTrainerTRADESPyTorch if kind == "art-trades" else AdversarialTrainerAWPPyTorch
    seen = []
    batch_process = trainer_class._batch_process

    def spy(self, x, y):
        seen.append((self._attack.eps, self._attack.max_iter, getattr(self, "_apply_wp", None)))
        return batch_process(self, x, y)

    monkeypatch.setattr(trainer_class, "_batch_process", spy)
    x_train, y_train, x_test, y_test = digits
    classifier = get_protocol("digits").make_classifier("cpu")
    before = [parameter.detach().clone() for parameter in classifier.model.parameters()]
    peak = classifier.optimizer.param_groups[0]["lr"]
    anchor = ARTAnchor(classifier, 0.3, kind, get_protocol("mnist10k"))  # triangle lr, eps warmed up over 3 epochs
    history = anchor.fit(x_train[:128], y_train[:128], (x_test, y_test), batch_size=64, nb_epochs=2, validation_size=64)
    assert [r["epoch"] for r in history] == [1, 2] and all(0 <= r["val_accuracy"] <= 1 for r in history)
    # two batches per epoch, each against PGD-10 at the warmed-up eps of the epoch's middle (0.5 and 1.5 of 3 epochs)
    assert [(round(eps, 6), steps) for eps, steps, _ in seen] == [(0.05, 10)] * 2 + [(0.15, 10)] * 2
    if kind == "art-awp":
        assert all(applied for _, _, applied in seen)  # the weight perturbation from the first epoch (no warm-up)
    assert classifier.optimizer.param_groups[0]["lr"] == pytest.approx(peak * (1 - 0.75) / 0.6)
    assert any(not torch.equal(a, b) for a, b in zip(before, classifier.model.parameters(), strict=True))
    assert anchor.passes_per_batch == 12


def test_art_trades_and_awp_anchors_give_valid_leaderboard_rows(digits, tmp_path, monkeypatch):
    small = (digits[0][:128], digits[1][:128], digits[2][:32], digits[3][:32])
    monkeypatch.setattr(Protocol, "load", lambda self, data_dir=None: small)
    rows = bench("digits", tmp_path, ["natural", "art-trades", "art-awp"], attacks=("pgd",), epochs=1, verbose=False)
    by_method = {row["method"]: row for row in rows}
    assert set(by_method) == {"natural", "ART TRADES (PGD-10, beta 6)", "ART AWP (PGD-10, gamma 0.01)"}
    for label in ("ART TRADES (PGD-10, beta 6)", "ART AWP (PGD-10, gamma 0.01)"):
        row = by_method[label]
        assert row["passes_per_batch"] == 12 and row["epochs"] == 1 and row["training_seconds"] > 0
        assert 0 <= row["pgd"] <= row["clean"] <= 100 and row["images"]["pgd"] == [32]
    assert (tmp_path / "seed-0" / "art-awp" / "model.pt").is_file()


def test_pareto_plot_draws_one_standard_error_on_both_axes(tmp_path, monkeypatch):
    drawn = []
    errorbar = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar",
                        lambda self, x, y, **kwargs: drawn.append((x, y, kwargs["xerr"], kwargs["yerr"]))
                        or errorbar(self, x, y, **kwargs))  # fmt: skip
    rows = leaderboard([result("pgd", 10.0, 0.80, 0.85, seed=0), result("pgd", 14.0, 0.84, 0.85, seed=1),
                        result("fast", 3.0, 0.50, 0.70)])  # fmt: skip
    plot_pareto(rows, tmp_path / "pareto.png", "title")
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # RAT: seconds 10 and 14 (standard error 2), AutoAttack 80 and 84 (2); Fast has one seed: no error bars
    assert sorted(drawn) == [(3.0, 50.0, 0.0, 0.0), (12.0, 82.0, 2.0, 2.0)]


def test_pareto_labels_cover_no_marker_and_no_other_label_where_methods_crowd(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *args, **kwargs: saved.append(self))
    # the top right of P1's leaderboard: six long labels within 1.6x of each other's time and 4 points of accuracy
    crowd = [("rat (pgd-10)", 243, 0.829), ("art madrypgd (pgd-10)", 351, 0.822), ("l2l-trades (t=5)", 375, 0.822),
             ("art awp (pgd-10, gamma 0.01)", 241, 0.805), ("l2l (t=5)", 376, 0.790),
             ("art trades (pgd-10, beta 6)", 238, 0.788), ("free-8", 35, 0.766), ("natural", 24, 0.0)]  # fmt: skip
    rows = leaderboard([result(name, seconds, robust, robust) for name, seconds, robust in crowd])
    plot_pareto(rows, tmp_path / "pareto.png", "title")
    (figure,) = saved
    axes = figure.axes[0]
    canvas = FigureCanvasAgg(figure)  # pyplot closed the figure
    canvas.draw()
    renderer = canvas.get_renderer()
    labels = {text.get_text(): Text.get_window_extent(text, renderer) for text in axes.texts}  # the text, no leader
    assert sorted(labels) == sorted(name.upper() for name, _, _ in crowd)
    markers = [Bbox.from_extents(x - 4, y - 4, x + 4, y + 4)
               for x, y in axes.transData.transform([(s, 100 * r) for _, s, r in crowd])]  # fmt: skip
    inside = axes.get_window_extent(renderer)
    for name, box in labels.items():
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, name
        assert not any(box.overlaps(marker) for marker in markers), name
        assert not any(box.overlaps(other) for other_name, other in labels.items() if other_name != name), name


def test_relative_claims_are_paired_differences_over_the_seeds_both_methods_ran():
    results = [result("gaat", 4.0, 0.40, 0.50, seed=0), result("gaat", 6.0, 0.44, 0.52, seed=1),
               result("gaat", 5.0, 0.90, 0.90, seed=2),  # RAT has no seed 2: not paired
               result("pgd", 10.0, 0.80, 0.85, seed=0), result("pgd", 12.0, 0.82, 0.85, seed=1),
               result("nfgsm", 2.0, 0.60, 0.65, seed=0), result("free", 1.0, 0.5, 0.5, seed=0)]  # fmt: skip
    claims = {(c["method"], c["reference"]): c for c in relative_claims(results)}
    assert set(claims) == {("gaat", "pgd"), ("gaat", "nfgsm")}  # ATCD, ATLAS and L2L were not run
    gaat = claims[("gaat", "pgd")]
    # AutoAttack differences 40 - 80 = -40 and 44 - 82 = -38; time ratios 0.4 and 0.5
    assert gaat["seeds"] == [0, 1] and gaat["robust_metric"] == "autoattack"
    assert gaat["robust_difference"] == -39.0 and gaat["robust_difference_se"] == 1.0
    assert gaat["time_ratio"] == 0.45 and gaat["time_ratio_se"] == 0.05
    assert gaat["reading"] == "less robust (by over 2 SE)"
    assert claims[("gaat", "nfgsm")]["robust_difference"] == -20.0
    assert claims[("gaat", "nfgsm")]["reading"] == "one seed: no standard error"


def test_art_s_madrypgd_is_measured_against_rat_and_its_trades_and_awp_against_madrypgd():
    results = [result("pgd", 10.0, 0.80, 0.85), result("art-madry", 20.0, 0.79, 0.84),
               result("art-trades", 20.0, 0.76, 0.80), result("art-awp", 22.0, 0.82, 0.84)]  # fmt: skip
    claims = {(c["method"], c["reference"]): c["robust_difference"] for c in relative_claims(results)}
    assert claims == {("art-madry", "pgd"): -1.0, ("art-trades", "art-madry"): -3.0, ("art-awp", "art-madry"): 3.0}


def test_the_pareto_plot_draws_a_run_whose_time_rounds_to_zero(tmp_path):
    rows = leaderboard([result("natural", 0.0, 0.0, 0.0), result("fast", 0.0, 0.5, 0.7), result("pgd", 2.0, 0.8, 0.9)])
    plot_pareto(rows, tmp_path / "pareto.png", "title")  # a log time axis: 0 s must not divide by zero
    assert (tmp_path / "pareto.png").stat().st_size > 0
