"""
Reference network architectures used by the fast adversarial training papers, as plain ``torch.nn`` modules.

Every model returns logits (no softmax) and expects inputs in the layout of its dataset: ``(N, 1, 8, 8)`` for the
scikit-learn digits, ``(N, 1, 28, 28)`` for MNIST and ``(N, 3, 32, 32)`` for CIFAR-10. Standardisation, if any, is
not part of the models: pass it to ART's ``PyTorchClassifier`` as ``preprocessing=(mean, std)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "MODELS",
    "VGG16",
    "DigitsCNN",
    "MnistCNN",
    "PreActBlock",
    "PreActResNet18",
    "SmallCNN",
    "WideResNet",
    "WideResNetBlock",
    "get_model",
]


def _check_num_classes(num_classes: int) -> int:
    """
    :param num_classes: Number of output logits requested by the user.
    :return: ``num_classes`` as an ``int``.
    :raises ValueError: If it is not an integer >= 2.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return num_classes


class DigitsCNN(nn.Module):
    """
    Small CNN for the 8x8 scikit-learn digits (protocol P0): two convolutions and two fully connected layers.

    Input ``(N, 1, 8, 8)``; the second convolution has stride 2, giving a ``64 x 4 x 4`` feature map.
    """

    def __init__(self, num_classes: int = 10) -> None:
        """
        :param num_classes: Number of output logits.
        """
        super().__init__()
        num_classes = _check_num_classes(num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Batch of shape ``(N, 1, 8, 8)``.
        :return: Logits of shape ``(N, num_classes)``.
        """
        return self.classifier(self.features(x))


class MnistCNN(nn.Module):
    """
    The MNIST CNN of Wong & Kolter (2018), as used by ``locuslab/fast_adversarial`` (166,406 parameters).

    Input ``(N, 1, 28, 28)``; two stride-2 convolutions with 4x4 kernels reduce it to ``32 x 7 x 7``.
    """

    def __init__(self, num_classes: int = 10) -> None:
        """
        :param num_classes: Number of output logits.
        """
        super().__init__()
        num_classes = _check_num_classes(num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Batch of shape ``(N, 1, 28, 28)``.
        :return: Logits of shape ``(N, num_classes)``.
        """
        return self.classifier(self.features(x))


class SmallCNN(nn.Module):
    """
    The 4-convolution, 3-linear MNIST model of TRADES (``yaodongyu/TRADES``, ``models/small_cnn.py``), also used by
    YOPO and ATCD.

    Input ``(N, 1, 28, 28)``; unpadded 3x3 convolutions and two 2x2 max-pools give a ``64 x 4 x 4`` feature map.
    The layer names (``feature_extractor.conv1`` ... ``classifier.fc3``) match the TRADES code, so its checkpoints
    load with ``load_state_dict``. The initialisation follows TRADES too: Kaiming-normal convolutions with zero
    biases, and a zero last layer.
    """

    def __init__(self, num_classes: int = 10, drop: float = 0.5) -> None:
        """
        :param num_classes: Number of output logits.
        :param drop: Dropout probability after the first fully connected layer, in ``[0, 1)``.
        """
        super().__init__()
        num_classes = _check_num_classes(num_classes)
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0.0 <= drop < 1.0:
            raise ValueError(f"drop must be a probability in [0, 1), got {drop!r}")
        self.feature_extractor = nn.Sequential()
        self.feature_extractor.add_module("conv1", nn.Conv2d(1, 32, kernel_size=3))
        self.feature_extractor.add_module("relu1", nn.ReLU())
        self.feature_extractor.add_module("conv2", nn.Conv2d(32, 32, kernel_size=3))
        self.feature_extractor.add_module("relu2", nn.ReLU())
        self.feature_extractor.add_module("maxpool1", nn.MaxPool2d(2, 2))
        self.feature_extractor.add_module("conv3", nn.Conv2d(32, 64, kernel_size=3))
        self.feature_extractor.add_module("relu3", nn.ReLU())
        self.feature_extractor.add_module("conv4", nn.Conv2d(64, 64, kernel_size=3))
        self.feature_extractor.add_module("relu4", nn.ReLU())
        self.feature_extractor.add_module("maxpool2", nn.MaxPool2d(2, 2))

        self.classifier = nn.Sequential()
        self.classifier.add_module("fc1", nn.Linear(64 * 4 * 4, 200))
        self.classifier.add_module("relu1", nn.ReLU())
        self.classifier.add_module("drop", nn.Dropout(float(drop)))
        self.classifier.add_module("fc2", nn.Linear(200, 200))
        self.classifier.add_module("relu2", nn.ReLU())
        self.classifier.add_module("fc3", nn.Linear(200, num_classes))

        for module in self.feature_extractor:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.classifier.fc3.weight)
        nn.init.zeros_(self.classifier.fc3.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Batch of shape ``(N, 1, 28, 28)``.
        :return: Logits of shape ``(N, num_classes)``.
        """
        features = self.feature_extractor(x)
        return self.classifier(features.flatten(start_dim=1))


class PreActBlock(nn.Module):
    """
    Pre-activation residual block (He et al., 2016): ``BN-ReLU-conv3x3-BN-ReLU-conv3x3`` plus a shortcut.

    When the block changes resolution or width, the shortcut is a 1x1 convolution applied to the pre-activated input.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        """
        :param in_planes: Input channels.
        :param planes: Output channels.
        :param stride: Stride of the first convolution (and of the shortcut).
        """
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Feature map of shape ``(N, in_planes, H, W)``.
        :return: Feature map of shape ``(N, planes, H / stride, W / stride)``.
        """
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """
    Pre-activation ResNet-18 for 32x32 inputs, as in ``locuslab/fast_adversarial`` (11,172,170 parameters for
    CIFAR-10).

    A 3x3 stem, four stages of two :class:`PreActBlock` (64, 128, 256, 512 channels), a final ``BN-ReLU``, 4x4 average
    pooling and one linear layer. Layer names match the reference code, so its checkpoints load with
    ``load_state_dict``. The final ``BN`` (1,024 parameters) is what distinguishes it from the
    ``kuangliu/pytorch-cifar`` version, which has 11,171,146.
    """

    def __init__(self, num_classes: int = 10) -> None:
        """
        :param num_classes: Number of output logits.
        """
        super().__init__()
        num_classes = _check_num_classes(num_classes)
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(64, num_blocks=2, stride=1)
        self.layer2 = self._make_layer(128, num_blocks=2, stride=2)
        self.layer3 = self._make_layer(256, num_blocks=2, stride=2)
        self.layer4 = self._make_layer(512, num_blocks=2, stride=2)
        self.bn = nn.BatchNorm2d(512 * PreActBlock.expansion)
        self.linear = nn.Linear(512 * PreActBlock.expansion, num_classes)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        """
        :param planes: Output channels of the stage.
        :param num_blocks: Number of blocks in the stage.
        :param stride: Stride of the stage's first block.
        :return: The stage.
        """
        blocks = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            blocks.append(PreActBlock(self.in_planes, planes, block_stride))
            self.in_planes = planes * PreActBlock.expansion
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Batch of shape ``(N, 3, 32, 32)``.
        :return: Logits of shape ``(N, num_classes)``.
        """
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        out = F.avg_pool2d(out, 4)
        return self.linear(out.flatten(start_dim=1))


class WideResNetBlock(nn.Module):
    """
    Pre-activation wide residual block of Zagoruyko & Komodakis (2016), in the form used by TRADES and RobustBench.

    When the width changes, both branches start from the pre-activated input and the shortcut is a 1x1 convolution;
    otherwise the shortcut is the identity on the raw input.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0) -> None:
        """
        :param in_planes: Input channels.
        :param out_planes: Output channels.
        :param stride: Stride of the first convolution (and of the shortcut).
        :param drop_rate: Dropout probability between the two convolutions.
        """
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut: nn.Module | None = None
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Feature map of shape ``(N, in_planes, H, W)``.
        :return: Feature map of shape ``(N, out_planes, H / stride, W / stride)``.
        """
        pre_activated = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(pre_activated)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        shortcut = x if self.convShortcut is None else self.convShortcut(pre_activated)
        return shortcut + out


class _NetworkBlock(nn.Module):
    """
    One stage of a :class:`WideResNet`: ``num_layers`` blocks, the first of which changes width and resolution.

    Kept as its own module (``blockN.layer.M``) so that TRADES and RobustBench checkpoints load unchanged.
    """

    def __init__(self, num_layers: int, in_planes: int, out_planes: int, stride: int, drop_rate: float) -> None:
        """
        :param num_layers: Number of blocks.
        :param in_planes: Input channels of the first block.
        :param out_planes: Output channels of every block.
        :param stride: Stride of the first block.
        :param drop_rate: Dropout probability inside each block.
        """
        super().__init__()
        self.layer = nn.Sequential(
            *(
                WideResNetBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate)
                for i in range(num_layers)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Feature map.
        :return: The stage's output feature map.
        """
        return self.layer(x)


class WideResNet(nn.Module):
    """
    Wide ResNet for 32x32 inputs, as in TRADES and RobustBench (WRN-34-10 has 46,160,474 parameters for CIFAR-10).

    ``depth = 6 n + 4`` where ``n`` is the number of blocks per stage; the three stages have ``16 k``, ``32 k`` and
    ``64 k`` channels for ``widen_factor = k``. TRADES additionally creates an unused ``sub_block1`` stage, which is
    left out here: its weights never reach the output. To load a TRADES checkpoint, drop its ``sub_block1.*`` keys.
    """

    def __init__(self, depth: int = 34, widen_factor: int = 10, num_classes: int = 10, drop_rate: float = 0.0) -> None:
        """
        :param depth: Total depth, ``6 n + 4`` for a positive integer ``n`` (e.g. 10, 16, 28, 34, 70).
        :param widen_factor: Width multiplier ``k`` (a positive integer).
        :param num_classes: Number of output logits.
        :param drop_rate: Dropout probability inside each residual block, in ``[0, 1)``.
        """
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"depth must be 6 * n + 4 for an integer n >= 1 (10, 16, 22, 28, 34, ...), got {depth!r}")
        if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError(f"widen_factor must be an integer >= 1, got {widen_factor!r}")
        if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be a probability in [0, 1), got {drop_rate!r}")
        num_classes = _check_num_classes(num_classes)

        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        blocks_per_stage = (depth - 4) // 6
        drop_rate = float(drop_rate)
        self.conv1 = nn.Conv2d(3, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = _NetworkBlock(blocks_per_stage, channels[0], channels[1], 1, drop_rate)
        self.block2 = _NetworkBlock(blocks_per_stage, channels[1], channels[2], 2, drop_rate)
        self.block3 = _NetworkBlock(blocks_per_stage, channels[2], channels[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(channels[3], num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Batch of shape ``(N, 3, 32, 32)``.
        :return: Logits of shape ``(N, num_classes)``.
        """
        out = self.conv1(x)
        out = self.block3(self.block2(self.block1(out)))
        out = self.relu(self.bn1(out))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.fc(out.flatten(start_dim=1))


#: VGG16 ("configuration D"): output channels of each 3x3 convolution, ``"M"`` for a 2x2 max-pool.
_VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)  # fmt: skip


class VGG16(nn.Module):
    """
    VGG16 with batch normalisation for 32x32 inputs, in the common CIFAR form (``kuangliu/pytorch-cifar``).

    Thirteen ``conv3x3-BN-ReLU`` layers with five 2x2 max-pools reduce the input to ``512 x 1 x 1``, followed by a
    single linear layer (14,728,266 parameters for CIFAR-10).
    """

    def __init__(self, num_classes: int = 10) -> None:
        """
        :param num_classes: Number of output logits.
        """
        super().__init__()
        num_classes = _check_num_classes(num_classes)
        layers: list[nn.Module] = []
        in_channels = 3
        for entry in _VGG16_LAYOUT:
            if entry == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out_channels = int(entry)
                layers += [
                    nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(),
                ]
                in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Batch of shape ``(N, 3, 32, 32)``.
        :return: Logits of shape ``(N, num_classes)``.
        """
        return self.classifier(self.features(x).flatten(start_dim=1))


#: Model constructors by name, as accepted by :func:`get_model`.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "digits_cnn": DigitsCNN,
    "mnist_cnn": MnistCNN,
    "small_cnn": SmallCNN,
    "preact_resnet18": PreActResNet18,
    "wide_resnet": WideResNet,
    "vgg16": VGG16,
}


def get_model(name: str, **kwargs: object) -> nn.Module:
    """
    Build a model from :data:`MODELS` by name.

    :param name: One of the keys of :data:`MODELS` (``"digits_cnn"``, ``"mnist_cnn"``, ``"small_cnn"``,
                 ``"preact_resnet18"``, ``"wide_resnet"``, ``"vgg16"``).
    :param kwargs: Keyword arguments of the model's constructor, e.g. ``num_classes=10``.
    :return: A freshly initialised model in training mode.
    :raises ValueError: If ``name`` is not a known model.
    """
    if name not in MODELS:
        raise ValueError(f"name must be one of {sorted(MODELS)}, got {name!r}")
    model = MODELS[name](**kwargs)
    logger.debug("Built model %s with %d parameters", name, sum(p.numel() for p in model.parameters()))
    return model
