"""On-device augmentation (engine option ``augmentation``): CropFlip's crops and flips, and where the engine uses it."""

from __future__ import annotations

import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from conftest import make_classifier, same_weights, weights
from torch import nn

from art_fastat.engine.augmentation import CropFlip
from art_fastat.protocols import get_protocol
from art_fastat.trainers import AdversarialTrainerDAT, AdversarialTrainerFast

EPS = 0.2


@pytest.fixture(scope="module")
def xy(digits):
    return digits[0][:128], digits[1][:128]


def images(n: int = 64, shape: tuple[int, ...] = (3, 8, 8), seed: int = 0) -> torch.Tensor:
    """Distinct values in [0.25, 0.75]: no window of one image matches another window by chance, none is 0."""
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed)) * 0.5 + 0.25


def crop_and_flip_of(
    output: torch.Tensor, x: torch.Tensor, padding: int, samples: int | None = None
) -> list[tuple[int, int, bool]]:
    """The slow reference: per sample (the first ``samples``), the (row offset, column offset, flipped) whose window
    of the zero-padded input is the output sample; fails if there is none."""
    padded = nn.functional.pad(x, (padding,) * 4)
    height, width = x.shape[2:]
    found = []
    for index in range(len(x) if samples is None else samples):
        matches = [
            (row, column, flip)
            for row in range(2 * padding + 1)
            for column in range(2 * padding + 1)
            for flip in (False, True)
            if torch.equal(output[index], _window(padded[index], row, column, height, width, flip))
        ]
        assert matches, f"sample {index} is no crop (and flip) of its zero-padded input"
        found.append(matches[0])
    return found


def _window(image: torch.Tensor, row: int, column: int, height: int, width: int, flip: bool) -> torch.Tensor:
    window = image[:, row : row + height, column : column + width]
    return window.flip(-1) if flip else window


def test_crop_flip_keeps_shape_and_dtype_and_adds_only_padding_zeros():
    x = images()
    output = CropFlip()(x, torch.Generator().manual_seed(0))
    assert output.shape == x.shape and output.dtype == x.dtype and output.device == x.device
    inside = (output >= x.min()) & (output <= x.max())
    assert bool((inside | (output == 0)).all())
    assert bool((output == 0).any()), "a padding of 4 on 8x8 images shows zeros"
    assert torch.equal(x, images()), "the input is not modified"


def test_same_seed_same_output_other_seed_other_output():
    x = images()
    first, again = (CropFlip()(x, torch.Generator().manual_seed(1)) for _ in range(2))
    other = CropFlip()(x, torch.Generator().manual_seed(2))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("flip", [False, True])
def test_each_sample_is_a_shifted_window_of_the_zero_padded_input(flip):
    x, padding = images(32, (2, 6, 6)), 3
    output = CropFlip(padding, flip=flip)(x, torch.Generator().manual_seed(0))
    found = crop_and_flip_of(output, x, padding)
    assert all(0 <= row <= 2 * padding and 0 <= column <= 2 * padding for row, column, _ in found)
    assert flip or not any(flipped for _, _, flipped in found)


def test_without_padding_each_sample_is_the_input_or_its_horizontal_flip():
    x = images()
    output = CropFlip(padding=0)(x, torch.Generator().manual_seed(0))
    same = torch.tensor([torch.equal(o, i) for o, i in zip(output, x, strict=True)])
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(output, x, strict=True)])
    assert bool((same | flipped).all())
    assert bool(same.any()) and bool(flipped.any())


def test_every_offset_occurs_on_both_axes_and_about_half_the_samples_flip():
    padding, size, n = 2, 6, 4096
    # Ones: the zero rows and columns of a crop give its offset (offset - padding = zeros after - zeros before).
    output = CropFlip(padding, flip=False)(torch.ones(n, 1, size, size), torch.Generator().manual_seed(0))[:, 0]
    zero_rows, zero_columns = (output == 0).all(dim=2), (output == 0).all(dim=1)
    half = size // 2
    row_offsets = zero_rows[:, half:].sum(1) - zero_rows[:, :half].sum(1) + padding
    column_offsets = zero_columns[:, half:].sum(1) - zero_columns[:, :half].sum(1) + padding
    for offsets in (row_offsets, column_offsets):
        counts = torch.bincount(offsets, minlength=2 * padding + 1)
        assert len(counts) == 2 * padding + 1
        assert bool((counts > n / (2 * padding + 1) * 0.8).all()), counts
    x = torch.arange(size, dtype=torch.float32).expand(n, 1, size, size)
    flipped = CropFlip(0)(x, torch.Generator().manual_seed(0))[:, 0, 0, 0] == size - 1
    assert 0.45 < flipped.float().mean().item() < 0.55


def test_crop_flip_refuses_non_image_tensors_and_negative_padding():
    with pytest.raises(ValueError, match="NCHW"):
        CropFlip()(torch.zeros(4, 64), torch.Generator())
    with pytest.raises(ValueError, match="padding"):
        CropFlip(padding=-1)
    with pytest.raises(TypeError, match="padding"):
        CropFlip(padding=2.5)


def spy(trainer, name: str, seen: list) -> None:
    """Record the first argument of each call of the trainer's method ``name`` (a copy), then run it."""
    original = getattr(trainer, name)

    def recorded(x, *args, **kwargs):
        seen.append(x.clone())
        return original(x, *args, **kwargs)

    setattr(trainer, name, recorded)


def test_trainer_with_crop_flip_trains_on_augmented_batches(xy):
    trainer = AdversarialTrainerFast(make_classifier(), eps=EPS, augmentation="crop_flip")
    assert isinstance(trainer.augmentation, CropFlip) and trainer.augmentation.padding == 4
    clean, trained = [], []
    crop_flip = trainer.augmentation
    trainer.augmentation = lambda x, generator: clean.append(x.clone()) or crop_flip(x, generator)
    spy(trainer, "_train_batch", trained)
    trainer.fit(*xy, batch_size=64, nb_epochs=1)
    assert len(trained) == len(clean) == 2
    for x, x_clean in zip(trained, clean, strict=True):
        assert x.shape == x_clean.shape and not torch.equal(x, x_clean)
        crop_and_flip_of(x, x_clean, 4, samples=8)


def test_resumed_run_with_augmentation_is_bit_identical(xy, tmp_path):
    def run(nb_epochs: int, augmentation: str | None = "crop_flip", **options: object) -> list[torch.Tensor]:
        classifier = make_classifier()
        AdversarialTrainerFast(classifier, eps=EPS, seed=3, augmentation=augmentation, **options).fit(
            *xy, batch_size=64, nb_epochs=nb_epochs
        )
        return weights(classifier)

    straight = run(3)
    run(2, checkpoint_dir=tmp_path)
    resumed = run(3, checkpoint_dir=tmp_path, resume=True)
    assert same_weights(straight, resumed)
    assert not same_weights(straight, run(3, augmentation=None))


@pytest.mark.parametrize("with_validation", [True, False])
def test_validation_and_the_guards_check_set_are_not_augmented(digits, xy, with_validation):
    x, y = xy
    x_val, y_val = digits[2][:40], digits[3][:40]
    trainer = AdversarialTrainerFast(make_classifier(), eps=EPS, augmentation="crop_flip", overfitting_guard=0.9,
                                     overfitting_check_size=32, validation_size=40, validation_pgd_steps=2)  # fmt: skip
    validated, guarded = [], []
    spy(trainer, "_validate", validated)
    spy(trainer, "_guard_check", guarded)
    validation_data = (x_val, y_val) if with_validation else None
    trainer.fit(x, y, validation_data=validation_data, batch_size=64, nb_epochs=2)
    watched = torch.from_numpy(x_val if with_validation else x[:32])
    assert all("guard_pgd_accuracy" in record for record in trainer.history)
    assert len(guarded) == (0 if with_validation else 2), "with validation data the guard watches the validation"
    assert validated and all(torch.equal(seen, watched) for seen in validated)


def test_bad_augmentation_values_are_refused_at_construction():
    cases = [
        ("crop", ValueError, "augmentation must be None, 'crop_flip' or a callable"),
        (3, TypeError, "augmentation must be None, 'crop_flip' or a callable"),
        ([CropFlip()], TypeError, "augmentation must be None"),
        (CropFlip, TypeError, r"augmentation takes an instance, e.g. CropFlip\(\), not the class"),
    ]
    for value, error, message in cases:
        with pytest.raises(error, match=message):
            AdversarialTrainerFast(make_classifier(), eps=EPS, augmentation=value)
    mutated = CropFlip()
    mutated.padding = -2
    with pytest.raises(ValueError, match="augmentation padding"):
        AdversarialTrainerFast(make_classifier(), eps=EPS, augmentation=mutated)
    linear = nn.Linear(64, 10)
    flat = PyTorchClassifier(linear, loss=nn.CrossEntropyLoss(), input_shape=(64,), nb_classes=10,
                             optimizer=torch.optim.Adam(linear.parameters()), clip_values=(0.0, 1.0))  # fmt: skip
    with pytest.raises(ValueError, match=r"augmentation=CropFlip\(padding=4, flip=True\) crops .* \(64,\)"):
        AdversarialTrainerFast(flat, eps=EPS, augmentation="crop_flip")
    AdversarialTrainerFast(flat, eps=EPS, augmentation=lambda x, generator: x)  # a callable takes any shape
    network = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    shifted = PyTorchClassifier(network, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
                                optimizer=torch.optim.Adam(network.parameters()), clip_values=(0.1, 1.0))  # fmt: skip
    with pytest.raises(ValueError, match="zeros, which lie outside the classifier's clip_values"):
        AdversarialTrainerFast(shifted, eps=EPS, augmentation="crop_flip")
    AdversarialTrainerFast(shifted, eps=EPS, augmentation=CropFlip(padding=0))  # a flip alone pads nothing
    with pytest.raises(ValueError, match="augmentation"):
        AdversarialTrainerDAT(make_classifier(), eps=EPS, inner="fast", inner_options={"augmentation": "crop_flip"})


@pytest.mark.parametrize(
    ("augmentation", "message"),
    [
        (lambda x, generator: x[:, :, :4, :4], r"shape, dtype and device, \(64, 1, 8, 8\) torch.float32 on cpu, got "
                                               r"\(64, 1, 4, 4\)"),
        (lambda x, generator: x.double(), "torch.float64"),
        (lambda x, generator: x.numpy(), "augmentation must return a torch.Tensor, got ndarray"),
    ],
)  # fmt: skip
def test_a_wrong_user_augmentation_is_refused_before_any_update(xy, augmentation, message):
    classifier = make_classifier()
    before = weights(classifier)
    trainer = AdversarialTrainerFast(classifier, eps=EPS, augmentation=augmentation)
    with pytest.raises(ValueError, match=message):
        trainer.fit(*xy, batch_size=64, nb_epochs=1)
    assert same_weights(before, weights(classifier)) and classifier.optimizer.state_dict()["state"] == {}


def test_a_user_callable_gets_the_batch_and_the_trainers_generator(xy):
    calls, trained = [], []

    def darken(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        calls.append((x.clone(), generator))
        return x * 0.5

    trainer = AdversarialTrainerFast(make_classifier(), eps=EPS, augmentation=darken)
    spy(trainer, "_train_batch", trained)
    trainer.fit(*xy, batch_size=64, nb_epochs=1)
    assert len(calls) == len(trained) == 2
    for (clean, generator), x in zip(calls, trained, strict=True):
        assert generator is trainer.generator
        assert torch.equal(x, clean * 0.5)


def test_dat_augments_both_phases_for_its_inner_method(xy):
    trainer = AdversarialTrainerDAT(make_classifier(), eps=EPS, inner="fast", switch_epoch=1, augmentation="crop_flip")
    clean, natural, adversarial = [], [], []
    crop_flip = trainer.augmentation
    trainer.augmentation = lambda x, generator: clean.append(x.clone()) or crop_flip(x, generator)
    spy(trainer, "_update", natural)
    spy(trainer.inner, "_train_batch", adversarial)
    trainer.fit(*xy, batch_size=64, nb_epochs=2)
    assert len(adversarial) == 2 and len(clean) == 4
    for x, x_clean in zip(natural[:2] + adversarial, clean, strict=True):
        assert not torch.equal(x, x_clean)
        crop_and_flip_of(x, x_clean, 4, samples=8)


def test_p2_trains_with_crop_flip_and_the_other_protocols_without():
    assert get_protocol("cifar10").trainer_options()["augmentation"] == "crop_flip"
    for name in ("digits", "mnist10k"):
        assert "augmentation" not in get_protocol(name).trainer_options()
