"""
Reliability: a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one (every method), a
checkpoint is verified before it is unpickled and never runs code, a non-finite loss restores the last good weights,
and the catastrophic-overfitting guard and early stopping do what they report.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_classifier, same_weights, weights

from art_fastat.engine.checkpoints import DIGEST_HEADER, read_checkpoint
from art_fastat.trainers import (
    TRAINERS,
    AdversarialTrainerATLAS,
    AdversarialTrainerFast,
    AdversarialTrainerFree,
    AdversarialTrainerGAAT,
    AdversarialTrainerPGD,
)
from art_fastat.trainers import base as base_module

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from kill_resume import BATCH, METHODS, N, kill_and_resume  # noqa: E402  (the matrix this test samples)


@pytest.fixture(scope="module")
def arrays(digits):
    return digits[0][:N], digits[1][:N]


@pytest.mark.parametrize("method", METHODS)
def test_killed_mid_epoch_and_resumed_is_bit_identical(method, tmp_path):
    kill_at = N // BATCH + 1  # the second minibatch of the second pass over the data
    identical, resumed_from, _ = kill_and_resume(method, kill_at, "batch", tmp_path)
    assert resumed_from == 1 and identical


@pytest.mark.parametrize("method", ["pgd", "free", "l2l"])
def test_killed_while_writing_a_checkpoint_resumes_from_the_previous_one(method, tmp_path):
    identical, resumed_from, partial_write = kill_and_resume(method, 2, "checkpoint", tmp_path)
    assert partial_write and resumed_from == 1 and identical  # the half-finished write is left aside, never read


def test_damaged_foreign_and_malicious_checkpoints_are_refused_before_any_state_changes(arrays, tmp_path, capsys):
    x, y = arrays
    AdversarialTrainerFast(make_classifier(), eps=0.2, checkpoint_dir=tmp_path).fit(x, y, nb_epochs=1)
    path = tmp_path / "checkpoint.pt"
    good = path.read_bytes()
    assert good.startswith(DIGEST_HEADER)

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    malicious = pickle.dumps({"format": Payload()})
    cases = {
        "damaged or incomplete": good[:-100],  # truncated
        "damaged or incomplete ": good[:-1] + bytes([good[-1] ^ 1]),  # one bit flipped
        "not an art_fastat checkpoint": b"PK\x03\x04 a zip file of somebody else",
        "unreadable or unsafe": DIGEST_HEADER + hashlib.sha256(malicious).hexdigest().encode() + b"\n" + malicious,
    }
    for message, content in cases.items():
        path.write_bytes(content)
        classifier = make_classifier()
        before = weights(classifier)
        trainer = AdversarialTrainerFast(classifier, eps=0.2, checkpoint_dir=tmp_path, resume=True)
        with pytest.raises(ValueError, match=message.strip()):
            trainer.fit(x, y, nb_epochs=2)
        assert same_weights(before, weights(classifier))
    assert "this must never run" not in capsys.readouterr().out


def test_non_finite_loss_restores_the_weights_of_the_last_good_epoch(arrays):
    x, y = arrays
    one_epoch = make_classifier()
    AdversarialTrainerPGD(one_epoch, eps=0.2, steps=2, seed=1).fit(x, y, batch_size=BATCH, nb_epochs=1)
    classifier = make_classifier()
    trainer = AdversarialTrainerPGD(classifier, eps=0.2, steps=2, seed=1)
    batches, train_batch = [0], trainer._train_batch

    def poisoned(*arguments):
        batches[0] += 1
        if batches[0] == N // BATCH + 2:  # epoch 2: a weight becomes NaN
            with torch.no_grad():
                next(classifier.model.parameters()).view(-1)[0] = float("nan")
        return train_batch(*arguments)

    trainer._train_batch = poisoned
    with pytest.raises(FloatingPointError, match="non-finite in epoch 2; the weights .* end of epoch 1 were restored"):
        trainer.fit(x, y, batch_size=BATCH, nb_epochs=3)
    assert same_weights(weights(one_epoch), weights(classifier))


def scripted_validation(monkeypatch, accuracies: list[float | tuple[float, float]]) -> None:
    """Each check returns the next PGD accuracy (clean accuracy 1), or the next ``(clean, PGD)`` pair."""
    remaining = [value if isinstance(value, tuple) else (1.0, value) for value in accuracies]

    def metrics(*_: object) -> dict[str, float]:
        clean, robust = remaining.pop(0)
        return {"val_accuracy": clean, "val_pgd_accuracy": robust, "val_seconds": 0.0}

    monkeypatch.setattr(base_module, "validation_metrics", metrics)


def test_overfitting_guard_restores_the_previous_epoch_and_stops(arrays, monkeypatch, caplog):
    x, y = arrays
    two_epochs = make_classifier()
    AdversarialTrainerFast(two_epochs, eps=0.2, seed=4).fit(x, y, batch_size=BATCH, nb_epochs=2)
    scripted_validation(monkeypatch, [0.50, 0.55, 0.10, 0.60])  # epoch 3 loses 0.45 of PGD accuracy
    classifier = make_classifier()
    trainer = AdversarialTrainerFast(classifier, eps=0.2, seed=4, overfitting_guard=0.2)
    with caplog.at_level(logging.WARNING, logger="art_fastat"):
        history = trainer.fit(x, y, batch_size=BATCH, nb_epochs=4)
    assert [r["epoch"] for r in history] == [1, 2, 3] and history[-1]["overfitting_stop"] == 1.0
    assert [r["guard_pgd_accuracy"] for r in history] == [0.50, 0.55, 0.10]
    assert trainer.stop_reason == "catastrophic_overfitting" and "catastrophic overfitting in epoch 3" in caplog.text
    assert same_weights(weights(two_epochs), weights(classifier))


def test_overfitting_guard_does_not_stop_a_healthy_run(arrays, monkeypatch):
    x, y = arrays
    scripted_validation(monkeypatch, [0.50, 0.40, 0.45])  # a drop of 0.10 is under the 0.2 threshold
    trainer = AdversarialTrainerFast(make_classifier(), eps=0.2, overfitting_guard=0.2)
    assert len(trainer.fit(x, y, batch_size=BATCH, nb_epochs=3)) == 3 and trainer.stop_reason is None


def test_overfitting_guard_is_on_by_default_for_single_step_methods_only(arrays):
    expected = {"fast": 0.2, "nfgsm": 0.2, "gradalign": 0.2, "gaat": 0.2, "dat+gaat": 0.2, "atlas": 0.2}  # others: off
    for name, factory in TRAINERS.items():
        assert factory(make_classifier(), eps=0.2).overfitting_threshold == expected.get(name), name
    assert AdversarialTrainerPGD(make_classifier(), eps=0.2, steps=1).overfitting_threshold == 0.2
    assert AdversarialTrainerATLAS(make_classifier(), eps=0.2, adversary="pgd").overfitting_threshold is None
    assert AdversarialTrainerPGD(make_classifier(), eps=0.2, overfitting_guard=0.3).overfitting_threshold == 0.3
    assert AdversarialTrainerGAAT(make_classifier(), eps=0.2, overfitting_guard=None).overfitting_threshold is None


def test_default_guard_restores_the_best_epoch_of_a_gradual_collapse_and_says_so(arrays, monkeypatch, caplog):
    x, y = arrays
    two_epochs = make_classifier()
    # no eps warm-up: GAAT's "auto" one follows each fit's plan, and the two runs must train alike up to epoch 2
    AdversarialTrainerGAAT(two_epochs, eps=0.2, seed=4, eps_warmup_epochs=0).fit(x, y, batch_size=BATCH, nb_epochs=2)
    # never 0.2 below the previous epoch, but epoch 4 is 0.25 below the best (epoch 2): the old rule missed it
    scripted_validation(monkeypatch, [0.30, 0.50, 0.40, 0.25, 0.60])
    classifier = make_classifier()
    trainer = AdversarialTrainerGAAT(classifier, eps=0.2, seed=4, eps_warmup_epochs=0)
    with caplog.at_level(logging.WARNING, logger="art_fastat"):
        history = trainer.fit(x, y, batch_size=BATCH, nb_epochs=5)
    assert [r["guard_pgd_accuracy"] for r in history] == [0.30, 0.50, 0.40, 0.25]
    assert history[-1]["overfitting_stop"] == 1.0 and history[-1]["restored_epoch"] == 2
    assert trainer.stop_reason == "catastrophic_overfitting" and trainer.best_epoch == 2
    assert same_weights(weights(two_epochs), weights(classifier))
    assert "catastrophic overfitting in epoch 4" in caplog.text and "overfitting_guard='auto'" in caplog.text
    assert "the weights of epoch 2 were restored" in caplog.text


def test_an_epoch_that_learned_nothing_is_never_the_guards_best_and_a_run_of_them_warns(arrays, monkeypatch, caplog):
    x, y = arrays
    scripted_validation(monkeypatch, [(0.05, 0.5), (0.05, 0.1)])
    with caplog.at_level(logging.WARNING, logger="art_fastat"):
        AdversarialTrainerGAAT(make_classifier(), eps=0.2).fit(x, y, batch_size=BATCH, nb_epochs=2)
    assert "in 2 epoch(s) the clean accuracy on the set the overfitting guard watches never rose" in caplog.text
    caplog.clear()
    # epoch 1 predicts one class (clean accuracy 0.05, under the check set's largest label share): its 0.5 "robust"
    # accuracy is that class's samples, and the model learning real features after it is no collapse
    scripted_validation(monkeypatch, [(0.05, 0.5), (0.8, 0.1), (0.9, 0.2)])
    trainer = AdversarialTrainerGAAT(make_classifier(), eps=0.2)
    with caplog.at_level(logging.WARNING, logger="art_fastat"):
        history = trainer.fit(x, y, batch_size=BATCH, nb_epochs=3)
    assert len(history) == 3 and trainer.stop_reason is None and "learned nothing" not in caplog.text


def test_a_run_that_learned_and_then_predicts_one_class_is_a_collapse_the_guard_undoes(arrays, monkeypatch, caplog):
    # GradAlign on P1, seed 1: clean 0.94 in epoch 3, one class from epoch 4 on (its PGD accuracy, that class's share,
    # never fell 0.2 below the best): handed back as a constant prediction before the guard knew a collapse
    x, y = arrays
    three_epochs = make_classifier()
    options = {"eps": 0.2, "seed": 4, "eps_warmup_epochs": 0}
    AdversarialTrainerGAAT(three_epochs, **options).fit(x, y, batch_size=BATCH, nb_epochs=3)
    scripted_validation(monkeypatch, [(0.84, 0.0), (0.93, 0.01), (0.94, 0.12), (0.05, 0.10), (0.05, 0.13)])
    classifier = make_classifier()
    trainer = AdversarialTrainerGAAT(classifier, **options)
    with caplog.at_level(logging.WARNING, logger="art_fastat"):
        history = trainer.fit(x, y, batch_size=BATCH, nb_epochs=5)
    assert len(history) == 4 and history[-1]["restored_epoch"] == 3 and history[-1]["overfitting_stop"] == 1.0
    assert trainer.stop_reason == "collapse" and trainer.best_epoch == 3
    assert same_weights(weights(three_epochs), weights(classifier))
    assert "collapse in epoch 4: clean accuracy 0.0500 on the watched set" in caplog.text
    assert "the weights of epoch 3 (PGD accuracy 0.1200) were restored" in caplog.text


def test_overfitting_guard_off_for_multi_step_defaults_and_when_disabled(arrays, monkeypatch):
    x, y = arrays
    accuracies = [0.9, 0.1, 0.1]
    scripted_validation(monkeypatch, accuracies)  # a collapse, if anything looked
    for trainer in (AdversarialTrainerPGD(make_classifier(), eps=0.2, steps=2),
                    AdversarialTrainerGAAT(make_classifier(), eps=0.2, overfitting_guard=None)):  # fmt: skip
        history = trainer.fit(x, y, batch_size=BATCH, nb_epochs=3)
        assert len(history) == 3 and trainer.stop_reason is None and trainer.best_epoch is None
        assert not any("guard_pgd_accuracy" in record for record in history)
    assert len(accuracies) == 3  # no check ran


def test_resumed_run_keeps_the_guards_best_epoch(arrays, monkeypatch, tmp_path):
    x, y = arrays
    one_epoch = make_classifier()
    options = {"eps": 0.2, "seed": 4, "eps_warmup_epochs": 0}  # GAAT's "auto" warm-up would follow each fit's plan
    AdversarialTrainerGAAT(one_epoch, **options).fit(x, y, batch_size=BATCH, nb_epochs=1)
    scripted_validation(monkeypatch, [0.50, 0.45])
    AdversarialTrainerGAAT(make_classifier(), checkpoint_dir=tmp_path, **options).fit(x, y, batch_size=BATCH,
                                                                                     nb_epochs=2)  # fmt: skip
    scripted_validation(monkeypatch, [0.29, 0.9])  # 0.21 below epoch 1's 0.50, which only the checkpoint remembers
    classifier = make_classifier()
    trainer = AdversarialTrainerGAAT(classifier, checkpoint_dir=tmp_path, resume=True, **options)
    history = trainer.fit(x, y, batch_size=BATCH, nb_epochs=4)
    assert [r["epoch"] for r in history] == [1, 2, 3] and history[-1]["restored_epoch"] == 1
    assert trainer.stop_reason == "catastrophic_overfitting" and same_weights(weights(one_epoch), weights(classifier))


def test_default_guard_warns_when_fit_generator_gives_it_nothing_to_watch(arrays, caplog):
    from art.data_generators import NumpyDataGenerator

    x, y = arrays
    generator = NumpyDataGenerator(x, y, batch_size=BATCH)
    with caplog.at_level(logging.WARNING, logger="art_fastat"):
        history = AdversarialTrainerFast(make_classifier(), eps=0.2).fit_generator(generator, nb_epochs=1)
    assert "has nothing to watch in fit_generator without validation_data" in caplog.text
    assert "guard_pgd_accuracy" not in history[0]


@pytest.mark.parametrize(("patience", "epochs_run"), [(None, 4), (1, 3)])
def test_early_stopping_keeps_the_best_validation_epoch(patience, epochs_run, arrays, monkeypatch):
    x, y = arrays
    x_val, y_val = x[:32], y[:32]
    two_epochs = make_classifier()
    AdversarialTrainerFast(two_epochs, eps=0.2, seed=5).fit(x, y, batch_size=BATCH, nb_epochs=2)
    scripted_validation(monkeypatch, [0.5, 0.8, 0.6, 0.7])
    classifier = make_classifier()
    trainer = AdversarialTrainerFast(classifier, eps=0.2, seed=5, early_stopping=True,
                                     early_stopping_patience=patience, overfitting_guard=None)  # fmt: skip
    history = trainer.fit(x, y, validation_data=(x_val, y_val), batch_size=BATCH, nb_epochs=4)
    assert len(history) == epochs_run and [r["best_epoch"] for r in history] == [1, 2, 2, 2][:epochs_run]
    assert trainer.best_epoch == 2 and same_weights(weights(two_epochs), weights(classifier))
    assert trainer.stop_reason == (None if patience is None else "early_stopping")


def test_guards_refuse_bad_settings_before_training(arrays):
    x, y = arrays
    classifier = make_classifier()
    before = weights(classifier)
    with pytest.raises(ValueError, match="overfitting_guard must be a fraction"):
        AdversarialTrainerFast(classifier, eps=0.2, overfitting_guard=1.5)
    with pytest.raises(ValueError, match="overfitting_guard must be a fraction in \\(0, 1\\), 'auto' or None"):
        AdversarialTrainerFast(classifier, eps=0.2, overfitting_guard="off")
    with pytest.raises(ValueError, match="early_stopping=True needs validation_data"):
        AdversarialTrainerFast(classifier, eps=0.2, early_stopping=True).fit(x, y, nb_epochs=1)
    with pytest.raises(ValueError, match="need eps > 0"):
        TRAINERS["natural"](classifier, early_stopping=True)
    assert same_weights(before, weights(classifier))


def test_checkpoint_holds_frees_persistent_perturbation(arrays, tmp_path):
    x, y = arrays
    trainer = AdversarialTrainerFree(make_classifier(), eps=0.2, replays=2, checkpoint_dir=tmp_path)
    trainer.fit(x, y, batch_size=BATCH, nb_epochs=2)
    state = read_checkpoint(tmp_path / "checkpoint.pt")
    assert torch.equal(state["method_state"]["delta"], trainer.delta) and trainer.delta.abs().max() > 0
