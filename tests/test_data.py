"""Data helpers on real data: the MNIST test-set folder and scikit-learn's digits."""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import pytest
import torch

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
