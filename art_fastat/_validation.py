"""
Input checks shared by the trainers, the attacks, ``evaluate`` and the CLI.

Each check raises a ``TypeError`` or ``ValueError`` that names the offending argument and what was expected, and
runs before any state changes. No check modifies its input.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

#: Inputs may exceed ``clip_values`` by this much (float rounding of stored images) and still be accepted.
CLIP_TOLERANCE = 1e-5


#: The largest integer argument accepted: torch's int64 (seeds, sizes and counts beyond it overflow inside torch).
MAX_INT = 2**63 - 1


def check_positive_int(value: Any, name: str, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """
    :param value: The user's value.
    :param name: The argument's name, for the message.
    :param minimum: Smallest accepted value.
    :param maximum: Largest accepted value (default: what torch's int64 holds).
    :return: The value as an ``int``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {value}")
    return int(value)


def check_non_negative_float(value: Any, name: str) -> float:
    """
    :param value: The user's value.
    :param name: The argument's name, for the message.
    :return: The value as a ``float``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_eps(eps: Any, clip_width: float, name: str = "eps") -> float:
    """
    :param eps: The L-inf budget.
    :param clip_width: Width of the classifier's valid input range; a larger ``eps`` is meaningless.
    :param name: The argument's name, for the message.
    :return: ``eps`` as a ``float``.
    """
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not np.isfinite(eps):
        raise TypeError(f"{name} must be a finite number in (0, {clip_width:g}], got {eps!r}")
    if not 0 < eps <= clip_width:
        raise ValueError(f"{name} must be in (0, {clip_width:g}] (the width of clip_values), got {eps}")
    return float(eps)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """
    :param value: The user's value.
    :param name: The argument's name, for the message.
    :param choices: The accepted strings.
    :return: The value.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def check_inputs(x: Any, input_shape: tuple[int, ...], clip_values: Any, name: str = "x") -> np.ndarray:
    """
    :param x: A batch of inputs, shape ``(n,) + input_shape``.
    :param input_shape: The classifier's ``input_shape``.
    :param clip_values: The classifier's ``(low, high)``; values outside them are refused.
    :param name: The argument's name, for the message.
    :return: ``x`` as contiguous float32 (the caller's array itself if it already is one; never modified).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of shape (n,) + {tuple(input_shape)}, got {type(x).__name__}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name} must have a numeric dtype (float32 expected), got {x.dtype}")
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"{name} must have shape (n,) + {tuple(input_shape)}, got {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name} must hold at least one sample, got an empty array of shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)  # torch needs positive strides (np.flip(x), x[::-1] have negative)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite: it holds {int((~np.isfinite(x)).sum())} NaN or inf values")
    low, high = (np.asarray(v, dtype=np.float32) for v in clip_values)
    if (x < low - CLIP_TOLERANCE).any() or (x > high + CLIP_TOLERANCE).any():
        raise ValueError(
            f"{name} must lie inside the classifier's clip_values {_describe(low)}..{_describe(high)}, "
            f"got values in {x.min():g}..{x.max():g}"
        )
    return x


def check_labels(y: Any, n: int, nb_classes: int, name: str = "y") -> np.ndarray:
    """
    :param y: Integer labels of shape ``(n,)`` or one-hot labels of shape ``(n, nb_classes)``.
    :param n: Number of inputs they label.
    :param nb_classes: The classifier's number of classes.
    :param name: The argument's name, for the message.
    :return: int64 labels of shape ``(n,)`` (a new array).
    """
    if not isinstance(y, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of integer labels or one-hot rows, got {type(y).__name__}")
    if y.ndim == 2 and y.shape[1] == nb_classes:
        if not np.isfinite(y).all() or not np.all(np.isclose(y.sum(axis=1), 1.0)) or not np.all((y == 0) | (y == 1)):
            raise ValueError(f"{name} given as a 2-D array must be one-hot rows of length {nb_classes}")
        labels = np.argmax(y, axis=1).astype(np.int64)
    elif y.ndim == 1:
        if np.issubdtype(y.dtype, np.floating):
            if not np.isfinite(y).all() or not np.all(y == np.round(y)):
                raise ValueError(f"{name} must hold integer class indices, got non-integer values")
        elif not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
        labels = y.astype(np.int64)
    else:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, {nb_classes}), got {y.shape}")
    labels = np.ascontiguousarray(labels)
    if len(labels) != n:
        raise ValueError(f"{name} must label every input: expected {n} labels, got {len(labels)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= nb_classes):
        raise ValueError(f"{name} must be class indices in [0, {nb_classes - 1}], got {labels.min()}..{labels.max()}")
    return labels


def check_data(x: Any, y: Any, classifier: Any, x_name: str = "x", y_name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """
    Check a labelled dataset against a classifier.

    :param x: Inputs, shape ``(n,) + classifier.input_shape``, inside ``classifier.clip_values``.
    :param y: Integer or one-hot labels.
    :param classifier: An ART ``PyTorchClassifier``.
    :return: ``(x as float32, y as int64 indices)``.
    """
    x = check_inputs(x, classifier.input_shape, classifier.clip_values, x_name)
    return x, check_labels(y, len(x), classifier.nb_classes, y_name)


def _describe(value: np.ndarray) -> str:
    return f"{value:g}" if value.ndim == 0 else f"[{value.min():g}, {value.max():g}]"


def check_attack_inputs(images: Any, labels: Any, device: Any) -> tuple[Any, Any]:
    """
    The inputs of an attack's ``forward`` (torchattacks' convention: images in [0, 1]). Values at most
    :data:`CLIP_TOLERANCE` outside [0, 1] (e.g. the few ulps of torchattacks' own normalisation round trip) are clamped
    into it; an empty batch is valid (the attack returns it unchanged).

    :param images: A float tensor ``(n, ...)`` with values in [0, 1].
    :param labels: An integer tensor ``(n,)``.
    :param device: The attack's device.
    :return: Detached copies of both on ``device`` (the caller's tensors are never modified).
    """
    import torch

    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim < 2:
        raise TypeError(f"images must be a float tensor of shape (n, ...), got {type(images).__name__}")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be an integer tensor of shape ({len(images)},), got {labels!r:.80}")
    labels = (
        labels.detach().to(device=device, dtype=torch.long).clone()
    )  # int32 / uint8 labels are valid; CE needs int64
    if not len(images):
        return images.detach().clone().to(device), labels
    if labels.min() < 0:
        raise ValueError(f"labels must be class indices >= 0, got {int(labels.min())}")
    if not torch.isfinite(images).all():
        raise ValueError("images must be finite: they hold NaN or inf values")
    if images.min() < -CLIP_TOLERANCE or images.max() > 1 + CLIP_TOLERANCE:
        raise ValueError(
            f"images must lie in the range [0, 1] (torchattacks' convention), got {float(images.min()):g}.."
            f"{float(images.max()):g}"
        )
    return images.detach().clamp(0, 1).to(device), labels


def check_tensor_data(
    x: Any, y: Any, classifier: Any, low: Any, high: Any, x_name: str = "x", y_name: str = "y"
) -> tuple[Any, Any]:
    """
    :func:`check_data` for a batch of torch tensors (a ``DataLoader``'s batch), checked where it lies with torch
    operations only: no numpy conversion, no copy of ``x``. numpy arrays (e.g. from a custom ``collate_fn``) are
    wrapped without a copy.

    :param x: Inputs, shape ``(n,) + classifier.input_shape``, a floating or integer dtype, inside ``(low, high)``.
    :param y: Integer labels ``(n,)`` or one-hot labels ``(n, nb_classes)``.
    :param classifier: An ART ``PyTorchClassifier``.
    :param low: Lower clip bound: a float or a tensor broadcastable to ``x`` (``_classifier.clip_bounds``).
    :param high: Upper clip bound, likewise.
    :return: ``(x unchanged, int64 labels of shape (n,))``.
    """
    import torch

    x, y = (torch.as_tensor(v) if isinstance(v, np.ndarray) else v for v in (x, y))
    input_shape = tuple(classifier.input_shape)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{x_name} must be a torch.Tensor of shape (n,) + {input_shape}, got {type(x).__name__}")
    if x.dtype == torch.bool or x.is_complex() or x.is_quantized:
        raise TypeError(f"{x_name} must have a numeric dtype (float32 expected), got {x.dtype}")
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != input_shape:
        raise ValueError(f"{x_name} must have shape (n,) + {input_shape}, got {tuple(x.shape)}")
    if len(x) == 0:
        raise ValueError(f"{x_name} must hold at least one sample, got an empty tensor of shape {tuple(x.shape)}")
    smallest, largest = (float(value) for value in torch.aminmax(x))  # one pass; NaN propagates, inf shows
    if not (np.isfinite(smallest) and np.isfinite(largest)):
        raise ValueError(f"{x_name} must be finite: it holds {int((~torch.isfinite(x)).sum())} NaN or inf values")
    if isinstance(low, torch.Tensor) or isinstance(high, torch.Tensor):  # per-feature bounds
        low, high = (torch.as_tensor(bound, device=x.device) for bound in (low, high))
        outside = bool(((x < low - CLIP_TOLERANCE) | (x > high + CLIP_TOLERANCE)).any())
        described = [f"[{float(bound.min()):g}, {float(bound.max()):g}]" for bound in (low, high)]
    else:
        outside = smallest < low - CLIP_TOLERANCE or largest > high + CLIP_TOLERANCE
        described = [f"{low:g}", f"{high:g}"]
    if outside:
        raise ValueError(f"{x_name} must lie inside the classifier's clip_values {described[0]}..{described[1]}, "
                         f"got values in {smallest:g}..{largest:g}")  # fmt: skip
    return x, check_tensor_labels(y, len(x), classifier.nb_classes, y_name)


def check_tensor_labels(y: Any, n: int, nb_classes: int, name: str = "y") -> Any:
    """
    :func:`check_labels` for a torch tensor, with torch operations only.

    :return: int64 labels of shape ``(n,)`` on ``y``'s device.
    """
    import torch

    if not isinstance(y, torch.Tensor) or y.dtype == torch.bool or y.is_complex():
        described = y.dtype if isinstance(y, torch.Tensor) else type(y).__name__
        raise TypeError(f"{name} must be a torch.Tensor of integer labels or one-hot rows, got {described}")
    if y.ndim == 2 and y.shape[1] == nb_classes:
        rows_sum_to_one = bool(torch.isclose(y.double().sum(dim=1), y.new_ones((), dtype=torch.float64)).all())
        if not rows_sum_to_one or not bool(((y == 0) | (y == 1)).all()):
            raise ValueError(f"{name} given as a 2-D tensor must be one-hot rows of length {nb_classes}")
        labels = y.argmax(dim=1)
    elif y.ndim == 1:
        if y.is_floating_point() and not bool((torch.isfinite(y) & (y == y.round())).all()):
            raise ValueError(f"{name} must hold integer class indices, got non-integer values")
        labels = y.long()
    else:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, {nb_classes}), got {tuple(y.shape)}")
    if len(labels) != n:
        raise ValueError(f"{name} must label every input: expected {n} labels, got {len(labels)}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= nb_classes:
        raise ValueError(f"{name} must be class indices in [0, {nb_classes - 1}], got {low}..{high}")
    return labels
