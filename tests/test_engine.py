"""The engine: preprocessing, modes, schedules, warm-up, seeding, history, checkpoints, pluggable attacks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torchattacks
from art.data_generators import NumpyDataGenerator
from art.estimators.classification import PyTorchClassifier
from conftest import Standardise, make_classifier, same_weights, tiny_network, weights
from torch import nn

import art_fastat
from art_fastat.engine.schedules import lr_multiplier, warmed_up_eps
from art_fastat.perturbation import uniform_start
from art_fastat.trainers import AdversarialTrainerFast, AdversarialTrainerPGD, NaturalTrainer

N = 256  # training samples for engine tests: 4 batches of 64


@pytest.fixture(scope="module")
def data(digits):
    x_train, y_train, x_test, y_test = digits
    return x_train[:N], y_train[:N], x_test, y_test


def test_normalised_classifier_trains_like_network_that_standardises_itself(data):
    x, y, _, _ = data
    mean, std = 0.3, 0.4
    normalised = make_classifier(tiny_network(seed=1), preprocessing=(mean, std))
    inner = tiny_network(seed=1)
    internal = make_classifier(nn.Sequential(Standardise(mean, std), inner))
    for classifier in (normalised, internal):
        AdversarialTrainerPGD(classifier, eps=0.2, steps=3, seed=5).fit(x, y, batch_size=64, nb_epochs=2)
    assert same_weights(weights(normalised), list(inner.parameters()), atol=1e-5)
    # and the normalisation really mattered: an un-normalised run ends elsewhere
    plain = make_classifier(tiny_network(seed=1))
    AdversarialTrainerPGD(plain, eps=0.2, steps=3, seed=5).fit(x, y, batch_size=64, nb_epochs=2)
    assert not same_weights(weights(plain), weights(normalised), atol=1e-3)


def test_same_seed_same_weights_other_seed_other_weights(data):
    x, y, _, _ = data
    runs = []
    for seed in (3, 3, 4):
        classifier = make_classifier()
        AdversarialTrainerFast(classifier, eps=0.2, seed=seed).fit(x, y, batch_size=64, nb_epochs=2)
        runs.append(weights(classifier))
    assert same_weights(runs[0], runs[1])
    assert not same_weights(runs[0], runs[2], atol=1e-6)


def test_one_hot_labels_train_like_integer_labels(data):
    x, y, _, _ = data
    results = []
    for labels in (y, np.eye(10, dtype=np.float32)[y]):
        classifier = make_classifier()
        AdversarialTrainerFast(classifier, eps=0.2).fit(x, labels, batch_size=64, nb_epochs=1)
        results.append(weights(classifier))
    assert same_weights(*results)


def test_history_has_the_engine_keys_and_validation(data):
    x, y, x_val, y_val = data
    trainer = AdversarialTrainerFast(make_classifier(), eps=0.2, validation_size=100)
    history = trainer.fit(x, y, validation_data=(x_val, y_val), batch_size=64, nb_epochs=2)
    assert history is trainer.history and [h["epoch"] for h in history] == [1, 2]
    for record in history:
        assert {"loss", "accuracy", "seconds", "lr", "eps", "val_accuracy", "val_pgd_accuracy"} <= set(record)
        assert 0 <= record["val_pgd_accuracy"] <= record["val_accuracy"] <= 1
        assert record["loss"] > 0 and record["seconds"] > 0
    assert history[1]["loss"] < history[0]["loss"] + 1.0


def test_history_accuracy_is_on_the_adversarial_inputs(data):
    x, y, _, _ = data
    natural = NaturalTrainer(make_classifier()).fit(x, y, batch_size=64, nb_epochs=3)
    adversarial = AdversarialTrainerPGD(make_classifier(), eps=0.3, steps=5).fit(x, y, batch_size=64, nb_epochs=3)
    assert adversarial[-1]["loss"] > natural[-1]["loss"]


def test_eps_warmup_is_linear_per_iteration_and_scales_the_step(data):
    x, y, _, _ = data
    seen = []

    class Recording(AdversarialTrainerPGD):
        def _train_batch(self, xb, yb, eps):
            seen.append((eps, self._step_size(self.alpha, eps)))
            super()._train_batch(xb, yb, eps)

    Recording(make_classifier(), eps=0.2, alpha=0.05, eps_warmup_epochs=2).fit(x, y, batch_size=64, nb_epochs=3)
    eps_values = [e for e, _ in seen]
    expected = [0.2 * min(1, (i / 4) / 2) for i in range(12)]  # 4 batches per epoch, ramp over 2 epochs
    assert np.allclose(eps_values, expected)
    assert all(np.isclose(step, 0.05 * e / 0.2) for e, step in seen)
    assert warmed_up_eps(0.3, 1.5, 3.0) == pytest.approx(0.15) and warmed_up_eps(0.3, 5, 0) == 0.3


def test_auto_eps_warmup_takes_three_tenths_of_each_fit_and_is_gaat_s_default(data):
    x, y, _, _ = data
    x, y = x[:64], y[:64]  # one batch per epoch: each record's eps is the ramp at the start of its epoch
    fast = AdversarialTrainerFast(make_classifier(), eps=0.2, eps_warmup_epochs="auto")
    history = fast.fit(x, y, batch_size=64, nb_epochs=20)
    assert np.allclose([record["eps"] for record in history], [0.2 * min(1, epoch / 6) for epoch in range(20)])
    gaat = art_fastat.AdversarialTrainerGAAT(make_classifier(), eps=0.2, overfitting_guard=None)
    assert gaat.eps_warmup_epochs == "auto"
    history = gaat.fit(x, y, batch_size=64, nb_epochs=10)
    assert np.allclose([record["eps"] for record in history], [0.2 * min(1, epoch / 3) for epoch in range(10)])
    assert AdversarialTrainerFast(make_classifier(), eps=0.2).eps_warmup_epochs == 0.0  # the others: no ramp
    with pytest.raises(ValueError, match="eps_warmup_epochs must be a number >= 0 or 'auto', got 'fast'"):
        AdversarialTrainerFast(make_classifier(), eps=0.2, eps_warmup_epochs="fast")


def test_first_warmup_batch_is_trained_on_clean_inputs(data):
    x, y, _, _ = data
    deltas = []

    class Recording(AdversarialTrainerPGD):
        def _update(self, x_input, yb):
            deltas.append(x_input)
            return super()._update(x_input, yb)

        def _train_batch(self, xb, yb, eps):
            deltas.append(xb)
            super()._train_batch(xb, yb, eps)

    Recording(make_classifier(), eps=0.2, eps_warmup_epochs=1).fit(x, y, batch_size=64, nb_epochs=1)
    clean, adversarial = deltas[0], deltas[1]
    assert torch.equal(clean, adversarial)  # eps = 0 on the first iteration
    assert (deltas[3] - deltas[2]).abs().max() > 0  # later batches are perturbed


@pytest.mark.parametrize(
    ("name", "points"),
    [("triangle", {0.0: 0.0, 0.4: 1.0, 0.7: 0.5, 1.0: 0.0}), ("cyclic", {0.25: 0.5, 0.5: 1.0}),
     ("multistep", {0.1: 1.0, 0.6: 0.1, 0.8: 0.01}), ("cosine", {0.0: 1.0, 0.5: 0.5, 1.0: 0.0})],
)  # fmt: skip
def test_named_lr_schedules(name, points):
    for fraction, multiplier in points.items():
        assert lr_multiplier(name, fraction) == pytest.approx(multiplier)


def test_triangle_schedule_is_applied_per_iteration(data):
    x, y, _, _ = data
    classifier = make_classifier(lr=0.01)
    history = AdversarialTrainerFast(classifier, eps=0.2, lr_schedule="triangle").fit(x, y, batch_size=64, nb_epochs=5)
    lrs = [h["lr"] for h in history]  # the lr of the last iteration of each epoch: 3/4, 7/4, ... epochs in
    expected = [0.01 * lr_multiplier("triangle", (e + 0.75) / 5) for e in range(5)]
    assert np.allclose(lrs, expected)


def test_scheduler_object_stepped_per_update_or_per_epoch(data):
    x, y, _, _ = data
    classifier = make_classifier(lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(classifier.optimizer, step_size=1, gamma=0.5)
    history = AdversarialTrainerFast(classifier, eps=0.2, lr_schedule=scheduler, lr_schedule_interval="epoch").fit(
        x, y, batch_size=64, nb_epochs=3
    )
    assert [h["lr"] for h in history] == pytest.approx([0.01, 0.005, 0.0025])
    classifier = make_classifier(lr=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(classifier.optimizer, max_lr=0.01, total_steps=8)
    AdversarialTrainerFast(classifier, eps=0.2, lr_schedule=scheduler).fit(x, y, batch_size=64, nb_epochs=2)
    assert scheduler.last_epoch == 8


def test_paper_schedule_is_the_methods_own():
    assert AdversarialTrainerFast(make_classifier(), eps=0.2, lr_schedule="paper").lr_schedule == "cyclic"
    assert AdversarialTrainerPGD(make_classifier(), eps=0.2, lr_schedule="paper").lr_schedule == "multistep"


def test_batchnorm_frozen_during_attack_and_updated_by_the_weight_update(data):
    x, y, _, _ = data
    classifier = make_classifier(tiny_network(batch_norm=True))
    trainer = AdversarialTrainerPGD(classifier, eps=0.2, steps=3)
    bn = classifier.model[1]
    modes = []
    bn.register_forward_hook(lambda module, inputs, output: modes.append(module.training))
    xb, yb = torch.from_numpy(x[:64]), torch.from_numpy(y[:64])
    classifier.model.train()
    before = (bn.running_mean.clone(), bn.num_batches_tracked.clone())
    trainer._pgd(xb, yb, 0.2, 0.05, 3, True)
    assert modes == [True] * 3  # attack passes run in train mode (batch statistics) ...
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.num_batches_tracked, before[1])  # ... frozen
    trainer.fit(x, y, batch_size=64, nb_epochs=1)
    assert not torch.equal(bn.running_mean, before[0]) and int(bn.num_batches_tracked) == int(before[1]) + 4


def test_eval_attack_mode_runs_the_attack_in_eval_mode(data):
    x, y, _, _ = data
    classifier = make_classifier(tiny_network(batch_norm=True))

    class EvalAttack(AdversarialTrainerPGD):
        attack_mode = "eval"

    modes = []
    classifier.model[1].register_forward_hook(lambda module, inputs, output: modes.append(module.training))
    EvalAttack(classifier, eps=0.2, steps=2).fit(x[:64], y[:64], batch_size=64, nb_epochs=1)
    assert modes == [False, False, True]


def test_fit_generator_trains_on_every_batch_of_an_art_data_generator(data):
    x, y, _, _ = data
    classifier = make_classifier()
    before = weights(classifier)
    generator = NumpyDataGenerator(x, y, batch_size=64, shuffle=True)
    drawn = []
    original = generator.get_batch
    generator.get_batch = lambda: drawn.append(1) or original()
    trainer = AdversarialTrainerFast(classifier, eps=0.2)
    history = trainer.fit_generator(generator, nb_epochs=2)
    assert len(history) == 2 and not same_weights(before, weights(classifier), atol=1e-6)
    assert len(drawn) == 2 * 4 and trainer.totals.weights["loss"] == 256  # no batch drawn without being trained on


def test_random_start_covers_the_whole_ball_and_the_steps_stay_valid(data):
    # The start is not clipped to the valid range (clipping it made Fast overfit catastrophically on MNIST), but
    # every adversarial input the engine trains on is inside clip_values.
    x, y, _, _ = data
    xb, yb = torch.from_numpy(x[:64]), torch.from_numpy(y[:64])
    start = uniform_start(xb, 0.2, torch.Generator().manual_seed(0))
    background = xb == 0
    assert float(start[background].min()) < -0.19 and float(start[background].max()) > 0.19
    trainer = AdversarialTrainerFast(make_classifier(), eps=0.2)
    x_adv = xb + trainer._pgd(xb, yb, 0.2, 0.25, 1, True)
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1 and float((x_adv - xb).abs().max()) <= 0.2 + 1e-6


def test_per_feature_clip_values_bound_the_perturbation(data):
    x, y, _, _ = data
    high = np.full((1, 8, 8), 1.0, dtype=np.float32)
    high[0, :4] = 0.5
    network = tiny_network()
    optimizer = torch.optim.Adam(network.parameters())
    clip_values = (np.zeros_like(high), high)
    classifier = PyTorchClassifier(network, nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer, clip_values=clip_values)
    x_low = np.minimum(x[:64], high)
    trainer = AdversarialTrainerPGD(classifier, eps=0.3, steps=3)
    x_adv = torch.from_numpy(x_low) + trainer._pgd(torch.from_numpy(x_low), torch.from_numpy(y[:64]), 0.3, 0.1, 3, True)
    assert float(x_adv[:, :, :4].max()) <= 0.5 and float(x_adv[:, :, :4].max()) > 0.45
    assert float(x_adv.min()) >= 0 and float((x_adv - torch.from_numpy(x_low)).abs().max()) <= 0.3 + 1e-6


def test_checkpoint_resume_is_bit_identical(data, tmp_path):
    x, y, _, _ = data
    straight = make_classifier()
    AdversarialTrainerPGD(straight, eps=0.2, steps=2, seed=7).fit(x, y, batch_size=64, nb_epochs=3)
    interrupted = make_classifier()
    AdversarialTrainerPGD(interrupted, eps=0.2, steps=2, seed=7, checkpoint_dir=tmp_path).fit(
        x, y, batch_size=64, nb_epochs=2
    )
    resumed = make_classifier()  # a fresh process would build everything anew
    trainer = AdversarialTrainerPGD(resumed, eps=0.2, steps=2, seed=7, checkpoint_dir=tmp_path, resume=True)
    history = trainer.fit(x, y, batch_size=64, nb_epochs=3)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert same_weights(weights(straight), weights(resumed))
    assert not (tmp_path / "checkpoint.tmp").exists()


def test_checkpoint_refuses_pickled_code_and_foreign_files(data, tmp_path):
    x, y, _, _ = data

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    (tmp_path / "checkpoint.pt").write_bytes(pickle.dumps({"format": Payload()}))
    trainer = AdversarialTrainerFast(make_classifier(), eps=0.2, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="not an art_fastat checkpoint"):  # no digest header: never unpickled
        trainer.fit(x, y, batch_size=64, nb_epochs=1)
    AdversarialTrainerFast(make_classifier(), eps=0.2, checkpoint_dir=tmp_path / "fast").fit(x, y, nb_epochs=1)
    other = AdversarialTrainerPGD(make_classifier(), eps=0.2, checkpoint_dir=tmp_path / "fast", resume=True)
    with pytest.raises(ValueError, match="method 'fast'"):
        other.fit(x, y, nb_epochs=2)


def test_torchattacks_attack_plugs_in_as_the_inner_maximizer(data):
    x, y, _, _ = data
    builtin = make_classifier()
    trainer = AdversarialTrainerPGD(builtin, eps=0.1, alpha=0.1, steps=1, random_start=False)
    trainer.fit(x, y, batch_size=64, nb_epochs=2)
    external = make_classifier()
    attack = torchattacks.FGSM(external.model, eps=0.1)
    AdversarialTrainerPGD(external, eps=0.1, attack=attack).fit(x, y, batch_size=64, nb_epochs=2)
    assert same_weights(weights(builtin), weights(external), atol=1e-6)  # FGSM == one PGD step of size eps from 0


def test_torchattacks_attack_must_see_the_classifiers_preprocessing():
    classifier = make_classifier(preprocessing=(0.5, 0.5))
    with pytest.raises(ValueError, match="input_space_model"):
        AdversarialTrainerPGD(classifier, eps=0.1, attack=torchattacks.FGSM(classifier.model, eps=0.1))
    AdversarialTrainerPGD(classifier, eps=0.1, attack=torchattacks.FGSM(art_fastat.input_space_model(classifier)))
    with pytest.raises(TypeError, match="torchattacks.Attack"):
        AdversarialTrainerPGD(classifier, eps=0.1, attack=lambda images, labels: images)
    other = torchattacks.FGSM(tiny_network(), eps=0.1)
    with pytest.raises(ValueError, match="built on classifier.model"):
        AdversarialTrainerPGD(classifier, eps=0.1, attack=other)


def test_mixed_precision_bf16_trains(data):
    x, y, _, _ = data
    classifier = make_classifier()
    before = weights(classifier)
    history = AdversarialTrainerFast(classifier, eps=0.2, use_amp=True).fit(x, y, batch_size=64, nb_epochs=1)
    assert np.isfinite(history[0]["loss"]) and not same_weights(before, weights(classifier), atol=1e-6)


def test_callers_arrays_are_not_modified(data):
    x, y, x_val, y_val = data
    copies = [a.copy() for a in (x, y, x_val, y_val)]
    AdversarialTrainerPGD(make_classifier(), eps=0.3, steps=2).fit(x, y, validation_data=(x_val, y_val), nb_epochs=1)
    assert all(np.array_equal(a, b) for a, b in zip((x, y, x_val, y_val), copies, strict=True))


def test_passes_per_batch():
    classifier = make_classifier()
    assert AdversarialTrainerPGD(classifier, eps=0.2, steps=10).passes_per_batch == 11
    assert AdversarialTrainerFast(classifier, eps=0.2).passes_per_batch == 2
    assert NaturalTrainer(classifier).passes_per_batch == 1
    assert AdversarialTrainerFast(classifier, eps=0.2).alpha == pytest.approx(0.25)


def test_trainers_are_art_trainers():
    from art.defences.trainer import Trainer

    classifier = make_classifier()
    trainer = AdversarialTrainerFast(classifier, eps=0.2)
    assert isinstance(trainer, Trainer) and trainer.get_classifier() is classifier
