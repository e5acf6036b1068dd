"""Per-epoch callbacks of ``fit`` / ``fit_generator`` and the TensorBoard logger."""

from __future__ import annotations

import sys

import pytest
import torch
from art.data_generators import NumpyDataGenerator
from conftest import make_classifier

from art_fastat import AdversarialTrainerFast, NaturalTrainer, TensorBoardLogger
from art_fastat.cli import main


class Recorder:
    """A callback that keeps what it was called with and asks to stop at ``stop_at``."""

    def __init__(self, stop_at: int | None = None, answer: object = True) -> None:
        self.calls: list[tuple[object, dict]] = []
        self.stop_at, self.answer = stop_at, answer

    def __call__(self, trainer, record):
        self.calls.append((trainer, record))
        return self.answer if record["epoch"] == self.stop_at else None


def test_callbacks_get_every_epoch_s_complete_record(train_subset, digits):
    x, y = train_subset
    recorder = Recorder()
    trainer = AdversarialTrainerFast(make_classifier(), eps=0.2, validation_size=32, validation_pgd_steps=2)
    history = trainer.fit(x, y, validation_data=digits[2:], batch_size=64, nb_epochs=2, callbacks=recorder)
    assert [record["epoch"] for _, record in recorder.calls] == [1, 2]
    assert all(caller is trainer for caller, _ in recorder.calls)
    assert [record for _, record in recorder.calls] == history
    assert all("val_pgd_accuracy" in record and "loss" in record for _, record in recorder.calls)
    assert trainer.stop_reason is None


def test_a_callback_returning_true_stops_training_after_that_epoch(train_subset):
    x, y = train_subset
    stopper, watcher = Recorder(stop_at=2), Recorder()
    classifier = make_classifier()
    trainer = NaturalTrainer(classifier)
    history = trainer.fit(x, y, batch_size=64, nb_epochs=5, callbacks=[stopper, watcher])
    assert len(history) == 2 and trainer.stop_reason == "callback" and history[-1]["callback_stop"] == 1.0
    assert len(watcher.calls) == 2  # every callback sees the last epoch too
    weights = [p.detach().clone() for p in classifier.model.parameters()]
    again = trainer.fit(x, y, batch_size=64, nb_epochs=2)  # the stop belonged to the previous fit
    assert len(again) == 2 and trainer.stop_reason is None
    assert any(not torch.equal(a, b) for a, b in zip(weights, classifier.model.parameters(), strict=True))


@pytest.mark.parametrize("answer", [1, "stop", [True], False])
def test_only_true_stops(train_subset, answer):
    x, y = train_subset
    history = NaturalTrainer(make_classifier()).fit(x, y, batch_size=128, nb_epochs=2,
                                                    callbacks=Recorder(stop_at=1, answer=answer))  # fmt: skip
    assert len(history) == 2


def test_fit_generator_calls_the_callbacks(train_subset):
    x, y = train_subset
    recorder = Recorder(stop_at=1)
    trainer = NaturalTrainer(make_classifier())
    history = trainer.fit_generator(NumpyDataGenerator(x, y, batch_size=64), nb_epochs=3, callbacks=(recorder,))
    assert len(recorder.calls) == len(history) == 1 and trainer.stop_reason == "callback"


def test_a_callback_stop_is_kept_by_the_checkpoint(train_subset, tmp_path):
    x, y = train_subset
    NaturalTrainer(make_classifier(), checkpoint_dir=tmp_path).fit(x, y, batch_size=128, nb_epochs=4,
                                                                  callbacks=Recorder(stop_at=2))  # fmt: skip
    trainer = NaturalTrainer(make_classifier(), checkpoint_dir=tmp_path, resume=True)
    history = trainer.fit(x, y, batch_size=128, nb_epochs=4)
    assert len(history) == 2 and trainer.stop_reason == "callback"


@pytest.mark.parametrize("callbacks", [3, "print", [print, 3]])
def test_bad_callbacks_are_refused_before_training(train_subset, callbacks):
    x, y = train_subset
    classifier = make_classifier()
    before = [p.detach().clone() for p in classifier.model.parameters()]
    with pytest.raises(TypeError, match="callbacks of fit must be"):
        NaturalTrainer(classifier).fit(x, y, nb_epochs=1, callbacks=callbacks)
    assert all(torch.equal(a, b) for a, b in zip(before, classifier.model.parameters(), strict=True))


def test_tensorboard_logger_writes_each_epoch_s_numbers(train_subset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = train_subset
    trainer = NaturalTrainer(make_classifier())
    with TensorBoardLogger(tmp_path / "tb") as logger:
        history = trainer.fit(x, y, batch_size=64, nb_epochs=3, callbacks=[logger])
        events = EventAccumulator(str(tmp_path / "tb"))
        events.Reload()  # flushed every epoch: readable while the logger is still open
    assert set(events.Tags()["scalars"]) == set(history[0]) - {"epoch"} == {"loss", "accuracy", "seconds", "lr", "eps"}
    for key in ("loss", "accuracy", "lr"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [1, 2, 3]
        assert [s.value for s in scalars] == pytest.approx([record[key] for record in history], rel=1e-6)


def test_without_tensorboard_the_logger_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorBoardLogger(tmp_path / "tb")
    with pytest.raises(SystemExit, match="2"):
        main(["train", "--method", "fast", "--protocol", "digits", "--epochs", "1", "--tensorboard",
              str(tmp_path / "tb"), "--out", str(tmp_path / "run")])  # fmt: skip
    error = capsys.readouterr().err
    assert "--tensorboard" in error and "pip install tensorboard" in error
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()


def stop_on_rank_one(trainer, record):
    return trainer.rank == 1 and record["epoch"] == 1


def distributed_worker(rank: int, init_file: str, out: str) -> None:
    import json

    import torch.distributed as dist

    from art_fastat.protocols import get_protocol

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        x, y, _, _ = get_protocol("digits").load()
        trainer = NaturalTrainer(make_classifier())
        with TensorBoardLogger(f"{out}/tb{rank}") as logger:
            history = trainer.fit(x[:128], y[:128], batch_size=32, nb_epochs=3, callbacks=[logger, stop_on_rank_one])
        with open(f"{out}/rank{rank}.json", "w") as handle:
            json.dump({"epochs": len(history), "stop_reason": trainer.stop_reason}, handle)
    finally:
        dist.destroy_process_group()


def test_under_torch_distributed_a_stop_on_one_rank_stops_all_and_rank_0_logs(tmp_path):
    import json

    import torch.multiprocessing as mp

    mp.spawn(distributed_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert ranks == [{"epochs": 1, "stop_reason": "callback"}] * 2
    assert any((tmp_path / "tb0").iterdir()) and not (tmp_path / "tb1").exists()
