"""Tests of ``art_fastat.datasets`` on the real MNIST test set and on small synthetic MNIST and CIFAR-10 files."""

from __future__ import annotations

import gzip
import pickle
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from art_fastat.datasets import load_cifar10, load_digits, load_mnist

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_idx(path: Path, data: np.ndarray, magic: int) -> Path:
    """Write ``data`` (uint8) as an idx file, gzipped if ``path`` ends in ``.gz``."""
    content = magic.to_bytes(4, "big") + np.asarray(data.shape, dtype=">u4").tobytes() + data.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(content))
    else:
        path.write_bytes(content)
    return path


def write_mnist_split(
    directory: Path, images_name: str, labels_name: str, count: int = 5, suffix: str = "", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Write a small synthetic MNIST split and return its uint8 images and labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    write_idx(directory / f"{images_name}{suffix}", images, IMAGES_MAGIC)
    write_idx(directory / f"{labels_name}{suffix}", labels, LABELS_MAGIC)
    return images, labels


def missing_part(message: str) -> str:
    """The part of a missing-files message that says what is missing, before the instruction."""
    return message.split(". Put ")[0]


def test_load_digits_is_scaled_nchw_with_all_ten_classes():
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8)
    assert images.dtype == np.float32
    assert labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(images * 16, np.round(images * 16))
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"official MNIST test files not present in {MNIST_DIR}")
def test_load_mnist_reads_the_official_test_set():
    images, labels = load_mnist(MNIST_DIR, split="test")
    assert images.shape == (10000, 1, 28, 28)
    assert images.dtype == np.float32 and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    counts = np.bincount(labels, minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert counts.sum() == 10000


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["raw", "gz"])
@pytest.mark.parametrize(
    ("split", "images_name", "labels_name"),
    [("test", TEST_IMAGES, TEST_LABELS), ("train", TRAIN_IMAGES, TRAIN_LABELS)],
)
def test_load_mnist_round_trips_synthetic_idx_files(tmp_path, suffix, split, images_name, labels_name):
    images, labels = write_mnist_split(tmp_path, images_name, labels_name, count=7, suffix=suffix)
    x, y = load_mnist(tmp_path, split=split, verify_md5=False)
    assert x.shape == (7, 1, 28, 28) and x.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(np.round(x[:, 0] * 255).astype(np.uint8), images)
    np.testing.assert_array_equal(y, labels)
    assert x.min() == 0.0 and x.max() == 1.0


def test_load_mnist_prefers_gzipped_file_over_raw(tmp_path):
    write_mnist_split(tmp_path, TEST_IMAGES, TEST_LABELS, suffix="", seed=1)
    _, gz_labels = write_mnist_split(tmp_path, TEST_IMAGES, TEST_LABELS, suffix=".gz", seed=2)
    _, y = load_mnist(tmp_path, verify_md5=False)
    np.testing.assert_array_equal(y, gz_labels)


def test_load_mnist_refuses_gz_whose_md5_is_not_official(tmp_path):
    write_mnist_split(tmp_path, TEST_IMAGES, TEST_LABELS, suffix=".gz")
    expected = str(tmp_path / f"{TEST_IMAGES}.gz")
    with pytest.raises(
        ValueError, match=rf"^{re.escape(expected)} is not the official file: its MD5 is [0-9a-f]{{32}}"
    ):
        load_mnist(tmp_path)


def test_load_mnist_checks_md5_of_gz_but_not_of_raw_files(tmp_path):
    _, labels = write_mnist_split(tmp_path, TEST_IMAGES, TEST_LABELS, suffix="")
    assert load_mnist(tmp_path)[1].tolist() == labels.tolist()
    write_idx(tmp_path / f"{TEST_LABELS}.gz", labels, LABELS_MAGIC)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / TEST_LABELS}.gz is not the official file")):
        load_mnist(tmp_path)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda path: write_idx(path, np.zeros((2, 28, 28)), LABELS_MAGIC), r"magic number 0x00000801, .* 0x00000803"),
        (lambda path: write_idx(path, np.zeros((2, 27, 28)), IMAGES_MAGIC), r"shape \(27, 28\), expected \(28, 28\)"),
        (lambda path: path.write_bytes(path.read_bytes()[:-1]), r"truncated or has trailing data"),
        (lambda path: path.write_bytes(path.read_bytes()[:10]), r"shorter than its header"),
        (lambda path: path.write_bytes(b"<html>Not Found</html>"), r"magic number 0x3c68746d"),
    ],
    ids=["labels_magic", "wrong_size", "truncated", "short_header", "foreign_file"],
)
def test_load_mnist_refuses_corrupt_image_file_naming_it(tmp_path, corrupt, message):
    write_mnist_split(tmp_path, TEST_IMAGES, TEST_LABELS, count=2)
    images_path = tmp_path / TEST_IMAGES
    corrupt(images_path)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(images_path))} .*{message}"):
        load_mnist(tmp_path)


def test_load_mnist_refuses_invalid_gzip_naming_it(tmp_path):
    write_mnist_split(tmp_path, TEST_IMAGES, TEST_LABELS, suffix=".gz")
    labels_path = tmp_path / f"{TEST_LABELS}.gz"
    labels_path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(labels_path))} is not a valid gzip file"):
        load_mnist(tmp_path, verify_md5=False)


def test_load_mnist_refuses_image_and_label_counts_that_differ(tmp_path):
    write_mnist_split(tmp_path, TEST_IMAGES, TEST_LABELS, count=3)
    write_idx(tmp_path / TEST_LABELS, np.zeros(2), LABELS_MAGIC)
    with pytest.raises(ValueError, match=r"holds 3 images but .* holds 2 labels"):
        load_mnist(tmp_path)


def test_load_mnist_refuses_labels_above_nine(tmp_path):
    write_mnist_split(tmp_path, TEST_IMAGES, TEST_LABELS, count=3)
    write_idx(tmp_path / TEST_LABELS, np.array([1, 10, 2]), LABELS_MAGIC)
    with pytest.raises(ValueError, match=r"holds label 10, expected labels in 0\.\.9"):
        load_mnist(tmp_path)


def test_load_mnist_names_every_missing_file_and_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_mnist(tmp_path)
    message = str(error.value)
    assert missing_part(message) == (
        f"Cannot load MNIST split 'test': missing {TEST_IMAGES}.gz and {TEST_LABELS}.gz in {tmp_path}"
    )
    assert f"Put {TEST_IMAGES}.gz and {TEST_LABELS}.gz (or their un-gzipped versions) in {tmp_path}." in message


def test_load_mnist_names_only_the_file_that_is_missing(tmp_path):
    write_mnist_split(tmp_path, TEST_IMAGES, TEST_LABELS)
    (tmp_path / TEST_LABELS).unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_mnist(tmp_path)
    assert missing_part(str(error.value)) == f"Cannot load MNIST split 'test': missing {TEST_LABELS}.gz in {tmp_path}"


def test_load_mnist_train_split_with_only_test_files_names_the_train_files(tmp_path):
    write_mnist_split(tmp_path, TEST_IMAGES, TEST_LABELS)
    with pytest.raises(FileNotFoundError) as error:
        load_mnist(tmp_path, split="train")
    assert missing_part(str(error.value)) == (
        f"Cannot load MNIST split 'train': missing {TRAIN_IMAGES}.gz and {TRAIN_LABELS}.gz in {tmp_path}"
    )


@pytest.mark.parametrize("split", ["validation", "TEST", ""])
def test_load_mnist_rejects_unknown_split(tmp_path, split):
    with pytest.raises(ValueError, match=rf"^split must be one of \['test', 'train'\], got {split!r}$"):
        load_mnist(tmp_path, split=split)


def write_cifar_batches(folder: Path, per_batch: int = 3) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write the six CIFAR-10 batch files, pickled like the official ones, and return their content."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    content = {}
    for name in CIFAR_BATCHES:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        with (folder / name).open("wb") as stream:
            pickle.dump(batch, stream, protocol=2)
        content[name] = (data, labels)
    return content


def expected_cifar(content: dict[str, tuple[np.ndarray, list[int]]], names: list[str]) -> tuple[np.ndarray, list[int]]:
    """The uint8 NCHW images and the labels of the named batches, concatenated in order."""
    images = np.concatenate([content[name][0] for name in names]).reshape(-1, 3, 32, 32)
    labels = [label for name in names for label in content[name][1]]
    return images, labels


def assert_cifar_matches(loaded: tuple, content: dict[str, tuple[np.ndarray, list[int]]]) -> None:
    """Check ``load_cifar10``'s output against the batches that were written."""
    (x_train, y_train), (x_test, y_test) = loaded
    for x, y, names in [(x_train, y_train, CIFAR_BATCHES[:5]), (x_test, y_test, CIFAR_BATCHES[5:])]:
        images, labels = expected_cifar(content, names)
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape == images.shape
        np.testing.assert_array_equal(np.round(x * 255).astype(np.uint8), images)
        assert y.tolist() == labels
        assert x.min() >= 0.0 and x.max() <= 1.0


def build_cifar_archive(root: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write ``root/cifar-10-python.tar.gz`` holding synthetic batches (and no extracted folder)."""
    staging = root / "staging"
    content = write_cifar_batches(staging / "cifar-10-batches-py")
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    shutil.rmtree(staging)
    return content


def test_load_cifar10_reads_extracted_batches(tmp_path):
    content = write_cifar_batches(tmp_path / "cifar-10-batches-py", per_batch=3)
    loaded = load_cifar10(tmp_path)
    assert loaded[0][0].shape == (15, 3, 32, 32) and loaded[1][0].shape == (3, 3, 32, 32)
    assert_cifar_matches(loaded, content)


def test_load_cifar10_accepts_the_batches_folder_itself(tmp_path):
    content = write_cifar_batches(tmp_path / "cifar-10-batches-py")
    assert_cifar_matches(load_cifar10(tmp_path / "cifar-10-batches-py"), content)


def test_load_cifar10_rows_are_channel_major_planes(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_batches(folder, per_batch=1)
    planes = np.repeat(np.array([10, 20, 30], dtype=np.uint8), 1024)[np.newaxis, :]
    with (folder / "test_batch").open("wb") as stream:
        pickle.dump({b"data": planes, b"labels": [4]}, stream, protocol=2)
    (_, _), (x_test, y_test) = load_cifar10(tmp_path)
    np.testing.assert_allclose(x_test[0, :, 5, 7], np.array([10, 20, 30]) / 255, rtol=1e-6)
    assert y_test.tolist() == [4]


def test_load_cifar10_refuses_archive_whose_md5_is_not_official(tmp_path):
    build_cifar_archive(tmp_path)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with pytest.raises(ValueError, match=rf"^{re.escape(str(archive))} is not the official file: its MD5 is"):
        load_cifar10(tmp_path)


def test_load_cifar10_reads_archive_when_md5_check_is_turned_off(tmp_path):
    content = build_cifar_archive(tmp_path)
    assert_cifar_matches(load_cifar10(tmp_path, verify_md5=False), content)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cifar-10-python.tar.gz"]


def test_load_cifar10_falls_back_to_archive_when_extraction_is_incomplete(tmp_path):
    content = build_cifar_archive(tmp_path)
    write_cifar_batches(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").write_bytes(b"would fail to unpickle")
    assert_cifar_matches(load_cifar10(tmp_path, verify_md5=False), content)


def test_load_cifar10_refuses_archive_without_the_batches(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    (tmp_path / "other").write_bytes(b"x")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "other", arcname="other")
    with pytest.raises(ValueError, match=r"has no file cifar-10-batches-py/data_batch_1"):
        load_cifar10(tmp_path, verify_md5=False)


def test_load_cifar10_refuses_batch_with_wrong_shape_naming_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_batches(folder)
    with (folder / "data_batch_2").open("wb") as stream:
        pickle.dump({b"data": np.zeros((2, 1024), dtype=np.uint8), b"labels": [0, 1]}, stream, protocol=2)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(folder / 'data_batch_2'))} holds data .* \(2, 1024\)"):
        load_cifar10(tmp_path)


def test_load_cifar10_names_what_to_put_where_when_nothing_is_there(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    assert str(error.value) == (
        f"Cannot load CIFAR-10: missing data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5 and "
        f"test_batch in {folder}; cifar-10-python.tar.gz in {tmp_path}. Put cifar-10-python.tar.gz in {tmp_path}, "
        f"or extract it there so that {folder} holds data_batch_1, data_batch_2, data_batch_3, data_batch_4, "
        f"data_batch_5 and test_batch."
    )


def test_load_cifar10_names_only_the_missing_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_batches(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_cifar10(tmp_path)
    assert missing_part(str(error.value)) == (
        f"Cannot load CIFAR-10: missing data_batch_3 in {folder}; cifar-10-python.tar.gz in {tmp_path}"
    )
