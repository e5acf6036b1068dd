"""Bad input is refused with a clear error naming the argument, before any weight changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_classifier, same_weights, tiny_network, weights

from art_fastat.trainers import AdversarialTrainerFast, AdversarialTrainerPGD


@pytest.fixture(scope="module")
def xy(digits):
    x_train, y_train, _, _ = digits
    return x_train[:128], y_train[:128]


def _with_nan(x):
    x = x.copy()
    x[3, 0, 2, 2] = np.nan
    return x


FIT_CASES = {
    "x wrong shape": (lambda x, y: (x[:, :, :4], y), {}, ValueError, "x must have shape"),
    "x not an array": (lambda x, y: (x.tolist(), y), {}, TypeError, "x must be a numpy.ndarray"),
    "x empty": (lambda x, y: (x[:0], y[:0]), {}, ValueError, "at least one sample"),
    "x NaN": (lambda x, y: (_with_nan(x), y), {}, ValueError, "x must be finite"),
    "x out of clip range": (lambda x, y: (x * 255, y), {}, ValueError, "clip_values"),
    "x string dtype": (lambda x, y: (x.astype(str), y), {}, TypeError, "numeric dtype"),
    "y out of range": (lambda x, y: (x, y + 5), {}, ValueError, r"class indices in \[0, 9\]"),
    "y negative": (lambda x, y: (x, y - 1), {}, ValueError, r"class indices in \[0, 9\]"),
    "y wrong length": (lambda x, y: (x, y[:-1]), {}, ValueError, "expected 128 labels"),
    "y not integer": (lambda x, y: (x, y + 0.5), {}, ValueError, "integer class indices"),
    "y bad one-hot": (lambda x, y: (x, np.full((len(y), 10), 0.1)), {}, ValueError, "one-hot"),
    "batch_size 0": (lambda x, y: (x, y), {"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
    "batch_size float": (lambda x, y: (x, y), {"batch_size": 1.5}, TypeError, "batch_size"),
    "nb_epochs 0": (lambda x, y: (x, y), {"nb_epochs": 0}, ValueError, "nb_epochs"),
    "validation bad": (lambda x, y: (x, y), {"validation_data": (np.zeros((2, 3))), }, ValueError, "validation_data"),
    "unknown kwarg": (lambda x, y: (x, y), {"nb_epoch": 2}, TypeError, "nb_epoch"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FIT_CASES))
def test_fit_refuses_bad_input_before_touching_weights(case, xy):
    x, y = xy
    make_input, kwargs, error, message = FIT_CASES[case]
    bad_x, bad_y = make_input(x, y)
    bad_copies = [np.array(a, copy=True) for a in (bad_x, bad_y)]
    classifier = make_classifier()
    before, optimizer_state = weights(classifier), classifier.optimizer.state_dict()["state"]
    with pytest.raises(error, match=message):
        AdversarialTrainerPGD(classifier, eps=0.2, steps=2).fit(bad_x, bad_y, **kwargs)
    assert same_weights(before, weights(classifier)) and optimizer_state == {}
    for given, copy in zip((bad_x, bad_y), bad_copies, strict=True):
        given = np.asarray(given)
        assert np.array_equal(given, copy, equal_nan=given.dtype.kind == "f")


CONSTRUCTOR_CASES = {
    "eps zero": ({"eps": 0.0}, ValueError, r"eps must be in \(0, 1\]"),
    "eps negative": ({"eps": -0.1}, ValueError, "eps must be in"),
    "eps too large": ({"eps": 2.0}, ValueError, "width of clip_values"),
    "eps nan": ({"eps": float("nan")}, TypeError, "eps must be a finite number"),
    "steps 0": ({"steps": 0}, ValueError, "steps must be an integer >= 1"),
    "alpha negative": ({"alpha": -1.0}, ValueError, "alpha must be a finite number >= 0"),
    "lr_schedule unknown": ({"lr_schedule": "exp"}, ValueError, "lr_schedule must be one of"),
    "lr_schedule object": ({"lr_schedule": 3}, TypeError, "lr_schedule must be"),
    "interval unknown": ({"lr_schedule_interval": "batch"}, ValueError, "lr_schedule_interval"),
    "warmup negative": ({"eps_warmup_epochs": -1}, ValueError, "eps_warmup_epochs"),
    "resume without dir": ({"resume": True}, ValueError, "checkpoint_dir"),
    "amp dtype": ({"amp_dtype": torch.float64}, ValueError, "amp_dtype"),
}


@pytest.mark.parametrize("case", list(CONSTRUCTOR_CASES))
def test_constructor_refuses_bad_arguments(case):
    kwargs, error, message = CONSTRUCTOR_CASES[case]
    with pytest.raises(error, match=message):
        AdversarialTrainerPGD(make_classifier(), **{"eps": 0.2, **kwargs})


def test_non_pytorch_classifier_and_missing_clip_values_are_refused():
    from art.estimators.classification import PyTorchClassifier, SklearnClassifier
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(TypeError, match="PyTorchClassifier"):
        AdversarialTrainerFast(SklearnClassifier(LogisticRegression()), eps=0.2)
    with pytest.raises(TypeError, match="PyTorchClassifier"):
        AdversarialTrainerFast(tiny_network(), eps=0.2)
    network = tiny_network()
    no_clip = PyTorchClassifier(network, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer=torch.optim.SGD(
        network.parameters(), lr=0.1))  # fmt: skip
    with pytest.raises(ValueError, match="clip_values"):
        AdversarialTrainerFast(no_clip, eps=0.2)
    no_optimizer = PyTorchClassifier(network, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0, 1))
    with pytest.raises(ValueError, match="optimizer"):
        AdversarialTrainerFast(no_optimizer, eps=0.2)
