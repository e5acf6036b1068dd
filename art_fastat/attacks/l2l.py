"""
A learned inner maximizer: a coordinate-wise LSTM proposes the attack's steps (Xiong & Hsieh 2020, "Improved Adversarial
Training via Learned Optimizer"). The paper's method details did not survive; the architecture, its inputs and the
first-order meta-gradient here are this project's choices (``shared/design/methods.md``).

Step ``t``: ``g_t`` is the input gradient of the attack objective at ``delta_t``, treated as a constant (no second
derivatives through the classifier); the LSTM maps ``(g_t / mean|g_t|, delta_t / eps)`` per coordinate to ``u_t``;
``delta_{t+1} = Pi(delta_t + eps * tanh(u_t))``.

Meta-gradient: the optimizer ascends ``sum_t w_t l(x + delta_t)`` over the unrolled trajectory. With every ``g_t``
held constant its gradient with respect to the LSTM's weights is ``sum_t w_t <g_t, d delta_t / d phi>``, and ``g_t``
is exactly the gradient the next step computes anyway, so the meta-loss costs no pass through the classifier: the
surrogate ``sum_t w_t <g_t, delta_t>`` is backpropagated through the LSTM alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from art_fastat._validation import check_attack_inputs, check_non_negative_float, check_positive_int
from art_fastat.attacks.base import CheckedAttack
from art_fastat.attacks.fused_lstm import LSTMState, lstm_step
from art_fastat.losses import kl_divergence
from art_fastat.perturbation import AttackSpace, normalise_per_sample

#: Per-sample objective the attack ascends, from the logits at ``x + delta``, the labels and the clean logits.
Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


class RNNOptimizer(nn.Module):
    """
    | Paper link: Xiong & Hsieh, "Improved Adversarial Training via Learned Optimizer" (ECCV 2020), https://arxiv.org/abs/2004.12227

    Coordinate-wise LSTM shared across all coordinates: each input coordinate is one sequence element with two
    features, its normalised gradient and its perturbation in units of eps; the output is the unbounded update ``u``
    (the caller bounds it with ``eps * tanh(u)``).

    The weights are an ``nn.LSTMCell(2, hidden_size)`` (``cell``) and an ``nn.Linear(hidden_size, 1)`` (``head``), and
    ``forward`` computes ``head(cell(x, state)[0])`` (to float rounding) as one fused step with a hand-written backward
    (:func:`~art_fastat.attacks.fused_lstm.lstm_step`): run by ``nn.LSTMCell``, the per-coordinate work made L2L cost
    1.42x RAT on VGG16 although the LSTM is about 1% of its multiply-adds. The state is ``nn.LSTMCell``'s.

    :param hidden_size: LSTM hidden units (16 by default, one layer).
    """

    def __init__(self, hidden_size: int = 16) -> None:
        super().__init__()
        self.hidden_size = check_positive_int(hidden_size, "hidden_size")
        self.cell = nn.LSTMCell(2, self.hidden_size)
        self.head = nn.Linear(self.hidden_size, 1)

    def forward(
        self, gradient: torch.Tensor, delta_over_eps: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """
        :param gradient: Input gradient (any scale: it is normalised per sample to mean absolute value 1).
        :param delta_over_eps: Current perturbation divided by eps.
        :param state: LSTM state ``(h, c)`` of the previous step, or None at the first.
        :return: ``(u, new state)``, ``u`` shaped like ``gradient``.
        """
        dtype = self.head.weight.dtype  # e.g. a float64 model, a float32 LSTM
        features = (normalise_per_sample(gradient).reshape(-1).to(dtype), delta_over_eps.reshape(-1).to(dtype))
        update, state = lstm_step(features, state, self.cell, self.head)
        return update.view_as(gradient).to(gradient.dtype), state


def cross_entropy_objective(logits: torch.Tensor, y: torch.Tensor, clean_logits: torch.Tensor | None) -> torch.Tensor:
    """RNN-Adv: the per-sample cross-entropy."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def trades_objective(logits: torch.Tensor, y: torch.Tensor, clean_logits: torch.Tensor | None) -> torch.Tensor:
    """RNN-TRADES: per-sample ``KL(p(x) || p(x + delta))`` against the (detached) clean prediction."""
    if clean_logits is None:
        raise ValueError("the TRADES objective needs the clean logits")
    return kl_divergence(clean_logits.detach(), logits)


@dataclass
class Trajectory:
    """The unrolled attack: ``deltas[t]`` for t = 0..T (connected to the LSTM's weights) and ``gradients[t]``."""

    deltas: list[torch.Tensor] = field(default_factory=list)
    gradients: list[torch.Tensor] = field(default_factory=list)
    losses: list[torch.Tensor] = field(default_factory=list)

    def meta_surrogate(self, weights: list[float] | None = None) -> torch.Tensor:
        """
        ``sum_t w_t <g_t, delta_t>`` over t = 1..T (``w_t = 1`` by default): its gradient in the LSTM's weights is the
        first-order gradient of ``sum_t w_t l(x + delta_t)`` (summed over the batch). Needs ``gradients[T]``.
        """
        weights = [1.0] * (len(self.deltas) - 1) if weights is None else weights
        terms = zip(weights, self.deltas[1:], self.gradients[1:], strict=True)
        return sum(w * (gradient.detach() * delta).sum() for w, delta, gradient in terms)


def learned_ascent(
    space: AttackSpace,
    x: torch.Tensor,
    y: torch.Tensor,
    rnn: nn.Module,
    eps: float,
    steps: int,
    *,
    objective: Objective = cross_entropy_objective,
    clean_logits: torch.Tensor | None = None,
    random_start: bool = True,
    meta_graph: bool = True,
) -> Trajectory:
    """
    ``steps`` learned steps, one pass each (the gradient at ``delta_0 .. delta_{T-1}``). The gradient at ``delta_T``,
    which the meta-loss needs, is left to the caller (a trainer gets it from its weight update's own pass).

    :param space: Forward function, valid range, random stream of the start and fp16 loss scale.
    :param x: Clean inputs.
    :param y: Labels (or targets, with an objective that descends towards them).
    :param rnn: Maps ``(gradient, delta / eps, state)`` to ``(u, state)``: an :class:`RNNOptimizer` or any rule.
    :param eps: L-inf radius.
    :param steps: T.
    :param objective: Per-sample objective to ascend.
    :param clean_logits: Clean logits for objectives that need them (TRADES).
    :param random_start: ``delta_0 ~ U(-eps, eps)``, else 0.
    :param meta_graph: Keep the graph from the ``deltas`` to the rnn's weights (for the meta-gradient); False to
                       only run the learned optimizer.
    :return: The trajectory.
    """

    def attack_objective(logits: torch.Tensor) -> torch.Tensor:
        return objective(logits, y, clean_logits)

    delta = space.start(x, eps, random_start)
    trajectory = Trajectory([delta])
    state = None
    for _ in range(steps):
        gradient, logits = space.gradient(x, delta, attack_objective)
        trajectory.gradients.append(gradient)
        trajectory.losses.append(attack_objective(logits))
        with torch.set_grad_enabled(meta_graph):
            update, state = rnn(gradient, delta / eps if eps else delta, state)
        delta = space.project(x, delta + eps * torch.tanh(update), eps)
        trajectory.deltas.append(delta)
    return trajectory


class L2L(CheckedAttack):
    """
    | Paper link: Xiong & Hsieh, "Improved Adversarial Training via Learned Optimizer" (ECCV 2020), https://arxiv.org/abs/2004.12227

    A trained :class:`RNNOptimizer` run for ``steps`` steps as a torchattacks attack (L-inf), e.g. the ``rnn`` of a
    :class:`~art_fastat.trainers.AdversarialTrainerL2L` reused against another model.

    Distance Measure : Linf

    Arguments:
        model (nn.Module): model to attack.
        rnn (nn.Module): the learned optimizer.
        eps (float): maximum perturbation. (Default: 8/255)
        steps (int): number of learned steps. (Default: 5)
        random_start (bool): start from U(-eps, eps). (Default: True)

    Shape:
        - images: (N, C, H, W) in [0, 1]; labels: (N,) class indices; output: like images.

    Examples::
        >>> attack = art_fastat.attacks.L2L(model, trainer.rnn, eps=0.3, steps=5)
        >>> adv_images = attack(images, labels)
    """

    def __init__(
        self, model: nn.Module, rnn: nn.Module, eps: float = 8 / 255, steps: int = 5, random_start: bool = True
    ) -> None:
        super().__init__("L2L", model)
        if not isinstance(rnn, nn.Module):
            raise TypeError(f"rnn must be an nn.Module (an RNNOptimizer), got {type(rnn).__name__}")
        self.rnn = rnn
        self.eps = check_non_negative_float(eps, "eps")
        self.steps = check_positive_int(steps, "steps")
        self.random_start = bool(random_start)
        self.supported_mode = ["default"]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images, labels = check_attack_inputs(images, labels, self.device)
        if not len(images):
            return images
        trajectory = learned_ascent(AttackSpace(self.get_logits), images, labels, self.rnn, self.eps, self.steps,
                                    random_start=self.random_start, meta_graph=False)  # fmt: skip
        return (images + trajectory.deltas[-1]).detach()
