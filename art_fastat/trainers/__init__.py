"""ART trainers of art_fastat: the engine and one small class per method."""

from art_fastat.trainers.base import AdversarialTrainerBase
from art_fastat.trainers.fast import AdversarialTrainerFast
from art_fastat.trainers.natural import NaturalTrainer
from art_fastat.trainers.pgd import AdversarialTrainerPGD

#: Trainer classes by the method name used by the CLI and the benchmarks; later methods add themselves here.
TRAINERS = {cls.method: cls for cls in (NaturalTrainer, AdversarialTrainerPGD, AdversarialTrainerFast)}

__all__ = ["AdversarialTrainerBase", "AdversarialTrainerFast", "AdversarialTrainerPGD", "NaturalTrainer", "TRAINERS"]
