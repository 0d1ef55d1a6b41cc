"""Data helpers on real data: the MNIST test-set folder and scikit-learn's digits."""

from __future__ import annotations

import gzip
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pyvae.data
from pyvae.data import (
    FASHION_CLASSES,
    load_dataset,
    load_digits,
    load_mnist,
    read_idx,
    read_mnist_folder,
)

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def test_mnist_test_set_folder_is_split_8000_2000(mnist: tuple[torch.Tensor, torch.Tensor]) -> None:
    data = load_dataset("mnist", root=MNIST_DIR)
    images, labels = mnist
    assert data.input_shape == (1, 28, 28)
    assert (len(data.train), len(data.eval)) == (8000, 2000)
    assert torch.equal(data.train.images, images[:8000])
    assert torch.equal(data.eval.labels, labels[8000:])
    assert data.train.images.dtype == torch.float32
    assert 0 <= float(data.train.images.min()) and float(data.train.images.max()) == 1.0
    assert "0-7999 train" in data.note
    assert sorted(data.eval.labels.unique().tolist()) == list(range(10))


def test_train_files_are_used_when_present(tmp_path: Path) -> None:
    """A folder in torchvision's layout with train and test files: train trains, test evaluates
    (here a copy of the test set serves as both, uncompressed, to check the lookup)."""
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for kind in ("images-idx3", "labels-idx1"):
        src = MNIST_DIR / f"t10k-{kind}-ubyte.gz"
        (raw / f"t10k-{kind}-ubyte").write_bytes(gzip.decompress(src.read_bytes()))
        shutil.copy(src, raw / f"train-{kind}-ubyte.gz")
    data = read_mnist_folder(tmp_path, name="fashion-mnist")
    assert (len(data.train), len(data.eval)) == (10000, 10000)
    assert data.classes == FASHION_CLASSES
    assert torch.equal(data.train.images, data.eval.images)


def test_missing_files_say_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\[\.gz\].*--download"):
        load_mnist(tmp_path)


def test_truncated_idx_file(tmp_path: Path) -> None:
    raw = gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="expected 10008 bytes .* got 9998"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte")
    (tmp_path / "broken.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match="not a valid gzip file"):
        read_idx(tmp_path / "broken.gz")


def test_mismatched_images_and_labels(tmp_path: Path) -> None:
    shutil.copy(MNIST_DIR / "t10k-images-idx3-ubyte.gz", tmp_path)
    labels = gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    fewer = labels[:4] + (5000).to_bytes(4, "big") + labels[8 : 8 + 5000]
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(fewer)
    with pytest.raises(ValueError, match=r"\(10000, 28, 28\) and \(5000,\)"):
        read_mnist_folder(tmp_path)


def test_digits_split_is_seeded_and_disjoint() -> None:
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    assert a.input_shape == (1, 8, 8)
    assert len(a.train) + len(a.eval) == 1797
    assert len(a.eval) == round(1797 * 0.2)
    assert torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.train.labels, c.train.labels)
    assert float(a.train.images.max()) == 1.0 and float(a.train.images.min()) == 0.0
    train_rows = {tuple(r) for r in a.train.images.flatten(1).tolist()}
    eval_rows = [tuple(r) for r in a.eval.images.flatten(1).tolist()]
    # scikit-learn's digits hold a few exact duplicates; almost all eval images are unseen
    assert sum(r in train_rows for r in eval_rows) < 5


def test_unknown_data_set_and_head() -> None:
    with pytest.raises(ValueError, match="one of digits, mnist, fashion-mnist, got 'cifar'"):
        load_dataset("cifar")
    data = load_digits()
    assert len(data.train.head(10)) == 10 and len(data.train.head(None)) == len(data.train)
    with pytest.raises(ValueError, match="positive number"):
        data.train.head(0)


def test_digits_without_scikit_learn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"needs scikit-learn: pip install 'pyvae\[viz\]'"):
        load_digits()


# -- hostile and odd files ----------------------------------------------------------------------


def _idx(dtype_code: int, shape: tuple[int, ...], data: bytes) -> bytes:
    return bytes([0, 0, dtype_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data


def test_gz_header_is_checked_before_decompressing(tmp_path: Path) -> None:
    """A bad magic number or a size lie is found after reading what the header declares (the
    peak memory is measured in a child process in test_reliability.py)."""
    bomb = tmp_path / "bomb.gz"
    with gzip.open(bomb, "wb") as f:
        f.write(b"\x01\x02\x03\x04" + b"\0" * (1 << 20))
    with pytest.raises(ValueError, match="not an IDX file .bad magic number 01020304"):
        read_idx(bomb)
    lie = tmp_path / "lie.gz"
    with gzip.open(lie, "wb") as f:
        f.write(_idx(0x08, (2, 3), bytes(6)) + b"\0" * 1000)
    with pytest.raises(ValueError, match=r"expected 18 bytes \(decompressed\).*\(2, 3\), got more"):
        read_idx(lie)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as f:
        f.write(_idx(0x08, (2, 3), bytes(4)))
    with pytest.raises(ValueError, match=r"expected 18 bytes .*got 16"):
        read_idx(short)
    with gzip.open(short, "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match=r"truncated IDX header \(6 bytes, expected 16\)"):
        read_idx(short)


def test_declared_size_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    path.write_bytes(_idx(0x0E, (2**31, 2**31, 2**31), b""))
    with pytest.raises(ValueError, match=r"declares an array of shape .* more than max_bytes"):
        read_idx(path)
    path.write_bytes(_idx(0x08, (10, 10), bytes(100)))
    assert read_idx(path, max_bytes=100).shape == (10, 10)
    with pytest.raises(ValueError, match="more than max_bytes=99"):
        read_idx(path, max_bytes=99)
    with pytest.raises(ValueError, match="max_bytes: expected a positive integer"):
        read_idx(path, max_bytes=0)


def test_float_idx_keeps_its_values(tmp_path: Path) -> None:
    values = np.array([[[0.0, 0.25], [0.5, 1.0]]] * 3, dtype=">f4")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(0x0D, values.shape, values.tobytes()))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(0x08, (3,), bytes([1, 2, 3])))
    raw = read_idx(tmp_path / "t10k-images-idx3-ubyte")
    assert raw.dtype == torch.float32 and torch.equal(raw, torch.from_numpy(values.astype("f4")))
    data = read_mnist_folder(tmp_path, eval_size=1)
    assert torch.equal(data.train.images[0, 0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    # out of [0, 1]: refused, not divided by 255
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(
        _idx(0x0D, values.shape, (values * 255).astype(">f4").tobytes())
    )
    with pytest.raises(ValueError, match=r"float pixels must lie in \[0, 1\].*\[0.0, 255.0\]"):
        read_mnist_folder(tmp_path, eval_size=1)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(0x0C, (3, 2, 2), bytes(48)))
    with pytest.raises(ValueError, match="expected uint8 pixels .* got torch.int32"):
        read_mnist_folder(tmp_path, eval_size=1)


def test_labels_must_be_integers(tmp_path: Path) -> None:
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(0x08, (2, 2, 2), bytes(8)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(
        _idx(0x0D, (2,), np.array([1.5, 2], dtype=">f4").tobytes())
    )
    with pytest.raises(ValueError, match="expected non-negative integer class labels"):
        read_mnist_folder(tmp_path, eval_size=1)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(0x09, (2,), bytes([0, 255])))
    with pytest.raises(ValueError, match="non-negative integer class labels, got torch.int8"):
        read_mnist_folder(tmp_path, eval_size=1)


@pytest.mark.parametrize(
    ("n", "eval_size", "expected"),
    [(10, None, 2), (3, None, 1), (2, None, 1), (500, 0.5, 250), (500, 7, 7), (10000, None, 2000)],
)
def test_small_test_set_folders_can_be_split(
    tmp_path: Path, n: int, eval_size: float | None, expected: int
) -> None:
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(0x08, (n, 2, 2), bytes(4 * n)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(0x08, (n,), bytes(n)))
    data = load_dataset("mnist", root=tmp_path, eval_size=eval_size)
    assert (len(data.train), len(data.eval)) == (n - expected, expected)


@pytest.mark.parametrize(
    ("n", "eval_size", "pattern"),
    [
        (1, None, "cannot be split"),
        (10, 10, "expected between 1 and 9 for 10 test images, got 10"),
        (10, 0, "expected between 1 and 9"),
        (10, 1.0, r"expected a fraction in \(0, 1\)"),
        (10, True, "expected a number of images or a fraction"),
        (10, "2", "expected a number of images or a fraction"),
    ],
)
def test_bad_eval_size(tmp_path: Path, n: int, eval_size: object, pattern: str) -> None:
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(0x08, (n, 2, 2), bytes(4 * n)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(0x08, (n,), bytes(n)))
    with pytest.raises(ValueError, match=pattern):
        read_mnist_folder(tmp_path, eval_size=eval_size)  # type: ignore[arg-type]


def test_binarize_draws_bernoulli_pixels_reproducibly() -> None:
    images = torch.tensor([[0.0, 1.0, 0.25, 0.75]]).repeat(20_000, 1)
    first = pyvae.data.binarize(images, generator=torch.Generator().manual_seed(3))
    again = pyvae.data.binarize(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and set(first.unique().tolist()) <= {0.0, 1.0}
    means = first.mean(0)
    assert means[0] == 0 and means[1] == 1  # the extremes are exact
    assert abs(float(means[2]) - 0.25) < 0.02 and abs(float(means[3]) - 0.75) < 0.02  # ~6 sd


def test_dynamic_binarization_gives_fresh_binary_batches_each_epoch() -> None:
    images = torch.full((8, 1, 2, 2), 0.5)
    data = pyvae.data.ImageSet(images, torch.arange(8))
    loader = data.loader(
        8, shuffle=False, dynamic_binarization=True, generator=torch.Generator().manual_seed(0)
    )
    (x1, y1), (x2, _) = next(iter(loader)), next(iter(loader))
    assert torch.equal(y1, torch.arange(8)) and set(x1.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(x1, x2)  # a new draw in the second epoch
    plain = next(iter(data.loader(8, shuffle=False)))[0]
    assert torch.equal(plain, images)
    fixed = data.binarized(seed=1)
    assert torch.equal(fixed.images, data.binarized(seed=1).images)
