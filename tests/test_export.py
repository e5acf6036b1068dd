"""``art-fastat export`` and ``art_fastat.load_model``: a Hub-ready folder without pickle that loads back the very model
the run trained, its RobustBench model info, and the refusals."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import art_fastat
from art_fastat.cli import main
from art_fastat.engine import read_model_state
from art_fastat.export import (
    _accuracy_rows,
    export_run,
    load_classifier,
    load_model,
    model_info,
    robustbench_accuracy,
    robustbench_eps,
)
from art_fastat.models import get_model

ROBUSTBENCH_KEYS = ["link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                    "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote"]  # fmt: skip
FOLDER = {"model.safetensors", "config.json", "model_info.json", "README.md", "history.json", "report.json"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished ``art-fastat train`` run (Fast, 1 epoch on digits, PGD on 20 test images) with --tensorboard."""
    root = tmp_path_factory.mktemp("export")
    main(["train", "--method", "fast", "--protocol", "digits", "--epochs", "1", "--attacks", "pgd", "--n-eval", "20",
          "--quiet", "--tensorboard", str(root / "tb"), "--out", str(root / "run")])  # fmt: skip
    return root


@pytest.fixture(scope="module")
def exported(run):
    return export_run(run / "run", run / "hub")


def trained_network(run_dir):
    network = get_model("digits_cnn")
    network.load_state_dict(read_model_state(run_dir / "model.pt"))
    return network.eval()


def test_the_folder_holds_safetensors_json_and_a_card_and_no_pickle(run, exported):
    assert {path.name for path in exported.iterdir()} == FOLDER
    for path in exported.iterdir():
        head = path.read_bytes()[:2]
        assert head != b"PK" and head[:1] != b"\x80", f"{path.name} is a torch.save zip or a pickle"
    weights = load_file(str(exported / "model.safetensors"))
    assert weights.keys() == read_model_state(run / "run" / "model.pt").keys()
    config = json.loads((exported / "config.json").read_text())
    assert config["architecture"] == "digits_cnn" and config["input_shape"] == [1, 8, 8] and config["nb_classes"] == 10
    assert config["method"] == "fast" and config["epochs"] == 1 and config["clip_values"] == [0.0, 1.0]
    assert json.loads((exported / "history.json").read_text()) == json.loads((run / "run" / "history.json").read_text())


def test_model_info_is_robustbench_s_entry_with_the_run_s_numbers(run, exported):
    info = json.loads((exported / "model_info.json").read_text())
    report = json.loads((run / "run" / "report.json").read_text())
    assert list(info) == ROBUSTBENCH_KEYS
    assert info["eps"] == "0.2" and info["dataset"] == "digits" and info["architecture"] == "DigitsCNN"
    assert info["link"] == "https://arxiv.org/abs/2001.03994" and info["venue"] == "ICLR 2020"
    assert info["clean_acc"] == f"{100 * report['clean_accuracy']:.2f}"
    assert info["reported"] == f"{100 * report['worst_case_accuracy']:.2f}"
    assert info["autoattack_acc"] is None  # the run ran PGD only
    assert info["additional_data"] is False and info["number_forward_passes"] == 1
    assert "protocol digits" in info["footnote"] and "first 20 images of the P0 test split" in info["footnote"]
    assert "ART PGD-50 (step 0.02, 1 random start)" in info["footnote"]


def test_the_readme_is_a_hub_model_card(run, exported):
    text = (exported / "README.md").read_text()
    assert text.startswith("---\n")
    metadata = yaml.safe_load(text.split("---\n")[1])
    assert metadata["license"] == "mit" and "adversarial-robustness" in metadata["tags"]
    assert "art_fastat" in metadata["tags"] and metadata["library_name"] == "pytorch"
    report = json.loads((run / "run" / "report.json").read_text())
    metrics = {m["name"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert metrics["clean"] == round(100 * report["clean_accuracy"], 2)
    assert metrics["PGD (L-inf, eps = 0.2)"] == round(100 * report["robust_accuracy"]["pgd"], 2)
    assert "art_fastat.load_model" in text


def test_load_model_gives_back_the_trained_network_without_unpickling(run, exported, digits, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_model must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    model = art_fastat.load_model(exported)
    classifier = load_classifier(exported)
    monkeypatch.undo()
    trained = trained_network(run / "run")
    assert not model.training
    for (name, value), (other, expected) in zip(model.state_dict().items(), trained.state_dict().items(), strict=True):
        assert name == other and torch.equal(value, expected), name
    x_test = torch.from_numpy(digits[2])
    with torch.no_grad():
        assert torch.equal(model(x_test), trained(x_test))
        logits = trained(x_test).numpy()
    predicted = classifier.predict(digits[2])  # ART's batches: the same logits up to float rounding
    assert np.allclose(predicted, logits, atol=1e-5) and np.array_equal(predicted.argmax(1), logits.argmax(1))
    assert tuple(classifier.clip_values) == (0.0, 1.0) and classifier.input_shape == (1, 8, 8)


def test_robustbench_formats():
    assert [robustbench_eps(eps) for eps in (8 / 255, 16 / 255, 2 / 255, 0.3, 0.2, 0.1, 0.5)] == [
        "8/255", "16/255", "2/255", "0.3", "0.2", "0.1", "0.5"]  # fmt: skip
    assert [robustbench_accuracy(a) for a in (0.4321, 0.5, 1.0, None)] == ["43.21", "50.00", "100.00", None]
    report = {"n": 10000, "clean_accuracy": 0.8334, "worst_case_accuracy": 0.4302,
              "robust_accuracy": {"pgd": 0.4606, "autoattack": 0.4321}}  # fmt: skip
    info = model_info("fast", "cifar10", "preact_resnet18", 8 / 255, report, 15, seed=0)
    assert (info["eps"], info["dataset"], info["architecture"]) == ("8/255", "cifar10", "PreActResNet-18")
    assert (info["clean_acc"], info["autoattack_acc"], info["reported"]) == ("83.34", "43.21", "43.02")
    assert "first 10000 images of the CIFAR-10 test set" in info["footnote"] and "15 epochs" in info["footnote"]
    assert "1 epoch," in model_info("fast", "digits", "digits_cnn", 0.2, report, 1, seed=0)["footnote"]


def test_attacks_on_fewer_images_are_named_and_never_lift_the_reported_accuracy_above_an_attack_s():
    # the bench's P1 sizes: AutoAttack on 500 images, CW on 25; the worst case on those 25 scored above AutoAttack
    report = {"n": 2000, "clean_accuracy": 0.9815, "worst_case_accuracy": 0.92,
              "robust_accuracy": {"pgd": 0.841, "cw": 1.0, "autoattack": 0.798},
              "sizes": {"clean": 2000, "pgd": 2000, "cw": 25, "autoattack": 500, "worst_case": 25}}  # fmt: skip
    info = model_info("pgd", "mnist10k", "mnist_cnn", 0.3, report, 10, seed=0)
    assert (info["autoattack_acc"], info["reported"]) == ("79.80", "79.80")
    assert "attacks: pgd, ART Carlini-Wagner L-inf on the first 25, AutoAttack on the first 500;" in info["footnote"]
    assert "the lowest of the worst case over these attacks on the first 25 images" in info["footnote"]
    rows = dict(_accuracy_rows(report, "0.3"))
    assert rows["CW (L-inf, eps = 0.3), first 25 images"] == 100.0 and rows["PGD (L-inf, eps = 0.3)"] == 84.1
    assert rows["worst case over the attacks, first 25 images"] == 92.0
    same = {**report, "sizes": dict.fromkeys(report["sizes"], 2000), "worst_case_accuracy": 0.79}
    assert model_info("pgd", "mnist10k", "mnist_cnn", 0.3, same, 10)["reported"] == "79.00"  # the worst case itself


def test_a_run_without_evaluation_exports_with_null_accuracies(run, tmp_path, caplog):
    unevaluated = tmp_path / "run"
    shutil.copytree(run / "run", unevaluated, ignore=shutil.ignore_patterns("report.*", "checkpoint"))
    out = export_run(unevaluated, tmp_path / "hub")
    info = json.loads((out / "model_info.json").read_text())
    assert info["clean_acc"] is info["reported"] is info["autoattack_acc"] is None
    assert "not evaluated" in info["footnote"] and not (out / "report.json").exists()
    assert "no report.json" in caplog.text
    assert "model-index" not in (out / "README.md").read_text()


def test_an_existing_folder_is_replaced_only_with_force_and_atomically(run, tmp_path, monkeypatch):
    out = tmp_path / "hub"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="force"):
        export_run(run / "run", out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        export_run(run / "run", out, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["hub"] and [p.name for p in out.iterdir()] == ["mine.txt"]
    monkeypatch.undo()
    export_run(run / "run", out, force=True)
    assert {p.name for p in out.iterdir()} == FOLDER and [p.name for p in tmp_path.iterdir()] == ["hub"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert {p.name for p in export_run(run / "run", empty).iterdir()} == FOLDER


def test_bad_runs_and_destinations_are_refused_before_anything_is_written(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_run(tmp_path / "missing", tmp_path / "a")
    interrupted = tmp_path / "interrupted"
    shutil.copytree(run / "run", interrupted, ignore=shutil.ignore_patterns("model.pt"))
    with pytest.raises(FileNotFoundError, match="lacks model.pt.*--resume"):
        export_run(interrupted, tmp_path / "a")
    foreign = tmp_path / "foreign"
    shutil.copytree(run / "run", foreign)
    torch.save(get_model("mnist_cnn").state_dict(), foreign / "model.pt")
    with pytest.raises(ValueError, match="holds no weights of the digits_cnn model"):
        export_run(foreign, tmp_path / "a")
    (foreign / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        export_run(foreign, tmp_path / "a")
    with pytest.raises(ValueError, match="must not be the run directory"):
        export_run(run / "run", run / "run", force=True)
    with pytest.raises(ValueError, match="must not be the run directory"):
        export_run(run / "run", run, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export_run(run / "run", tmp_path / "file")
    with pytest.raises(ValueError, match="license"):
        export_run(run / "run", tmp_path / "a", license="not a license")
    assert not (tmp_path / "a").exists() and (run / "run" / "model.pt").is_file()


def test_load_model_refuses_folders_it_did_not_write(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing")
    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architecture": "mnist_cnn"}))
    with pytest.raises(ValueError, match="disagree on architecture"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**config, "format": "other/1"}))
    with pytest.raises(ValueError, match="not an art_fastat export"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\x80\x04 a pickle")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_model(folder)


def test_preprocessing_in_the_folder_reaches_the_classifier(exported, tmp_path, digits):
    folder = tmp_path / "standardised"
    shutil.copytree(exported, folder)
    preprocessing = {"mean": 0.5, "std": 0.25}
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "preprocessing": preprocessing}))
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        metadata = {**weights.metadata(), "preprocessing": json.dumps(preprocessing)}
    save_file(load_file(str(folder / "model.safetensors")), str(folder / "model.safetensors"), metadata=metadata)
    classifier = load_classifier(folder)
    model = load_model(folder)
    with torch.no_grad():
        expected = model((torch.from_numpy(digits[2]) - 0.5) / 0.25).numpy()
    assert np.allclose(classifier.predict(digits[2]), expected, atol=1e-5)


def test_the_command_exports_and_refuses_a_non_empty_folder(run, tmp_path, capsys):
    main(["export", str(run / "run"), "--out", str(tmp_path / "hub"), "--license", "apache-2.0"])
    assert '"eps": "0.2"' in capsys.readouterr().out
    assert "license: apache-2.0" in (tmp_path / "hub" / "README.md").read_text()
    with pytest.raises(SystemExit, match="not empty"):
        main(["export", str(run / "run"), "--out", str(tmp_path / "hub")])
    main(["export", str(run / "run"), "--out", str(tmp_path / "hub"), "--force"])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "b")])


def test_train_tensorboard_writes_the_history_as_scalars(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = json.loads((run / "run" / "history.json").read_text())
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    numbers = [key for key in history[0] if key != "epoch"]
    assert set(events.Tags()["scalars"]) == set(numbers) and "val_pgd_accuracy" in numbers
    for key in numbers:
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [record["epoch"] for record in history]
        assert [s.value for s in scalars] == pytest.approx([record[key] for record in history], rel=1e-6)
