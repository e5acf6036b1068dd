"""ART trainers of art_fastat: the engine and one small class per method."""

from collections.abc import Callable
from typing import Any

from art_fastat.trainers.atcd import AdversarialTrainerATCD
from art_fastat.trainers.atlas import AdversarialTrainerATLAS
from art_fastat.trainers.base import AdversarialTrainerBase
from art_fastat.trainers.dat import AdversarialTrainerDAT
from art_fastat.trainers.fast import AdversarialTrainerFast
from art_fastat.trainers.free import AdversarialTrainerFree
from art_fastat.trainers.gaat import AdversarialTrainerGAAT
from art_fastat.trainers.gradalign import AdversarialTrainerGradAlign
from art_fastat.trainers.l2l import AdversarialTrainerL2L, l2l_trades
from art_fastat.trainers.natural import NaturalTrainer
from art_fastat.trainers.nfgsm import AdversarialTrainerNFGSM
from art_fastat.trainers.pgd import AdversarialTrainerPGD


def dat_gaat(classifier: Any, eps: float = 0.3, **kwargs: Any) -> AdversarialTrainerDAT:
    """
    DAT+GAAT (Gong 2023, Table 4, https://arxiv.org/abs/2309.09464): natural epochs, then
    GAAT. GAAT's own arguments go in ``inner_options``.

    :param classifier: The ART ``PyTorchClassifier`` to train in place.
    :param eps: L-inf radius.
    :param kwargs: Arguments of :class:`AdversarialTrainerDAT`.
    :return: The DAT trainer.
    """
    return AdversarialTrainerDAT(classifier, eps, inner="gaat", **kwargs)


#: Trainer factories by the method name used by the CLI and the benchmarks.
TRAINERS: dict[str, Callable[..., AdversarialTrainerBase]] = {
    "natural": NaturalTrainer,
    "pgd": AdversarialTrainerPGD,
    "fast": AdversarialTrainerFast,
    "nfgsm": AdversarialTrainerNFGSM,
    "gradalign": AdversarialTrainerGradAlign,
    "gaat": AdversarialTrainerGAAT,
    "dat": AdversarialTrainerDAT,
    "dat+gaat": dat_gaat,
    "free": AdversarialTrainerFree,
    "atcd": AdversarialTrainerATCD,
    "atlas": AdversarialTrainerATLAS,
    "l2l": AdversarialTrainerL2L,
    "l2l-trades": l2l_trades,
}

__all__ = [
    "TRAINERS",
    "AdversarialTrainerATCD",
    "AdversarialTrainerATLAS",
    "AdversarialTrainerBase",
    "AdversarialTrainerDAT",
    "AdversarialTrainerFast",
    "AdversarialTrainerFree",
    "AdversarialTrainerGAAT",
    "AdversarialTrainerGradAlign",
    "AdversarialTrainerL2L",
    "AdversarialTrainerNFGSM",
    "AdversarialTrainerPGD",
    "NaturalTrainer",
    "dat_gaat",
    "l2l_trades",
]
