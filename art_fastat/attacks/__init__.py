"""
Attacks of art_fastat as ``torchattacks.Attack`` subclasses: usable standalone, in ``torchattacks.MultiAttack``, with
``set_normalization_used`` and the targeted modes, on any model taking images in [0, 1].
"""

from art_fastat.attacks.gaat import GAAT

__all__ = ["GAAT"]
