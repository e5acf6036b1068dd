"""
The GPU options of the engine, checked on CPU: channels_last and compile train like the default eager run,
checkpoints load across them, bad values are refused first, and checkpoints carry the CUDA random states.
"""

from __future__ import annotations

import logging

import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from conftest import make_classifier, same_weights, weights
from torch import nn

from art_fastat.engine import checkpoints
from art_fastat.trainers import AdversarialTrainerFast, AdversarialTrainerPGD

# Four Fast or PGD-2 updates: few enough that no sign of an input gradient flips between two float roundings of the
# same step (one flip moves a pixel by alpha and the weights by ~1e-3), so the runs agree to float rounding.
N_BATCHES, BATCH = 4, 32


def rgb_classifier(batch_norm: bool = False) -> PyTorchClassifier:
    """A 3-channel CNN on 8x8 images (with one channel, NCHW and NHWC are the same layout)."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, 2, 1), *([nn.BatchNorm2d(8)] if batch_norm else []), nn.ReLU(),
              nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)]  # fmt: skip
    network = nn.Sequential(*layers)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9)
    return PyTorchClassifier(network, nn.CrossEntropyLoss(), optimizer=optimizer, input_shape=(3, 8, 8),
                             nb_classes=10, clip_values=(0.0, 1.0))  # fmt: skip


@pytest.fixture(scope="module")
def rgb_data(digits):
    x, y, _, _ = digits
    return x[: N_BATCHES * BATCH].repeat(3, axis=1), y[: N_BATCHES * BATCH]


def state(classifier: PyTorchClassifier) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in classifier.model.state_dict().items()}


def assert_close_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert list(a) == list(b)
    for name in a:
        torch.testing.assert_close(a[name].float(), b[name].float(), atol=atol, rtol=0, msg=name)


def test_channels_last_trains_like_the_default_layout_with_channels_last_batches_and_weights(rgb_data):
    x, y = rgb_data
    validation = (x[:40], y[:40])
    options = dict(eps=0.1, steps=2, alpha=0.05, augmentation="crop_flip", validation_pgd_steps=2)
    default = rgb_classifier(batch_norm=True)
    history = AdversarialTrainerPGD(default, **options).fit(x, y, validation, batch_size=BATCH, nb_epochs=1)

    classifier = rgb_classifier(batch_norm=True)
    conv = classifier.model[0]
    seen = []
    conv.register_forward_pre_hook(lambda module, inputs: seen.append(
        (inputs[0].is_contiguous(memory_format=torch.channels_last), inputs[0].is_contiguous(),
         module.weight.is_contiguous(memory_format=torch.channels_last))))  # fmt: skip
    trainer = AdversarialTrainerPGD(classifier, channels_last=True, **options)
    assert conv.weight.is_contiguous()  # converted when fit starts, after its checks, not when the trainer is built
    channels_last_history = trainer.fit(x, y, validation, batch_size=BATCH, nb_epochs=1)

    # every pass (attack steps, update, validation) saw channels-last images and weights, and none a contiguous one
    assert len(seen) >= N_BATCHES * 3 and set(seen) == {(True, False, True)}
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert_close_states(state(classifier), state(default), atol=1e-5)
    for key in ("loss", "accuracy", "val_accuracy", "val_pgd_accuracy"):
        assert channels_last_history[0][key] == pytest.approx(history[0][key], abs=1e-5)
    assert len(classifier.predict(x[:5])) == 5  # ART's predict still works on the converted network


def compile_unavailable_reason() -> str | None:
    """Why torch.compile (inductor) cannot run on this machine, or None when it can."""
    try:
        torch.compile(lambda t: t * 2 + 1)(torch.ones(3))
    except Exception as error:  # e.g. no working C++ compiler for inductor's CPU kernels
        return f"torch.compile cannot run here: {type(error).__name__}: {error}"
    return None


def test_compile_trains_like_eager_and_keeps_the_network_uncompiled(rgb_data):
    x, y = rgb_data
    eager = rgb_classifier()
    eager_history = AdversarialTrainerFast(eager, eps=0.1).fit(x, y, batch_size=BATCH, nb_epochs=1)

    classifier = rgb_classifier()
    network = classifier.model
    trainer = AdversarialTrainerFast(classifier, eps=0.1, compile=True)
    try:
        history = trainer.fit(x, y, batch_size=BATCH, nb_epochs=1)
    except torch._dynamo.exc.BackendCompilerFailed:
        reason = compile_unavailable_reason()
        if reason is None:
            raise  # the machine can compile: the failure is the engine's
        pytest.skip(reason)

    assert isinstance(trainer.step.model, torch._dynamo.eval_frame.OptimizedModule)
    assert trainer.step.model._orig_mod is network and classifier.model is network
    assert not any(name.startswith("_orig_mod") for name in network.state_dict())
    assert_close_states(state(classifier), state(eager), atol=1e-4)
    assert history[0]["loss"] == pytest.approx(eager_history[0]["loss"], abs=1e-4)


def test_checkpoints_load_with_or_without_compile(rgb_data, tmp_path):
    # eager writes epoch 1, a compiled trainer resumes it and writes epoch 2, an eager one resumes that: the three
    # give the uninterrupted eager run. aot_eager traces like inductor (dynamo, AOT autograd) without generating
    # kernels: a fast stand-in here.
    x, y = rgb_data
    uninterrupted = rgb_classifier()
    AdversarialTrainerFast(uninterrupted, eps=0.1).fit(x, y, batch_size=BATCH, nb_epochs=3)
    for epochs, compiled in ((1, False), (2, {"backend": "aot_eager"}), (3, False)):
        classifier = rgb_classifier()
        trainer = AdversarialTrainerFast(classifier, eps=0.1, checkpoint_dir=tmp_path, resume=True, compile=compiled)
        history = trainer.fit(x, y, batch_size=BATCH, nb_epochs=epochs)
        assert [record["epoch"] for record in history] == list(range(1, epochs + 1))
        saved = checkpoints.read_checkpoint(tmp_path / checkpoints.FILE_NAME)
        assert saved["epoch"] == epochs and list(saved["model"]) == list(classifier.model.state_dict())  # no prefix
    assert_close_states(state(classifier), state(uninterrupted), atol=1e-5)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"channels_last": "yes"}, TypeError, "channels_last must be True or False"),
        ({"channels_last": 1}, TypeError, "channels_last must be True or False"),
        ({"compile": "max-autotune"}, TypeError, "compile must be True, False or a dict"),
        ({"compile": {"mode": "max-autotune", "fast": True}}, ValueError, "torch.compile does not take: fast"),
        ({"compile": {"model": None}}, ValueError, "torch.compile does not take: model"),
    ],
)
def test_bad_gpu_options_are_refused_before_any_change(options, error, message):
    classifier = rgb_classifier()
    before = state(classifier)
    with pytest.raises(error, match=message):
        AdversarialTrainerFast(classifier, eps=0.1, **options)
    assert_close_states(state(classifier), before, atol=0)
    assert all(tensor.is_contiguous() for tensor in classifier.model.state_dict().values())


def test_channels_last_needs_images_of_channels_height_width():
    network = nn.Sequential(nn.Linear(64, 10))
    classifier = PyTorchClassifier(network, nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(network.parameters()),
                                   input_shape=(64,), nb_classes=10, clip_values=(0.0, 1.0))  # fmt: skip
    before = weights(classifier)
    with pytest.raises(ValueError, match=r"channels_last=True needs images of input_shape \(channels, height, width\)"):
        AdversarialTrainerFast(classifier, eps=0.1, channels_last=True)
    assert same_weights(weights(classifier), before)
    AdversarialTrainerFast(classifier, eps=0.1, channels_last=False)  # the default is fine for any input


class FakeCuda:
    """torch.cuda's random-state functions on ``count`` devices that do not exist, recording what is restored."""

    def __init__(self, monkeypatch, count: int, initialised: bool = True) -> None:
        self.states = [torch.full((16,), device, dtype=torch.uint8) for device in range(count)]
        self.restored: dict[int, torch.Tensor] = {}
        self.captured = 0
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: initialised)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", self.get_rng_state_all)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_rng_state)

    def get_rng_state_all(self) -> list[torch.Tensor]:
        self.captured += 1
        return [s.clone() for s in self.states]

    def set_rng_state(self, new_state: torch.Tensor, device: int = 0) -> None:
        self.restored[device] = new_state.clone()


def test_checkpoint_captures_and_restores_every_devices_cuda_random_state(monkeypatch, train_subset, tmp_path):
    x, y = train_subset
    first, resumed = make_classifier(), make_classifier()  # on the CPU: built before CUDA "is available"
    cuda = FakeCuda(monkeypatch, count=2)
    AdversarialTrainerFast(first, eps=0.1, checkpoint_dir=tmp_path).fit(x, y, batch_size=64, nb_epochs=1)
    saved = checkpoints.read_checkpoint(tmp_path / checkpoints.FILE_NAME)["cuda_rng"]
    assert [s.tolist() for s in saved] == [[0] * 16, [1] * 16]

    cuda.states = [torch.full((16,), 9, dtype=torch.uint8)] * 2  # what the CUDA streams hold when the resume starts
    trainer = AdversarialTrainerFast(resumed, eps=0.1, checkpoint_dir=tmp_path, resume=True)
    trainer.fit(x, y, batch_size=64, nb_epochs=2)
    assert sorted(cuda.restored) == [0, 1]
    assert [cuda.restored[d].tolist() for d in (0, 1)] == [[0] * 16, [1] * 16]


def test_cuda_random_state_is_not_captured_before_cuda_is_initialised(monkeypatch):
    cuda = FakeCuda(monkeypatch, count=2, initialised=False)
    assert checkpoints.cuda_rng_states() == []
    assert cuda.captured == 0  # capturing would initialise CUDA in a run that does not use it
    checkpoints.restore_cuda_rng_states([])
    assert cuda.restored == {}


@pytest.mark.parametrize(("saved", "present", "restored"), [(3, 2, [0, 1]), (1, 2, [0])])
def test_cuda_random_states_of_another_device_count_are_restored_where_both_have_a_device(
    saved, present, restored, monkeypatch, caplog
):
    cuda = FakeCuda(monkeypatch, count=present)
    states = [torch.full((16,), 10 + device, dtype=torch.uint8) for device in range(saved)]
    with caplog.at_level(logging.WARNING, logger="art_fastat.engine.checkpoints"):
        checkpoints.restore_cuda_rng_states(states)
    assert sorted(cuda.restored) == restored
    assert all(cuda.restored[d].tolist() == [10 + d] * 16 for d in restored)
    assert f"CUDA random states of {saved} device(s), this process sees {present}" in caplog.text


def test_cuda_random_states_are_skipped_without_cuda(monkeypatch, caplog):
    cuda = FakeCuda(monkeypatch, count=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="art_fastat.engine.checkpoints"):
        checkpoints.restore_cuda_rng_states([torch.zeros(16, dtype=torch.uint8)])
    assert cuda.restored == {}
    assert "CUDA is not available here" in caplog.text
