"""``evaluate``: clean, ART PGD, ART CW and AutoAttack on a small naturally trained digits CNN."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from conftest import Standardise
from sklearn.datasets import load_digits
from torch import nn

import art_fastat.evaluation.pgd as pgd_runner
from art_fastat import evaluation
from art_fastat.evaluation import RobustnessReport, evaluate

QUICK_AUTOATTACK = {"autoattack_version": "custom", "autoattack_attacks": ["apgd-ce"]}


class Destandardise(nn.Module):
    """``x * std + mean``: undoes a standardisation so that a trained network sees the inputs it was trained on."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class ModeRecorder(nn.Module):
    """Identity that records ``self.training`` at every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return x


def network(seed: int = 0, batch_norm: bool = False) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 8, 3, padding=1)]
    if batch_norm:
        layers += [nn.BatchNorm2d(8), ModeRecorder()]
    layers += [nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten()]
    if batch_norm:
        layers.append(nn.Dropout(0.2))
    layers.append(nn.Linear(16 * 4 * 4, 10))
    return nn.Sequential(*layers)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 6) -> nn.Module:
    """Plain natural training (a second or two on the CPU); leaves the model in eval mode."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs[batch]), labels[batch]).backward()
            optimizer.step()
    return model.eval()


def wrap(model: nn.Module, **kwargs: object) -> PyTorchClassifier:
    return PyTorchClassifier(
        model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=kwargs.pop("clip_values", (0.0, 1.0)),
        **kwargs,
    )


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, np.newaxis]
    y = digits.target.astype(np.int64)
    order = np.random.RandomState(0).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


@pytest.fixture(scope="module")
def trained(data) -> nn.Module:
    x_train, y_train, _, _ = data
    return train(network(), x_train, y_train)


@pytest.fixture
def classifier(trained) -> PyTorchClassifier:
    return wrap(copy.deepcopy(trained))


@pytest.fixture(scope="module")
def report(trained, data) -> RobustnessReport:
    """All three attacks (L2, where ART's CW is batched and cheap) on 24 test points."""
    _, _, x, y = data
    return evaluate(wrap(copy.deepcopy(trained)), x[:24], y[:24], 0.5, norm=2, pgd_steps=10, **QUICK_AUTOATTACK)


def test_clean_accuracy_is_the_accuracy_of_predict_and_pgd_breaks_a_natural_model(classifier, data):
    _, _, x, y = data
    x, y = x[:100], y[:100]
    result = evaluate(classifier, x, y, 0.2, attacks="pgd", pgd_steps=10)
    correct = classifier.predict(x).argmax(axis=1) == y
    assert result.n == 100 and result.norm == "Linf" and result.eps == 0.2
    assert result.clean_accuracy == pytest.approx(correct.mean()) and result.clean_accuracy > 0.9
    np.testing.assert_array_equal(result.per_sample["clean"], correct)
    assert list(result.robust_accuracy) == ["pgd"]
    assert result.robust_accuracy["pgd"] < result.clean_accuracy - 0.5
    assert result.settings["pgd"] == {"max_iter": 10, "eps_step": pytest.approx(0.05), "num_random_init": 1}
    one_hot = np.eye(10, dtype=np.float32)[y]
    again = evaluate(classifier, x, one_hot, 0.2, attacks=("pgd",), pgd_steps=10)
    for name in ("clean", "pgd"):
        np.testing.assert_array_equal(again.per_sample[name], result.per_sample[name])


def test_every_attack_is_below_clean_and_the_worst_case_is_their_conjunction(report):
    assert set(report.robust_accuracy) == {"pgd", "cw", "autoattack"}
    flags = report.per_sample
    assert set(flags) == {"clean", "pgd", "cw", "autoattack", "worst_case"}
    for name in ("pgd", "cw", "autoattack"):
        assert flags[name].dtype == bool and flags[name].shape == (24,)
        assert not np.any(flags[name] & ~flags["clean"]), name
        assert report.robust_accuracy[name] == pytest.approx(flags[name].mean())
        assert report.robust_accuracy[name] <= report.clean_accuracy
    expected = flags["clean"] & flags["pgd"] & flags["cw"] & flags["autoattack"]
    np.testing.assert_array_equal(flags["worst_case"], expected)
    assert report.worst_case_accuracy == pytest.approx(expected.mean())
    assert report.worst_case_accuracy <= min(report.robust_accuracy.values())
    assert report.robust_accuracy["pgd"] < report.clean_accuracy  # eps = 0.5 in L2 fools some points
    assert set(report.seconds) == {"clean", "pgd", "cw", "autoattack"}
    assert all(seconds >= 0 for seconds in report.seconds.values())
    assert report.settings["cw"]["method"] == "CarliniL2Method"
    assert report.settings["autoattack"]["attacks"] == ["apgd-ce"]


def test_cw_counts_a_sample_as_robust_when_its_adversarial_needs_more_than_eps(classifier, data):
    _, _, x, y = data
    x, y = x[:10], y[:10]
    tiny = evaluate(classifier, x, y, 1e-3, norm=2, attacks=("cw",))
    large = evaluate(classifier, x, y, 4.0, norm=2, attacks=("cw",))
    # CW is unbounded and deterministic: the same adversarials are judged against two budgets.
    np.testing.assert_array_equal(tiny.per_sample["clean"], large.per_sample["clean"])
    assert tiny.robust_accuracy["cw"] == tiny.clean_accuracy  # every adversarial is farther than 1e-3
    assert large.robust_accuracy["cw"] <= tiny.clean_accuracy - 0.5  # ... but most exist within 4.0
    assert not np.any(large.per_sample["cw"] & ~tiny.per_sample["cw"])


def test_linf_cw_finds_adversarials_within_the_clip_width(classifier, data):
    _, _, x, y = data
    result = evaluate(classifier, x[:5], y[:5], 1.0, attacks=("cw",))
    assert result.settings["cw"]["method"] == "CarliniLInfMethod"
    assert result.settings["cw"]["learning_rate"] == 0.1
    assert result.robust_accuracy["cw"] < result.clean_accuracy


def test_autoattack_standard_and_custom_are_below_clean(classifier, data):
    _, _, x, y = data
    x, y = x[:16], y[:16]
    custom = evaluate(classifier, x, y, 0.2, attacks=("autoattack",), **QUICK_AUTOATTACK)
    assert custom.robust_accuracy["autoattack"] <= custom.clean_accuracy
    assert custom.robust_accuracy["autoattack"] < custom.clean_accuracy - 0.5
    # At eps = 0.3 APGD-CE fools every point, so the standard version stops before its slow attacks.
    standard = evaluate(classifier, x[:8], y[:8], 0.3, attacks=("autoattack",))
    assert standard.settings["autoattack"]["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert standard.robust_accuracy["autoattack"] <= standard.clean_accuracy


def test_autoattack_maps_other_clip_values_onto_its_unit_box(classifier, trained, data):
    _, _, x, y = data
    x, y = x[:16], y[:16]
    unit = evaluate(classifier, x, y, 0.1, attacks=("autoattack",), **QUICK_AUTOATTACK)
    pixels = wrap(nn.Sequential(Scale(1 / 255), copy.deepcopy(trained)), clip_values=(0.0, 255.0))
    scaled = evaluate(pixels, x * 255, y, 0.1 * 255, attacks=("autoattack",), **QUICK_AUTOATTACK)
    assert scaled.settings["autoattack"]["eps_in_unit_box"] == pytest.approx(0.1)
    np.testing.assert_array_equal(scaled.per_sample["clean"], unit.per_sample["clean"])
    assert abs(scaled.robust_accuracy["autoattack"] - unit.robust_accuracy["autoattack"]) <= 1 / 16
    assert unit.robust_accuracy["autoattack"] < unit.clean_accuracy


def test_preprocessing_in_the_classifier_equals_standardising_inside_the_network(trained, data):
    _, _, x, y = data
    x, y = x[:40], y[:40]
    mean, std = 0.3, 0.4
    outside = wrap(nn.Sequential(Destandardise(mean, std), copy.deepcopy(trained)), preprocessing=(mean, std))
    inside = wrap(nn.Sequential(Standardise(mean, std), Destandardise(mean, std), copy.deepcopy(trained)))
    options = {"attacks": ("pgd", "autoattack"), "pgd_steps": 10, **QUICK_AUTOATTACK}
    a = evaluate(outside, x, y, 0.1, **options)
    b = evaluate(inside, x, y, 0.1, **options)
    np.testing.assert_array_equal(a.per_sample["clean"], b.per_sample["clean"])
    assert 0 < a.robust_accuracy["pgd"] < a.clean_accuracy
    assert abs(a.robust_accuracy["pgd"] - b.robust_accuracy["pgd"]) <= 1 / 40
    assert abs(a.robust_accuracy["autoattack"] - b.robust_accuracy["autoattack"]) <= 1 / 40


def test_eval_mode_during_attacks_then_modes_gradients_and_weights_restored(data):
    x_train, y_train, x, y = data
    model = train(network(batch_norm=True), x_train, y_train, epochs=2)
    recorder = next(module for module in model if isinstance(module, ModeRecorder))
    classifier = wrap(model)
    model.train()
    model[0].eval()  # a mixed pattern: restored module by module
    modes = [module.training for module in model.modules()]
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 0.5)
    grads = [parameter.grad for parameter in model.parameters()]
    state = copy.deepcopy(model.state_dict())
    x, y = x[:10].copy(), y[:10].copy()
    x_before, y_before = x.copy(), y.copy()
    recorder.modes.clear()

    result = evaluate(classifier, x, y, 0.5, norm=2, pgd_steps=5, cw_max_iter=5, **QUICK_AUTOATTACK)

    assert result.clean_accuracy > 0.5 and len(recorder.modes) > 100
    assert not any(recorder.modes)
    assert [module.training for module in model.modules()] == modes
    for parameter, grad in zip(model.parameters(), grads, strict=True):
        assert parameter.requires_grad and parameter.grad is grad and torch.all(grad == 0.5)
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name  # weights and BatchNorm statistics
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)


def test_modes_gradients_and_random_state_are_restored_when_an_attack_raises(classifier, data, monkeypatch):
    _, _, x, y = data

    def failing(*args: object, **kwargs: object) -> np.ndarray:
        raise RuntimeError("attack failed")

    monkeypatch.setattr(pgd_runner.ProjectedGradientDescent, "generate", failing)
    model = classifier.model
    model.train()
    frozen = next(iter(model.parameters()))
    frozen.requires_grad_(False)
    np.random.seed(123)
    torch.manual_seed(123)
    with pytest.raises(RuntimeError, match="attack failed"):
        evaluate(classifier, x[:8], y[:8], 0.1, attacks=("pgd",))
    assert all(module.training for module in model.modules())
    assert [parameter.requires_grad for parameter in model.parameters()][:2] == [False, True]
    assert all(parameter.grad is None for parameter in model.parameters())
    draws = np.random.rand(), torch.rand(1).item()
    np.random.seed(123)
    torch.manual_seed(123)
    assert draws == (np.random.rand(), torch.rand(1).item())


def test_results_are_reproducible_and_leave_the_global_random_state_alone(classifier, data):
    _, _, x, y = data
    np.random.seed(7)
    first = evaluate(classifier, x[:40], y[:40], 0.1, attacks=("pgd",), pgd_steps=5, pgd_restarts=2)
    after = np.random.rand()
    np.random.seed(7)
    assert np.random.rand() == after
    second = evaluate(classifier, x[:40], y[:40], 0.1, attacks=("pgd",), pgd_steps=5, pgd_restarts=2)
    np.testing.assert_array_equal(first.per_sample["pgd"], second.per_sample["pgd"])
    # Without restarts PGD starts from the clean input: no randomness left for the seed to change.
    options = {"attacks": ("pgd",), "pgd_steps": 5, "pgd_restarts": 0}
    start_0 = evaluate(classifier, x[:40], y[:40], 0.1, seed=0, **options)
    start_1 = evaluate(classifier, x[:40], y[:40], 0.1, seed=1, **options)
    np.testing.assert_array_equal(start_0.per_sample["pgd"], start_1.per_sample["pgd"])
    assert start_0.settings["pgd"]["num_random_init"] == 0


def test_more_restarts_never_help_the_model(classifier, data):
    _, _, x, y = data
    x, y = x[:60], y[:60]
    options = {"attacks": ("pgd",), "pgd_steps": 3, "pgd_step_size": 0.01}
    one = evaluate(classifier, x, y, 0.1, pgd_restarts=1, **options)
    four = evaluate(classifier, x, y, 0.1, pgd_restarts=4, **options)
    # ART keeps the first run and every later restart that succeeds: the first seeded run is shared.
    assert not np.any(four.per_sample["pgd"] & ~one.per_sample["pgd"])
    assert four.robust_accuracy["pgd"] < one.robust_accuracy["pgd"]


def test_each_pgd_restart_attacks_only_the_samples_no_earlier_restart_fooled(classifier, data, monkeypatch):
    from art.attacks.evasion import ProjectedGradientDescent

    _, _, x, y = data
    x, y = x[:60], y[:60]
    options = {"attacks": ("pgd",), "pgd_steps": 3, "pgd_step_size": 0.01}
    one = evaluate(classifier, x, y, 0.1, pgd_restarts=1, **options)
    sizes, generate = [], ProjectedGradientDescent.generate

    def counted(self, x, y=None, **kwargs):
        sizes.append(len(x))
        return generate(self, x, y, **kwargs)

    monkeypatch.setattr(ProjectedGradientDescent, "generate", counted)
    four = evaluate(classifier, x, y, 0.1, pgd_restarts=4, **options)
    # the first restart attacks every clean-correct sample; the second only the ones it left robust (the first run is
    # the seeded one of pgd_restarts=1), and so on: what the last leaves robust is the robust accuracy
    assert sizes[0] == round(one.clean_accuracy * 60) and sizes[1] == round(one.robust_accuracy["pgd"] * 60) < sizes[0]
    assert len(sizes) == 4 and sizes == sorted(sizes, reverse=True)
    assert round(four.robust_accuracy["pgd"] * 60) <= sizes[-1]


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"x": "wrong shape"}, ValueError, "x must have shape"),
        ({"x": "nan"}, ValueError, "x must be finite"),
        ({"x": "out of range"}, ValueError, "x must lie inside"),
        ({"y": "out of range"}, ValueError, r"y must be class indices in \[0, 9\]"),
        ({"y": "too short"}, ValueError, "y must label every input"),
        ({"eps": 0.0}, ValueError, r"eps must be in \(0, 1\]"),
        ({"eps": -0.1}, ValueError, "eps must be in"),
        ({"eps": 1.5}, ValueError, "eps must be in"),
        ({"eps": "0.1"}, TypeError, "eps must be a finite number"),
        ({"eps": 9.0, "norm": 2}, ValueError, "L2 diameter"),
        ({"norm": 1}, ValueError, "norm must be np.inf, 'inf' or 2"),
        ({"attacks": ("pgd", "fgsm")}, ValueError, "attacks must be one of 'pgd', 'cw', 'autoattack', got 'fgsm'"),
        ({"attacks": ()}, ValueError, "attacks must be a non-empty"),
        ({"pgd_steps": 0}, ValueError, "pgd_steps must be an integer >= 1"),
        ({"pgd_restarts": -1}, ValueError, "pgd_restarts must be an integer >= 0"),
        ({"pgd_step_size": 0.0}, ValueError, "pgd_step_size must be a finite number > 0"),
        ({"cw_max_iter": 2.5}, TypeError, "cw_max_iter must be an integer"),
        ({"cw_learning_rate": float("nan")}, ValueError, "cw_learning_rate must be a finite number > 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
        ({"seed": -1}, ValueError, "seed must be an integer >= 0"),
        ({"verbose": "yes"}, TypeError, "verbose must be a bool"),
        ({"autoattack_version": "fast"}, ValueError, "autoattack_version must be one of"),
        ({"autoattack_attacks": ["apgd-ce"]}, ValueError, "autoattack_attacks is only used with"),
        ({"autoattack_version": "custom"}, ValueError, "autoattack_attacks must be a non-empty list"),
        ({**QUICK_AUTOATTACK, "autoattack_attacks": ["pgd"]}, ValueError, "autoattack_attacks must be one of"),
        ({"classifier": "module"}, TypeError, "classifier must be an art.estimators.classification.PyTorchClassifier"),
    ],
)
def test_bad_arguments_raise_before_anything_runs(classifier, data, change, error, match):
    _, _, x, y = data
    arguments = {"classifier": classifier, "x": x[:4].copy(), "y": y[:4].copy(), "eps": 0.1}
    replacements = {
        ("x", "wrong shape"): x[:4, :, :, :4],
        ("x", "nan"): np.where(np.arange(64).reshape(1, 1, 8, 8) == 5, np.nan, x[:4]).astype(np.float32),
        ("x", "out of range"): x[:4] * 2 - 0.5,
        ("y", "out of range"): np.array([0, 1, 2, 10]),
        ("y", "too short"): y[:3],
        ("classifier", "module"): classifier.model,
    }
    for name, value in change.items():
        arguments[name] = replacements.get((name, value), value) if isinstance(value, str) else value
    calls = []
    classifier.model.register_forward_hook(lambda *_: calls.append(1))
    with pytest.raises(error, match=match):
        evaluate(**arguments)
    assert not calls  # nothing ran


def test_autoattack_refuses_clip_values_of_different_widths(trained, data):
    _, _, x, y = data
    low, high = np.zeros((1, 8, 8), np.float32), np.ones((1, 8, 8), np.float32)
    high[0, 0, 0] = 2.0
    uneven = wrap(copy.deepcopy(trained), clip_values=(low, high))
    with pytest.raises(ValueError, match="autoattack.*one width"):
        evaluate(uneven, x[:4], y[:4], 0.1)
    assert evaluate(uneven, x[:4], y[:4], 0.1, attacks="pgd", pgd_steps=2).n == 4  # fine without AutoAttack


def test_autoattack_needs_enough_classes_only_when_it_runs(data):
    _, _, x, y = data
    keep = y < 3
    three = PyTorchClassifier(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 3)),
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=3,
        clip_values=(0.0, 1.0),
    )
    with pytest.raises(ValueError, match=r"apgd-t, which need nb_classes >= 4, got 3"):
        evaluate(three, x[keep][:6], y[keep][:6], 0.1, attacks=("pgd", "autoattack"))
    assert evaluate(three, x[keep][:6], y[keep][:6], 0.1, attacks="pgd", pgd_steps=2).n == 6
    custom = {"autoattack_version": "custom", "autoattack_attacks": ["apgd-ce", "fab-t"]}
    assert evaluate(three, x[keep][:6], y[keep][:6], 0.1, attacks="autoattack", **custom).n == 6
    two = PyTorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), loss=nn.CrossEntropyLoss(),
                            input_shape=(1, 8, 8), nb_classes=2, clip_values=(0.0, 1.0))  # fmt: skip
    binary = y < 2  # the sanity checks skip the DLR-gradient check, which needs three logits
    assert evaluate(two, x[binary][:6], y[binary][:6], 0.1, attacks="pgd", pgd_steps=2).n == 6


def test_autoattack_output_goes_through_logging(classifier, data, caplog, capsys):
    _, _, x, y = data
    with caplog.at_level("DEBUG", logger="art_fastat.evaluation"):
        evaluate(classifier, x[:8], y[:8], 0.1, attacks=("autoattack",), **QUICK_AUTOATTACK)
    assert capsys.readouterr().out == ""
    messages = [record.getMessage() for record in caplog.records if record.name == "art_fastat.evaluation"]
    assert any(message.startswith("AutoAttack: initial accuracy") for message in messages)
    assert not any(record.name == "auto-attack" for record in caplog.records)
    assert logging_is_restored()
    caplog.clear()
    with caplog.at_level("INFO", logger="art_fastat.evaluation"):
        evaluate(classifier, x[:8], y[:8], 0.1, attacks=("autoattack",), verbose=True, **QUICK_AUTOATTACK)
    assert any(record.getMessage().startswith("AutoAttack: robust accuracy") for record in caplog.records)
    assert logging_is_restored()


def test_a_warning_autoattack_repeats_in_every_run_is_one_flag(classifier, data, monkeypatch):
    import pyautoattack.autopgd_base

    calls = []

    def zero_gradients_found(gradient, logger=None):
        calls.append(1)
        logger.warning("there are 3 points with zero gradient!")

    monkeypatch.setattr(pyautoattack.autopgd_base, "check_zero_gradients", zero_gradients_found)
    _, _, x, y = data
    report = evaluate(classifier, x[:8], y[:8], 0.1, attacks=("autoattack",), autoattack_version="custom",
                      autoattack_attacks=["apgd-t"])  # fmt: skip
    assert len(calls) >= 9  # APGD-T checks once per target class
    assert report.flags.count("AutoAttack: there are 3 points with zero gradient!") == 1


def logging_is_restored() -> bool:
    import logging

    autoattack_logger = logging.getLogger("auto-attack")
    return autoattack_logger.propagate and not autoattack_logger.handlers


def test_serialisation_markdown_and_leaderboard_row(report):
    document = json.loads(report.to_json())
    assert document["n"] == 24 and document["norm"] == "L2" and document["eps"] == 0.5
    assert document["robust_accuracy"] == report.robust_accuracy
    assert document["clean_accuracy"] == report.clean_accuracy
    assert document["worst_case_accuracy"] == report.worst_case_accuracy
    assert "per_sample" not in document
    flags = json.loads(report.to_json(per_sample=True))["per_sample"]
    assert flags["worst_case"] == report.per_sample["worst_case"].tolist()
    assert report.to_dict(per_sample=True)["per_sample"]["pgd"] == report.per_sample["pgd"].tolist()

    markdown = report.to_markdown()
    assert str(report) == markdown
    assert "| attack | accuracy | seconds |" in markdown
    assert f"| clean | {report.clean_accuracy:.2%} |" in markdown
    for name, accuracy in report.robust_accuracy.items():
        assert f"| {name} | {accuracy:.2%} | {report.seconds[name]:.2f} |" in markdown
    assert f"| worst case | {report.worst_case_accuracy:.2%} |" in markdown

    row = report.leaderboard_row("natural", training_seconds=12.5)
    assert row == {
        "method": "natural",
        "clean": round(100 * report.clean_accuracy, 2),
        "autoattack": round(100 * report.robust_accuracy["autoattack"], 2),
        "pgd": round(100 * report.robust_accuracy["pgd"], 2),
        "cw": round(100 * report.robust_accuracy["cw"], 2),
        "worst_case": round(100 * report.worst_case_accuracy, 2),
        "eps": 0.5,
        "norm": "L2",
        "n": 24,
        "training_seconds": 12.5,
    }
    json.dumps(row)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        report.leaderboard_row("")
    with pytest.raises(ValueError, match="training_seconds must be None or a finite number"):
        report.leaderboard_row("natural", training_seconds=-1.0)


def test_leaderboard_row_has_none_for_attacks_not_run(classifier, data):
    _, _, x, y = data
    result = evaluate(classifier, x[:10], y[:10], 0.1, attacks=["pgd"], pgd_steps=2)
    row = result.leaderboard_row("natural")
    assert row["autoattack"] is None and row["cw"] is None and row["training_seconds"] is None
    assert row["pgd"] == round(100 * result.robust_accuracy["pgd"], 2)
    assert "| cw |" not in result.to_markdown()


class Noisy(nn.Module):
    """Adds fresh noise to the logits at every call: a randomised 'defence'."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.randn_like(x)


def per_sample_report(clean, pgd, autoattack) -> RobustnessReport:
    flags = {name: np.array(values, dtype=bool) for name, values in
             (("clean", clean), ("pgd", pgd), ("autoattack", autoattack))}  # fmt: skip
    return RobustnessReport(n=len(clean), eps=0.1, norm="Linf", clean_accuracy=float(flags["clean"].mean()),
                            robust_accuracy={"pgd": float(flags["pgd"].mean()),
                                             "autoattack": float(flags["autoattack"].mean())},
                            worst_case_accuracy=0.0, seconds={}, per_sample=flags)  # fmt: skip


def test_sanity_flags_a_stronger_attack_that_does_worse_and_robustness_above_clean():
    consistent = per_sample_report([1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0])
    assert evaluation.sanity_flags(consistent) == []
    masked = per_sample_report([1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0])  # AutoAttack misses a point PGD broke
    (flag,) = evaluation.sanity_flags(masked)
    assert "autoattack (the stronger attack) leaves 1 point(s) correct that pgd broke" in flag
    impossible = per_sample_report([1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0])
    assert any(
        "pgd accuracy 50.00% is above the clean accuracy 25.00%" in f for f in evaluation.sanity_flags(impossible)
    )


def test_a_cw_that_misses_points_pgd_broke_is_flagged_as_the_attack_s_miss():
    report = per_sample_report([1, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0])
    report.per_sample["cw"] = np.array([1, 1, 1, 0], dtype=bool)  # CW found nothing within eps
    report.robust_accuracy["cw"] = 0.75
    (flag,) = evaluation.sanity_flags(report)
    assert flag.startswith("cw leaves 2 point(s) correct that pgd broke within eps: ART's Carlini-Wagner Linf")
    assert "#1374" in flag
    report.per_sample["cw"] = np.array([1, 0, 0, 0], dtype=bool)
    assert evaluation.sanity_flags(report) == []


def test_evaluation_of_a_consistent_report_has_no_consistency_flags_but_cw_s_misses(report):
    # ART's CW-L2 misses points PGD broke on this network: flagged as the attack's miss, nothing else
    assert [flag[:45] for flag in evaluation.sanity_flags(report)] == ["cw leaves 9 point(s) correct that pgd broke w"]
    # AutoAttack's own checks may still speak: its zero-gradient check flags one of these 24 points of this network
    assert all(flag.startswith(("AutoAttack check", "cw leaves")) for flag in report.flags)
    assert report.to_dict()["flags"] == report.flags


def test_autoattack_checks_flag_a_randomised_model_and_probability_outputs(trained, data, caplog):
    _, _, x, y = data
    noisy = evaluate(wrap(nn.Sequential(copy.deepcopy(trained), Noisy())), x[:16], y[:16], 0.1, attacks="pgd",
                     pgd_steps=2)  # fmt: skip
    assert any("randomized defense" in flag for flag in noisy.flags) and "Warning" in noisy.to_markdown()
    softmax = evaluate(wrap(nn.Sequential(copy.deepcopy(trained), nn.Softmax(dim=1))), x[:16], y[:16], 0.1,
                       attacks="pgd", pgd_steps=2)  # fmt: skip
    assert any("probability distribution" in flag for flag in softmax.flags)
    assert "Evaluation sanity" in caplog.text


def test_autoattack_checks_flag_zero_gradients(data):
    _, _, x, y = data
    constant = network()
    for parameter in constant.parameters():
        nn.init.zeros_(parameter)  # every logit 0: no gradient anywhere
    flagged = evaluate(wrap(constant), x[:16], y[:16], 0.1, attacks="pgd", pgd_steps=2)
    assert any("points with zero gradient" in flag for flag in flagged.flags)


def test_attack_sizes_run_each_attack_on_the_first_images_and_the_worst_case_on_those_all_saw(classifier, data):
    _, _, x, y = data
    sized = evaluate(classifier, x[:40], y[:40], 0.1, attacks=("pgd", "autoattack"), pgd_steps=3,
                     attack_sizes={"pgd": 30, "autoattack": 12}, **QUICK_AUTOATTACK)  # fmt: skip
    assert sized.n == 40 and sized.sizes == {"clean": 40, "pgd": 30, "autoattack": 12, "worst_case": 12}
    assert [len(sized.per_sample[name]) for name in ("clean", "pgd", "autoattack", "worst_case")] == [40, 30, 12, 12]
    # each attack's numbers are exactly those of evaluating its first images alone (same seed, same random starts)
    alone = evaluate(classifier, x[:30], y[:30], 0.1, attacks="pgd", pgd_steps=3)
    np.testing.assert_array_equal(sized.per_sample["pgd"], alone.per_sample["pgd"])
    assert sized.robust_accuracy["pgd"] == alone.robust_accuracy["pgd"]
    full = evaluate(classifier, x[:40], y[:40], 0.1, attacks="pgd", pgd_steps=3)
    assert sized.clean_accuracy == full.clean_accuracy  # the clean pass still sees every image
    expected = sized.per_sample["clean"][:12] & sized.per_sample["pgd"][:12] & sized.per_sample["autoattack"]
    np.testing.assert_array_equal(sized.per_sample["worst_case"], expected)
    assert sized.worst_case_accuracy == pytest.approx(expected.mean())
    assert sized.to_dict()["sizes"]["autoattack"] == 12
    assert "pgd on the first 30, autoattack on the first 12, worst_case on the first 12" in sized.to_markdown()
    capped = evaluate(classifier, x[:10], y[:10], 0.1, attacks="pgd", pgd_steps=1, attack_sizes={"pgd": 500})
    assert capped.sizes["pgd"] == 10  # more than there are images means all of them


@pytest.mark.parametrize(
    ("attack_sizes", "error", "message"),
    [
        ({"cw": 5}, ValueError, "attack_sizes names 'cw', which is not among the attacks run: pgd"),
        ({"pgd": 0}, ValueError, r"attack_sizes\['pgd'\] must be an integer >= 1"),
        ({"pgd": 2.5}, TypeError, r"attack_sizes\['pgd'\] must be an integer"),
        ([("pgd", 5)], TypeError, "attack_sizes must be None or a mapping"),
    ],
)
def test_attack_sizes_are_checked_before_anything_runs(classifier, data, attack_sizes, error, message, monkeypatch):
    _, _, x, y = data
    monkeypatch.setattr(pgd_runner, "run", lambda task: pytest.fail("an attack ran"))
    with pytest.raises(error, match=message):
        evaluate(classifier, x[:10], y[:10], 0.1, attacks="pgd", attack_sizes=attack_sizes)


def test_autoattack_runs_on_a_channels_last_network_as_on_a_contiguous_one():
    # AutoAttack reshapes input gradients with .view, which a channels-last network's gradients refuse (3 channels).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    x = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(1)).numpy()
    y = model(torch.from_numpy(x)).argmax(1).numpy()  # every point clean-correct
    reports = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        network = copy.deepcopy(model).to(memory_format=memory_format)
        classifier = PyTorchClassifier(network, nn.CrossEntropyLoss(), (3, 8, 8), 10, clip_values=(0.0, 1.0))
        reports.append(evaluate(classifier, x, y, 0.02, attacks=("autoattack",), **QUICK_AUTOATTACK))
    assert reports[1].clean_accuracy == 1.0
    np.testing.assert_array_equal(reports[0].per_sample["autoattack"], reports[1].per_sample["autoattack"])
