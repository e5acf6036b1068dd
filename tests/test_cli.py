"""The ``art-fastat`` command: train then evaluate round trip, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from art_fastat.cli import main


def test_train_writes_weights_history_and_report_then_evaluate_reproduces_it(tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "--method", "fast", "--protocol", "digits", "--epochs", "2", "--attacks", "pgd", "--n-eval", "60",
          "--quiet", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "fast on digits" in printed and "pgd" in printed
    for name in ("model.pt", "config.json", "history.json", "report.json", "report.md", "checkpoint/checkpoint.pt"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert len(history) == 2 and config["passes_per_batch"] == 2 and config["method"] == "fast"
    trained = json.loads((out / "report.json").read_text())
    main(["evaluate", "--checkpoint", str(out / "model.pt"), "--protocol", "digits", "--attacks", "pgd",
          "--n-eval", "60", "--out", str(tmp_path / "eval")])  # fmt: skip
    again = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert again["clean_accuracy"] == trained["clean_accuracy"] > 0.5
    assert again["robust_accuracy"]["pgd"] == trained["robust_accuracy"]["pgd"]


def test_method_options_reach_the_trainer(tmp_path):
    out = tmp_path / "run"
    main(["train", "--method", "pgd", "--protocol", "digits", "--epochs", "1", "--attacks", "pgd", "--n-eval", "20",
          "--option", "steps=3", "--quiet", "--out", str(out)])  # fmt: skip
    assert json.loads((out / "config.json").read_text())["passes_per_batch"] == 4


def test_dat_gaat_from_the_command_line_records_its_switch(tmp_path):
    out = tmp_path / "run"
    options = ["--option", "switch_epoch=1", "--option", "inner_options={'steps': 3}"]
    main(["train", "--method", "dat+gaat", "--protocol", "digits", "--epochs", "2", "--attacks", "pgd", "--n-eval",
          "20", *options, "--quiet", "--out", str(out)])  # fmt: skip
    history = json.loads((out / "history.json").read_text())
    assert [r["adversarial"] for r in history] == [0, 1] and history[1]["switch_epoch"] == 2
    assert json.loads((out / "config.json").read_text())["passes_per_batch"] == 1.5


@pytest.mark.parametrize(
    ("method", "options", "data_passes", "passes"), [("free", ["replays=2"], 2, 2), ("atcd", ["repeats=2"], 1, 6)]
)
def test_replay_methods_from_the_command_line_count_epochs_in_passes(method, options, data_passes, passes, tmp_path):
    out = tmp_path / "run"
    main(["train", "--method", method, "--protocol", "digits", "--epochs", "4", "--attacks", "pgd", "--n-eval", "20",
          *(f"--option={option}" for option in options), "--quiet", "--out", str(out)])  # fmt: skip
    history = json.loads((out / "history.json").read_text())
    assert len(history) == data_passes and history[-1]["passes"] == 4  # --epochs counts passes
    assert json.loads((out / "config.json").read_text())["passes_per_batch"] == passes


def test_atlas_ablations_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    main(["train", "--method", "atlas", "--protocol", "digits", "--epochs", "1", "--attacks", "pgd", "--n-eval", "20",
          "--option", "local_term=False", "--quiet", "--out", str(out)])  # fmt: skip
    history = json.loads((out / "history.json").read_text())
    assert "global_kl" in history[0] and "local_kl" not in history[0]
    assert json.loads((out / "config.json").read_text())["passes_per_batch"] == 3


def test_l2l_trades_from_the_command_line_records_the_inner_loss_per_step(tmp_path):
    out = tmp_path / "run"
    main(["train", "--method", "l2l-trades", "--protocol", "digits", "--epochs", "1", "--attacks", "pgd", "--n-eval",
          "20", "--option", "steps=2", "--quiet", "--out", str(out)])  # fmt: skip
    history = json.loads((out / "history.json").read_text())
    assert {"inner_loss_0", "inner_loss_1", "inner_loss_2"} <= set(history[0])
    assert json.loads((out / "config.json").read_text())["passes_per_batch"] == 4


def test_bad_arguments_exit_with_a_clear_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--method", "nope", "--out", str(tmp_path)])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):
        main(["train", "--method", "fast", "--eps", "-1", "--out", str(tmp_path / "a")])
    assert "eps must be in" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="does not exist"):
        main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")])
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="holds no weights"):
        main(["evaluate", "--checkpoint", str(tmp_path / "foreign.pt")])


def test_mnist10k_without_data_says_where_to_put_what(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ART_FASTAT_DATA_DIR", raising=False)
    with pytest.raises(SystemExit):
        main(["train", "--method", "fast", "--protocol", "mnist10k", "--out", str(tmp_path / "o")])
    assert "--data-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--method", "fast", "--protocol", "mnist10k", "--data-dir", str(tmp_path), "--out", "o"])
    assert "t10k-images-idx3-ubyte" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "art_fastat.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout and "evaluate" in result.stdout
