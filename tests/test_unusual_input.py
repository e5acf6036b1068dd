"""
Reliability 2: unusual-but-valid input trains like its ordinary form, and hostile input is refused by the pre-flight
step before anything changes (weights, optimizer state, BatchNorm buffers, the caller's arrays, files on disk), with
an error naming the argument. Classes of input, each over every trainer or attack where it applies
(docs/reliability.md).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torchattacks
from art.data_generators import DataGenerator, NumpyDataGenerator
from art.estimators.classification import PyTorchClassifier
from conftest import Standardise, make_classifier, same_weights, tiny_network, weights
from torch import nn

from art_fastat.attacks import GAAT, HMC, L2L, RNNOptimizer
from art_fastat.trainers import TRAINERS, AdversarialTrainerDAT, AdversarialTrainerFast, AdversarialTrainerL2L

N, BATCH, EPS = 64, 32, 0.2
QUICK = {"pgd": {"steps": 2}, "l2l": {"steps": 2}, "l2l-trades": {"steps": 2}, "free": {"replays": 2},
         "atcd": {"repeats": 2, "trajectory_length": 1}, "atlas": {}, "dat": {"switch_epoch": 0, "inner": "fast"},
         "dat+gaat": {"switch_epoch": 0}}  # fmt: skip


def trainer(method: str, classifier: PyTorchClassifier, **options: object):
    return TRAINERS[method](classifier, eps=EPS, **{"seed": 1, **QUICK.get(method, {}), **options})


def state_of(classifier: PyTorchClassifier) -> dict:
    """Everything a refusal must leave alone: weights, buffers (BatchNorm statistics) and optimizer state."""
    return {
        "model": {k: v.detach().clone() for k, v in classifier.model.state_dict().items()},
        "optimizer": repr(classifier.optimizer.state_dict()),
    }


def assert_same_state(before: dict, classifier: PyTorchClassifier) -> None:
    after = state_of(classifier)
    assert before["optimizer"] == after["optimizer"]
    for name, value in before["model"].items():
        assert torch.equal(value, after["model"][name]), name


@pytest.fixture(scope="module")
def xy(digits):
    return digits[0][:N].copy(), digits[1][:N].copy()


# ------------------------------------------------------------------ 1. valid input that used to crash


@pytest.mark.parametrize("method", list(TRAINERS))
def test_negative_strides_train_bit_identically_to_contiguous_arrays(method, xy):
    x, y = xy
    flipped_x, flipped_y = x[::-1], y[::-1]  # views with negative strides, as np.flip gives
    validation = (np.flip(x, axis=0), np.flip(y, axis=0))
    viewed, copied = make_classifier(), make_classifier()
    trainer(method, viewed).fit(flipped_x, flipped_y, validation_data=validation, batch_size=BATCH, nb_epochs=2)
    contiguous = tuple(np.ascontiguousarray(a) for a in (flipped_x, flipped_y))
    trainer(method, copied).fit(*contiguous, validation_data=tuple(np.ascontiguousarray(a) for a in validation),
                                batch_size=BATCH, nb_epochs=2)  # fmt: skip
    assert same_weights(weights(viewed), weights(copied))
    assert np.array_equal(flipped_x, x[::-1])  # the caller's views are untouched


def batch_norm_1d_network() -> nn.Module:
    """BatchNorm1d after a linear layer: train mode cannot normalise a minibatch of one sample."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


@pytest.mark.parametrize("method", list(TRAINERS))
def test_batchnorm_never_gets_a_single_sample_minibatch(method, xy):
    x, y = xy
    n = BATCH * 2 + 1  # the last minibatch would hold one sample
    x, y = np.concatenate([x, x[:1]]), np.concatenate([y, y[:1]])
    classifier = make_classifier(batch_norm_1d_network())
    sizes = []
    fitting = trainer(method, classifier)
    train_batch = fitting._train_batch
    fitting._train_batch = lambda xb, yb, eps: sizes.append(len(xb)) or train_batch(xb, yb, eps)
    history = fitting.fit(x[:n], y[:n], batch_size=BATCH, nb_epochs=1 if method not in ("free", "atcd") else 2)
    assert sizes[:2] == [BATCH, BATCH + 1]  # the single sample joins the minibatch before it: every sample once
    assert np.isfinite(history[-1]["loss"])
    with pytest.raises(ValueError, match=r"x must hold at least 2 sample\(s\) per rank \(the network has BatchNorm\)"):
        trainer(method, make_classifier(batch_norm_1d_network())).fit(x[:1], y[:1])


def test_fit_generator_skips_a_single_sample_batch_under_batchnorm_with_a_warning(xy, caplog):
    x, y = xy
    classifier = make_classifier(batch_norm_1d_network())
    generator = ListGenerator([(x[:BATCH], y[:BATCH]), (x[BATCH : BATCH + 1], y[BATCH : BATCH + 1])], BATCH)
    with caplog.at_level(logging.WARNING):
        history = AdversarialTrainerFast(classifier, eps=EPS).fit_generator(generator, nb_epochs=1)
    assert np.isfinite(history[0]["loss"]) and "a batch of 1 sample(s) was skipped" in caplog.text


class ListGenerator(DataGenerator):
    """Yields the given batches in turn (a DataLoader's last batch may hold a single sample)."""

    def __init__(self, batches: list, batch_size: int) -> None:
        super().__init__(size=sum(len(b[1]) for b in batches), batch_size=batch_size)
        self.batches, self.index = batches, 0

    def get_batch(self) -> tuple:
        self.index += 1
        return self.batches[(self.index - 1) % len(self.batches)]


# ------------------------------------------------------------------ 2. refused before anything changes


def refused(make_trainer, fit_arguments: dict, error: type, message: str, classifier: PyTorchClassifier) -> None:
    before = state_of(classifier)
    with pytest.raises(error, match=message):
        make_trainer().fit(**fit_arguments)
    assert_same_state(before, classifier)


@pytest.mark.parametrize("method", list(TRAINERS))
def test_a_checkpoint_dir_that_cannot_be_written_is_refused_before_training(method, xy, tmp_path):
    x, y = xy
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    for directory, message in ((a_file, "is a file, not a directory"), (a_file / "below", "cannot be written")):
        classifier = make_classifier()
        refused(lambda c=classifier, d=directory: trainer(method, c, checkpoint_dir=d), {"x": x, "y": y},
                ValueError, f"checkpoint_dir .*{message}", classifier)  # fmt: skip
    assert a_file.read_text() == "not a directory" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    with pytest.raises(ValueError, match="x must lie inside"):  # a later refusal leaves no checkpoint_dir behind
        trainer(method, make_classifier(), checkpoint_dir=tmp_path / "fresh").fit(x + 2, y)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def write_checkpoint(method: str, classifier: PyTorchClassifier, directory, x, y, **options: object) -> None:
    trainer(method, classifier, checkpoint_dir=directory, **options).fit(x, y, batch_size=BATCH, nb_epochs=2)


RESUME_MISMATCHES = {
    "another method": ("fast", "pgd", {}, lambda: make_classifier(), "checkpoint of method 'fast', not 'pgd'"),
    "another architecture": ("fast", "fast", {}, lambda: make_classifier(batch_norm_1d_network()),
                             "another network architecture"),
    "another optimizer type": ("fast", "fast", {}, lambda: PyTorchClassifier(
        tiny_network(), nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer=torch.optim.SGD(tiny_network().parameters(),
                                                                                       lr=0.1), clip_values=(0, 1)),
                               "written with optimizer Adam, the classifier has SGD"),
    "other parameter groups": ("fast", "fast", {}, lambda: _two_group_classifier(), "parameter groups of sizes"),
    "another L2L hidden size": ("l2l", "l2l", {"hidden_size": 8}, lambda: make_classifier(),
                                "state of another configuration: method_state.rnn"),
    "another process count": ("fast", "fast", {}, None, "written by 2 process"),
}  # fmt: skip


def _two_group_classifier() -> PyTorchClassifier:
    network = tiny_network()
    groups = [{"params": list(network[0].parameters())}, {"params": list(network[2:].parameters())}]
    return PyTorchClassifier(network, nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer=torch.optim.Adam(groups),
                             clip_values=(0, 1))  # fmt: skip


@pytest.mark.parametrize("case", list(RESUME_MISMATCHES))
def test_resume_into_another_setup_changes_nothing(case, xy, tmp_path):
    x, y = xy
    written, resumed, options, make, message = RESUME_MISMATCHES[case]
    write_checkpoint(written, make_classifier(), tmp_path, x, y)
    if make is None:  # edit the checkpoint as if two processes had written it
        from art_fastat.engine.checkpoints import read_checkpoint
        from art_fastat.engine.checkpoints import write_checkpoint as write

        state = read_checkpoint(tmp_path / "checkpoint.pt")
        state["ranks"] = [{k: state[k] for k in ("generator", "torch_rng", "cuda_rng", "method_state")}] * 2
        write(state, tmp_path / "checkpoint.pt")
        make = make_classifier
    classifier = make()
    make_trainer = lambda: trainer(resumed, classifier, checkpoint_dir=tmp_path, resume=True, **options)  # noqa: E731
    refused(make_trainer, {"x": x, "y": y, "batch_size": BATCH}, ValueError, message, classifier)


def test_free_resumes_with_a_larger_batch_size(xy, tmp_path):
    x, y = xy
    write_checkpoint("free", make_classifier(), tmp_path, x, y)  # buffer of 32 rows
    history = trainer("free", make_classifier(), checkpoint_dir=tmp_path, resume=True).fit(x, y, batch_size=N,
                                                                                           nb_epochs=4)  # fmt: skip
    assert len(history) == 2 and np.isfinite(history[-1]["loss"])


NETWORK_CASES = {
    "5 outputs for nb_classes=10": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 5)),
                                    "must return nb_classes=10 logits per sample, got \\(1, 5\\)"),
    "float64 parameters": (lambda: tiny_network().double(), "cannot take the data .*torch.float64"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(NETWORK_CASES))
@pytest.mark.parametrize("method", list(TRAINERS))
def test_a_network_that_cannot_take_the_data_is_refused_before_training(method, case, xy):
    x, y = xy
    make_network, message = NETWORK_CASES[case]
    classifier = make_classifier(make_network())
    refused(lambda: trainer(method, classifier), {"x": x, "y": y}, ValueError, message, classifier)


INTEGER_CASES = {
    "seed 2**64": ({"seed": 2**64}, {}, "seed must be an integer <= "),
    "batch_size 2**70": ({}, {"batch_size": 2**70}, "batch_size must be an integer <= "),
    "nb_epochs 2**70": ({}, {"nb_epochs": 2**70}, "nb_epochs must be an integer <= "),
    "validation_size 2**64": ({"validation_size": 2**64}, {}, "validation_size must be an integer <= "),
}


@pytest.mark.parametrize("case", list(INTEGER_CASES))
@pytest.mark.parametrize("method", ["natural", "fast", "free", "l2l"])
def test_integers_torch_would_overflow_on_are_refused(method, case, xy):
    x, y = xy
    options, fit_arguments, message = INTEGER_CASES[case]
    classifier = make_classifier()
    before = state_of(classifier)
    with pytest.raises(ValueError, match=message):
        trainer(method, classifier, **options).fit(x, y, **fit_arguments)
    assert_same_state(before, classifier)


def test_a_scheduler_that_runs_out_of_steps_is_refused_before_training(xy):
    x, y = xy
    classifier = make_classifier()
    schedule = torch.optim.lr_scheduler.OneCycleLR(classifier.optimizer, max_lr=0.01, total_steps=3)
    before = state_of(classifier)
    with pytest.raises(ValueError, match="total_steps=3, fewer than the 4 steps this fit takes"):
        AdversarialTrainerFast(classifier, eps=EPS, lr_schedule=schedule).fit(x, y, batch_size=BATCH, nb_epochs=2)
    assert_same_state(before, classifier)


# ------------------------------------------------------------------ 3. quietly not what was asked: warned


def test_an_eps_warmup_longer_than_the_run_and_a_late_dat_switch_are_warned_about(xy, caplog):
    x, y = xy
    with caplog.at_level(logging.WARNING):
        AdversarialTrainerFast(make_classifier(), eps=EPS, eps_warmup_epochs=4).fit(x, y, batch_size=BATCH,
                                                                                   nb_epochs=2)  # fmt: skip
    assert "eps_warmup_epochs=4 is longer than the 2 epoch(s) it applies to: eps only reaches 0.1 of the eps=0.2" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        AdversarialTrainerDAT(make_classifier(), eps=EPS, inner="fast", switch_epoch=3).fit(x, y, nb_epochs=2)
    assert "switch_epoch=3 switches after epoch 3, at or after the last of the 2 epochs" in caplog.text


# ------------------------------------------------------------------ 4. attacks

ATTACKS = {
    "GAAT": lambda model: GAAT(model, eps=EPS, alpha=EPS / 4, steps=3),
    "HMC": lambda model: HMC(model, eps=EPS, steps=2, repeats=2),
    "L2L": lambda model: L2L(model, RNNOptimizer(), eps=EPS, steps=2),
}


@pytest.fixture
def batch(digits):
    return torch.from_numpy(digits[2][:16]), torch.from_numpy(digits[3][:16])


@pytest.mark.parametrize("name", list(ATTACKS))
def test_torchattacks_normalisation_round_trip_is_accepted_and_a_refusal_leaves_the_attack_usable(name, batch):
    x, y = batch
    mean, std = [0.3], [0.7]
    network = nn.Sequential(Standardise(mean[0], std[0]), tiny_network())
    attack = ATTACKS[name](network)
    attack.set_normalization_used(mean, std)
    adversarial = attack(attack.normalize(x), y)  # torchattacks inverts it inside __call__: a few ulps outside [0, 1]
    inputs = attack.inverse_normalize(adversarial)
    assert float((inputs - x).abs().max()) <= EPS + 1e-5 and -1e-5 <= float(inputs.min()) <= float(inputs.max()) <= 1
    with pytest.raises(ValueError, match=r"images must lie in the range \[0, 1\]"):
        attack(attack.normalize(x + 2.0), y)
    assert attack._normalization_applied and network.training  # what torchattacks set on the way in is back
    assert attack(attack.normalize(x), y).shape == x.shape  # still usable


@pytest.mark.parametrize("name", list(ATTACKS))
def test_an_empty_batch_comes_back_empty(name, batch):
    x, y = batch
    empty = ATTACKS[name](tiny_network())(x[:0], y[:0])
    assert empty.shape == (0, 1, 8, 8)


def test_gaat_with_zero_steps_is_refused_like_its_trainer():
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        GAAT(tiny_network(), steps=0)


def test_l2l_attacks_a_float64_model(batch):
    x, y = batch
    adversarial = L2L(tiny_network().double(), RNNOptimizer(), eps=EPS, steps=2)(x.double(), y)
    assert adversarial.dtype == torch.float64 and float((adversarial - x.double()).abs().max()) <= EPS + 1e-9


@pytest.mark.parametrize("method", ["pgd", "dat"])
def test_a_targeted_torchattacks_attack_is_refused_as_inner_maximizer(method):
    classifier = make_classifier()
    attack = torchattacks.PGD(classifier.model, eps=EPS)
    attack.set_mode_targeted_random()
    option = {"attack": attack} if method == "pgd" else {"inner": attack}
    with pytest.raises(ValueError, match="attack must be untargeted"):
        TRAINERS[method](classifier, eps=EPS, **option)


@pytest.mark.parametrize("warmup", [1.0, "auto"])
@pytest.mark.parametrize("method", ["pgd", "dat"])
def test_an_eps_warm_up_is_refused_with_a_torchattacks_attack_whose_eps_is_fixed(method, warmup):
    classifier = make_classifier()
    attack = torchattacks.PGD(classifier.model, eps=EPS)
    option = {"attack": attack} if method == "pgd" else {"inner": attack}
    with pytest.raises(ValueError, match="eps_warmup_epochs must be 0 with an external attack"):
        TRAINERS[method](classifier, eps=EPS, eps_warmup_epochs=warmup, **option)
    TRAINERS[method](classifier, eps=EPS, eps_warmup_epochs=0, **option)  # no ramp: accepted


# ------------------------------------------------------------------ 5. ART's conventions


@pytest.mark.parametrize("method", ["fast", "l2l"])
def test_predict_and_fit_generator_with_validation_data(method, xy, digits):
    x, y = xy
    classifier = make_classifier()
    fitting = trainer(method, classifier)
    generator = NumpyDataGenerator(x, y, batch_size=BATCH, shuffle=False)
    history = fitting.fit_generator(generator, nb_epochs=1, validation_data=(digits[2], digits[3]))
    assert {"val_accuracy", "val_pgd_accuracy"} <= set(history[0])
    np.testing.assert_array_equal(fitting.predict(digits[2]), classifier.predict(digits[2]))
    with pytest.raises(TypeError, match="fit_generator got unexpected keyword arguments: epochs"):
        fitting.fit_generator(generator, epochs=1)
    with pytest.raises(ValueError, match="validation_data of fit_generator must be a tuple"):
        fitting.fit_generator(generator, validation_data=digits[2])


def test_l2l_trainer_refuses_another_hidden_size_state_but_trains_its_own(xy, tmp_path):
    x, y = xy
    write_checkpoint("l2l", make_classifier(), tmp_path, x, y)
    resumed = AdversarialTrainerL2L(make_classifier(), eps=EPS, steps=2, seed=1, checkpoint_dir=tmp_path, resume=True)
    assert len(resumed.fit(x, y, batch_size=BATCH, nb_epochs=3)) == 3


# ------------------------------------------------------------------ 6. the command line

CLI_CASES = {
    "train --out names a file": (["train", "--method", "fast", "--out", "{file}"], "--out"),
    "train --n-eval -5": (["train", "--method", "fast", "--n-eval", "-5", "--out", "{dir}"], "--n-eval"),
    "train --n-eval 0": (["train", "--method", "fast", "--n-eval", "0", "--out", "{dir}"], "--n-eval"),
    "train --epochs 2**70": (["train", "--method", "fast", "--epochs", str(2**70), "--out", "{dir}"], "--epochs"),
    "train --batch-size 0": (["train", "--method", "fast", "--batch-size", "0", "--out", "{dir}"], "--batch-size"),
    "train --lr 0": (["train", "--method", "fast", "--lr", "0", "--out", "{dir}"], "--lr"),
    "train --lr nan": (["train", "--method", "fast", "--lr", "nan", "--out", "{dir}"], "--lr"),
    "train --seed -1": (["train", "--method", "fast", "--seed", "-1", "--out", "{dir}"], "--seed"),
    "train --eps 2": (["train", "--method", "fast", "--eps", "2", "--out", "{dir}"], "--eps"),
    "train --option without =": (["train", "--method", "fast", "--option", "alpha", "--out", "{dir}"], "--option"),
    "train --option unknown": (["train", "--method", "fast", "--option", "nope=1", "--out", "{dir}"], "nope"),
    "evaluate --checkpoint missing": (["evaluate", "--checkpoint", "{dir}/missing.pt"], "--checkpoint"),
    "evaluate --out names a file": (["evaluate", "--checkpoint", "{file}", "--out", "{file}"], "--out"),
    "bench --out names a file": (["bench", "--methods", "natural", "--out", "{file}"], "--out"),
    "bench --eps": (["bench", "--methods", "natural", "--eps", "0.1", "--out", "{dir}"], "--eps"),
    "bench --n-eval 0": (["bench", "--methods", "natural", "--n-eval", "0", "--out", "{dir}"], "--n-eval"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_every_cli_usage_error_exits_2_with_one_line_before_training(case, tmp_path, capsys):
    from art_fastat.cli import main

    arguments, option = CLI_CASES[case]
    a_file = tmp_path / "a-file"
    a_file.write_text("kept")
    with pytest.raises(SystemExit) as raised:
        main([argument.format(file=a_file, dir=tmp_path / "run") for argument in arguments])
    assert raised.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and option in error[0] and "Traceback" not in error[0], error
    assert a_file.read_text() == "kept" and not (tmp_path / "run" / "model.pt").exists()
    assert not (tmp_path / "run" / "checkpoint" / "checkpoint.pt").exists()  # refused before any epoch


def test_a_diverging_cli_run_exits_1_with_its_one_line_message(tmp_path, capsys):
    from art_fastat.cli import main

    with pytest.raises(SystemExit) as raised:
        main(["train", "--method", "fast", "--epochs", "2", "--lr", "1e9", "--attacks", "pgd", "--n-eval", "20",
              "--quiet", "--out", str(tmp_path / "run")])  # fmt: skip
    assert raised.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "the training loss became non-finite in epoch 1" in error[0]


def test_attacks_take_int32_labels_and_refuse_negative_ones(batch):
    x, y = batch
    attack = GAAT(tiny_network(), eps=EPS, alpha=EPS / 4, steps=2)
    torch.manual_seed(0)
    as_int32 = attack(x, y.int())
    torch.manual_seed(0)
    torch.testing.assert_close(as_int32, attack(x, y), rtol=0, atol=0)
    with pytest.raises(ValueError, match="labels must be class indices >= 0"):
        attack(x, y - 20)


def test_checkpoint_overwrite_and_a_resume_into_another_plan_are_warned_about(xy, tmp_path, caplog):
    x, y = xy
    write_checkpoint("fast", make_classifier(), tmp_path, x, y)
    with caplog.at_level(logging.WARNING):
        trainer("fast", make_classifier(), checkpoint_dir=tmp_path, resume=True).fit(x, y, batch_size=BATCH,
                                                                                    nb_epochs=3)  # fmt: skip
    assert "was written for a run of {'nb_epochs': 2, 'steps_per_epoch': 2}; this fit plans {'nb_epochs': 3" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        trainer("fast", make_classifier(), checkpoint_dir=tmp_path).fit(x, y, batch_size=BATCH, nb_epochs=1)
    assert "holds a checkpoint and resume=False: this fit starts over and overwrites it" in caplog.text
