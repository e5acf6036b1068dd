"""A torchattacks attack plugged into a trainer as its inner maximizer (RAT's ``attack=``, DAT's ``inner=``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from art_fastat.trainers.base import AdversarialTrainerBase


def check_external_attack(attack: Any, trainer: AdversarialTrainerBase) -> Any:
    """
    Accept a torchattacks attack as a pluggable inner maximizer. It receives and returns input-space images, runs in
    its own ``__call__`` (which puts the model in eval mode for the attack, as torchattacks does) and must be built on
    the classifier's model: directly when the classifier has no preprocessing, or on the module of
    :func:`art_fastat.input_space_model` (or with ``set_normalization_used(mean, std)``) when it has. A targeted attack
    is refused, as ART's trainers refuse one: training against it would minimise the loss of its target class.

    :param attack: The user's attack.
    :param trainer: The trainer that will run it.
    :return: The attack.
    """
    import torchattacks

    network, model = trainer.network, trainer.model
    if not isinstance(attack, torchattacks.attack.Attack):
        raise TypeError(f"attack must be a torchattacks.Attack, got {type(attack).__name__}")
    if attack.model is not network and getattr(attack.model, "model", None) is not network:
        raise ValueError("attack must be built on classifier.model (or art_fastat.input_space_model(classifier))")
    if attack.model is network and model is not network and not attack._normalization_applied:
        raise ValueError(
            "attack is built on classifier.model but the classifier standardises its inputs: build it on "
            "art_fastat.input_space_model(classifier) or call attack.set_normalization_used(mean, std)"
        )
    if attack.targeted:
        raise ValueError(
            f"attack must be untargeted to train against it (its mode is {attack.attack_mode!r}): call "
            "attack.set_mode_default()"
        )
    if trainer.eps_warmup_epochs != 0:  # a number of epochs or "auto"
        raise ValueError("eps_warmup_epochs must be 0 with an external attack: its eps is its own and fixed")
    return attack


def single_step_attack(attack: Any) -> bool:
    """Whether a torchattacks attack takes one step: its ``steps`` is 1, or it has none (FGSM, FFGSM)."""
    return getattr(attack, "steps", 1) == 1


def run_external_attack(attack: Any, network: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
    """Run a checked attack on input-space images; returns the perturbation."""
    if attack.model is network and attack._normalization_applied:
        mean, std = model.mean, model.std
        return attack((x - mean) / std, y) * std + mean - x
    return attack(x, y) - x
