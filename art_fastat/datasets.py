"""
Loaders for the image datasets of the benchmarks, from files already on disk (nothing is downloaded).

Every loader returns images as ``float32`` arrays of shape ``(N, C, H, W)`` with values in ``[0, 1]`` and labels as
``int64`` arrays of shape ``(N,)``, ready for an ART ``PyTorchClassifier`` with ``clip_values=(0.0, 1.0)``.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["CIFAR10_ARCHIVE_MD5", "MNIST_GZ_MD5", "load_cifar10", "load_digits", "load_mnist"]

#: MD5 of the official gzipped MNIST files (http://yann.lecun.com/exdb/mnist/).
MNIST_GZ_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: Un-gzipped names of the (images, labels) files of each MNIST split.
_MNIST_SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_MNIST_IMAGE_SIZE = 28
_MNIST_NUM_CLASSES = 10
#: idx magic numbers: two zero bytes, the element type (0x08: unsigned byte), the number of dimensions.
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801

#: MD5 of the official ``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html).
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
_CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST_BATCH = "test_batch"
_CIFAR10_NUM_CLASSES = 10


def _join_names(names: Sequence[str]) -> str:
    """
    :param names: File names.
    :return: ``"a"``, ``"a and b"`` or ``"a, b and c"``.
    """
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _find_files(
    directory: Path, names: Sequence[str], suffixes: Sequence[str] = ("",)
) -> tuple[dict[str, Path], list[str]]:
    """
    Look for ``directory / (name + suffix)`` for each name, trying the suffixes in order.

    :param directory: Folder to look in.
    :param names: File names without suffix.
    :param suffixes: Accepted suffixes in order of preference, e.g. ``(".gz", "")``.
    :return: The path found for each name that exists, and the names (with the first suffix) that do not.
    """
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in names:
        candidates = [directory / f"{name}{suffix}" for suffix in suffixes]
        existing = next((path for path in candidates if path.is_file()), None)
        if existing is None:
            missing.append(f"{name}{suffixes[0]}")
        else:
            found[name] = existing
    return found, missing


def _missing_files_message(dataset: str, missing: Sequence[tuple[Path, Sequence[str]]], instruction: str) -> str:
    """
    :param dataset: What could not be loaded, e.g. ``"MNIST split 'test'"``.
    :param missing: For each folder looked in, the file names missing there.
    :param instruction: What the user should put where.
    :return: The message of the ``FileNotFoundError``.
    """
    where = "; ".join(f"{_join_names(names)} in {directory}" for directory, names in missing if names)
    return f"Cannot load {dataset}: missing {where}. {instruction}"


def _md5(path: Path) -> str:
    """
    :param path: A file.
    :return: The hexadecimal MD5 digest of its bytes.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_md5(path: Path, expected: str) -> None:
    """
    :param path: A file.
    :param expected: Its official MD5.
    :raises ValueError: If the file's MD5 differs.
    """
    actual = _md5(path)
    if actual != expected:
        raise ValueError(
            f"{path} is not the official file: its MD5 is {actual}, expected {expected}. "
            "The file is corrupt, truncated or a different version; replace it with the official one."
        )


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """
    The 1,797 8x8 handwritten digits embedded in scikit-learn (no file needed).

    :return: Images of shape ``(1797, 1, 8, 8)``, ``float32`` in ``[0, 1]`` (the original 0-16 grey levels divided
             by 16), and ``int64`` labels in ``0..9``.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits

    digits = sklearn_load_digits()
    images = (np.asarray(digits.images, dtype=np.float32) / 16.0)[:, np.newaxis, :, :]
    labels = np.asarray(digits.target, dtype=np.int64)
    return images, labels


def _read_idx_bytes(path: Path) -> bytes:
    """
    :param path: An idx file, gzipped if its name ends in ``.gz``.
    :return: Its (decompressed) content.
    :raises ValueError: If a ``.gz`` file is not valid gzip.
    """
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is not a valid gzip file: {error}") from error


def _parse_idx(path: Path, magic: int, shape_tail: tuple[int, ...]) -> np.ndarray:
    """
    Parse an idx file of unsigned bytes: a 4-byte big-endian magic number, one big-endian ``uint32`` per dimension,
    then the data.

    :param path: The file, gzipped if its name ends in ``.gz``.
    :param magic: Expected magic number (element type and number of dimensions).
    :param shape_tail: Expected dimensions after the first (the item count).
    :return: The ``uint8`` data, of shape ``(count, *shape_tail)``.
    :raises ValueError: If the header or the size is not the expected one.
    """
    content = _read_idx_bytes(path)
    ndim = 1 + len(shape_tail)
    header_size = 4 * (1 + ndim)
    if len(content) < header_size:
        raise ValueError(f"{path} is not an MNIST idx file: {len(content)} bytes, shorter than its header")
    found_magic = int.from_bytes(content[:4], "big")
    if found_magic != magic:
        raise ValueError(
            f"{path} is not an MNIST idx file of the expected kind: magic number 0x{found_magic:08x}, "
            f"expected 0x{magic:08x}"
        )
    shape = tuple(int(dim) for dim in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    if shape[1:] != shape_tail:
        raise ValueError(f"{path} has items of shape {shape[1:]}, expected {shape_tail} for MNIST")
    expected_size = header_size + int(np.prod(shape))
    if len(content) != expected_size:
        raise ValueError(
            f"{path} is truncated or has trailing data: {len(content)} bytes, expected {expected_size} "
            f"for its header's shape {shape}"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


def load_mnist(
    root: str | os.PathLike, split: str = "test", *, verify_md5: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """
    Read one MNIST split from the standard idx files in ``root``.

    The files are ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` for ``split="test"`` and
    ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` for ``split="train"``, each either gzipped (``.gz``,
    preferred when both are present) or raw. Only the requested split's two files are needed.

    Gzipped files are checked against the official MD5 digests. Raw (un-gzipped) files have no published digest: for
    them only the idx header (magic number, 28x28 images), the file size and the label range are checked.

    :param root: Folder holding the files.
    :param split: ``"test"`` (10,000 images) or ``"train"`` (60,000 images).
    :param verify_md5: Check the MD5 of gzipped files. Turn off only for files you built yourself (e.g. a subset).
    :return: Images of shape ``(N, 1, 28, 28)``, ``float32`` in ``[0, 1]`` (grey levels divided by 255), and
             ``int64`` labels in ``0..9``.
    :raises ValueError: If ``split`` is unknown, a file fails its MD5 check, or a file is not a valid MNIST idx file.
    :raises FileNotFoundError: If a file of the split is missing; the message names it and the folder.
    """
    if split not in _MNIST_SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(_MNIST_SPLIT_FILES)}, got {split!r}")
    directory = Path(root).expanduser()
    images_name, labels_name = _MNIST_SPLIT_FILES[split]
    found, missing = _find_files(directory, (images_name, labels_name), suffixes=(".gz", ""))
    if missing:
        required = [f"{images_name}.gz", f"{labels_name}.gz"]
        raise FileNotFoundError(
            _missing_files_message(
                f"MNIST split {split!r}",
                [(directory, missing)],
                f"Put {_join_names(required)} (or their un-gzipped versions) in {directory}.",
            )
        )

    images_path, labels_path = found[images_name], found[labels_name]
    if verify_md5:
        for path in (images_path, labels_path):
            if path.suffix == ".gz":
                _check_md5(path, MNIST_GZ_MD5[path.name])

    images = _parse_idx(images_path, _IDX_IMAGES_MAGIC, (_MNIST_IMAGE_SIZE, _MNIST_IMAGE_SIZE))
    labels = _parse_idx(labels_path, _IDX_LABELS_MAGIC, ())
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if labels.size and labels.max() >= _MNIST_NUM_CLASSES:
        raise ValueError(f"{labels_path} holds label {labels.max()}, expected labels in 0..{_MNIST_NUM_CLASSES - 1}")
    logger.info("Loaded MNIST %s split: %d images from %s", split, len(images), directory)
    pixels = images.astype(np.float32)
    pixels /= 255.0
    return pixels[:, np.newaxis, :, :], labels.astype(np.int64)


def _parse_cifar_batch(stream: IO[bytes], source: str) -> tuple[np.ndarray, np.ndarray]:
    """
    Unpickle one CIFAR-10 batch: a dict with ``b"data"`` (``uint8``, ``(n, 3072)``, channel-major) and ``b"labels"``.

    :param stream: The pickled batch.
    :param source: Where it comes from, for error messages.
    :return: ``uint8`` images of shape ``(n, 3, 32, 32)`` and ``int64`` labels.
    :raises ValueError: If the content is not a CIFAR-10 batch.
    """
    try:
        batch = pickle.load(stream, encoding="bytes")
    except Exception as error:
        raise ValueError(f"{source} is not a pickled CIFAR-10 batch: {error}") from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{source} is not a CIFAR-10 batch: expected a dict with keys b'data' and b'labels'")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{source} holds data of dtype {data.dtype} and shape {data.shape}, expected uint8 (n, 3072)")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{source} holds {labels.size} labels of dtype {labels.dtype} for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= _CIFAR10_NUM_CLASSES):
        raise ValueError(f"{source} holds labels outside 0..{_CIFAR10_NUM_CLASSES - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_cifar_folder(folder: Path, names: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """
    :param folder: The extracted ``cifar-10-batches-py`` folder.
    :param names: Batch file names to read, in order.
    :return: The parsed batches.
    """
    batches = []
    for name in names:
        path = folder / name
        with path.open("rb") as stream:
            batches.append(_parse_cifar_batch(stream, str(path)))
    return batches


def _read_cifar_archive(archive: Path, names: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """
    :param archive: ``cifar-10-python.tar.gz``, read in memory without extracting it.
    :param names: Batch file names to read from its ``cifar-10-batches-py`` folder, in order.
    :return: The parsed batches.
    :raises ValueError: If the archive is not a valid tar.gz or lacks a batch.
    """
    batches = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in names:
                member = f"{_CIFAR10_FOLDER}/{name}"
                try:
                    stream = tar.extractfile(member)
                except KeyError:
                    stream = None
                if stream is None:
                    raise ValueError(f"{archive} has no file {member}; it is not the CIFAR-10 python archive")
                with stream:
                    batches.append(_parse_cifar_batch(stream, f"{archive}:{member}"))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{archive} is not a valid tar.gz archive: {error}") from error
    return batches


def _stack(batches: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """
    :param batches: ``uint8`` images and ``int64`` labels of each batch.
    :return: All images as ``float32`` in ``[0, 1]``, and all labels.
    """
    pixels = np.concatenate([images for images, _ in batches]).astype(np.float32)
    pixels /= 255.0
    return pixels, np.concatenate([labels for _, labels in batches])


def load_cifar10(
    root: str | os.PathLike, *, verify_md5: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """
    Read CIFAR-10 (python version) from the extracted batches or from the official archive.

    Looked for, in order: the extracted folder ``root/cifar-10-batches-py`` (or ``root`` itself when it holds the
    batch files) with ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``; then the archive
    ``root/cifar-10-python.tar.gz``, which is read in memory without extracting it.

    The archive is checked against the official MD5 before anything in it is unpickled. Extracted batch files have no
    published digest and are unpickled as they are: like any pickle, they can run code, so use only files you trust.

    :param root: Folder holding ``cifar-10-batches-py`` or ``cifar-10-python.tar.gz``, or the
                 ``cifar-10-batches-py`` folder itself.
    :param verify_md5: Check the archive's MD5. Turn off only for an archive you built yourself (e.g. a subset).
    :return: ``((x_train, y_train), (x_test, y_test))``: images of shape ``(N, 3, 32, 32)``, ``float32`` in
             ``[0, 1]`` (values divided by 255), and ``int64`` labels in ``0..9`` (50,000 and 10,000 images for the
             official data).
    :raises ValueError: If the archive fails its MD5 check or a file is not a valid CIFAR-10 batch or archive.
    :raises FileNotFoundError: If neither complete batches nor the archive are present; the message says what to put
                               where.
    """
    root = Path(root).expanduser()
    names = (*_CIFAR10_TRAIN_BATCHES, _CIFAR10_TEST_BATCH)
    folder = root / _CIFAR10_FOLDER
    if not folder.is_dir() and any((root / name).is_file() for name in names):
        folder = root
    _, missing_batches = _find_files(folder, names)
    archive = root / _CIFAR10_ARCHIVE

    if not missing_batches:
        batches = _read_cifar_folder(folder, names)
        source = folder
    elif archive.is_file():
        if verify_md5:
            _check_md5(archive, CIFAR10_ARCHIVE_MD5)
        batches = _read_cifar_archive(archive, names)
        source = archive
    else:
        raise FileNotFoundError(
            _missing_files_message(
                "CIFAR-10",
                [(folder, missing_batches), (root, [_CIFAR10_ARCHIVE])],
                f"Put {_CIFAR10_ARCHIVE} in {root}, or extract it there so that {root / _CIFAR10_FOLDER} holds "
                f"{_join_names(names)}.",
            )
        )

    train, test = _stack(batches[: len(_CIFAR10_TRAIN_BATCHES)]), _stack(batches[len(_CIFAR10_TRAIN_BATCHES) :])
    logger.info("Loaded CIFAR-10 from %s: %d train and %d test images", source, len(train[0]), len(test[0]))
    return train, test
