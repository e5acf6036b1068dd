"""ATCD: adversarial training using contrastive divergence (ICLR 2021 submission, section 5, Algorithm 1)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from art_fastat._validation import check_choice, check_non_negative_float, check_positive_int
from art_fastat.attacks.hmc import MOMENTUM_NORMALISATIONS, ChainState, hmc_round
from art_fastat.trainers.base import AdversarialTrainerBase


class AdversarialTrainerATCD(AdversarialTrainerBase):
    """
    | Paper link: "Adversarial Training using Contrastive Divergence", ICLR 2021 submission (OpenReview),
      https://openreview.net/group?id=ICLR.cc/2021/Conference

    Per minibatch a chain starts at ``theta_0 = x + v_0``, ``v_0 ~ U(-eps, eps)``; then ``repeats`` (T) times:
    ``trajectory_length`` (K) Hamiltonian steps on the contrastive objective, a per-sample Metropolis-Hastings test,
    and one optimizer step on ``CE(f(theta_K), y)`` at the accepted states; the chain continues from there (a
    Free-like replay). The sampler is :func:`art_fastat.attacks.hmc.hmc_round`, shared with the
    :class:`~art_fastat.attacks.HMC` attack.

    Decisions where the paper is incomplete:

    - Trajectory step (Algorithm 1): ``theta <- Pi(theta + position_step * sign(v))``, then
      ``v <- clip(v + alpha * g, -eps, eps)`` with ``g`` the gradient of the contrastive objective (ascent).
      ``position_step`` defaults to eps (Algorithm 1's). ``g`` is L1-normalised per sample, ``grad / mean|grad|``
      (MI-FGSM's normalisation, which the paper cites, scaled so that ``alpha`` is in input units, default eps):
      the raw gradient of a cross-entropy is orders of magnitude below eps, so ``sign(v)`` would stay the random
      start's and the "adversary" would be uniform noise (``momentum_normalisation="none"`` reproduces that).
    - ``J_cd = rho KL(Q0||Qinf) - lam KL(Q1||Qinf)`` is read with ``Qinf`` = the one-hot label and differentiated at
      the last layer as eq. 14 does: the surrogate ``lam CE(f(theta), y) - rho <logits, p_prev - y>`` has logit
      gradient ``lam (p - y) - rho (p_prev - y)`` (with lam=2, rho=1 the paper's ``p(theta^K) - (y - Delta f)``).
      ``p_prev`` is per sample: the softmax of the previous optimizer step's forward pass at the chain's state (the
      weights before that update); no second model copy is kept. A new minibatch has none, so its first round uses
      the plain cross-entropy. ``rho=0, lam=1`` removes the CD term.
    - M-H: ``H = CE + |v|_1 / d`` (higher loss favoured). The previous state's ``H`` is the one computed when it was
      proposed (under the weights of that round: recomputing it would cost a pass); the first round of a minibatch
      has no previous energy and is always accepted. A rejected sample keeps its previous position and momentum.
      The history reports ``acceptance_rate`` over the tested proposals.
    - ``nb_epochs`` counts trajectory steps as Free's counts replays: ``fit(nb_epochs=N)`` runs ``ceil(N / (T K))``
      passes over the data (the paper's ``N / (T K)`` epochs), so ATCD(T=4, K=2) and Free-8 at equal ``nb_epochs``
      see the data equally often.
    - Cost: ``T (K + 1)`` passes per minibatch, ``T K`` of them with an input-only backward. Algorithm 1 counts
      ``K (T + 1)``; no pass can be shared faithfully: the update's forward is at the *accepted* state, known only
      after the last trajectory step's input gradient, and its backward needs a different loss (CE, not J_cd).
    - ``lr_schedule="paper"`` is ``multistep``: the paper states step decays for its baselines (x0.1 late in
      training) but not ATCD's own schedule.
    """

    method: ClassVar[str] = "atcd"
    paper_lr_schedule: ClassVar[str] = "multistep"

    def __init__(
        self,
        classifier: Any,
        eps: float = 0.3,
        alpha: float | None = None,
        trajectory_length: int = 2,
        repeats: int = 4,
        lam: float = 2.0,
        rho: float = 1.0,
        mh_correction: bool = True,
        position_step: float | None = None,
        momentum_normalisation: str = "l1",
        **kwargs: Any,
    ) -> None:
        """
        :param classifier: The ART ``PyTorchClassifier`` to train in place.
        :param eps: L-inf radius; also the momentum's clip.
        :param alpha: Momentum step at the full eps (scaled with the eps warm-up); default eps.
        :param trajectory_length: Trajectory steps per round (the paper's K).
        :param repeats: Rounds, i.e. weight updates, per minibatch (the paper's T).
        :param lam: Weight of the current cross-entropy (lambda).
        :param rho: Weight of the previous prediction's term (rho); 0 turns the CD term off.
        :param mh_correction: Apply the per-sample Metropolis-Hastings test after every round but a minibatch's first.
        :param position_step: Position step at the full eps; default eps (Algorithm 1).
        :param momentum_normalisation: ``"l1"`` (default) or ``"none"`` (the raw gradient; see above).
        :param kwargs: Engine options of :class:`~art_fastat.trainers.base.AdversarialTrainerBase`.
        """
        super().__init__(classifier, eps, **kwargs)
        self.alpha = self.eps if alpha is None else check_non_negative_float(alpha, "alpha")
        self.trajectory_length = check_positive_int(trajectory_length, "trajectory_length")
        self.repeats = check_positive_int(repeats, "repeats")
        self.lam = check_non_negative_float(lam, "lam")
        self.rho = check_non_negative_float(rho, "rho")
        self.mh_correction = bool(mh_correction)
        self.position_step = (
            self.eps if position_step is None else check_non_negative_float(position_step, "position_step")
        )
        self.momentum_normalisation = check_choice(
            momentum_normalisation, "momentum_normalisation", MOMENTUM_NORMALISATIONS
        )

    @property
    def single_step(self) -> bool:
        """With one trajectory step per minibatch (``repeats=1, trajectory_length=1``)."""
        return self.replays == 1

    @property
    def replays(self) -> int:
        """T K: trajectory steps per minibatch, what ``nb_epochs`` counts."""
        return self.repeats * self.trajectory_length

    @property
    def updates_per_batch(self) -> int:
        """T: an optimizer step per round."""
        return self.repeats

    @property
    def passes_per_batch(self) -> float:
        """T (K + 1)."""
        return float(self.repeats * (self.trajectory_length + 1))

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        state = ChainState.start(x, eps, self.generator)
        alpha, position_step = self._step_size(self.alpha, eps), self._step_size(self.position_step, eps)
        for _ in range(self.repeats):
            with self._attack_context():
                state, accepted = hmc_round(self.space, x, y, state, eps, alpha=alpha, position_step=position_step,
                                            steps=self.trajectory_length, lam=self.lam, rho=self.rho,
                                            mh_correction=self.mh_correction,
                                            normalisation=self.momentum_normalisation)  # fmt: skip
            logits = self._update(x + state.delta, y)
            state.probs = F.softmax(logits.float(), dim=1)
            if accepted is not None:
                self._record("acceptance_rate", accepted.sum(), len(y))
