"""
GAAT's maximizer: PGD on the second-order Taylor model of the loss (Gong 2023, section 4, Algorithm 2, https://arxiv.org/abs/2309.09464).

The Jacobian ``J = grad_x l(x)`` (and, for the diagonal Hessian, Hutchinson probes) are computed once at the natural
point; the ``T`` steps ``delta <- Pi(delta + alpha * sign(J + H delta))`` (eq. 6) then need no pass through the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from art_fastat._validation import check_attack_inputs, check_choice, check_non_negative_float, check_positive_int
from art_fastat.attacks.base import CheckedAttack
from art_fastat.perturbation import AttackSpace

HESSIANS = ("gauss_newton", "diagonal")

#: Per-sample loss to maximise, from logits and labels.
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (the untargeted objective)."""
    return F.cross_entropy(logits.float(), labels, reduction="none")


def _per_sample_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<a_i, b_i>`` for every sample ``i``, shaped to broadcast against a batch."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))


def jacobian_and_curvature(
    space: AttackSpace,
    x: torch.Tensor,
    y: torch.Tensor,
    hessian: str = "gauss_newton",
    hutchinson_samples: int = 1,
    objective: Objective = cross_entropy,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """
    Algorithm 2, lines 4-6: one forward pass at the natural point, its input gradient and, for the diagonal Hessian,
    the Hutchinson estimate ``diag(H) ~ mean_s z_s * (H z_s)`` with probes from ``space.generator``.

    :return: ``(per-sample loss l(x), J, diag(H) or None)``, all detached.
    """
    x_natural = x.detach().requires_grad_(True)
    natural_loss = objective(space.forward(x_natural), y)
    diagonal = hessian == "diagonal"
    (jacobian,) = torch.autograd.grad(natural_loss.sum() * space.loss_scale, x_natural, create_graph=diagonal)
    if space.loss_scale != 1.0:
        jacobian = jacobian / space.loss_scale
    curvature = None
    if diagonal:
        curvature = torch.zeros_like(x)
        for probe_index in range(hutchinson_samples):
            probe = torch.randint(0, 2, x.shape, generator=space.generator, device=x.device).to(x.dtype) * 2 - 1
            retain = probe_index < hutchinson_samples - 1
            (hessian_probe,) = torch.autograd.grad(jacobian, x_natural, grad_outputs=probe, retain_graph=retain)
            curvature += probe * hessian_probe
        curvature /= hutchinson_samples
    return natural_loss.detach(), jacobian.detach(), curvature


@dataclass
class TaylorAscent:
    """Result of :func:`taylor_ascent`: the perturbation and what the diagnostics need."""

    #: Final perturbation (detached).
    delta: torch.Tensor
    #: Per-sample loss at the natural point, l(x).
    natural_loss: torch.Tensor
    #: J at the natural point.
    jacobian: torch.Tensor
    #: Diagonal Hessian estimate, or None for Gauss-Newton.
    curvature: torch.Tensor | None
    #: Gauss-Newton only: samples with 1 + <J, delta_0> < 0. Their first step moves *down* the model's loss, and so do
    #: the others unless that step's projection of an invalid ``x + delta_0`` into the valid range turned the sign.
    descending: torch.Tensor | None

    def predicted_increase(self) -> torch.Tensor:
        """Per-sample increase the Taylor model predicts for ``delta``: <J, delta> + delta^T H delta / 2 (eq. 3)."""
        linear = _per_sample_dot(self.jacobian, self.delta)
        gauss_newton = self.curvature is None  # delta^T J J^T delta = <J, delta>^2
        quadratic = linear**2 if gauss_newton else _per_sample_dot(self.delta, self.curvature * self.delta)
        return (linear + quadratic / 2).flatten()


def taylor_ascent(
    space: AttackSpace,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    *,
    hessian: str = "gauss_newton",
    hutchinson_samples: int = 1,
    random_start: bool = True,
    objective: Objective = cross_entropy,
) -> TaylorAscent:
    """
    GAAT's adversary (Algorithm 2, lines 3-10).

    ``J`` is the gradient of the batch *sum* of per-sample losses, i.e. each sample's own input gradient (a batch mean
    would shrink J by 1/B and H by 1/B^2). ``H`` is never formed as a d x d matrix:

    - ``"gauss_newton"`` (eq. 8): ``H = J J^T`` per sample, so ``H delta = J <J, delta>`` and
      ``sign(J + J <J, delta>) = sign(1 + <J, delta>) sign(J)``: each step moves every pixel of a sample by ``alpha``
      along ``sign(J)`` or every pixel against it. Once ``delta`` is inside the box ``Pi`` projects onto (after the
      first step: ``x + delta_0`` may leave the valid range), a step can only move ``<J, delta>`` the way it points,
      so ``sign(1 + <J, delta>)`` never changes again and the other ``T - 1`` steps are one step of ``(T - 1) alpha``.
      The ``T`` steps are computed as these two: the same perturbation as step by step up to the float rounding of
      the summed step, and the same signs, since rounding keeps the monotonicity (a per-sample dot product of fixed
      reduction order is monotone in each term). So while ``1 + <J, delta_0> > 0`` (and ``1 + <J, delta_1> > 0``)
      the result is one step of ``steps * alpha`` along ``sign(J)`` from ``delta_0``, clipped (exactly so where
      ``x + delta_0`` is inside the valid range): FGSM with random start, with J taken at the natural point (Wong et
      al. take it at ``x + delta_0``); when ``1 + <J, delta_0> < 0`` the steps move *down* the loss. Both follow from
      the paper's update; :attr:`TaylorAscent.descending` says which samples fell in the second case.
    - ``"diagonal"`` (eq. 10): ``diag(H) ~ mean_s z_s * (H z_s)`` with Rademacher probes ``z_s`` and Hessian-vector
      products by double backpropagation (Hutchinson). Samples are independent as long as the network has no
      batch-coupled layer in the mode it runs in (BatchNorm in train mode couples them).

    :param space: Forward function, valid range, random stream (start and probes) and fp16 loss scale (J is divided
                  by it again).
    :param x: Clean inputs.
    :param y: Labels (target labels for a targeted ``objective``).
    :param eps: L-inf radius.
    :param alpha: Step size.
    :param steps: Number of Taylor steps ``T`` (no network pass each).
    :param hessian: ``"gauss_newton"`` or ``"diagonal"``.
    :param hutchinson_samples: Probes for the diagonal Hessian.
    :param random_start: ``delta_0 ~ U(-eps, eps)`` (else 0).
    :param objective: Per-sample loss to maximise.
    :return: The perturbation and diagnostics.
    """
    natural_loss, jacobian, curvature = jacobian_and_curvature(space, x, y, hessian, hutchinson_samples, objective)
    delta = space.start(x, eps, random_start)
    lower, upper = space.box(x, eps)
    if curvature is not None:
        for _ in range(steps):
            direction = (jacobian + curvature * delta).sign_()
            delta = torch.add(delta, direction, alpha=alpha).clamp_(lower, upper)
        return TaylorAscent(delta.detach(), natural_loss, jacobian, curvature, None)
    # Gauss-Newton: the T steps in two, exactly (see the docstring).
    jacobian_sign = jacobian.sign()
    slope = 1 + _per_sample_dot(jacobian, delta)
    delta.addcmul_(jacobian_sign, alpha * slope.sign()).clamp_(lower, upper)
    if steps > 1:
        slope_in_box = 1 + _per_sample_dot(jacobian, delta)
        delta.addcmul_(jacobian_sign, (steps - 1) * alpha * slope_in_box.sign()).clamp_(lower, upper)
    return TaylorAscent(delta.detach(), natural_loss, jacobian, None, slope.flatten() < 0)


class GAAT(CheckedAttack):
    """
    | Paper link: Gong, "Reducing Adversarial Training Cost with Gradient Approximation", https://arxiv.org/abs/2309.09464

    GAAT's Taylor-approximate PGD as a torchattacks attack (L-inf): one pass through the network at the natural point
    (plus Hutchinson probes for the diagonal Hessian), then ``steps`` updates with no further pass.

    Works with ``torchattacks.MultiAttack``, ``set_normalization_used`` and the targeted modes (it then maximises
    ``-CE(f(x + delta), target)``, whose Gauss-Newton Hessian is ``J J^T`` of that objective).

    Distance Measure : Linf

    Arguments:
        model (nn.Module): model to attack.
        eps (float): maximum perturbation. (Default: 8/255)
        alpha (float): step size. (Default: 2/255)
        steps (int): number of Taylor steps. (Default: 10)
        hessian (str): "gauss_newton" (eq. 8) or "diagonal" (eq. 10). (Default: "gauss_newton")
        hutchinson_samples (int): probes of the diagonal Hessian. (Default: 1)
        random_start (bool): start from U(-eps, eps). (Default: True)

    Shape:
        - images: (N, C, H, W) in [0, 1]; labels: (N,) class indices; output: like images.

    Examples::
        >>> attack = art_fastat.attacks.GAAT(model, eps=0.3, alpha=0.075, steps=10)
        >>> adv_images = attack(images, labels)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        hessian: str = "gauss_newton",
        hutchinson_samples: int = 1,
        random_start: bool = True,
    ) -> None:
        super().__init__("GAAT", model)
        self.eps = check_non_negative_float(eps, "eps")
        self.alpha = check_non_negative_float(alpha, "alpha")
        self.steps = check_positive_int(steps, "steps")
        self.hessian = check_choice(hessian, "hessian", HESSIANS)
        self.hutchinson_samples = check_positive_int(hutchinson_samples, "hutchinson_samples")
        self.random_start = bool(random_start)
        self.supported_mode = ["default", "targeted"]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images, labels = check_attack_inputs(images, labels, self.device)
        if not len(images):
            return images
        objective: Objective = cross_entropy
        if self.targeted:
            labels = self.get_target_label(images, labels)

            def objective(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                return -cross_entropy(logits, target)

        ascent = taylor_ascent(AttackSpace(self.get_logits), images, labels, self.eps, self.alpha, self.steps,
                               hessian=self.hessian, hutchinson_samples=self.hutchinson_samples,
                               random_start=self.random_start, objective=objective)  # fmt: skip
        return (images + ascent.delta).detach()
