"""L2L-RNN: adversarial training with a learned RNN maximizer (Xiong & Hsieh 2020; this project's reading)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from art_fastat._validation import check_choice, check_non_negative_float, check_positive_int
from art_fastat.attacks.l2l import RNNOptimizer, cross_entropy_objective, learned_ascent, trades_objective
from art_fastat.losses import kl_divergence
from art_fastat.trainers.base import AdversarialTrainerBase

OBJECTIVES = {"ce": cross_entropy_objective, "trades": trades_objective}


class AdversarialTrainerL2L(AdversarialTrainerBase):
    """
    | Paper link: Xiong & Hsieh, "Improved Adversarial Training via Learned Optimizer" (ECCV 2020), https://arxiv.org/abs/2004.12227

    The classifier and a coordinate-wise LSTM maximizer (:class:`~art_fastat.attacks.RNNOptimizer`) are trained
    jointly, per minibatch: the LSTM proposes ``steps`` (T) attack steps ``delta <- Pi(delta + eps tanh(u))``; the
    classifier takes one optimizer step at ``x + delta_T`` (``delta_T`` detached); the LSTM takes one Adam ascent step
    on the meta-loss ``sum_{t=1..T} CE(f(x + delta_t), y)`` over the unrolled trajectory (intermediate iterations
    count, as the paper stresses), first-order: every gradient input is a constant, so no second derivative through
    the classifier is taken. ``objective="trades"`` is RNN-TRADES: the inner and meta objective is
    ``KL(p(x) || p(x + delta))`` and the classifier's loss ``CE(f(x), y) + beta KL(p(x) || p(x + delta_T))``.

    The paper's method details did not survive; these choices are this project's (``shared/design/methods.md``):

    - LSTM inputs per coordinate: the gradient normalised per sample to mean absolute value 1, and ``delta / eps``;
      one layer of ``hidden_size`` (16) units, shared across coordinates; state carried across the T steps.
    - The meta-gradient costs no pass through the classifier: with ``g_t`` held constant it is the gradient of
      ``sum_t <g_t, delta_t>`` through the LSTM alone, and ``g_T`` comes from the weight update's own backward (the
      update's input ``x + delta_T`` is a leaf that requires grad), so a batch costs ``T + 1`` passes as PGD-T AT does.
    - ``delta_0 ~ U(-eps, eps)`` (``random_start=True``), as RAT's; the meta weights ``w_t`` are 1.
    - The LSTM's optimizer is Adam with ``optimizer_lr``; it and the LSTM are saved in checkpoints. The trained LSTM
      is ``trainer.rnn``: :class:`~art_fastat.attacks.L2L` runs it as a torchattacks attack against any model.
    - History: ``inner_loss_t`` for t = 0..T, the attack objective at ``delta_t`` averaged per epoch (under the
      weights before each update), to compare with PGD's climb.
    """

    method: ClassVar[str] = "l2l"
    paper_lr_schedule: ClassVar[str] = "multistep"

    def __init__(
        self,
        classifier: Any,
        eps: float = 0.3,
        steps: int = 5,
        objective: str = "ce",
        beta: float = 6.0,
        optimizer_lr: float = 1e-3,
        rnn: nn.Module | None = None,
        hidden_size: int = 16,
        random_start: bool = True,
        **kwargs: Any,
    ) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place.
        :param eps: L-inf radius.
        :param steps: Learned attack steps T per batch.
        :param objective: ``"ce"`` (RNN-Adv) or ``"trades"`` (RNN-TRADES).
        :param beta: TRADES' weight of the KL term (ART's default, 6.0); must be > 0 with ``"trades"``.
        :param optimizer_lr: Adam learning rate of the LSTM (the paper's alpha2).
        :param rnn: A learned optimizer to start from (e.g. a previous run's ``trainer.rnn``); a fresh
                    :class:`RNNOptimizer` when None, initialised from the trainer's ``seed`` (same seed, same RNN).
        :param hidden_size: Hidden units of a fresh :class:`RNNOptimizer`.
        :param random_start: Start each attack from ``U(-eps, eps)``.
        :param kwargs: Engine options of :class:`~art_fastat.trainers.base.AdversarialTrainerBase`.
        """
        super().__init__(classifier, eps, **kwargs)
        self.steps = check_positive_int(steps, "steps")
        self.objective = check_choice(objective, "objective", tuple(OBJECTIVES))
        self.beta = check_non_negative_float(beta, "beta")
        if self.objective == "trades" and self.beta == 0:
            raise ValueError("beta must be > 0 with objective='trades' (beta=0 is natural training)")
        self.optimizer_lr = check_non_negative_float(optimizer_lr, "optimizer_lr")
        if rnn is not None and not isinstance(rnn, nn.Module):
            raise TypeError(f"rnn must be an nn.Module (an RNNOptimizer) or None, got {type(rnn).__name__}")
        if rnn is None:
            with torch.random.fork_rng(devices=[]):  # its initialisation follows the trainer's seed
                torch.manual_seed(self.seed)
                rnn = RNNOptimizer(hidden_size)
        self.rnn = rnn.to(self.device)
        self.rnn_optimizer = torch.optim.Adam(self.rnn.parameters(), lr=self.optimizer_lr)
        self.random_start = bool(random_start)

    @property
    def single_step(self) -> bool:
        """With one learned step (``steps=1``)."""
        return self.steps == 1

    @property
    def passes_per_batch(self) -> float:
        """T + 1 (PGD-T AT's); RNN-TRADES's update adds a forward and backward at ``x`` (one pass)."""
        return float(self.steps + 1 + (self.objective == "trades"))

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        objective = OBJECTIVES[self.objective]
        # TRADES: the update's forward pass at x, whose detached logits are also the attack's reference
        natural_logits = self._forward(x) if self.objective == "trades" else None
        clean_logits = None if natural_logits is None else natural_logits.detach()
        space = self.space
        with self._attack_context():
            trajectory = learned_ascent(space, x, y, self.rnn, eps, self.steps, objective=objective,
                                        clean_logits=clean_logits, random_start=self.random_start)  # fmt: skip
        final = trajectory.deltas[-1].detach().requires_grad_(True)
        # before the update (a GradScaler may change it); the update's loss is weighted by this rank's share
        scale = space.loss_scale * self.step.loss_weight
        if self.objective == "ce":
            logits = self._update(x + final, y)
            final_loss = F.cross_entropy(logits.float(), y, reduction="none")
            weight = 1.0  # d mean CE / d delta = g_T / n
        else:
            adversarial_logits = self._forward(x + final)
            # TRADES differentiates p(x) too; only p(x + delta) depends on delta, so final.grad = beta g_T / n
            kl = kl_divergence(natural_logits, adversarial_logits)
            self._optimize(F.cross_entropy(natural_logits.float(), y) + self.beta * kl.mean(), adversarial_logits, y)
            final_loss, weight = kl.detach(), self.beta
        trajectory.gradients.append(final.grad * len(y) / (scale * weight))
        trajectory.losses.append(final_loss)
        self.rnn_optimizer.zero_grad(set_to_none=True)
        (-trajectory.meta_surrogate() / len(y)).backward()  # ascent; through the LSTM only
        self.process.average_gradients(self.rnn.parameters(), self.step.loss_weight)  # one RNN for all ranks
        self.rnn_optimizer.step()
        for step, loss in enumerate(trajectory.losses):
            self._record(f"inner_loss_{step}", loss.sum(), len(y))

    def _method_state(self) -> dict[str, Any]:
        return {"rnn": self.rnn.state_dict(), "rnn_optimizer": self.rnn_optimizer.state_dict()}

    def _load_method_state(self, state: dict[str, Any]) -> None:
        self.rnn.load_state_dict(state["rnn"])
        self.rnn_optimizer.load_state_dict(state["rnn_optimizer"])


def l2l_trades(classifier: Any, eps: float = 0.3, **kwargs: Any) -> AdversarialTrainerL2L:
    """
    RNN-TRADES: :class:`AdversarialTrainerL2L` with ``objective="trades"``.

    :param classifier: The ART ``PyTorchClassifier`` to train in place.
    :param eps: L-inf radius.
    :param kwargs: Arguments of :class:`AdversarialTrainerL2L`.
    :return: The trainer.
    """
    return AdversarialTrainerL2L(classifier, eps, objective="trades", **kwargs)
