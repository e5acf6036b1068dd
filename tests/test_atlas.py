"""ATLAS (this project's reading of paper 003): the ablations, where each term's gradient flows, robustness."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from art.estimators.classification import PyTorchClassifier
from conftest import make_classifier, same_weights, tiny_network, weights
from torch import nn

from art_fastat.losses import kl_divergence
from art_fastat.trainers import AdversarialTrainerATLAS, AdversarialTrainerFast

EPS = 0.2


def test_without_both_terms_atlas_is_fast(train_subset):
    x, y = train_subset
    atlas, fast = make_classifier(), make_classifier()
    AdversarialTrainerATLAS(atlas, eps=EPS, local_term=False, global_term=False, seed=3).fit(x, y, batch_size=64,
                                                                                              nb_epochs=2)  # fmt: skip
    AdversarialTrainerFast(fast, eps=EPS, seed=3).fit(x, y, batch_size=64, nb_epochs=2)
    assert same_weights(weights(atlas), weights(fast))


def test_kl_divergence_is_zero_on_equal_predictions_and_matches_torch():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 10, generator=generator), torch.randn(8, 10, generator=generator)
    assert float(kl_divergence(a, a).abs().max()) < 1e-6
    expected = F.kl_div(F.log_softmax(b, 1), F.log_softmax(a, 1), reduction="none", log_target=True).sum(1)
    torch.testing.assert_close(kl_divergence(a, b), expected)


@pytest.mark.parametrize(("local_term", "global_term"), [(True, True), (True, False), (False, True)])
def test_update_is_the_gradient_of_the_stated_loss_with_attacks_held_constant(train_subset, local_term, global_term):
    x, y = (torch.from_numpy(a[:64]) for a in train_subset)
    network = tiny_network()
    reference = tiny_network()
    classifier = PyTorchClassifier(
        network,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        optimizer=torch.optim.SGD(network.parameters(), lr=1.0),
        clip_values=(0.0, 1.0),
    )
    beta, gamma = 0.7, 1.3
    trainer = AdversarialTrainerATLAS(classifier, eps=EPS, beta=beta, gamma=gamma, local_term=local_term,
                                      global_term=global_term, seed=1)  # fmt: skip
    captured = {}
    pgd, local = trainer._pgd, trainer._local_perturbation
    trainer._pgd = lambda *args, **kwargs: captured.setdefault("delta", pgd(*args, **kwargs))
    trainer._local_perturbation = lambda *args: captured.setdefault("xi", local(*args))
    trainer._train_batch(x, y, EPS)

    x_adv = x + captured["delta"]
    assert not captured["delta"].requires_grad and float(captured["delta"].abs().max()) <= EPS + 1e-6
    logits_adv = reference(x_adv)
    loss = F.cross_entropy(logits_adv, y)
    if local_term:
        xi = captured["xi"]
        assert not xi.requires_grad and float(xi.abs().max()) <= EPS / 2 + 1e-6  # r = eps / 2
        assert float((x_adv + xi).min()) >= 0 and float((x_adv + xi).max()) <= 1
        target = F.softmax(logits_adv, 1)  # gradients flow through both distributions of each KL
        local = F.log_softmax(reference(x_adv + xi), 1)
        loss = loss + beta * (target * (F.log_softmax(logits_adv, 1) - local)).sum(1).mean()
    else:
        assert "xi" not in captured
    if global_term:
        natural = F.log_softmax(reference(x), 1)
        loss = loss + gamma * (natural.exp() * (natural - F.log_softmax(logits_adv, 1))).sum(1).mean()
    gradients = torch.autograd.grad(loss, list(reference.parameters()))
    for after, before, gradient in zip(network.parameters(), reference.parameters(), gradients, strict=True):
        torch.testing.assert_close(before.detach() - after.detach(), gradient, rtol=1e-4, atol=1e-6)
    recorded = set(trainer.totals.sums) & {"ce", "local_kl", "global_kl"}
    assert recorded == {"ce"} | ({"local_kl"} if local_term else set()) | ({"global_kl"} if global_term else set())


def test_history_has_each_term_and_the_cost_is_counted(train_subset):
    x, y = train_subset
    network = tiny_network()
    forwards = []
    network[0].register_forward_hook(lambda module, inputs, output: forwards.append(1))
    trainer = AdversarialTrainerATLAS(make_classifier(network), eps=EPS, overfitting_guard=None)  # training passes only
    history = trainer.fit(x, y, batch_size=64, nb_epochs=1)
    assert {"ce", "local_kl", "global_kl", "loss"} <= set(history[0])
    assert history[0]["loss"] == pytest.approx(history[0]["ce"] + history[0]["local_kl"] + history[0]["global_kl"])
    assert len(forwards) == 4 * 5  # per batch: FGSM, x_a (shared), the local attack, x_a + xi and x
    assert trainer.passes_per_batch == 5  # 5 forwards, 2 attack backwards, one backward through 3 forwards
    assert AdversarialTrainerATLAS(make_classifier(), eps=EPS, adversary="pgd").passes_per_batch == 14


def test_atlas_refuses_bad_arguments():
    classifier = make_classifier()
    before = weights(classifier)
    with pytest.raises(ValueError, match="adversary must be one of"):
        AdversarialTrainerATLAS(classifier, eps=EPS, adversary="cw")
    with pytest.raises(ValueError, match="steps must be 1 \\(or None\\) with adversary='fgsm'"):
        AdversarialTrainerATLAS(classifier, eps=EPS, steps=5)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        AdversarialTrainerATLAS(classifier, eps=EPS, beta=-1)
    assert same_weights(before, weights(classifier))
