"""
The contrastive Hamiltonian Monte Carlo sampler of ATCD ("Adversarial Training using Contrastive Divergence",
ICLR 2021 submission, section 5, Algorithm 1).

The chain's position is the adversarial input ``theta = x + delta``, its momentum ``v`` has the input's shape and the
kinetic energy is ``K(v) = |v|``. One *round* is ``K`` trajectory steps

    theta_k <- Pi(theta_{k-1} + step * grad K(v)) = Pi(theta_{k-1} + step * sign(v))
    v <- clip(v + alpha * grad_theta J_cd(theta_k), -eps, eps)

followed by a per-sample Metropolis-Hastings test that keeps the proposal with probability
``min(1, exp(H_new - H_old))``, ``H = CE + |v|_1 / d`` (higher loss is favoured). ``J_cd`` is the contrastive
objective: ``lam CE(f(theta), y) - rho <logits, p_prev - y>``, whose gradient at the logits is
``lam (p - y) - rho (p_prev - y)`` (eq. 14 with ``Q_inf`` read as the one-hot label); ``p_prev`` is the prediction
cached at the chain's current state, and without one (a fresh chain) the objective is the plain cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from art_fastat._validation import check_attack_inputs, check_non_negative_float, check_positive_int
from art_fastat.attacks.base import CheckedAttack
from art_fastat.perturbation import AttackSpace, normalise_per_sample, uniform_start

MOMENTUM_NORMALISATIONS = ("l1", "none")


def contrastive_objective(
    logits: torch.Tensor, y: torch.Tensor, previous_probs: torch.Tensor | None, lam: float, rho: float
) -> torch.Tensor:
    """
    Per-sample ``J_cd = lam CE(logits, y) - rho <logits, p_prev - onehot(y)>``; plain CE when ``p_prev`` is None.

    :param logits: Logits at the chain's position.
    :param y: Labels.
    :param previous_probs: Cached softmax ``p_prev`` (treated as a constant), or None.
    :param lam: Weight of the current step's cross-entropy (the paper's lambda).
    :param rho: Weight of the previous step's term (the paper's rho).
    :return: The objective per sample, shape ``(n,)``.
    """
    loss = F.cross_entropy(logits.float(), y, reduction="none")
    if previous_probs is None:
        return loss
    target = F.one_hot(y, logits.shape[1]).to(previous_probs.dtype)
    return lam * loss - rho * (logits.float() * (previous_probs.detach() - target)).sum(1)


def metropolis_hastings(
    energy_new: torch.Tensor, energy_old: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """
    Per-sample acceptance: ``u < min(1, exp(H_new - H_old))`` with ``u ~ U(0, 1)``.

    :return: Boolean mask of accepted proposals.
    """
    u = torch.rand(energy_new.shape, generator=generator, device=energy_new.device)
    return u < torch.exp(energy_new - energy_old).clamp(max=1.0)


@dataclass
class ChainState:
    """One chain per sample: perturbation, momentum and, once known, the energy and cached prediction there."""

    delta: torch.Tensor
    momentum: torch.Tensor
    energy: torch.Tensor | None = None
    probs: torch.Tensor | None = None

    @classmethod
    def start(cls, x: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> ChainState:
        """Algorithm 1's ``theta_0 = x + v_0``, ``v_0 ~ U(-eps, eps)``: the random start is also the first momentum."""
        v0 = uniform_start(x, eps, generator)
        return cls(v0, v0.clone())

    def select(self, accept: torch.Tensor, other: ChainState) -> ChainState:
        """This state where ``accept``, ``other`` elsewhere (both complete: energies and predictions known)."""

        def pick(mine: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
            return torch.where(accept.view(-1, *([1] * (mine.dim() - 1))), mine, theirs)

        fields = ("delta", "momentum", "energy", "probs")
        return ChainState(*(pick(getattr(self, name), getattr(other, name)) for name in fields))


def hmc_round(
    space: AttackSpace,
    x: torch.Tensor,
    y: torch.Tensor,
    state: ChainState,
    eps: float,
    *,
    alpha: float,
    position_step: float,
    steps: int,
    lam: float = 2.0,
    rho: float = 1.0,
    mh_correction: bool = True,
    normalisation: str = "l1",
    targeted: bool = False,
) -> tuple[ChainState, torch.Tensor | None]:
    """
    One round of Algorithm 1's stage 1: ``steps`` trajectory steps (one forward and one input-gradient backward pass
    each), then the Metropolis-Hastings test against ``state`` (skipped when ``state`` has no energy yet).

    :param space: Forward function, valid range, random stream of the acceptance test and fp16 loss scale.
    :param x: Clean inputs.
    :param y: Labels.
    :param state: The chain's current state; ``state.probs`` is ``p_prev`` of the contrastive objective.
    :param eps: L-inf radius; also the momentum's clip.
    :param alpha: Momentum step: ``v += alpha * g``.
    :param position_step: Position step: ``theta += position_step * sign(v)`` (the paper's eps).
    :param steps: Trajectory length K.
    :param lam: lambda of the contrastive objective.
    :param rho: rho of the contrastive objective; 0 gives the plain (lam-scaled) cross-entropy.
    :param mh_correction: Apply the Metropolis-Hastings test.
    :param normalisation: ``"l1"``: ``g = grad / mean|grad|`` per sample (MI-FGSM's L1 normalisation, scaled so that
                          ``alpha`` is in input units); ``"none"``: the raw gradient of the summed objective.
    :param targeted: ``y`` are target classes: ascend ``-J_cd`` and use ``H = -CE + |v|_1 / d``.
    :return: ``(new state, accepted mask or None)``. An accepted proposal's ``probs`` is the softmax of its last
             trajectory step (the prediction at that state under the weights of this round).
    """
    sign = -1.0 if targeted else 1.0

    def objective(logits: torch.Tensor) -> torch.Tensor:
        return sign * contrastive_objective(logits, y, state.probs, lam, rho)

    delta, momentum = state.delta.detach(), state.momentum
    logits = None
    for _ in range(steps):
        delta = space.project(x, delta + position_step * momentum.sign(), eps)
        gradient, logits = space.gradient(x, delta, objective)
        if normalisation == "l1":
            gradient = normalise_per_sample(gradient)
        momentum = (momentum + alpha * gradient).clamp(-eps, eps)
    if logits is None:
        return state, None
    logits = logits.float()
    loss = sign * F.cross_entropy(logits, y, reduction="none")
    proposal = ChainState(delta, momentum, loss + momentum.abs().flatten(1).mean(1), F.softmax(logits, dim=1))
    if not mh_correction or state.energy is None:
        return proposal, None
    accept = metropolis_hastings(proposal.energy, state.energy, space.generator)
    return proposal.select(accept, state), accept


class HMC(CheckedAttack):
    """
    | Paper link: "Adversarial Training using Contrastive Divergence", ICLR 2021 submission (OpenReview),
      https://openreview.net/group?id=ICLR.cc/2021/Conference

    ATCD's contrastive Hamiltonian sampler as a torchattacks attack (L-inf). Each of ``repeats`` rounds runs
    ``steps`` trajectory steps (one forward and backward pass each) and a Metropolis-Hastings test; the contrastive
    term compares with the prediction at the chain's state after the previous round (the first round uses plain CE).
    With ``rho=0`` the CD term is off and it is an HMC-PGD attack: momentum-sign PGD with M-H resampling.

    Distance Measure : Linf

    Arguments:
        model (nn.Module): model to attack.
        eps (float): maximum perturbation. (Default: 8/255)
        alpha (float): momentum step, in input units after L1 normalisation. (Default: eps)
        steps (int): trajectory length K per round. (Default: 2, as ATCD's trainer)
        repeats (int): number of rounds T. (Default: 4, as ATCD's trainer)
        position_step (float): position step along sign(v). (Default: eps, Algorithm 1's, as ATCD's trainer)
        lam (float): weight of the current cross-entropy. (Default: 2.0)
        rho (float): weight of the previous prediction's term; 0 turns the CD term off. (Default: 1.0)
        mh_correction (bool): apply the Metropolis-Hastings test after every round. (Default: True)
        random_start (bool): start from U(-eps, eps) (also the first momentum); else from zero. (Default: True)

    Shape:
        - images: (N, C, H, W) in [0, 1]; labels: (N,) class indices; output: like images.

    Examples::
        >>> attack = art_fastat.attacks.HMC(model, eps=0.3, steps=2, repeats=5, position_step=0.1)
        >>> adv_images = attack(images, labels)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        eps: float = 8 / 255,
        alpha: float | None = None,
        steps: int = 2,
        repeats: int = 4,
        position_step: float | None = None,
        lam: float = 2.0,
        rho: float = 1.0,
        mh_correction: bool = True,
        random_start: bool = True,
    ) -> None:
        super().__init__("HMC", model)
        self.eps = check_non_negative_float(eps, "eps")
        self.alpha = self.eps if alpha is None else check_non_negative_float(alpha, "alpha")
        self.steps = check_positive_int(steps, "steps")
        self.repeats = check_positive_int(repeats, "repeats")
        self.position_step = (
            self.eps if position_step is None else check_non_negative_float(position_step, "position_step")
        )
        self.lam = check_non_negative_float(lam, "lam")
        self.rho = check_non_negative_float(rho, "rho")
        self.mh_correction = bool(mh_correction)
        self.random_start = bool(random_start)
        self.supported_mode = ["default", "targeted"]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images, labels = check_attack_inputs(images, labels, self.device)
        if not len(images):
            return images
        if self.targeted:
            labels = self.get_target_label(images, labels)
        if self.random_start:
            state = ChainState.start(images, self.eps)
        else:
            state = ChainState(torch.zeros_like(images), torch.zeros_like(images))
        for _ in range(self.repeats):
            state, _ = hmc_round(AttackSpace(self.get_logits), images, labels, state, self.eps, alpha=self.alpha,
                                 position_step=self.position_step, steps=self.steps, lam=self.lam, rho=self.rho,
                                 mh_correction=self.mh_correction, targeted=self.targeted)  # fmt: skip
        return (images + state.delta).detach()
