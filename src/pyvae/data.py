"""Data sets for VAEs as tensors: MNIST-format folders, torchvision (Fashion)MNIST, sklearn digits.

Every loader returns a :class:`DataSplits`: float images in [0, 1] of shape (N, C, H, W) with
integer labels, already split into a training and an evaluation part, so that a model can be
trained and scored without further plumbing::

    >>> from pyvae.data import load_dataset
    >>> data = load_dataset("digits")             # scikit-learn's 8x8 digits, no download
    >>> data.train.images.shape, data.eval.images.shape
    (torch.Size([1438, 1, 8, 8]), torch.Size([359, 1, 8, 8]))

Nothing is downloaded unless ``download=True`` is passed (MNIST and FashionMNIST through
torchvision).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

__all__ = [
    "DATASETS",
    "SPRITE_FACTORS",
    "SPRITE_FACTOR_VALUES",
    "DataSplits",
    "ImageSet",
    "binarize",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_sprites",
    "read_idx",
    "read_mnist_folder",
    "render_sprites",
]

_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

#: The data set names that :func:`load_dataset` (and ``pyvae train --data``) accepts.
DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist")

DIGIT_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


#: The largest IDX array :func:`read_idx` reads unless told otherwise (1 GiB; MNIST's training
#: images are 47 MB). The declared size is checked against it before anything is read.
IDX_MAX_BYTES = 2**30
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = IDX_MAX_BYTES) -> torch.Tensor:
    """Read an IDX file (the MNIST format; ``.gz`` is decompressed as it is read) into a tensor.

    The header (magic number, element type, shape) is checked first, and no more data than it
    declares is read or decompressed: a file can make this function allocate at most the size
    its header declares (and at most ``max_bytes``), never more than the data it really holds.

    Args:
        path: an IDX file, optionally gzip-compressed (``.gz``).
        max_bytes: refuse arrays whose declared size exceeds this many bytes.

    Returns:
        A tensor of the file's shape and element type (values kept as stored; big-endian types
        converted to native), e.g. (10000, 28, 28) ``uint8`` pixels for MNIST's test images,
        (10000,) ``uint8`` labels, ``float32``/``float64`` for float IDX files.

    Raises:
        ValueError: if the file is truncated, has trailing bytes, is not an IDX file, or declares
            more than ``max_bytes``.
    """
    path = Path(path)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes: expected a positive integer, got {max_bytes!r}")
    compressed = path.suffix == ".gz"
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            return _read_idx_stream(path, f, compressed, max_bytes)
    except (OSError, EOFError, zlib.error) as exc:
        if compressed and not isinstance(
            exc, (FileNotFoundError, IsADirectoryError, PermissionError)
        ):
            raise ValueError(f"{path}: not a valid gzip file ({exc})") from None
        raise


def _read_exactly(f: io.BufferedIOBase, n: int) -> bytes:
    """Up to n bytes, fewer only at the end of the stream; read in chunks, so that memory
    follows what the stream really holds, not n."""
    parts, left = [], n
    while left > 0:
        part = f.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read_idx_stream(
    path: Path, f: io.BufferedIOBase, compressed: bool, max_bytes: int
) -> torch.Tensor:
    magic = _read_exactly(f, 4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {magic.hex()})")
    dtype = np.dtype(_IDX_DTYPES[magic[2]])
    ndim = magic[3]
    dims = _read_exactly(f, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(
            f"{path}: truncated IDX header ({4 + len(dims)} bytes, expected {4 + 4 * ndim})"
        )
    shape = struct.unpack(f">{ndim}I", dims)
    header = 4 + 4 * ndim
    n_bytes = math.prod(shape) * dtype.itemsize
    if n_bytes > max_bytes:
        raise ValueError(
            f"{path}: the IDX header declares an array of shape {shape} ({n_bytes} bytes), more "
            f"than max_bytes={max_bytes}; pass a larger max_bytes if the file is genuine"
        )
    if not compressed:
        size = os.fstat(f.fileno()).st_size
        if size != header + n_bytes:
            raise ValueError(
                f"{path}: expected {header + n_bytes} bytes for an IDX array of shape {shape}, "
                f"got {size}"
            )
    data = _read_exactly(f, n_bytes)
    if len(data) != n_bytes or _read_exactly(f, 1):
        got = f"{header + len(data)}" if len(data) < n_bytes else "more"
        raise ValueError(
            f"{path}: expected {header + n_bytes} bytes (decompressed) for an IDX array of shape "
            f"{shape}, got {got}"
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))


def binarize(images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary images: each pixel 1 with probability its value (in [0, 1]), else 0; same shape and
    dtype. Reproducible with a ``generator``."""
    return torch.bernoulli(images, generator=generator)


@dataclass
class ImageSet:
    """Images and labels of one split.

    Attributes:
        images: float32 tensor (N, C, H, W), values in [0, 1].
        labels: int64 tensor (N,), class indices.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"ImageSet: expected images (N, C, H, W) and labels (N,), got "
                f"{tuple(self.images.shape)} and {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def dataset(self) -> TensorDataset:
        """A ``TensorDataset`` of ``(image, label)`` pairs for a ``DataLoader``."""
        return TensorDataset(self.images, self.labels)

    def loader(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        dynamic_binarization: bool = False,
        generator: torch.Generator | None = None,
    ) -> DataLoader[Any]:
        """A ``DataLoader`` of ``(x, y)`` batches, x (B, C, H, W) float32.

        With ``dynamic_binarization`` every batch is a fresh Bernoulli draw of each pixel with
        probability the pixel's value (the protocol of the VAE literature for MNIST: the data
        seen in each epoch are new binary images); ``generator`` then seeds the draws and the
        shuffling, so a run is reproducible.
        """

        def collate(batch: list[Any]) -> Any:
            x, y = default_collate(batch)
            return binarize(x, generator=generator), y

        return DataLoader(
            self.dataset(),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=collate if dynamic_binarization else None,
        )

    def binarized(self, *, seed: int = 0) -> ImageSet:
        """One fixed, seeded binarisation of the images (for an evaluation set: every model is
        scored on the same binary images)."""
        generator = torch.Generator().manual_seed(seed)
        return ImageSet(binarize(self.images, generator=generator), self.labels)

    def head(self, n: int | None) -> ImageSet:
        """The first ``n`` examples (all of them when ``n`` is None or larger than the set)."""
        if n is None:
            return self
        if n <= 0:
            raise ValueError(f"n: expected a positive number of examples, got {n}")
        return ImageSet(self.images[:n], self.labels[:n])


@dataclass
class DataSplits:
    """A data set split into a training and an evaluation part.

    Attributes:
        name: the data set's name (``"digits"``, ``"mnist"``, ``"fashion-mnist"``).
        train: the training split.
        eval: the evaluation split (held out from training).
        classes: the class names, indexed by label.
        note: how the split was made, in words (shown in reports).
    """

    name: str
    train: ImageSet
    eval: ImageSet
    classes: tuple[str, ...] = DIGIT_CLASSES
    note: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one image, (C, H, W)."""
        c, h, w = self.train.images.shape[1:]
        return (int(c), int(h), int(w))


def load_digits(*, eval_fraction: float = 0.2, seed: int = 0) -> DataSplits:
    """scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn).

    Pixels 0..16 are scaled to [0, 1]; images have shape (1, 8, 8). The split is a seeded random
    permutation (``eval_fraction`` of the images held out), the same for the same ``seed``.

    Raises:
        ImportError: if scikit-learn is not installed (``pip install 'pyvae[viz]'``).
    """
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction: expected a number in (0, 1), got {eval_fraction!r}")
    datasets = _import_sklearn_datasets()
    bunch = datasets.load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_eval = round(len(labels) * eval_fraction)
    train_idx, eval_idx = order[n_eval:], order[:n_eval]
    return DataSplits(
        name="digits",
        train=ImageSet(images[train_idx], labels[train_idx]),
        eval=ImageSet(images[eval_idx], labels[eval_idx]),
        classes=DIGIT_CLASSES,
        note=(
            f"scikit-learn 8x8 digits, pixels/16; seeded split (seed {seed}): "
            f"{len(train_idx)} train, {n_eval} eval"
        ),
    )


def _import_sklearn_datasets():  # type: ignore[no-untyped-def]
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise ImportError(
            "the 'digits' data set needs scikit-learn: pip install 'pyvae[viz]'"
        ) from exc
    return datasets


#: The share of a test-set-only folder that evaluates by default (2,000 of MNIST's 10,000).
DEFAULT_EVAL_FRACTION = 0.2

_SUBDIRS = {"mnist": ("", "MNIST/raw", "raw"), "fashion-mnist": ("", "FashionMNIST/raw", "raw")}


def _find_idx(root: Path, stem: str, subdirs: tuple[str, ...]) -> Path | None:
    for sub in subdirs:
        for suffix in ("", ".gz"):
            candidate = root / sub / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def read_mnist_folder(
    root: str | os.PathLike[str],
    *,
    name: str = "mnist",
    eval_size: int | float | None = None,
) -> DataSplits:
    """MNIST-format IDX files from a local folder (no download).

    Looks in ``root``, ``root/MNIST/raw`` (``root/FashionMNIST/raw`` for FashionMNIST: the
    layout torchvision writes) and ``root/raw`` for ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``,
    each optionally ``.gz``. With the training files, the training set trains and the test set
    evaluates. With only the test-set files, the test set is split: its first
    ``N - eval_size`` images train and the last ``eval_size`` evaluate (by default a fifth: for
    the official 10,000, 0-7999 and 8000-9999).

    Pixels stored as ``uint8`` are divided by 255; float IDX files keep their values, which must
    lie in [0, 1]. Labels must be non-negative integers.

    Args:
        root: the folder.
        name: ``"mnist"`` or ``"fashion-mnist"`` (class names and where to look).
        eval_size: for a test-set-only folder, the number of evaluation images (an int) or
            their share (a float in (0, 1)); None: :data:`DEFAULT_EVAL_FRACTION` (0.2).

    Raises:
        FileNotFoundError: if the test-set files are not there (the message lists where it looked).
        ValueError: if a file is corrupt, or images and labels do not match.
    """
    if name not in _SUBDIRS:
        raise ValueError(f"name: expected 'mnist' or 'fashion-mnist', got {name!r}")
    root = Path(root)
    subdirs = _SUBDIRS[name]
    found = {
        stem: _find_idx(root, stem, subdirs)
        for stem in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    }
    if found["t10k-images-idx3-ubyte"] is None or found["t10k-labels-idx1-ubyte"] is None:
        places = ", ".join(str(root / s) if s else str(root) for s in subdirs)
        raise FileNotFoundError(
            f"no {name} files in {root}: expected t10k-images-idx3-ubyte[.gz] and "
            f"t10k-labels-idx1-ubyte[.gz] (and optionally the train-* files) in {places}; "
            f"pass download=True (--download) to fetch them with torchvision"
        )
    test = _read_pair(found["t10k-images-idx3-ubyte"], found["t10k-labels-idx1-ubyte"])
    classes = FASHION_CLASSES if name == "fashion-mnist" else DIGIT_CLASSES
    train_images, train_labels = found["train-images-idx3-ubyte"], found["train-labels-idx1-ubyte"]
    if train_images is not None and train_labels is not None:
        train = _read_pair(train_images, train_labels)
        return DataSplits(
            name,
            train,
            test,
            classes,
            note=f"{name} from {root}: {len(train)} training images, {len(test)} test images",
        )
    n_train = len(test) - _eval_count(eval_size, len(test))
    return DataSplits(
        name,
        ImageSet(test.images[:n_train], test.labels[:n_train]),
        ImageSet(test.images[n_train:], test.labels[n_train:]),
        classes,
        note=(
            f"{name} test set only, from {root}: images 0-{n_train - 1} train, "
            f"{n_train}-{len(test) - 1} evaluate"
        ),
    )


def _read_pair(images_path: Path | None, labels_path: Path | None) -> ImageSet:
    assert images_path is not None and labels_path is not None
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} and {labels_path}: expected images (N, H, W) and labels (N,), got "
            f"{tuple(images.shape)} and {tuple(labels.shape)}"
        )
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(
            f"{images_path}: expected at least one image of at least 1x1 pixels, got shape "
            f"{tuple(images.shape)}"
        )
    return ImageSet(_pixels(images_path, images), _labels(labels_path, labels))


def _pixels(path: Path, images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels divided by 255; float pixels kept as they are (they must lie in [0, 1])."""
    if images.dtype == torch.uint8:
        return images.unsqueeze(1).float() / 255.0
    if images.is_floating_point():
        pixels = images.unsqueeze(1).float()
        if pixels.numel() and not (
            bool(torch.isfinite(pixels).all())
            and 0 <= float(pixels.min()) <= float(pixels.max()) <= 1
        ):
            raise ValueError(
                f"{path}: float pixels must lie in [0, 1] (they are kept as stored, not divided "
                f"by 255), got values in [{float(pixels.min())}, {float(pixels.max())}]"
            )
        return pixels
    raise ValueError(
        f"{path}: expected uint8 pixels (0-255) or float pixels in [0, 1], got {images.dtype}"
    )


def _labels(path: Path, labels: torch.Tensor) -> torch.Tensor:
    if labels.is_floating_point() or (labels.numel() and int(labels.min()) < 0):
        raise ValueError(
            f"{path}: expected non-negative integer class labels, got {labels.dtype} values"
            + (f" from {labels.min().item()}" if labels.numel() else "")
        )
    return labels.long()


def _eval_count(eval_size: int | float | None, n: int) -> int:
    """How many of ``n`` test images evaluate, from an ``eval_size`` count or fraction."""
    if eval_size is None:
        eval_size = DEFAULT_EVAL_FRACTION
    if isinstance(eval_size, bool) or not isinstance(eval_size, (int, float)):
        raise ValueError(
            f"eval_size: expected a number of images or a fraction in (0, 1), got {eval_size!r}"
        )
    if isinstance(eval_size, float):
        if not 0 < eval_size < 1:
            raise ValueError(f"eval_size: expected a fraction in (0, 1), got {eval_size!r}")
        if n < 2:
            raise ValueError(
                f"eval_size: {n} test image(s) cannot be split into a training and an "
                f"evaluation part; the folder needs at least 2"
            )
        return min(n - 1, max(1, round(n * eval_size)))
    if not 0 < eval_size < n:
        raise ValueError(
            f"eval_size: expected between 1 and {n - 1} for {n} test images, got {eval_size}"
        )
    return eval_size


def load_mnist(
    root: str | os.PathLike[str] = "data",
    *,
    name: str = "mnist",
    download: bool = False,
    eval_size: int | float | None = None,
) -> DataSplits:
    """MNIST or FashionMNIST, from local files or downloaded with torchvision.

    Existing files in ``root`` are used as :func:`read_mnist_folder` describes (a folder with only
    the test-set files works). When they are missing and ``download`` is True, torchvision
    downloads the data set into ``root`` (its usual layout, ``root/MNIST/raw``), and the official
    training set trains while the test set evaluates.

    Args:
        root: the data folder.
        name: ``"mnist"`` or ``"fashion-mnist"``.
        download: allow torchvision to download missing files.
        eval_size: see :func:`read_mnist_folder`.

    Raises:
        FileNotFoundError: files missing and ``download`` is False.
    """
    try:
        return read_mnist_folder(root, name=name, eval_size=eval_size)
    except FileNotFoundError:
        if not download:
            raise
    from torchvision import datasets

    cls = datasets.FashionMNIST if name == "fashion-mnist" else datasets.MNIST
    parts = [cls(str(root), train=train, download=True) for train in (True, False)]
    train, test = (ImageSet(p.data.unsqueeze(1).float() / 255.0, p.targets.long()) for p in parts)
    classes = FASHION_CLASSES if name == "fashion-mnist" else DIGIT_CLASSES
    return DataSplits(
        name,
        train,
        test,
        classes,
        note=f"{name} downloaded by torchvision to {root}: {len(train)} train, {len(test)} test",
    )


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    seed: int = 0,
    eval_size: int | float | None = None,
) -> DataSplits:
    """Load a data set by name: ``"digits"``, ``"mnist"`` or ``"fashion-mnist"``.

    Args:
        name: one of :data:`DATASETS`.
        root: the data folder for MNIST/FashionMNIST (default ``"data"``); ignored for digits.
        download: allow torchvision to download MNIST/FashionMNIST.
        seed: the seed of the digits' train/eval split.
        eval_size: MNIST/FashionMNIST from a test-set-only folder: evaluation images, a count or
            a fraction (see :func:`read_mnist_folder`); digits: the fraction held out (default
            0.2).

    Raises:
        ValueError: unknown name.
        FileNotFoundError: MNIST files missing and ``download`` is False.
    """
    if name == "digits":
        if eval_size is not None and not isinstance(eval_size, float):
            raise ValueError(
                f"eval_size: the digits split takes a fraction in (0, 1), got {eval_size!r}"
            )
        return load_digits(seed=seed, eval_fraction=0.2 if eval_size is None else eval_size)
    if name in ("mnist", "fashion-mnist"):
        return load_mnist(
            "data" if root is None else root, name=name, download=download, eval_size=eval_size
        )
    raise ValueError(f"data set: expected one of {', '.join(DATASETS)}, got {name!r}")


# -- sprites: a procedural dSprites-like data set with known factors ----------------------------

#: The factors of :func:`load_sprites`, in column order.
SPRITE_FACTORS: tuple[str, ...] = ("shape", "scale", "orientation", "x", "y")
#: The values each sprite factor takes (as in dSprites: 3 shapes, 6 scales, 40 orientations,
#: 32 x and 32 y positions).
SPRITE_FACTOR_VALUES: dict[str, tuple[float, ...]] = {
    "shape": (0.0, 1.0, 2.0),  # square, ellipse, heart
    "scale": tuple(float(v) for v in np.linspace(0.5, 1.0, 6)),
    "orientation": tuple(float(v) for v in np.linspace(0.0, 2 * np.pi, 40, endpoint=False)),
    "x": tuple(float(v) for v in np.linspace(0.0, 1.0, 32)),
    "y": tuple(float(v) for v in np.linspace(0.0, 1.0, 32)),
}
_SPRITE_CHUNK = 512  # images rendered at once: bounds the temporary memory to a few MB per chunk


def render_sprites(factors: torch.Tensor, *, size: int = 64) -> torch.Tensor:
    """Draw binary sprites with the given factors: float32 images of shape (N, 1, size, size).

    Each row of ``factors`` (N, 5) is (shape, scale, orientation, x, y) as in
    :data:`SPRITE_FACTORS`: shape 0 (square), 1 (ellipse, axes 1 : 0.5) or 2 (heart); scale in
    (0, 1] (the sprite's radius is ``0.3 * scale`` of half the image); orientation in radians;
    x and y in [0, 1] (the centre runs over the middle 60% of the image, so that every sprite
    stays inside it). A pixel is 1 when its centre lies inside the shape.

    Args:
        factors: float tensor of shape (N, 5).
        size: the image side in pixels, >= 8.
    """
    if not isinstance(factors, torch.Tensor) or factors.dim() != 2 or factors.shape[1] != 5:
        got = tuple(factors.shape) if isinstance(factors, torch.Tensor) else type(factors).__name__
        raise ValueError(f"factors: expected a tensor of shape (N, 5), got {got}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size: expected an integer >= 8, got {size!r}")
    f = factors.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(f).all()):
        raise ValueError("factors: contains NaN or infinite values")
    shapes = f[:, 0]
    if not bool(((shapes == 0) | (shapes == 1) | (shapes == 2)).all()):
        raise ValueError("factors: the shape column must hold 0, 1 or 2")
    if not bool(((f[:, 1] > 0) & (f[:, 1] <= 1)).all()):
        raise ValueError("factors: the scale column must lie in (0, 1]")
    if not bool(((f[:, 3:] >= 0) & (f[:, 3:] <= 1)).all()):
        raise ValueError("factors: the x and y columns must lie in [0, 1]")
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # pixel centres
    py, px = torch.meshgrid(axis, axis, indexing="ij")
    out = torch.empty(len(f), 1, size, size, dtype=torch.float32)
    for start in range(0, len(f), _SPRITE_CHUNK):
        c = f[start : start + _SPRITE_CHUNK, :, None, None].float()
        shape, radius, angle = c[:, 0], 0.3 * c[:, 1], c[:, 2]
        cx, cy = -0.6 + 1.2 * c[:, 3], -0.6 + 1.2 * c[:, 4]
        dx, dy = px - cx, py - cy
        cos, sin = torch.cos(angle), torch.sin(angle)  # rotate the pixel into the shape's frame
        u, v = (cos * dx + sin * dy) / radius, (-sin * dx + cos * dy) / radius
        square = torch.maximum(u.abs(), v.abs()) <= 0.8
        ellipse = u**2 + (v / 0.5) ** 2 <= 1
        hu, hv = u * 1.15, -v * 1.15 + 0.15  # the heart curve (u^2+v^2-1)^3 <= u^2 v^3, upright
        heart = (hu**2 + hv**2 - 1) ** 3 - hu**2 * hv**3 <= 0
        inside = torch.where(shape == 0, square, torch.where(shape == 1, ellipse, heart))
        out[start : start + _SPRITE_CHUNK, 0] = inside.float()
    return out


def load_sprites(
    n: int = 10_000, *, seed: int = 0, size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """A dSprites-like data set drawn procedurally: no download, deterministic given ``seed``.

    Each image shows one white shape on black; its five factors of variation (shape, scale,
    orientation, x and y position; :data:`SPRITE_FACTORS`) are drawn independently and uniformly
    from the values of :data:`SPRITE_FACTOR_VALUES` (those of dSprites, Matthey et al., 2017).
    Use it to exercise disentanglement metrics (:mod:`pyvae.metrics`) and models such as the
    beta-VAE. Memory: ``n * size**2 * 4`` bytes (328 MB for 20,000 images of 64x64).

    Args:
        n: the number of images.
        seed: the seed of the factors.
        size: the image side in pixels (64 as dSprites; 32 for quick experiments).

    Returns:
        ``(images, factors)``: float32 images in {0, 1} of shape (n, 1, size, size), and float32
        factor values of shape (n, 5) (shape as 0, 1, 2; the others as their values).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    columns = []
    for name in SPRITE_FACTORS:
        values = torch.tensor(SPRITE_FACTOR_VALUES[name], dtype=torch.float64)
        columns.append(values[torch.randint(len(values), (n,), generator=generator)])
    factors = torch.stack(columns, dim=1)
    return render_sprites(factors, size=size), factors.float()
