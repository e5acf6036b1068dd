"""
The bad-input matrix: every public entry point (each trainer's constructor and ``fit``, the attacks, ``evaluate``,
the loaders, the CLI) against wrong shapes, dtypes, label ranges, NaN/inf, out-of-range pixels, wrong devices, empty
arrays, eps <= 0 and non-PyTorch classifiers. Each must raise a clear error naming the argument, before any state
changes: the classifier's weights and optimizer state and the caller's arrays are as they were.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_classifier, same_weights, tiny_network, weights
from test_validation import FIT_CASES

import art_fastat
from art_fastat.attacks import GAAT, HMC, L2L, RNNOptimizer
from art_fastat.cli import main
from art_fastat.datasets import load_cifar10, load_mnist
from art_fastat.protocols import get_protocol
from art_fastat.trainers import TRAINERS


def x_out_of_range() -> np.ndarray:
    return np.full((4, 1, 8, 8), 2.0, dtype=np.float32)


EXTRA_FIT_CASES = {
    "x inf": (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x), y), {}, ValueError,
              "x must be finite"),
    "x torch tensor (any device)": (lambda x, y: (torch.from_numpy(x), y), {}, TypeError, "x must be a numpy"),
    "y torch tensor": (lambda x, y: (x, torch.from_numpy(y)), {}, TypeError, "y must be a numpy"),
    "y 3-D": (lambda x, y: (x, y[:, None, None]), {}, ValueError, "y must have shape"),
    "y one-hot of 9 classes": (lambda x, y: (x, np.eye(9)[y % 9]), {}, ValueError, "y must have shape"),
    "x NCHW transposed": (lambda x, y: (x.transpose(0, 2, 3, 1), y), {}, ValueError, "x must have shape"),
    "validation x out of range": (lambda x, y: (x, y), {"validation_data": (x_out_of_range(), np.zeros(4, int))},
                                  ValueError, "validation_data x must lie inside"),
}  # fmt: skip
ALL_FIT_CASES = {**FIT_CASES, **EXTRA_FIT_CASES}
EPS_CASES = {"eps 0": 0.0, "eps negative": -0.1, "eps above the clip width": 1.5, "eps NaN": float("nan"),
             "eps string": "0.1"}  # fmt: skip


@pytest.fixture(scope="module")
def xy(digits):
    return digits[0][:128], digits[1][:128]


def trainer_options(method: str) -> dict:
    return {"dat": {"switch_epoch": 0}}.get(method, {})


def unchanged(classifier, before) -> bool:
    return same_weights(before, weights(classifier)) and classifier.optimizer.state_dict()["state"] == {}


@pytest.mark.parametrize("case", list(ALL_FIT_CASES))
@pytest.mark.parametrize("method", list(TRAINERS))
def test_every_trainers_fit_refuses_bad_data_before_any_change(method, case, xy):
    make_input, kwargs, error, message = ALL_FIT_CASES[case]
    bad_x, bad_y = make_input(*xy)
    copies = [np.array(a, copy=True) for a in (bad_x, bad_y)]
    classifier = make_classifier()
    before = weights(classifier)
    trainer = TRAINERS[method](classifier, eps=0.2, **trainer_options(method))
    with pytest.raises(error, match=message):
        trainer.fit(bad_x, bad_y, **kwargs)
    assert unchanged(classifier, before)
    for given, copy in zip((bad_x, bad_y), copies, strict=True):
        given = np.asarray(given)
        assert np.array_equal(given, copy, equal_nan=given.dtype.kind == "f")


@pytest.mark.parametrize(
    ("method", "case"),
    # Free with eps=0 is natural training with replays, a documented reduction (test_free.py); natural needs no eps.
    [(m, c) for m in TRAINERS for c in EPS_CASES if m != "natural" and (m, c) != ("free", "eps 0")],
)
def test_every_trainer_refuses_a_bad_eps(method, case):
    eps = EPS_CASES[case]
    classifier = make_classifier()
    before = weights(classifier)
    with pytest.raises((ValueError, TypeError), match="eps"):
        TRAINERS[method](classifier, eps=eps, **trainer_options(method))
    assert unchanged(classifier, before)


@pytest.mark.parametrize("method", list(TRAINERS))
def test_every_trainer_refuses_a_non_pytorch_classifier(method):
    from art.estimators.classification import SklearnClassifier
    from sklearn.linear_model import LogisticRegression

    for classifier in (SklearnClassifier(LogisticRegression()), tiny_network(), "classifier"):
        with pytest.raises(TypeError, match="classifier must be an art.estimators.classification.PyTorchClassifier"):
            TRAINERS[method](classifier, eps=0.2)


ATTACKS = {
    "GAAT": lambda model, **kw: GAAT(model, **kw),
    "HMC": lambda model, **kw: HMC(model, **kw),
    "L2L": lambda model, **kw: L2L(model, RNNOptimizer(), **kw),
}
ATTACK_ARGUMENT_CASES = {
    "eps negative": ({"eps": -0.1}, "eps"),
    "eps NaN": ({"eps": float("nan")}, "eps"),
    "steps negative": ({"steps": -1}, "steps"),
    "steps float": ({"steps": 2.5}, "steps"),
}


@pytest.mark.parametrize("case", list(ATTACK_ARGUMENT_CASES))
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_every_attack_refuses_bad_arguments(attack, case):
    kwargs, name = ATTACK_ARGUMENT_CASES[case]
    with pytest.raises((ValueError, TypeError), match=name):
        ATTACKS[attack](tiny_network(), **kwargs)


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (torch.full((4, 1, 8, 8), 2.0), torch.zeros(4, dtype=torch.long), "range"),  # pixels outside [0, 1]
        (torch.full((4, 1, 8, 8), -0.5), torch.zeros(4, dtype=torch.long), "range"),
    ],
)
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_every_attack_refuses_out_of_range_images_and_leaves_them_alone(attack, images, labels, message):
    model = tiny_network()
    before = [p.detach().clone() for p in model.parameters()]
    given = images.clone()
    with pytest.raises(ValueError, match=message):
        ATTACKS[attack](model, eps=0.1)(images, labels)
    assert torch.equal(images, given)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


EVALUATE_CASES = {
    "eps 0": (lambda x, y: (x, y), {"eps": 0.0}, ValueError, "eps"),
    "eps negative": (lambda x, y: (x, y), {"eps": -1.0}, ValueError, "eps"),
    "x NaN": (lambda x, y: (np.full_like(x, np.nan), y), {}, ValueError, "x must be finite"),
    "x out of range": (lambda x, y: (x + 2, y), {}, ValueError, "clip_values"),
    "x empty": (lambda x, y: (x[:0], y[:0]), {}, ValueError, "at least one sample"),
    "x wrong shape": (lambda x, y: (x[:, 0], y), {}, ValueError, "x must have shape"),
    "y out of range": (lambda x, y: (x, y + 10), {}, ValueError, "class indices"),
    "y wrong length": (lambda x, y: (x, y[:3]), {}, ValueError, "labels"),
    "unknown attack": (lambda x, y: (x, y), {"attacks": ("fgsm",)}, ValueError, "attacks"),
    "x torch tensor": (lambda x, y: (torch.from_numpy(x), y), {}, TypeError, "x must be a numpy"),
}


@pytest.mark.parametrize("case", list(EVALUATE_CASES))
def test_evaluate_refuses_bad_input(case, xy):
    make_input, kwargs, error, message = EVALUATE_CASES[case]
    x, y = make_input(xy[0][:16], xy[1][:16])
    classifier = make_classifier()
    before = weights(classifier)
    with pytest.raises(error, match=message):
        art_fastat.evaluate(classifier, x, y, **{"eps": 0.2, "attacks": ("pgd",), **kwargs})
    assert same_weights(before, weights(classifier))


def test_evaluate_refuses_a_non_pytorch_classifier(xy):
    with pytest.raises(TypeError, match="classifier must be an art"):
        art_fastat.evaluate(tiny_network(), *xy, eps=0.2)


def test_loaders_name_what_is_missing_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match="cifar-10"):
        load_cifar10(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00" * 10)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path, split="test")
    with pytest.raises(ValueError, match="protocol must be one of"):
        get_protocol("imagenet")
    with pytest.raises(FileNotFoundError, match="Put cifar-10-python.tar.gz in"):
        get_protocol("cifar10").load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "arguments",
    [
        ["train", "--method", "madry", "--out", "x"],
        ["train", "--method", "fast", "--protocol", "imagenet", "--out", "x"],
        ["train", "--method", "fast", "--attacks", "fgsm", "--out", "x"],
        ["train", "--method", "fast", "--epochs", "0", "--out", "{out}"],
        ["train", "--method", "fast", "--eps", "-0.1", "--out", "{out}"],
        ["train", "--method", "fast", "--option", "alpha", "--out", "{out}"],
        ["train", "--method", "fast", "--protocol", "mnist10k", "--data-dir", "{out}/none", "--out", "{out}"],
        ["evaluate", "--checkpoint", "{out}/missing.pt"],
        ["bench", "--methods", "fast,madry", "--out", "{out}"],
    ],
)
def test_cli_refuses_bad_arguments_with_an_error_and_exit_code_2(arguments, tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main([argument.format(out=tmp_path) for argument in arguments])
    assert raised.value.code not in (0, None)
    message = capsys.readouterr().err + (raised.value.code if isinstance(raised.value.code, str) else "")
    assert "art-fastat" in message
    assert not (tmp_path / "model.pt").exists()
