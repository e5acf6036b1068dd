"""N-FGSM (de Jorge et al. 2022): noise from U(-k eps, k eps), one signed step from it, no projection onto the ball."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from art.estimators.classification import PyTorchClassifier
from conftest import make_classifier, same_weights, tiny_network, weights
from torch import nn

from art_fastat.trainers import AdversarialTrainerNFGSM

EPS, SEED = 0.2, 3


def sgd_classifier(network: nn.Module, nb_classes: int) -> PyTorchClassifier:
    """Plain SGD with lr 1: the weight change of one update is minus the gradient of its loss."""
    optimizer = torch.optim.SGD(network.parameters(), lr=1.0)
    return PyTorchClassifier(network, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=nb_classes,
                             optimizer=optimizer, clip_values=(0.0, 1.0))  # fmt: skip


def clipped_noise(x: torch.Tensor, magnitude: float) -> torch.Tensor:
    """The trainer's first draw (its generator is seeded SEED): U(-magnitude, magnitude), x + eta clipped to [0, 1]."""
    noise = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(SEED)) - 1) * magnitude
    return (x + noise).clamp(0, 1) - x


def one_batch(train_subset, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = train_subset
    return torch.from_numpy(x[:n]), torch.from_numpy(y[:n])


def run_batch(trainer: AdversarialTrainerNFGSM, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Train on one batch and return the input the update saw."""
    captured = {}
    update = trainer._update
    trainer._update = lambda x_input, labels: update(captured.setdefault("x_adv", x_input), labels)
    trainer._train_batch(x, y, eps)
    return captured["x_adv"]


@pytest.mark.parametrize("eps_now", [EPS, EPS / 2], ids=["full eps", "half-way through the warm-up"])
def test_on_a_linear_two_class_model_delta_is_the_noise_plus_eps_times_the_known_sign(train_subset, eps_now):
    # For two classes and logits W x + b, grad_x CE = (p_y - 1)(w_y - w_other): its sign is sign(w_other - w_y) at every
    # point, so the whole perturbation is known in closed form.
    x, y = one_batch(train_subset)
    y = y % 2
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    trainer = AdversarialTrainerNFGSM(sgd_classifier(network, 2), eps=EPS, seed=SEED)
    w = network[1].weight.detach().clone()
    x_adv = run_batch(trainer, x, y, eps_now)

    eta = clipped_noise(x, 2 * eps_now)
    expected = (x + eta + eps_now * (w[1 - y] - w[y]).sign().view_as(x)).clamp(0, 1)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-6)
    reach = float((x_adv - x).abs().max())
    assert 2.5 * eps_now < reach <= 3 * eps_now + 1e-6  # not projected back: up to (k + 1) eps


def test_the_step_is_taken_from_the_noisy_point_and_the_update_is_ce_there(train_subset):
    x, y = one_batch(train_subset)
    network = tiny_network()
    reference = copy.deepcopy(network)
    trainer = AdversarialTrainerNFGSM(sgd_classifier(network, 10), eps=EPS, seed=SEED, noise_magnitude=1.5, alpha=0.1)
    x_adv = run_batch(trainer, x, y, EPS)

    eta = clipped_noise(x, 1.5 * EPS).requires_grad_(True)
    (gradient,) = torch.autograd.grad(F.cross_entropy(reference(x + eta), y, reduction="sum"), eta)
    expected = (x + eta.detach() + 0.1 * gradient.sign()).clamp(0, 1)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-6)
    at_clean_point = x.clone().requires_grad_(True)
    (clean,) = torch.autograd.grad(F.cross_entropy(reference(at_clean_point), y, reduction="sum"), at_clean_point)
    assert bool((clean.sign() != gradient.sign()).any())  # the two points give different steps: the test can tell

    gradients = torch.autograd.grad(F.cross_entropy(reference(x_adv), y), list(reference.parameters()))
    for after, before, gradient in zip(network.parameters(), reference.parameters(), gradients, strict=True):
        torch.testing.assert_close(before.detach() - after.detach(), gradient, rtol=1e-4, atol=1e-6)


def test_zero_noise_and_step_train_on_clean_inputs(train_subset):
    x, y = one_batch(train_subset)
    trainer = AdversarialTrainerNFGSM(make_classifier(), eps=EPS, noise_magnitude=0, alpha=0)
    assert torch.equal(run_batch(trainer, x, y, EPS), x)


def test_two_passes_per_batch_and_the_paper_schedule(train_subset):
    x, y = train_subset
    network = tiny_network()
    forwards = []
    network[0].register_forward_hook(lambda module, inputs, output: forwards.append(1))
    trainer = AdversarialTrainerNFGSM(make_classifier(network), eps=EPS, overfitting_guard=None)  # its passes only
    history = trainer.fit(x, y, batch_size=64, nb_epochs=1)
    assert len(forwards) == 4 * 2 and trainer.passes_per_batch == 2  # the noisy point's gradient, the update
    assert {"loss", "accuracy", "eps"} <= set(history[0])
    assert trainer.lr_schedule == "constant"
    assert AdversarialTrainerNFGSM(make_classifier(), eps=EPS, lr_schedule="paper").lr_schedule == "cyclic"


def test_defaults_are_the_papers_and_bad_arguments_are_refused():
    classifier = make_classifier()
    trainer = AdversarialTrainerNFGSM(classifier, eps=EPS)
    assert trainer.alpha == EPS and trainer.noise_magnitude == 2.0
    before = weights(classifier)
    with pytest.raises(ValueError, match="noise_magnitude must be a finite number >= 0"):
        AdversarialTrainerNFGSM(classifier, eps=EPS, noise_magnitude=-1)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        AdversarialTrainerNFGSM(classifier, eps=EPS, alpha=float("nan"))
    assert same_weights(before, weights(classifier))
