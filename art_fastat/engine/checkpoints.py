"""
Checkpoints: what a trainer must save to resume bit-identically, written so that a reader never loads a partial,
damaged or foreign file, and restored only after the whole file has been compared with the current setup.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from art_fastat.trainers.base import AdversarialTrainerBase

logger = logging.getLogger(__name__)

FORMAT = "art_fastat.checkpoint/2"
#: First bytes of a checkpoint file, before the payload's SHA-256 digest.
DIGEST_HEADER = b"art_fastat-checkpoint sha256 "
FILE_NAME = "checkpoint.pt"


def write_checkpoint(state: dict[str, Any], path: Path) -> None:
    """
    Write ``state`` so that a reader never loads a partial or damaged file: the payload (``torch.save``) follows a
    header line with its SHA-256 digest, and it goes to a temporary file that is flushed to disk and then renamed over
    ``path`` (atomic on POSIX and Windows), so a process killed mid-write leaves the previous checkpoint intact.

    :param state: Tensors and plain Python values only (what ``torch.load(weights_only=True)`` accepts).
    :param path: Destination.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(DIGEST_HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n")
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """
    Read a checkpoint written by :func:`write_checkpoint`: the digest is verified before anything is unpickled, and
    unpickling is ``weights_only=True`` (tensors and plain values: no code runs).

    :param path: The checkpoint file.
    :param map_location: Device for the tensors.
    :return: The state.
    :raises ValueError: A foreign, damaged, truncated or unsafe file, with what is wrong.
    """
    data = Path(path).read_bytes()
    header, newline, payload = data.partition(b"\n")
    if not header.startswith(DIGEST_HEADER) or not newline:
        raise ValueError(f"{path} is not an art_fastat checkpoint (it has no art_fastat digest header)")
    if hashlib.sha256(payload).hexdigest().encode() != header[len(DIGEST_HEADER) :]:
        raise ValueError(f"{path} is damaged or incomplete: its content does not match its SHA-256 digest")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} holds an unreadable or unsafe checkpoint: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an art_fastat checkpoint of format {FORMAT}")
    return state


def read_model_state(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, torch.Tensor]:
    """
    The network weights in ``path``: an engine checkpoint (verified, see :func:`read_checkpoint`) or a plain
    ``torch.save`` of a state dict such as ``art-fastat train``'s ``model.pt`` (read with ``weights_only=True``).

    :param path: The file.
    :param map_location: Device for the tensors.
    :return: The network's state dict.
    """
    with open(path, "rb") as handle:
        engine_checkpoint = handle.read(len(DIGEST_HEADER)) == DIGEST_HEADER
    if engine_checkpoint:
        return read_checkpoint(path, map_location)["model"]
    return torch.load(path, map_location=map_location, weights_only=True)


def save(trainer: AdversarialTrainerBase, epochs_done: int) -> None:
    """Write the trainer's checkpoint after ``epochs_done`` epochs (rank 0 writes; every rank takes part)."""
    state = capture(trainer, epochs_done)
    if trainer.process.rank == 0:
        write_checkpoint(state, trainer.checkpoint_path)
    trainer.process.barrier()


def resume(trainer: AdversarialTrainerBase) -> int:
    """
    Load the trainer's verified checkpoint, if there is one, after comparing all of it with the trainer's setup
    (:func:`check_fits`): nothing changes unless all of it fits.

    :return: The epochs it completed (0 without a checkpoint).
    """
    path = trainer.checkpoint_path
    if not path.exists():
        logger.info("resume=True but %s does not exist: starting from scratch", path)
        return 0
    state = read_checkpoint(path, trainer.device)
    check_fits(trainer, state, path)
    saved_plan = state.get("plan", trainer._plan)
    if saved_plan != trainer._plan:
        logger.warning("%s: %s was written for a run of %s; this fit plans %s: the learning-rate schedule and the "
                       "eps warm-up follow the new plan from here", trainer.method, path, saved_plan,
                       trainer._plan)  # fmt: skip
    epochs = restore(trainer, state)
    logger.info("%s: resumed from %s after epoch %d", trainer.method, path, epochs)
    return epochs


def capture(trainer: AdversarialTrainerBase, epochs_done: int) -> dict[str, Any]:
    """
    Everything ``trainer`` needs to continue after ``epochs_done`` epochs exactly as if it had not stopped. Under
    torch.distributed every rank's random streams and method state (Free's perturbation, ATCD's chain, ...) are
    gathered into the state (a collective call: every rank must make it).
    """
    schedule, rank_state = trainer.lr_schedule, _rank_state(trainer)
    state = {
        "format": FORMAT,
        "method": trainer.method,
        "epoch": epochs_done,
        "model": trainer.network.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "optimizer_type": type(trainer.optimizer).__name__,
        "scheduler": None if isinstance(schedule, str) else schedule.state_dict(),
        "scaler": trainer.step.scaler.state_dict(),
        "peak_lrs": trainer._peak_lrs,
        "history": trainer.history,
        "plan": trainer._plan,
        "guards": trainer.guards.state_dict(),
        **rank_state,
    }
    if trainer.process.distributed:
        state.update(ranks=trainer.process.gather(rank_state), shuffle_generator=trainer.shuffle_generator.get_state())
    return state


def _rank_state(trainer: AdversarialTrainerBase) -> dict[str, Any]:
    """What differs between ranks: the random streams and the method's own state."""
    return {
        "generator": trainer.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": cuda_rng_states(),
        "method_state": trainer._method_state(),
    }


def cuda_rng_states() -> list[torch.Tensor]:
    """
    The global CUDA random states of every visible device (what dropout and other CUDA draws outside the trainer's
    generator use) once CUDA is initialised; ``[]`` before, when nothing has drawn from them, so that a checkpoint
    does not initialise CUDA in a run that does not use it.
    """
    return torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []


def restore_cuda_rng_states(states: list[torch.Tensor]) -> None:
    """
    Put back the states of :func:`cuda_rng_states` on as many devices as both the checkpoint and this process have,
    with a WARNING when the numbers differ (CUDA draws on the other devices then differ from an uninterrupted run);
    nothing to do for a checkpoint without CUDA states, and an INFO in a process without CUDA.
    """
    if not states:
        return
    if not torch.cuda.is_available():
        logger.info("The checkpoint holds CUDA random states; CUDA is not available here, they are not restored")
        return
    count = torch.cuda.device_count()
    if len(states) != count:
        logger.warning("The checkpoint holds the CUDA random states of %d device(s), this process sees %d: the first "
                       "%d are restored, CUDA draws elsewhere differ from an uninterrupted run", len(states), count,
                       min(len(states), count))  # fmt: skip
    for device, cuda_state in enumerate(states[:count]):
        torch.cuda.set_rng_state(cuda_state.cpu(), device)


def check_fits(trainer: AdversarialTrainerBase, state: dict[str, Any], path: Path) -> None:
    """
    Compare a checkpoint with the trainer's setup before anything is restored: method, network (every tensor's name,
    shape and dtype), optimizer (type, parameter groups and their sizes), schedule object and number of processes.

    :raises ValueError: Naming the first difference and what the checkpoint holds.
    """
    if state["method"] != trainer.method:
        raise ValueError(f"checkpoint_dir holds a checkpoint of method {state['method']!r}, not {trainer.method!r}")
    current = trainer.network.state_dict()
    if list(state["model"]) != list(current):
        missing, extra = set(current) - set(state["model"]), set(state["model"]) - set(current)
        raise ValueError(
            f"{path} holds another network architecture: tensors missing there {sorted(missing)[:5]}, unknown here "
            f"{sorted(extra)[:5]}"
        )
    for name, tensor in state["model"].items():
        if tensor.shape != current[name].shape or tensor.dtype != current[name].dtype:
            raise ValueError(
                f"{path} holds another network architecture: {name} is {tuple(tensor.shape)} {tensor.dtype} there, "
                f"{tuple(current[name].shape)} {current[name].dtype} here"
            )
    optimizer_type = state.get("optimizer_type", type(trainer.optimizer).__name__)
    if optimizer_type != type(trainer.optimizer).__name__:
        raise ValueError(f"{path} was written with optimizer {optimizer_type}, the classifier has "
                         f"{type(trainer.optimizer).__name__}")  # fmt: skip
    saved_groups = [len(group["params"]) for group in state["optimizer"]["param_groups"]]
    groups = [len(group["params"]) for group in trainer.optimizer.param_groups]
    if saved_groups != groups:
        raise ValueError(f"{path} was written with optimizer parameter groups of sizes {saved_groups}, the "
                         f"classifier's optimizer has {groups}")  # fmt: skip
    if (state["scheduler"] is None) != isinstance(trainer.lr_schedule, str):
        raise ValueError(f"{path} was written {'without' if state['scheduler'] is None else 'with'} a scheduler "
                         "object as lr_schedule; resume with the same kind of lr_schedule")  # fmt: skip
    ranks = state.get("ranks", [state])
    if len(ranks) != trainer.process.world_size:
        raise ValueError(f"{path} was written by {len(ranks)} process(es); resume it with as many, "
                         f"not {trainer.process.world_size}")  # fmt: skip
    difference = _difference(ranks[trainer.process.rank]["method_state"], trainer._method_state(), "method_state")
    if difference:
        raise ValueError(f"{path} holds {trainer.method} state of another configuration: {difference}")


def _difference(saved: Any, current: Any, where: str) -> str | None:
    """
    Where a saved method state cannot go into the current one: other keys, container lengths, tensor dtypes or
    shapes (the first dimension may differ: it is batch-dependent, e.g. Free's buffer). Parts the current trainer has
    not built yet (None, an empty optimizer state) take anything.
    """
    if current is None or (isinstance(current, dict | list) and not current):
        return None
    if isinstance(current, torch.Tensor):
        if not isinstance(saved, torch.Tensor) or saved.dtype != current.dtype or saved.shape[1:] != current.shape[1:]:
            described = f"{tuple(saved.shape)} {saved.dtype}" if isinstance(saved, torch.Tensor) else repr(saved)
            return f"{where} is {described} there, {tuple(current.shape)} {current.dtype} here"
        return None
    if isinstance(current, dict):
        if not isinstance(saved, dict) or set(saved) != set(current):
            return f"{where} has keys {sorted(map(str, saved)) if isinstance(saved, dict) else saved!r} there, " \
                   f"{sorted(map(str, current))} here"  # fmt: skip
        return next((d for key in current if (d := _difference(saved[key], current[key], f"{where}.{key}"))), None)
    if isinstance(current, list | tuple):
        if not isinstance(saved, list | tuple) or len(saved) != len(current):
            return f"{where} has another length there"
        return next((d for i, c in enumerate(current) if (d := _difference(saved[i], c, f"{where}[{i}]"))), None)
    return None


def restore(trainer: AdversarialTrainerBase, state: dict[str, Any]) -> int:
    """Put a checked state (:func:`check_fits`) into ``trainer``; return the epochs it completed."""
    trainer.network.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    if state["scheduler"] is not None:
        trainer.lr_schedule.load_state_dict(state["scheduler"])
    trainer.step.scaler.load_state_dict(state["scaler"])
    trainer._peak_lrs = state["peak_lrs"]
    if trainer.process.distributed:
        trainer.shuffle_generator.set_state(state["shuffle_generator"].cpu())
    state = {**state, **state.get("ranks", [state])[trainer.process.rank]}
    trainer.generator.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    restore_cuda_rng_states(state["cuda_rng"])
    trainer.history = list(state["history"])
    trainer._load_method_state(state["method_state"])
    trainer.guards.load_state_dict(state["guards"])
    return int(state["epoch"])
