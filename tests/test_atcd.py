"""ATCD: the contrastive objective's gradient, the momentum trajectory, the Metropolis-Hastings test, the HMC attack."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchattacks
from conftest import make_classifier, same_weights, tiny_network, weights
from torch import nn

import art_fastat.trainers.atcd as atcd_module
from art_fastat.attacks import HMC
from art_fastat.attacks.hmc import ChainState, contrastive_objective, hmc_round, metropolis_hastings
from art_fastat.perturbation import AttackSpace, project, uniform_start
from art_fastat.protocols import get_protocol
from art_fastat.trainers import AdversarialTrainerATCD

EPS = 0.2


@pytest.fixture(scope="module")
def batch(digits):
    x, y, _, _ = digits
    return torch.from_numpy(x[:128]), torch.from_numpy(y[:128])


@pytest.fixture
def network(trained_network) -> nn.Module:
    return trained_network


def _per_sample_loss(network, x, y):
    with torch.no_grad():
        return F.cross_entropy(network(x), y, reduction="none")


@pytest.mark.parametrize(("lam", "rho"), [(2.0, 1.0), (1.0, 0.0), (0.5, 3.0)])
def test_surrogate_gradient_at_the_logits_is_lam_p_minus_y_minus_rho_p_prev_minus_y(lam, rho):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 10, generator=generator).requires_grad_(True)
    y = torch.randint(0, 10, (16,), generator=generator)
    previous = F.softmax(torch.randn(16, 10, generator=generator), dim=1)
    (gradient,) = torch.autograd.grad(contrastive_objective(logits, y, previous, lam, rho).sum(), logits)
    one_hot = F.one_hot(y, 10).float()
    expected = lam * (F.softmax(logits.detach(), dim=1) - one_hot) - rho * (previous - one_hot)
    torch.testing.assert_close(gradient, expected, rtol=0, atol=1e-6)
    # no previous prediction: the plain cross-entropy, gradient p - y
    (plain,) = torch.autograd.grad(contrastive_objective(logits, y, None, lam, rho).sum(), logits)
    torch.testing.assert_close(plain, F.softmax(logits.detach(), dim=1) - one_hot, rtol=0, atol=1e-6)


def test_without_cd_term_and_mh_the_trajectory_is_momentum_sign_pgd(batch, network):
    x, y = batch
    alpha, position_step, steps = 0.1, 0.05, 4
    state = ChainState.start(x, EPS, torch.Generator().manual_seed(1))
    state.probs = torch.full((len(x), 10), 0.1)  # a cached prediction that rho = 0 must ignore
    new_state, accepted = hmc_round(AttackSpace(network), x, y, state, EPS, alpha=alpha, position_step=position_step,
                                    steps=steps, lam=1.0, rho=0.0, mh_correction=False)  # fmt: skip
    assert accepted is None
    delta, momentum = state.delta.clone(), state.momentum.clone()  # hand-written, from the same start
    for _ in range(steps):
        delta = ((x + (delta + position_step * momentum.sign()).clamp(-EPS, EPS)).clamp(0, 1) - x).requires_grad_()
        (gradient,) = torch.autograd.grad(F.cross_entropy(network(x + delta), y, reduction="sum"), delta)
        gradient = gradient / gradient.abs().mean(dim=(1, 2, 3), keepdim=True)
        momentum = (momentum + alpha * gradient).clamp(-EPS, EPS)
        delta = delta.detach()
    torch.testing.assert_close(new_state.delta, delta, rtol=0, atol=1e-6)
    torch.testing.assert_close(new_state.momentum, momentum, rtol=0, atol=1e-5)
    assert float(_per_sample_loss(network, x + delta, y).mean()) > 2 * float(_per_sample_loss(network, x, y).mean())


@pytest.mark.parametrize("acceptance", [0.1, 0.5, 0.9])
def test_empirical_acceptance_rate_matches_min_1_exp_energy_difference(acceptance):
    n = 40_000
    generator = torch.Generator().manual_seed(2)
    energy_old = torch.randn(n, generator=generator)
    energy_new = energy_old + math.log(acceptance)
    rate = float(metropolis_hastings(energy_new, energy_old, generator).float().mean())
    assert abs(rate - acceptance) < 4 * math.sqrt(acceptance * (1 - acceptance) / n)
    assert bool(metropolis_hastings(energy_old + 0.01, energy_old, generator).all())  # higher H: always kept


def test_mh_step_keeps_the_proposal_with_its_formula_probability_and_the_old_state_otherwise(batch, network):
    x, y = batch
    space, chain = AttackSpace(network), {"alpha": EPS, "position_step": EPS, "steps": 2}
    state, _ = hmc_round(space, x, y, ChainState.start(x, EPS, torch.Generator().manual_seed(3)), EPS, **chain)
    proposal, _ = hmc_round(space, x, y, state, EPS, **chain, mh_correction=False)
    energy = F.cross_entropy(network(x + proposal.delta), y, reduction="none") + proposal.momentum.abs().mean((1, 2, 3))
    torch.testing.assert_close(proposal.energy, energy.detach(), rtol=1e-5, atol=1e-5)  # H = CE + |v|_1 / d
    state.energy = state.energy + torch.linspace(0, 3, len(x))  # an old state this much higher: some rejections
    generator = torch.Generator().manual_seed(4)
    u = torch.rand(len(x), generator=torch.Generator().manual_seed(4))
    chained, accepted = hmc_round(AttackSpace(network, generator=generator), x, y, state, EPS, **chain)
    assert torch.equal(accepted, u < torch.exp(proposal.energy - state.energy).clamp(max=1))
    assert 0 < int(accepted.sum()) < len(x)  # both outcomes occur on this batch
    assert torch.equal(chained.delta[accepted], proposal.delta[accepted])
    assert torch.equal(chained.delta[~accepted], state.delta[~accepted])
    assert torch.equal(chained.momentum[~accepted], state.momentum[~accepted])


def test_trainer_records_the_acceptance_rate_of_its_tests(digits, monkeypatch):
    x, y, _, _ = digits
    masks = []

    def recording_round(*args, **kwargs):
        state, accepted = hmc_round(*args, **kwargs)
        if accepted is not None:
            masks.append(accepted)
        return state, accepted

    monkeypatch.setattr(atcd_module, "hmc_round", recording_round)
    classifier = get_protocol("digits").make_classifier("cpu", seed=0)
    history = AdversarialTrainerATCD(classifier, eps=EPS, seed=0).fit(x, y, batch_size=64, nb_epochs=24)
    assert len(masks) == 3 * 24 * 3  # 3 data passes of 24 minibatches, T - 1 = 3 tested rounds each (not the first)
    rates = [float(torch.cat(masks[start : start + 72]).float().mean()) for start in (0, 72, 144)]
    assert [record["acceptance_rate"] for record in history] == pytest.approx(rates)
    assert min(rates) > 0 and max(rates) < 1  # both outcomes occur
    off = AdversarialTrainerATCD(make_classifier(), eps=EPS, mh_correction=False).fit(x[:64], y[:64], nb_epochs=8)
    assert "acceptance_rate" not in off[0]


def test_each_round_contrasts_with_the_previous_updates_prediction(digits, monkeypatch):
    x, y, _, _ = digits
    x, y = torch.from_numpy(x[:64]), torch.from_numpy(y[:64])
    trainer = AdversarialTrainerATCD(make_classifier(), eps=EPS, repeats=3)
    seen, updates = [], []
    monkeypatch.setattr(atcd_module, "hmc_round", lambda forward, x, y, state, *a, **k: (
        seen.append(state.probs) or hmc_round(forward, x, y, state, *a, **k)))  # fmt: skip
    original_update = trainer._update
    trainer._update = lambda x_input, labels: updates.append(original_update(x_input, labels)) or updates[-1]
    trainer._train_batch(x, y, EPS)
    assert seen[0] is None  # a new minibatch's first round: plain cross-entropy
    for probs, logits in zip(seen[1:], updates[:-1], strict=True):
        torch.testing.assert_close(probs, F.softmax(logits.float(), dim=1))


def test_passes_per_minibatch_and_nb_epochs_in_trajectory_steps(digits):
    x, y, _, _ = digits
    network = tiny_network()
    forwards, backwards = [], []
    network[0].register_forward_hook(lambda module, inputs, output: forwards.append(1))
    network[0].register_full_backward_hook(lambda module, grad_input, grad_output: backwards.append(1))
    classifier = make_classifier(network)
    trainer = AdversarialTrainerATCD(classifier, eps=EPS, trajectory_length=2, repeats=3)
    history = trainer.fit(x[:128], y[:128], batch_size=64, nb_epochs=12)
    assert [record["passes"] for record in history] == [6, 12]  # T K = 6 trajectory steps per data pass
    assert len(forwards) == len(backwards) == 2 * 2 * 3 * (2 + 1) == 2 * 2 * trainer.passes_per_batch
    steps = {int(state["step"]) for state in classifier.optimizer.state_dict()["state"].values()}
    assert steps == {2 * 2 * 3}  # T updates per minibatch


def test_atcd_resume_is_bit_identical(digits, tmp_path):
    x, y = digits[0][:128], digits[1][:128]
    straight = make_classifier()
    AdversarialTrainerATCD(straight, eps=EPS, seed=5).fit(x, y, batch_size=64, nb_epochs=24)
    checkpointed = {"eps": EPS, "seed": 5, "checkpoint_dir": tmp_path}
    AdversarialTrainerATCD(make_classifier(), **checkpointed).fit(x, y, batch_size=64, nb_epochs=16)
    resumed = make_classifier()
    AdversarialTrainerATCD(resumed, **checkpointed, resume=True).fit(x, y, batch_size=64, nb_epochs=24)
    assert same_weights(weights(straight), weights(resumed))


def test_hmc_attack_raises_the_loss_within_the_budget_and_plugs_into_torchattacks(batch, network):
    x, y = batch
    noisy = x + project(x, uniform_start(x, EPS, torch.Generator().manual_seed(0)), EPS, 0.0, 1.0)
    clean_loss = _per_sample_loss(network, x, y)
    random_gain = float((_per_sample_loss(network, noisy, y) - clean_loss).mean())
    for options in ({}, {"rho": 0.0, "lam": 1.0, "mh_correction": False}):
        adversarial = HMC(network, eps=EPS, position_step=EPS / 4, **options)(x, y)
        assert float((adversarial - x).abs().max()) <= EPS + 1e-6 and float(adversarial.min()) >= 0
        gain = _per_sample_loss(network, adversarial, y) - clean_loss
        assert float((gain > 0).float().mean()) > 0.95 and float(gain.mean()) > 5 * abs(random_gain)
    multi = torchattacks.MultiAttack([HMC(network, eps=EPS), torchattacks.PGD(network, eps=EPS)])
    assert multi(x, y).shape == x.shape


def test_hmc_attack_targeted_mode_moves_towards_the_target(batch, network):
    x, y = batch
    attack = HMC(network, eps=EPS, position_step=EPS / 4)
    attack.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10)
    target = (y + 1) % 10
    towards_target = _per_sample_loss(network, x, target) - _per_sample_loss(network, attack(x, y), target)
    assert float((towards_target > 0).float().mean()) > 0.95


def test_atcd_refuses_bad_arguments():
    classifier = make_classifier()
    before = weights(classifier)
    with pytest.raises(ValueError, match="trajectory_length must be an integer >= 1"):
        AdversarialTrainerATCD(classifier, eps=EPS, trajectory_length=0)
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        AdversarialTrainerATCD(classifier, eps=EPS, repeats=0)
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        AdversarialTrainerATCD(classifier, eps=EPS, rho=-1.0)
    with pytest.raises(ValueError, match="momentum_normalisation must be one of"):
        AdversarialTrainerATCD(classifier, eps=EPS, momentum_normalisation="l2")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        HMC(tiny_network(), eps=EPS, steps=0)
    assert same_weights(before, weights(classifier))
