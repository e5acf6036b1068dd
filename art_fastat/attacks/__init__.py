"""
Attacks of art_fastat as ``torchattacks.Attack`` subclasses: usable standalone, in ``torchattacks.MultiAttack``, with
``set_normalization_used`` and the targeted modes, on any model taking images in [0, 1].
"""

from art_fastat.attacks.gaat import GAAT
from art_fastat.attacks.hmc import HMC
from art_fastat.attacks.l2l import L2L, RNNOptimizer

__all__ = ["GAAT", "HMC", "L2L", "RNNOptimizer"]
