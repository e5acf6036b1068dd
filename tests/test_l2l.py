"""L2L-RNN: the plumbing (a sign rule is PGD), first-order meta-gradients, a learned optimizer that beats tuned PGD."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_classifier, same_weights, weights
from torch import nn

import art_fastat.trainers.l2l as l2l_module
from art_fastat.attacks import L2L, RNNOptimizer
from art_fastat.attacks.fused_lstm import lstm_step
from art_fastat.attacks.l2l import Trajectory, learned_ascent
from art_fastat.perturbation import AttackSpace, input_gradient, normalise_per_sample, objective_gradient, pgd
from art_fastat.trainers import AdversarialTrainerL2L

EPS, STEPS = 0.2, 5


class SignRule(nn.Module):
    """``u = atanh(alpha / eps) sign(g)``: then ``eps tanh(u) = alpha sign(g)``, PGD's step."""

    def __init__(self, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio

    def forward(self, gradient, delta_over_eps, state=None):
        return math.atanh(self.ratio) * gradient.sign(), state


@pytest.fixture
def network(trained_network) -> nn.Module:
    return trained_network


def _loss(network, x, y):
    with torch.no_grad():
        return float(F.cross_entropy(network(x), y))


@pytest.mark.parametrize("random_start", [False, True])
def test_with_a_sign_rule_the_learned_attack_is_pgd(digits, network, random_start):
    x, y = torch.from_numpy(digits[2]), torch.from_numpy(digits[3])
    alpha = EPS / 4
    ours = learned_ascent(AttackSpace(network, generator=torch.Generator().manual_seed(0)), x, y, SignRule(alpha / EPS),
                          EPS, STEPS, random_start=random_start).deltas[-1]  # fmt: skip
    reference = pgd(AttackSpace(network, generator=torch.Generator().manual_seed(0)), x, y, EPS, alpha, STEPS,
                    random_start)  # fmt: skip
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)
    attack = L2L(network, SignRule(alpha / EPS), eps=EPS, steps=STEPS, random_start=False)(x, y)
    torch.testing.assert_close(attack - x, pgd(AttackSpace(network), x, y, EPS, alpha, STEPS, False), rtol=0, atol=1e-6)


def test_meta_gradient_is_first_order_and_touches_only_the_lstm(digits, network, monkeypatch):
    x, y = torch.from_numpy(digits[0][:64]), torch.from_numpy(digits[1][:64])
    graphs = []
    original_grad = torch.autograd.grad

    def recording_grad(*args, **kwargs):
        graphs.append(kwargs.get("create_graph", False))
        return original_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", recording_grad)
    classifier_network = copy.deepcopy(network).requires_grad_(True)  # weights that could receive gradients
    rnn = RNNOptimizer()
    trajectory = learned_ascent(AttackSpace(classifier_network), x, y, rnn, EPS, STEPS, random_start=False)
    trajectory.gradients.append(input_gradient(classifier_network, x, trajectory.deltas[-1], y))
    assert graphs == [False] * (STEPS + 1)  # no create_graph: no second derivative through the classifier
    assert [g.requires_grad for g in trajectory.gradients] == [False] * (STEPS + 1)  # constants
    surrogate_gradient = torch.autograd.grad(trajectory.meta_surrogate(), list(rnn.parameters()))
    # the first-order meta-loss itself, sum_t CE(f(x + delta_t)) with the gradient inputs frozen, backpropagated
    # through the classifier and the LSTM, has the same gradient in the LSTM's weights
    replay = learned_ascent(AttackSpace(classifier_network), x, y, _FrozenInputs(rnn, trajectory.gradients), EPS, STEPS,
                            random_start=False)  # fmt: skip
    meta_loss = sum(F.cross_entropy(classifier_network(x + delta), y, reduction="sum") for delta in replay.deltas[1:])
    meta_gradient = torch.autograd.grad(meta_loss, list(rnn.parameters()))
    for ours, exact in zip(surrogate_gradient, meta_gradient, strict=True):
        torch.testing.assert_close(ours, exact, rtol=1e-4, atol=1e-6)
    assert sum(float(g.abs().sum()) for g in surrogate_gradient) > 0
    assert all(p.grad is None for p in classifier_network.parameters())


class _FrozenInputs(nn.Module):
    """The LSTM fed the recorded gradients instead of the ones computed along the replayed trajectory."""

    def __init__(self, rnn: nn.Module, gradients: list[torch.Tensor]) -> None:
        super().__init__()
        self.rnn, self.gradients, self.step = rnn, gradients, 0

    def forward(self, gradient, delta_over_eps, state=None):
        self.step += 1
        return self.rnn(self.gradients[self.step - 1], delta_over_eps, state)


class UnfusedRNNOptimizer(nn.Module):
    """The learned optimizer as it was before the fused step: ``nn.LSTMCell`` and ``nn.Linear`` run by autograd."""

    def __init__(self, hidden_size: int = 16) -> None:
        super().__init__()
        self.cell, self.head = nn.LSTMCell(2, hidden_size), nn.Linear(hidden_size, 1)

    def forward(self, gradient, delta_over_eps, state=None):
        features = torch.stack([normalise_per_sample(gradient).reshape(-1), delta_over_eps.reshape(-1)], dim=1)
        hidden, cell = self.cell(features.to(self.head.weight.dtype), state)
        return self.head(hidden).view_as(gradient).to(gradient.dtype), (hidden, cell)


@pytest.mark.parametrize("block", [None, 64, 1000])  # the default, blocks with a ragged last one, one block
def test_fused_lstm_step_computes_lstm_cell_and_head_and_their_gradients(block):
    torch.manual_seed(0)
    cell, head = nn.LSTMCell(2, 16).double(), nn.Linear(16, 1).double()
    weights = [*cell.parameters(), *head.parameters()]
    features = [torch.randn(1000, dtype=torch.float64, requires_grad=True) for _ in range(6)]
    upstream = [torch.randn(1000, dtype=torch.float64) for _ in range(3)]

    def unroll(step):
        state, outputs = None, []
        for x in zip(features[::2], features[1::2], strict=True):
            u, state = step(x, state)
            outputs.append(u)
        return outputs, state

    fused, fused_state = unroll(lambda x, state: lstm_step(x, state, cell, head, block))
    reference, reference_state = unroll(
        lambda x, state: (lambda s: (head(s[0]).view(-1), s))(cell(torch.stack(x, dim=1), state))
    )
    for ours, exact in zip([*fused, *fused_state], [*reference, *reference_state], strict=True):
        torch.testing.assert_close(ours, exact, rtol=0, atol=1e-12)
    # the meta-gradient's path: into the weights (all six tensors) and back through the features and the state
    objective = [sum((u * w).sum() for u, w in zip(outputs, upstream, strict=True)) for outputs in (fused, reference)]
    ours, exact = (torch.autograd.grad(total, weights + features) for total in objective)
    for a, b in zip(ours, exact, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert all(float(g.abs().sum()) > 0 for g in ours)
    with torch.no_grad():  # without a graph only one block of scratch is kept
        torch.testing.assert_close(unroll(lambda x, state: lstm_step(x, state, cell, head, block))[0][-1],
                                   reference[-1], rtol=0, atol=1e-12)  # fmt: skip


def test_rnn_optimizer_loads_the_unfused_state_dict_and_has_its_meta_gradient(digits, network):
    x, y = torch.from_numpy(digits[0][:64]), torch.from_numpy(digits[1][:64])
    torch.manual_seed(3)
    unfused = UnfusedRNNOptimizer()
    rnn = RNNOptimizer()
    rnn.load_state_dict(unfused.state_dict())  # checkpoints of the unfused optimizer load as they are

    def meta_gradient(optimizer):
        trajectory = learned_ascent(AttackSpace(network, generator=torch.Generator().manual_seed(0)), x, y, optimizer,
                                    EPS, STEPS)  # fmt: skip
        trajectory.gradients.append(input_gradient(network, x, trajectory.deltas[-1], y))
        return trajectory.deltas, torch.autograd.grad(trajectory.meta_surrogate(), list(optimizer.parameters()))

    (deltas, ours), (reference_deltas, exact) = meta_gradient(rnn), meta_gradient(unfused)
    for a, b in zip(deltas, reference_deltas, strict=True):  # float32: about 1e-6 of eps = 0.2
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    for a, b in zip(ours, exact, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_learned_optimizer_climbs_higher_than_tuned_pgd_on_held_out_inputs(digits, network):
    x_train, y_train = torch.from_numpy(digits[0]), torch.from_numpy(digits[1])
    x_test, y_test = torch.from_numpy(digits[2]), torch.from_numpy(digits[3])
    torch.manual_seed(0)
    rnn = RNNOptimizer()
    optimizer = torch.optim.Adam(rnn.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        index = torch.randint(0, len(x_train), (64,), generator=generator)
        x, y = x_train[index], y_train[index]
        space = AttackSpace(network.requires_grad_(False), generator=generator)
        trajectory = learned_ascent(space, x, y, rnn, EPS, STEPS)
        trajectory.gradients.append(input_gradient(network, x, trajectory.deltas[-1], y))
        optimizer.zero_grad()
        (-trajectory.meta_surrogate() / len(x)).backward()
        optimizer.step()
    learned = _loss(network, L2L(network, rnn, eps=EPS, steps=STEPS)(x_test, y_test), y_test)
    tuned = {alpha: _loss(network, x_test + pgd(AttackSpace(network, generator=torch.Generator().manual_seed(1)),
                                                  x_test, y_test, EPS, alpha, STEPS, True), y_test)
             for alpha in (EPS / 8, EPS / 4, EPS / 2, 2.5 * EPS / STEPS, EPS)}  # fmt: skip
    assert learned > max(tuned.values()), (learned, tuned)


@pytest.mark.parametrize("objective", ["ce", "trades"])
def test_trainer_reuses_the_updates_pass_for_the_last_meta_gradient(digits, objective, monkeypatch):
    x, y = torch.from_numpy(digits[0][:64]), torch.from_numpy(digits[1][:64])
    trainer = AdversarialTrainerL2L(make_classifier(), eps=EPS, steps=3, objective=objective)
    trajectories = []
    meta_surrogate = Trajectory.meta_surrogate
    monkeypatch.setattr(Trajectory, "meta_surrogate", lambda self: trajectories.append(self) or meta_surrogate(self))
    before = make_classifier().model  # the weights before the update, where g_T must be taken
    trainer._train_batch(x, y, EPS)
    (trajectory,) = trajectories
    clean = before(x).detach() if objective == "trades" else None
    expected, _ = objective_gradient(before, x, trajectory.deltas[-1],
                                     lambda logits: l2l_module.OBJECTIVES[objective](logits, y, clean))  # fmt: skip
    torch.testing.assert_close(trajectory.gradients[-1], expected, rtol=1e-4, atol=1e-6)
    assert len(trajectory.gradients) == len(trajectory.deltas) == 4
    assert not same_weights(weights(make_classifier()), weights(trainer._classifier))  # the update happened


def test_history_records_the_inner_loss_per_step_and_checkpoints_keep_the_rnn(digits, tmp_path):
    x, y = digits[0][:256], digits[1][:256]
    straight = make_classifier()
    trainer = AdversarialTrainerL2L(straight, eps=EPS, steps=3, seed=2)
    history = trainer.fit(x, y, batch_size=64, nb_epochs=3)
    assert {f"inner_loss_{t}" for t in range(4)} <= set(history[-1])
    assert history[-1]["inner_loss_3"] > history[-1]["inner_loss_0"]  # the learned attack climbs
    options = {"eps": EPS, "steps": 3, "seed": 2, "checkpoint_dir": tmp_path}
    AdversarialTrainerL2L(make_classifier(), **options).fit(x, y, batch_size=64, nb_epochs=2)
    resumed = make_classifier()
    again = AdversarialTrainerL2L(resumed, **options, resume=True)
    again.fit(x, y, batch_size=64, nb_epochs=3)
    assert same_weights(weights(straight), weights(resumed))
    assert all(
        torch.equal(a, b)
        for a, b in zip(trainer.rnn.state_dict().values(), again.rnn.state_dict().values(), strict=True)
    )


def test_l2l_refuses_bad_arguments():
    classifier = make_classifier()
    before = weights(classifier)
    with pytest.raises(ValueError, match="objective must be one of"):
        AdversarialTrainerL2L(classifier, eps=EPS, objective="kl")
    with pytest.raises(ValueError, match="beta must be > 0 with objective='trades'"):
        AdversarialTrainerL2L(classifier, eps=EPS, objective="trades", beta=0.0)
    with pytest.raises(TypeError, match="rnn must be an nn.Module"):
        AdversarialTrainerL2L(classifier, eps=EPS, rnn="lstm")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        L2L(nn.Linear(2, 2), RNNOptimizer(), steps=0)
    with pytest.raises(ValueError, match=r"state must be \(h, c\) of shape \(64, 16\)"):
        RNNOptimizer()(torch.randn(1, 64), torch.zeros(1, 64), (torch.zeros(63, 16), torch.zeros(63, 16)))
    assert same_weights(before, weights(classifier))
