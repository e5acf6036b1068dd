"""Tests of ``art_fastat.models``: shapes, parameter counts, reference layouts, gradients and argument checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from art_fastat.models import MODELS, VGG16, PreActResNet18, SmallCNN, WideResNet, get_model

#: Model name, constructor arguments small enough for a fast forward pass, input shape of one example.
FAST_CONFIGS = [
    ("digits_cnn", {}, (1, 8, 8)),
    ("mnist_cnn", {}, (1, 28, 28)),
    ("small_cnn", {}, (1, 28, 28)),
    ("preact_resnet18", {}, (3, 32, 32)),
    ("wide_resnet", {"depth": 10, "widen_factor": 1}, (3, 32, 32)),
    ("vgg16", {}, (3, 32, 32)),
]
FAST_CONFIG_IDS = [name for name, _, _ in FAST_CONFIGS]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registry_holds_exactly_the_documented_models():
    assert set(MODELS) == {"digits_cnn", "mnist_cnn", "small_cnn", "preact_resnet18", "wide_resnet", "vgg16"}


@pytest.mark.parametrize(("name", "kwargs", "input_shape"), FAST_CONFIGS, ids=FAST_CONFIG_IDS)
@pytest.mark.parametrize("num_classes", [10, 7])
def test_output_is_one_finite_logit_per_class(name, kwargs, input_shape, num_classes):
    model = get_model(name, num_classes=num_classes, **kwargs)
    logits = model(torch.rand(4, *input_shape))
    assert logits.shape == (4, num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("digits_cnn", {}, 151_306),
        ("mnist_cnn", {}, 166_406),
        ("small_cnn", {}, 312_202),
        ("preact_resnet18", {}, 11_172_170),
        ("wide_resnet", {"depth": 34, "widen_factor": 10}, 46_160_474),
        ("vgg16", {}, 14_728_266),
    ],
    ids=["digits_cnn", "mnist_cnn", "small_cnn", "preact_resnet18", "wrn_34_10", "vgg16"],
)
def test_parameter_count_matches_reference_architecture(name, kwargs, expected):
    model = get_model(name, **kwargs)
    assert sum(parameter.numel() for parameter in model.parameters()) == expected


def test_preact_resnet18_is_kuangliu_count_plus_final_batchnorm():
    model = PreActResNet18()
    total = sum(parameter.numel() for parameter in model.parameters())
    final_bn = sum(parameter.numel() for parameter in model.bn.parameters())
    assert (total - final_bn, final_bn) == (11_171_146, 1024)


@pytest.mark.parametrize(
    ("model", "expected_keys"),
    [
        (SmallCNN(), {"feature_extractor.conv1.weight", "feature_extractor.conv4.bias", "classifier.fc3.weight"}),
        (PreActResNet18(), {"conv1.weight", "layer2.0.shortcut.0.weight", "layer4.1.bn2.running_var", "bn.weight"}),
        (
            WideResNet(depth=16, widen_factor=2),
            {"conv1.weight", "block1.layer.0.convShortcut.weight", "block3.layer.1.bn2.weight", "bn1.bias", "fc.bias"},
        ),
    ],
    ids=["small_cnn", "preact_resnet18", "wide_resnet"],
)
def test_state_dict_keys_follow_reference_code(model, expected_keys):
    assert expected_keys <= set(model.state_dict())


def test_wide_resnet_has_no_unused_sub_block():
    model = WideResNet(depth=10, widen_factor=1)
    assert not any(key.startswith("sub_block1") for key in model.state_dict())


def test_small_cnn_starts_with_zero_last_layer_like_trades():
    model = SmallCNN()
    assert torch.count_nonzero(model.classifier.fc3.weight) == 0
    assert torch.count_nonzero(model(torch.rand(2, 1, 28, 28))) == 0


@pytest.mark.parametrize(("name", "kwargs", "input_shape"), FAST_CONFIGS, ids=FAST_CONFIG_IDS)
def test_loss_gradient_reaches_every_input_pixel_batch(name, kwargs, input_shape):
    model = get_model(name, **kwargs).eval()
    if isinstance(model, SmallCNN):
        nn.init.normal_(model.classifier.fc3.weight, std=0.1)
    inputs = torch.rand(3, *input_shape, requires_grad=True)
    loss = nn.functional.cross_entropy(model(inputs), torch.tensor([0, 1, 2]))
    loss.backward()
    assert inputs.grad is not None
    assert inputs.grad.shape == inputs.shape
    assert torch.isfinite(inputs.grad).all()
    assert (inputs.grad.flatten(start_dim=1).abs().sum(dim=1) > 0).all()


def test_wide_resnet_dropout_is_active_only_in_training():
    model = WideResNet(depth=10, widen_factor=1, drop_rate=0.5)
    inputs = torch.rand(2, 3, 32, 32)
    model.eval()
    assert torch.equal(model(inputs), model(inputs))
    model.train()
    assert not torch.equal(model(inputs), model(inputs))


def test_vgg16_reduces_to_512_features_before_its_single_linear_layer():
    model = VGG16(num_classes=10)
    features = model.features(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, 512, 1, 1)
    assert [type(module) for module in model.classifier.modules()] == [nn.Linear]


def test_get_model_rejects_unknown_name_listing_valid_names():
    with pytest.raises(ValueError, match=r"name must be one of .*'digits_cnn'.*'wide_resnet'.*got 'resnet50'"):
        get_model("resnet50")


@pytest.mark.parametrize("depth", [4, 33, 35, 28.0])
def test_wide_resnet_rejects_depth_not_of_the_form_6n_plus_4(depth):
    with pytest.raises(ValueError, match=rf"depth must be 6 \* n \+ 4 .*got {depth!r}"):
        WideResNet(depth=depth, widen_factor=1)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"widen_factor": 0}, "widen_factor"),
        ({"drop_rate": 1.0}, "drop_rate"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_wide_resnet_rejects_bad_arguments_by_name(kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must be"):
        WideResNet(depth=10, **kwargs)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_rejects_fewer_than_two_classes(name):
    with pytest.raises(ValueError, match=r"^num_classes must be an integer >= 2, got 1$"):
        get_model(name, num_classes=1)


def test_small_cnn_rejects_dropout_outside_unit_interval():
    with pytest.raises(ValueError, match=r"^drop must be a probability in \[0, 1\), got 1.5$"):
        SmallCNN(drop=1.5)
