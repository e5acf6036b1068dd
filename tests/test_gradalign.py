"""GradAlign (Andriushchenko & Flammarion 2020): FGSM from zero plus lambda (1 - cos(grad l(x), grad l(x + eta)))."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from art.estimators.classification import PyTorchClassifier
from conftest import make_classifier, same_weights, tiny_network, weights
from torch import nn

from art_fastat.trainers import AdversarialTrainerGradAlign, AdversarialTrainerPGD
from art_fastat.trainers.gradalign import LARGE_EPS_LAMBDA, gradient_misalignment

EPS, SEED = 0.2, 3


def sgd_classifier(network: nn.Module, nb_classes: int, clip_values: tuple = (0.0, 1.0)) -> PyTorchClassifier:
    """Plain SGD with lr 1: the weight change of one update is minus the gradient of its loss."""
    optimizer = torch.optim.SGD(network.parameters(), lr=1.0)
    return PyTorchClassifier(network, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=nb_classes,
                             optimizer=optimizer, clip_values=clip_values)  # fmt: skip


def one_batch(train_subset, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = train_subset
    return torch.from_numpy(x[:n]), torch.from_numpy(y[:n])


def run_batch(trainer: AdversarialTrainerGradAlign, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Train on one batch; return the adversarial input of the update (the forward at x + delta)."""
    inputs = []
    forward = trainer._forward
    trainer._forward = lambda x_input: forward(inputs.append(x_input) or x_input)
    trainer._train_batch(x, y, EPS)
    return next(x_input for x_input in inputs if not x_input.requires_grad)


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, create_graph: bool) -> torch.Tensor:
    point = x.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(F.cross_entropy(model(point), y), point, create_graph=create_graph)
    return gradient


def test_gradient_misalignment_by_hand():
    clean = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 2.0]]).view(4, 1, 2)
    noisy = torch.tensor([[1.0, 1.0], [-2.0, 0.0], [3.0, 4.0], [0.0, 5.0]]).view(4, 1, 2).requires_grad_(True)
    cosines = [1 / math.sqrt(2), -1.0, 1.0]  # the third sample has no clean gradient: left out
    value = gradient_misalignment(clean, noisy)
    assert float(value.detach()) == pytest.approx(1 - np.mean(cosines))
    value.backward()
    assert bool(torch.isfinite(noisy.grad).all()) and float(noisy.grad[2].abs().max()) == 0.0
    # d(1 - mean cos)/dg2 of sample 0 (g1 = e1, g2 = (1, 1)): -(g1 / (|g1| |g2|) - cos g2 / |g2|^2) / 3 samples
    torch.testing.assert_close(noisy.grad[0, 0], torch.tensor([-1.0, 1.0]) / (2 * math.sqrt(2)) / 3)
    assert float(gradient_misalignment(clean, 7.0 * clean)) == pytest.approx(0.0, abs=1e-7)  # aligned: zero
    assert float(gradient_misalignment(clean, -clean)) == pytest.approx(2.0)
    assert float(gradient_misalignment(clean, torch.zeros_like(clean))) == 0.0  # no sample left


def test_on_a_linear_two_class_model_it_is_fgsm_from_x_and_the_regulariser_vanishes(train_subset):
    # For two classes and logits W x + b, grad_x CE = (p_y - 1)(w_y - w_other) at every point: the gradients at x and
    # x + eta are parallel (the regulariser and its gradient are 0) and FGSM's step is eps sign(w_other - w_y).
    x, y = one_batch(train_subset)
    y = y % 2
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    fgsm_network = copy.deepcopy(network)
    w = network[1].weight.detach().clone()
    trainer = AdversarialTrainerGradAlign(sgd_classifier(network, 2), eps=EPS, grad_align_lambda=10.0, seed=SEED)
    x_adv = run_batch(trainer, x, y)
    torch.testing.assert_close(x_adv, (x + EPS * (w[1 - y] - w[y]).sign().view_as(x)).clamp(0, 1), rtol=0, atol=0)
    assert float(trainer.totals.sums["gradient_misalignment"]) < 1e-5
    fgsm = AdversarialTrainerPGD(sgd_classifier(fgsm_network, 2), eps=EPS, alpha=EPS, steps=1, random_start=False)
    fgsm._train_batch(x, y, EPS)
    assert same_weights(weights(fgsm.classifier), weights(trainer.classifier), atol=1e-6)


@pytest.mark.parametrize("differentiate_clean_gradient", [False, True], ids=["authors' code", "both gradients"])
def test_the_update_is_the_gradient_of_ce_plus_lambda_misalignment_through_double_backprop(
    train_subset, differentiate_clean_gradient
):
    x, y = (t.double() if t.is_floating_point() else t for t in one_batch(train_subset))
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)).double()
    reference = copy.deepcopy(network)
    lam = 50.0
    trainer = AdversarialTrainerGradAlign(sgd_classifier(network, 10), eps=EPS, grad_align_lambda=lam, seed=SEED,
                                          differentiate_clean_gradient=differentiate_clean_gradient)  # fmt: skip
    x_adv = run_batch(trainer, x, y)
    pairs = zip(reference.parameters(), network.parameters(), strict=True)
    update = [(before - after).detach() for before, after in pairs]

    eta = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(SEED), dtype=x.dtype) - 1) * EPS
    clean = input_gradient(reference, x, y, create_graph=False)
    torch.testing.assert_close(x_adv, (x + EPS * clean.sign()).clamp(0, 1))  # FGSM from a zero start

    def stated_loss(with_regulariser: bool = True) -> torch.Tensor:
        ce = F.cross_entropy(reference(x_adv), y)
        if not with_regulariser:
            return ce
        g1 = input_gradient(reference, x, y, create_graph=True) if differentiate_clean_gradient else clean
        g2 = input_gradient(reference, x + eta, y, create_graph=True)
        g1, g2 = g1.flatten(1), g2.flatten(1)
        return ce + lam * (1 - (F.normalize(g1, dim=1) * F.normalize(g2, dim=1)).sum(1).mean())

    expected = torch.autograd.grad(stated_loss(), list(reference.parameters()))
    for got, want in zip(update, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    ce_only = torch.autograd.grad(stated_loss(False), list(reference.parameters()))
    assert max(float((got - ce).abs().max()) for got, ce in zip(update, ce_only, strict=True)) > 1e-2

    # A finite difference of the stated loss (first derivatives only; grad l(x) held at its value unless it is
    # differentiated) along random directions: the double backward is right, not only consistent with autograd.
    generator = torch.Generator().manual_seed(1)
    for _ in range(2):
        direction = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in reference.parameters()]
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                for p, d in zip(reference.parameters(), direction, strict=True):
                    p.add_(sign * 1e-4 * d)
            values.append(float(stated_loss().detach()))
            with torch.no_grad():
                for p, d in zip(reference.parameters(), direction, strict=True):
                    p.sub_(sign * 1e-4 * d)
        directional = sum(float((g * d).sum()) for g, d in zip(update, direction, strict=True))
        assert (values[0] - values[1]) / 2e-4 == pytest.approx(directional, rel=1e-3)


def test_without_the_regulariser_it_is_fgsm_training_from_zero(train_subset):
    x, y = train_subset
    gradalign, fgsm = make_classifier(), make_classifier()
    trainer = AdversarialTrainerGradAlign(gradalign, eps=EPS, grad_align_lambda=0, seed=SEED)
    trainer.fit(x, y, batch_size=64, nb_epochs=2)
    AdversarialTrainerPGD(fgsm, eps=EPS, alpha=EPS, steps=1, random_start=False, seed=SEED).fit(x, y, batch_size=64,
                                                                                              nb_epochs=2)  # fmt: skip
    assert same_weights(weights(gradalign), weights(fgsm)) and trainer.passes_per_batch == 2


def test_cost_batchnorm_and_history(train_subset):
    x, y = train_subset
    network = tiny_network(batch_norm=True)
    forwards = []
    network[0].register_forward_hook(lambda module, inputs, output: forwards.append(1))
    trainer = AdversarialTrainerGradAlign(make_classifier(network), eps=EPS, overfitting_guard=None)  # its passes only
    history = trainer.fit(x, y, batch_size=64, nb_epochs=1)
    assert len(forwards) == 4 * 3 and trainer.passes_per_batch == 4  # FGSM, x + delta, x + eta (+ its double backward)
    assert int(network[1].num_batches_tracked) == 4 * 2  # the FGSM pass is frozen; the two loss forwards are not
    record = history[0]
    assert record["loss"] == pytest.approx(record["ce"] + trainer.grad_align_lambda * record["gradient_misalignment"])
    assert 0 < record["gradient_misalignment"] < 2
    random_start = AdversarialTrainerGradAlign(make_classifier(), eps=EPS, random_start=True)
    assert random_start.passes_per_batch == 5
    assert AdversarialTrainerGradAlign(make_classifier(), eps=EPS, lr_schedule="paper").lr_schedule == "triangle"


def test_mixed_precision_double_backprop_trains(train_subset):
    x, y = train_subset
    classifier = make_classifier()
    before = weights(classifier)
    history = AdversarialTrainerGradAlign(classifier, eps=EPS, use_amp=True).fit(x, y, batch_size=64, nb_epochs=1)
    assert np.isfinite(history[0]["loss"]) and 0 < history[0]["gradient_misalignment"] < 2
    assert not same_weights(before, weights(classifier), atol=1e-6)


def test_default_lambda_is_the_papers_rule_up_to_16_of_255_and_the_p1_choice_beyond():
    def default(eps: float, clip_values: tuple = (0.0, 1.0)) -> float:
        classifier = sgd_classifier(tiny_network(), 10, clip_values)
        return AdversarialTrainerGradAlign(classifier, eps=eps).grad_align_lambda

    assert default(8 / 255) == pytest.approx(0.2)  # the paper's CIFAR-10 value
    assert default(16 / 255) == pytest.approx(2.0)
    assert default(4 / 255) == pytest.approx(0.063, abs=5e-4)  # their script's 0.063
    assert default(8.0, (0.0, 255.0)) == pytest.approx(0.2)  # eps relative to the valid range
    assert default(0.3) == LARGE_EPS_LAMBDA
    classifier = make_classifier()
    assert AdversarialTrainerGradAlign(classifier, eps=EPS, grad_align_lambda=0.7).grad_align_lambda == 0.7
    before = weights(classifier)
    with pytest.raises(ValueError, match="grad_align_lambda must be a finite number >= 0"):
        AdversarialTrainerGradAlign(classifier, eps=EPS, grad_align_lambda=-0.1)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        AdversarialTrainerGradAlign(classifier, eps=EPS, alpha=-1)
    assert same_weights(before, weights(classifier))
