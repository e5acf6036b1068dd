"""GAAT's algebra, its Hutchinson diagonal, the torchattacks attack, and DAT's phases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchattacks
from conftest import make_classifier, same_weights, weights
from torch import nn

import art_fastat
from art_fastat.attacks import GAAT
from art_fastat.attacks.gaat import jacobian_and_curvature, taylor_ascent
from art_fastat.perturbation import AttackSpace, project, uniform_start
from art_fastat.trainers import (
    TRAINERS,
    AdversarialTrainerDAT,
    AdversarialTrainerGAAT,
    NaturalTrainer,
)

EPS, ALPHA, STEPS = 0.2, 0.05, 5


@pytest.fixture(scope="module")
def batch(digits):
    x, y, _, _ = digits
    return torch.from_numpy(x[:256]), torch.from_numpy(y[:256])


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 32), nn.ReLU(),
                         nn.Linear(32, 10))  # fmt: skip


def _per_sample_loss(forward, x, y):
    with torch.no_grad():
        return F.cross_entropy(forward(x), y, reduction="none")


@pytest.mark.parametrize("logit_scale", [1.0, 50.0])
def test_gauss_newton_is_fgsm_rs_where_1_plus_j_delta0_is_positive_and_descends_where_negative(batch, logit_scale):
    x, y = batch
    x = 0.3 + 0.4 * x  # interior inputs: every x + delta_0 is valid, so only the eps-ball clips (the identity is exact)
    network = _network()

    def forward(inputs):
        return logit_scale * network(inputs)

    ascent = taylor_ascent(AttackSpace(forward, generator=torch.Generator().manual_seed(1)), x, y, EPS, ALPHA, STEPS)
    delta_0 = uniform_start(x, EPS, torch.Generator().manual_seed(1))
    x_natural = x.clone().requires_grad_(True)
    (jacobian,) = torch.autograd.grad(F.cross_entropy(forward(x_natural), y, reduction="sum"), x_natural)
    ascending = 1 + (jacobian * delta_0).flatten(1).sum(1) > 0
    assert torch.equal(~ascending, ascent.descending)
    fgsm_rs = project(x, delta_0 + STEPS * ALPHA * jacobian.sign(), EPS, 0.0, 1.0)
    assert torch.allclose(ascent.delta[ascending], fgsm_rs[ascending], atol=1e-6, rtol=0)
    loss_start = _per_sample_loss(forward, x + delta_0, y)
    loss_end = _per_sample_loss(forward, x + ascent.delta, y)
    assert bool((loss_end[ascending] > loss_start[ascending]).all())
    if logit_scale == 1.0:
        assert bool(ascending.all())  # ordinary gradients: GAAT-GN *is* FGSM-RS
    else:
        descending = ~ascending
        assert int(descending.sum()) >= 1  # large gradients: some samples fall in the descending case ...
        assert bool((loss_end[descending] < loss_start[descending]).all())  # ... and their loss goes down
        assert torch.allclose(ascent.delta[descending], project(x, delta_0 - STEPS * ALPHA * jacobian.sign(), EPS,
                              0.0, 1.0)[descending], atol=1e-6, rtol=0)  # fmt: skip


def _step_by_step(space, x, y, eps, alpha, steps, random_start, hessian="gauss_newton", objective=None):
    """
    The reference: taylor_ascent's T steps one at a time, as it computed them before the Gauss-Newton steps were
    folded into two. Returns ``(delta, per step the per-sample sign of 1 + <J, delta>)`` (Gauss-Newton).
    """
    objective = objective or (lambda logits, labels: F.cross_entropy(logits.float(), labels, reduction="none"))
    _, jacobian, curvature = jacobian_and_curvature(space, x, y, hessian, 1, objective)
    delta = space.start(x, eps, random_start)
    lower, upper = space.box(x, eps)
    jacobian_sign = jacobian.sign()
    slope_signs = []
    for _ in range(steps):
        if hessian == "diagonal":
            direction = (jacobian + curvature * delta).sign()
        else:
            slope_sign = (1 + (jacobian * delta).flatten(1).sum(1).view(-1, *([1] * (x.dim() - 1)))).sign()
            slope_signs.append(slope_sign.flatten())
            direction = jacobian_sign * slope_sign
        delta = torch.clamp(delta + alpha * direction, lower, upper)
    return delta.detach(), slope_signs


def _linear_objective(logits, weights):
    """``<w, x>`` per sample (logits are the pixels): J is ``w`` exactly, so a test chooses ``1 + <J, delta>``."""
    return (logits * weights).sum(1)


def test_gauss_newton_in_two_steps_equals_the_t_steps_one_by_one():
    generator = torch.Generator().manual_seed(0)
    flipped = descending = ascending_after_descent = 0
    for case in range(40):
        steps = (1, 2, 3, 10, 17)[case % 5]
        eps = 0.05 + 0.35 * float(torch.rand(1, generator=generator))
        alpha = eps * float(torch.rand(1, generator=generator)) * (0.05 if case % 2 else 0.5)
        random_start = case % 4 != 3
        shape = (64, 2, 5, 5)
        # MNIST-like inputs, many on the ends of the range so that x + delta_0 leaves it and step 1's clip bites.
        x = torch.rand(shape, generator=generator).mul_(2).sub_(0.5).clamp_(0, 1)
        per_feature = case % 3 == 0
        low = -0.1 * torch.rand((1, *shape[1:]), generator=generator) if per_feature else 0.0
        high = 1 + 0.1 * torch.rand((1, *shape[1:]), generator=generator) if per_feature else 1.0
        weights = torch.randn((len(x), x[0].numel()), generator=generator)
        if random_start:  # <J, delta_0> = -u, u ~ U(0.5, 1.5): 1 + <J, delta_0> of both signs, often turned by step 1
            delta_0 = uniform_start(x, eps, torch.Generator().manual_seed(case)).flatten(1)
            target = -(0.5 + torch.rand(len(x), generator=generator))
            weights *= (target / (weights * delta_0).sum(1)).unsqueeze(1)

        def space(seed: int, low=low, high=high) -> AttackSpace:
            return AttackSpace(lambda inputs: inputs.flatten(1), low, high, torch.Generator().manual_seed(seed))

        ascent = taylor_ascent(space(case), x, weights, eps, alpha, steps, random_start=random_start,
                               objective=_linear_objective)  # fmt: skip
        reference, slope_signs = _step_by_step(space(case), x, weights, eps, alpha, steps, random_start,
                                               objective=_linear_objective)  # fmt: skip
        if steps <= 2:
            assert torch.equal(ascent.delta, reference)  # no step is summed: bit for bit
        else:  # (T - 1) alpha in one addition instead of T - 1: float rounding of numbers <= eps + alpha
            assert torch.allclose(ascent.delta, reference, atol=1e-6, rtol=0)
            assert all(torch.equal(signs, slope_signs[1]) for signs in slope_signs[1:])  # the sign holds from step 2
        assert torch.equal(ascent.descending, slope_signs[0] < 0)
        assert torch.allclose(ascent.jacobian.flatten(1), weights)
        assert bool((ascent.delta >= space(0).box(x, eps)[0] - 1e-7).all())
        assert bool((ascent.delta <= space(0).box(x, eps)[1] + 1e-7).all())
        if steps > 1:
            flipped += int((slope_signs[0] != slope_signs[1]).sum())
            ascending_after_descent += int(((slope_signs[0] < 0) & (slope_signs[1] > 0)).sum())
        descending += int((slope_signs[0] < 0).sum())
    # The cases the folding has to get right all occurred: descending samples, and samples whose sign step 1's clip
    # turned (the reason the steps fold into two, not one).
    assert descending > 500 and flipped > 50 and ascending_after_descent > 30


@pytest.mark.parametrize("hessian", ["gauss_newton", "diagonal"])
def test_taylor_ascent_on_a_network_equals_the_steps_one_by_one(batch, hessian):
    x, y = batch[0][:64], batch[1][:64]
    network = _network()

    def forward(inputs):
        return 50.0 * network(inputs)  # large gradients: both signs of 1 + <J, delta_0>

    for steps, random_start in ((1, True), (10, False), (25, True)):
        ascent = taylor_ascent(AttackSpace(forward, generator=torch.Generator().manual_seed(steps)), x, y, EPS, ALPHA,
                               steps, hessian=hessian, random_start=random_start)  # fmt: skip
        reference, _ = _step_by_step(AttackSpace(forward, generator=torch.Generator().manual_seed(steps)), x, y, EPS,
                                     ALPHA, steps, random_start, hessian)  # fmt: skip
        if hessian == "diagonal" or steps == 1:
            assert torch.equal(ascent.delta, reference)
        else:
            assert torch.allclose(ascent.delta, reference, atol=1e-6, rtol=0)
        linear = (ascent.jacobian * reference).flatten(1).sum(1)
        quadratic = linear**2 if hessian == "gauss_newton" else (reference**2 * ascent.curvature).flatten(1).sum(1)
        assert torch.allclose(ascent.predicted_increase(), linear + quadratic / 2, rtol=1e-5, atol=1e-4)


def test_hutchinson_diagonal_matches_the_exact_hessian_diagonal():
    torch.manual_seed(0)
    smooth = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 4))
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 4, (6,))

    def exact_diagonal(i: int) -> torch.Tensor:
        hessian = torch.autograd.functional.hessian(lambda z: F.cross_entropy(smooth(z[None]), y[i : i + 1]), x[i])
        return hessian.reshape(16, 16).diagonal()

    exact = torch.stack([exact_diagonal(i) for i in range(6)])
    _, _, estimate = jacobian_and_curvature(AttackSpace(smooth, generator=torch.Generator().manual_seed(0)), x, y,
                                            "diagonal", 1000)  # fmt: skip
    relative_error = float((estimate.reshape(6, 16) - exact).norm() / exact.norm())
    assert relative_error < 0.1  # measured 0.073 with 1000 probes (0.24 with 100, 0.039 with 4000)
    _, _, few = jacobian_and_curvature(AttackSpace(smooth, generator=torch.Generator().manual_seed(0)), x, y,
                                       "diagonal", 10)  # fmt: skip
    assert float((few.reshape(6, 16) - exact).norm() / exact.norm()) > relative_error  # error shrinks with probes


def test_diagonal_gaat_takes_no_network_pass_per_step(batch):
    x, y = batch
    network = _network()
    calls = []
    network.register_forward_hook(lambda module, inputs, output: calls.append(1))
    for steps in (1, 20):
        calls.clear()
        taylor_ascent(AttackSpace(network), x, y, EPS, ALPHA, steps, hessian="diagonal", hutchinson_samples=2)
        assert len(calls) == 1  # J and the probes come from one forward pass, whatever T is


def test_gaat_attack_raises_the_loss_within_the_budget_and_plugs_into_torchattacks(batch):
    x, y = batch
    network = _network()
    for hessian in ("gauss_newton", "diagonal"):
        adversarial = GAAT(network, eps=EPS, alpha=ALPHA, steps=STEPS, hessian=hessian)(x, y)
        assert float((adversarial - x).abs().max()) <= EPS + 1e-6 and float(adversarial.min()) >= 0
        noisy = x + project(x, uniform_start(x, EPS, torch.Generator().manual_seed(0)), EPS, 0.0, 1.0)
        clean_loss = _per_sample_loss(network, x, y)
        gain = _per_sample_loss(network, adversarial, y) - clean_loss
        random_gain = _per_sample_loss(network, noisy, y) - clean_loss
        assert float((gain > 0).float().mean()) > 0.95 and float(gain.mean()) > 5 * abs(float(random_gain.mean()))
    multi = torchattacks.MultiAttack([GAAT(network, eps=EPS, alpha=ALPHA), torchattacks.PGD(network, eps=EPS)])
    assert multi(x, y).shape == x.shape


def test_gaat_attack_targeted_mode_moves_towards_the_target(batch):
    x, y = batch
    network = _network()
    attack = GAAT(network, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False)
    attack.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10)
    target = (y + 1) % 10
    towards_target = _per_sample_loss(network, x, target) - _per_sample_loss(network, attack(x, y), target)
    noisy = x + project(x, uniform_start(x, EPS, torch.Generator().manual_seed(0)), EPS, 0.0, 1.0)
    by_chance = _per_sample_loss(network, x, target) - _per_sample_loss(network, noisy, target)
    assert float((towards_target > 0).float().mean()) > 0.95
    assert float(towards_target.mean()) > 5 * abs(float(by_chance.mean()))


def test_gaat_attack_respects_torchattacks_normalization(batch):
    x, y = batch
    network = _network()
    mean, std = [0.3], [0.4]
    standardising = art_fastat.input_space_model(make_classifier(network, preprocessing=(0.3, 0.4)))
    expected = GAAT(standardising, eps=EPS, alpha=ALPHA, random_start=False)(x, y)
    attack = GAAT(network, eps=EPS, alpha=ALPHA, random_start=False)
    attack.set_normalization_used(mean, std)
    normalised = attack((x - 0.3) / 0.4, y) * 0.4 + 0.3
    assert torch.allclose(normalised, expected, atol=1e-5)


def test_gaat_trainer_records_descent_fraction_and_residual(digits):
    x, y, _, _ = digits
    trainer = AdversarialTrainerGAAT(make_classifier(), eps=EPS, track_residual=True)
    history = trainer.fit(x[:256], y[:256], batch_size=64, nb_epochs=2)
    assert all(0 <= record["descent_fraction"] <= 1 and record["residual"] >= 0 for record in history)
    assert trainer.passes_per_batch == 2
    assert AdversarialTrainerGAAT(make_classifier(), hessian="diagonal", hutchinson_samples=3).passes_per_batch == 8


def test_dat_trains_naturally_until_the_switch_then_adversarially(digits):
    x, y, _, _ = digits
    x, y = x[:256], y[:256]
    natural = make_classifier()
    NaturalTrainer(natural, seed=4).fit(x, y, batch_size=64, nb_epochs=2)
    delayed = make_classifier()
    dat = AdversarialTrainerDAT(delayed, eps=EPS, inner="gaat", switch_epoch=2, seed=4)
    dat.fit(x, y, batch_size=64, nb_epochs=2)
    assert same_weights(weights(natural), weights(delayed))  # the first epochs are exactly natural training
    delayed = make_classifier()
    dat = TRAINERS["dat+gaat"](delayed, eps=EPS, switch_epoch=2, seed=4)
    history = dat.fit(x, y, batch_size=64, nb_epochs=4)
    assert [r["adversarial"] for r in history] == [0, 0, 1, 1] and dat.switch_epoch == 3
    assert [r.get("switch_epoch") for r in history] == [None, 3, 3, 3]  # known from the end of epoch 2 on
    assert history[2]["loss"] > history[1]["loss"]  # adversarial inputs are harder
    assert "descent_fraction" in history[2] and "descent_fraction" not in history[1]  # GAAT's own records pass up
    assert dat.passes_per_batch == pytest.approx(1.5)  # two natural epochs at 1, two GAAT epochs at 2


def test_dat_switch_as_fraction_and_on_plateau(digits):
    x, y, _, _ = digits
    x, y = x[:128], y[:128]
    fraction = AdversarialTrainerDAT(make_classifier(), eps=EPS, inner="fast", switch_epoch=0.5)
    assert [r["adversarial"] for r in fraction.fit(x, y, nb_epochs=4)] == [0, 0, 1, 1]
    plateau = AdversarialTrainerDAT(make_classifier(), eps=EPS, inner="fast", switch="plateau", switch_epoch=0.9,
                                    plateau_window=1, plateau_tolerance=10.0)  # fmt: skip
    assert [r["adversarial"] for r in plateau.fit(x, y, nb_epochs=5)] == [0, 0, 1, 1, 1]
    never = AdversarialTrainerDAT(make_classifier(), eps=EPS, inner="fast", switch="plateau", switch_epoch=3,
                                  plateau_window=1, plateau_tolerance=0.0)  # fmt: skip
    assert [r["adversarial"] for r in never.fit(x, y, nb_epochs=4)] == [0, 0, 0, 1]


def test_dat_accepts_trainers_and_torchattacks_and_refuses_mismatches(digits):
    x, y, _, _ = digits
    classifier = make_classifier()
    inner = AdversarialTrainerGAAT(classifier, eps=EPS)
    AdversarialTrainerDAT(classifier, eps=EPS, inner=inner, switch_epoch=1).fit(x[:128], y[:128], nb_epochs=2)
    attack = torchattacks.FGSM(classifier.model, eps=EPS)
    history = AdversarialTrainerDAT(classifier, eps=EPS, inner=attack, switch_epoch=1).fit(
        x[:128], y[:128], nb_epochs=2
    )
    assert [r["adversarial"] for r in history] == [0, 1]
    with pytest.raises(ValueError, match="same classifier"):
        AdversarialTrainerDAT(make_classifier(), eps=EPS, inner=inner)
    with pytest.raises(ValueError, match="eps"):
        AdversarialTrainerDAT(classifier, eps=0.1, inner=inner)
    with pytest.raises(ValueError, match="inner must be one of"):
        AdversarialTrainerDAT(classifier, eps=EPS, inner="natural")
    with pytest.raises(ValueError, match="switch_epoch"):
        AdversarialTrainerDAT(classifier, eps=EPS, switch_epoch=1.5)


@pytest.mark.parametrize("method", ["gaat", "dat+gaat"])
def test_resume_is_bit_identical(method, digits, tmp_path):
    x, y, _, _ = digits
    x, y = x[:128], y[:128]
    # a warm-up of "auto" follows each fit's plan (2, then 3 epochs here): resuming into another plan changes it
    options = {"switch_epoch": 1} if method == "dat+gaat" else {"hessian": "diagonal", "eps_warmup_epochs": 0}
    straight = make_classifier()
    TRAINERS[method](straight, eps=EPS, seed=3, **options).fit(x, y, batch_size=64, nb_epochs=3)
    TRAINERS[method](make_classifier(), eps=EPS, seed=3, checkpoint_dir=tmp_path, **options).fit(
        x, y, batch_size=64, nb_epochs=2
    )
    resumed = make_classifier()
    TRAINERS[method](resumed, eps=EPS, seed=3, checkpoint_dir=tmp_path, resume=True, **options).fit(
        x, y, batch_size=64, nb_epochs=3
    )
    assert same_weights(weights(straight), weights(resumed))


def test_gaat_and_dat_refuse_bad_arguments():
    classifier = make_classifier()
    with pytest.raises(ValueError, match="hessian must be one of"):
        AdversarialTrainerGAAT(classifier, hessian="full")
    with pytest.raises(ValueError, match="hutchinson_samples"):
        AdversarialTrainerGAAT(classifier, hutchinson_samples=0)
    with pytest.raises(ValueError, match="switch must be one of"):
        AdversarialTrainerDAT(classifier, switch="loss")
    with pytest.raises(ValueError, match="hessian"):
        GAAT(classifier.model, hessian="exact")


@pytest.mark.parametrize("inner", ["gaat", "pgd"])
def test_dat_runs_the_inner_methods_passes_under_its_own_amp(digits, inner):
    x, y, _, _ = digits
    classifier = make_classifier()
    autocast_per_pass = []

    def record_autocast(module, inputs):
        autocast_per_pass.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))

    classifier.model.register_forward_pre_hook(record_autocast)
    # the guard off: its check's passes are not the training's
    dat = AdversarialTrainerDAT(classifier, eps=EPS, inner=inner, inner_options={"steps": 2}, switch_epoch=1,
                                use_amp=True, seed=0, overfitting_guard=None)  # fmt: skip
    assert dat.inner.step is dat.step and dat.inner.process is dat.process  # one engine: one AMP setting, one DDP wrap
    history = dat.fit(x[:128], y[:128], batch_size=64, nb_epochs=2)
    assert [r["adversarial"] for r in history] == [0, 1]
    assert len(autocast_per_pass) == 2 + 2 * (
        1 + (2 if inner == "pgd" else 1)
    )  # natural: 2 updates; then attack+update
    assert all(enabled and dtype == torch.bfloat16 for enabled, dtype in autocast_per_pass)
    with pytest.raises(ValueError, match="use_amp are DAT's own arguments"):
        AdversarialTrainerDAT(make_classifier(), eps=EPS, inner="fast", inner_options={"use_amp": True})
