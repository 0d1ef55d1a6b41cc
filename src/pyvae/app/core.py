"""What the playground computes, without any web framework: load a run, encode its evaluation
images once, decode codes, interpolate, embed the codes in 2-D.

The Streamlit page (``pyvae playground``) is a thin layer over :class:`Playground`; everything
here is plain torch/numpy, so it is tested directly and can be reused in a notebook::

    >>> from pyvae.app import Playground
    >>> pg = Playground.load("runs/demo")          # model, run files, encoded evaluation set
    >>> image = pg.decode(pg.prior_mean()[None])   # (1, *input_shape), the mean of p(x|z)

Only the checkpoint and the run folder beside it are read; nothing is written. A file that is
missing or damaged becomes a readable line in :attr:`Playground.problems` (or, for the
checkpoint itself, a :class:`PlaygroundError`), never a traceback in the page.
"""

from __future__ import annotations

import io
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.distributions import Distribution

__all__ = [
    "MAX_RUN_FILE_BYTES",
    "Playground",
    "PlaygroundError",
    "animation_gif",
    "image_strip",
    "metric_rows",
    "to_display",
]

#: The largest run.json / metrics.json / history.json the playground reads (bytes); a larger
#: file is reported as a problem and skipped, so no file can make the app read without bound.
MAX_RUN_FILE_BYTES = 8 * 1024 * 1024


class PlaygroundError(ValueError):
    """The playground cannot show this source: no checkpoint, or one that cannot be loaded. The
    message names the path and what was expected (the page shows it as it is)."""


def _posterior_point(q: Distribution) -> torch.Tensor:
    """The deterministic point of a posterior: ``pyvae.posteriors.latent_point`` where it exists
    (pyvae >= 0.2: flows, point masses), else its mean."""
    try:
        from pyvae.posteriors import latent_point  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return q.mean
    return latent_point(q)


def _posterior_scale(q: Distribution) -> torch.Tensor | None:
    try:
        return q.stddev
    except (NotImplementedError, AttributeError):
        return None


def _read_json(path: Path, problems: list[str]) -> Any:
    """A JSON file of the run folder, or None with a line in ``problems``."""
    if not path.is_file():
        return None
    try:
        size = path.stat().st_size
        if size > MAX_RUN_FILE_BYTES:
            problems.append(
                f"{path.name}: {size:,} bytes, more than the {MAX_RUN_FILE_BYTES:,} the "
                f"playground reads; skipped"
            )
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name}: not readable JSON ({exc}); skipped")
        return None


@dataclass
class Playground:
    """A loaded model with what the playground shows about it.

    Build it with :meth:`load`. Codes are ``(B, D)`` float tensors on the CPU; decoded images
    are the mean of p(x|z), shape ``(B, *input_shape)``.

    Attributes:
        source: the path given (a run folder or a checkpoint file).
        checkpoint: the checkpoint file read.
        model: the model, in eval mode on the CPU.
        config: the model's build config.
        pyvae_version: the pyvae version that wrote the checkpoint.
        metadata: the checkpoint's user metadata (data, training, metrics for CLI runs).
        run: the run folder's ``run.json`` ({} when absent or unreadable).
        metrics: the run's metrics (``metrics.json``, else those in the checkpoint).
        history: the per-epoch rows of ``history.json`` ([] when absent).
        images: the evaluation images (N, *input_shape), or None when the data is not available.
        labels: their class indices (N,), or None.
        class_names: a name per class index (may be empty).
        means: the posterior points of ``images`` (N, D), or None.
        scales: the posterior standard deviations (N, D), or None (no data, or a posterior
            without one).
        problems: readable lines about what could not be read (shown in the page).
    """

    source: Path
    checkpoint: Path
    model: Any
    config: dict[str, Any]
    pyvae_version: str
    metadata: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    images: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    class_names: tuple[str, ...] = ()
    means: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    problems: list[str] = field(default_factory=list)
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        source: str | Path,
        *,
        max_images: int = 2000,
        data_dir: str | Path | None = None,
    ) -> Playground:
        """Load the model of a run folder or checkpoint, read the run files, encode the
        evaluation images.

        Args:
            source: a run folder (holding ``model.safetensors``) or a ``.safetensors`` file.
            max_images: encode at most this many evaluation images (the first ones).
            data_dir: where to look for MNIST-format files (default: the folder the run
                recorded, then that folder relative to the run folder).

        Raises:
            PlaygroundError: no checkpoint at ``source``, or one that cannot be loaded.
        """
        from pyvae.checkpoint import CheckpointError, load, read_info

        if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
            raise ValueError(f"max_images: expected a positive integer, got {max_images!r}")
        source = Path(source)
        try:
            info = read_info(source)
            model = load(info.path, map_location="cpu")
        except (FileNotFoundError, CheckpointError) as exc:
            raise PlaygroundError(str(exc)) from None
        except Exception as exc:  # a plug-in that fails to build, a broken dependency
            raise PlaygroundError(
                f"{source}: the checkpoint could not be loaded: {type(exc).__name__}: {exc}"
            ) from None
        model.eval()
        pg = cls(
            source=source,
            checkpoint=info.path,
            model=model,
            config=dict(info.config),
            pyvae_version=info.pyvae_version,
            metadata=dict(info.metadata),
        )
        folder = info.path.parent
        run = _read_json(folder / "run.json", pg.problems)
        pg.run = run if isinstance(run, dict) else {}
        metrics = _read_json(folder / "metrics.json", pg.problems)
        if not isinstance(metrics, dict):
            metrics = pg.run.get("metrics") or pg.metadata.get("metrics") or {}
        pg.metrics = dict(metrics) if isinstance(metrics, dict) else {}
        history = _read_json(folder / "history.json", pg.problems)
        if isinstance(history, list):
            pg.history = [row for row in history if isinstance(row, dict)]
        pg._load_data(max_images, data_dir)
        if pg.images is not None:
            pg._encode_all()
        return pg

    def _data_info(self) -> dict[str, Any]:
        data = self.metadata.get("data") or self.run.get("data") or {}
        return data if isinstance(data, dict) else {}

    def _load_data(self, max_images: int, data_dir: str | Path | None) -> None:
        from pyvae.data import DATASETS, load_dataset

        data = self._data_info()
        name = data.get("name")
        classes = data.get("classes")
        if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
            self.class_names = tuple(classes)
        if name is None:
            self.problems.append(
                "the checkpoint does not say which data it was trained on: the panels that "
                "need evaluation images are off (upload an image in Reconstruct)"
            )
            return
        if name not in DATASETS:
            self.problems.append(f"unknown data set {name!r} in the run (known: {DATASETS})")
            return
        candidates: list[Path] = []
        if data_dir is not None:
            candidates.append(Path(data_dir))
        stored = data.get("data_dir")
        if isinstance(stored, str):
            candidates += [Path(stored), self.checkpoint.parent / stored]
        candidates = candidates or [Path("data")]
        seed = data.get("seed", 0)
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
        error: Exception | None = None
        for root in candidates:
            try:
                splits = load_dataset(name, root=root, download=False, seed=seed)
                break
            except (OSError, ValueError, ImportError) as exc:
                error = exc
        else:
            self.problems.append(
                f"the {name} evaluation images could not be read ({error}): the panels that "
                f"need them are off"
            )
            return
        limit = data.get("eval_limit")
        n = max_images
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            n = min(n, limit)
        evaluation = splits.eval.head(n)
        shape = tuple(self.model.input_shape)
        images = evaluation.images
        if tuple(images.shape[1:]) != shape:
            if math.prod(images.shape[1:]) == math.prod(shape):
                images = images.reshape(len(images), *shape)  # flat (tabular) MLP inputs
            else:
                self.problems.append(
                    f"the {name} images have shape {tuple(images.shape[1:])}, the model expects "
                    f"{shape}: the panels that need evaluation images are off"
                )
                return
        self.images = images.to(self._dtype())
        self.labels = evaluation.labels
        if not self.class_names:
            self.class_names = tuple(splits.classes)

    def _dtype(self) -> torch.dtype:
        p = next(self.model.parameters(), None)
        return torch.get_default_dtype() if p is None else p.dtype

    def _encode_all(self, batch_size: int = 256) -> None:
        assert self.images is not None
        means, scales = [], []
        have_scale = True
        for start in range(0, len(self.images), batch_size):
            x = self.images[start : start + batch_size]
            y = None if self.labels is None else self.labels[start : start + batch_size]
            point, scale = self.encode(x, y)
            means.append(point)
            if scale is None:
                have_scale = False
            else:
                scales.append(scale)
        self.means = torch.cat(means)
        self.scales = torch.cat(scales) if have_scale and scales else None

    # -- what the model is ----------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        """The size D of the latent space."""
        return int(self.model.latent_dim)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, e.g. (1, 28, 28)."""
        return tuple(int(s) for s in self.model.input_shape)

    @property
    def num_classes(self) -> int | None:
        """The number of classes of a conditional model, else None."""
        n = getattr(self.model, "num_classes", None)
        return int(n) if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None

    def n_parameters(self) -> dict[str, int]:
        """Parameter counts: ``{"total": n, <top-level submodule>: n, ...}``."""
        counts: dict[str, int] = {"total": sum(p.numel() for p in self.model.parameters())}
        for name, child in self.model.named_children():
            n = sum(p.numel() for p in child.parameters())
            if n:
                counts[name] = n
        return counts

    def class_name(self, index: int) -> str:
        """The name of class ``index`` (its number when the run gives no names)."""
        if 0 <= index < len(self.class_names):
            return self.class_names[index]
        return str(index)

    def _y(self, y: int | torch.Tensor | None, n: int) -> torch.Tensor | None:
        k = self.num_classes
        if k is None:
            return None
        if y is None:
            raise ValueError(f"y: this model is conditional on {k} classes; give a class index")
        y = torch.as_tensor(y, dtype=torch.long)
        if y.dim() == 0:
            y = y.expand(n)
        if y.shape != (n,) or bool(((y < 0) | (y >= k)).any()):
            raise ValueError(f"y: expected class indices in [0, {k}) of shape ({n},), got {y}")
        return y

    # -- encode, decode --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self, x: torch.Tensor, y: int | torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Posterior points (B, D) and standard deviations (B, D) (None when the posterior has
        none) of inputs x (B, *input_shape); y: class indices for a conditional model."""
        x = x.to(self._dtype())
        yy = self._y(y, len(x))
        q = self.model.encode(x) if yy is None else self.model.encode(x, yy)
        scale = _posterior_scale(q)
        return _posterior_point(q).float().cpu(), None if scale is None else scale.float().cpu()

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: int | torch.Tensor | None = None) -> torch.Tensor:
        """The mean of p(x|z) for codes z (B, D): (B, *input_shape), float32 on the CPU."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z: expected shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        z = z.to(self._dtype())
        yy = self._y(y, len(z))
        params = self.model.decode(z) if yy is None else self.model.decode(z, yy)
        return self.model.likelihood.mean(params).float().cpu()

    # -- reference points of the latent space ---------------------------------------------------
    def _prior(self) -> Distribution | None:
        model = self.model
        if getattr(model, "prior", None) is None:
            return None  # an autoencoder (pyvae >= 0.2: prior=None)
        key = ("prior",)
        if key not in self._cache:
            with torch.no_grad():
                if hasattr(model, "prior_distribution"):  # pyvae >= 0.2 (VampPrior's encoder)
                    self._cache[key] = model.prior_distribution()
                else:
                    self._cache[key] = model.prior()
        return self._cache[key]

    def has_prior(self) -> bool:
        """Whether the model has a prior p(z) (an autoencoder has none)."""
        return self._prior() is not None

    @torch.no_grad()
    def prior_samples(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` seeded draws (n, D): from p(z), or, for a model without a prior, from a
        Gaussian fitted to the posterior points of the evaluation images (or N(0, I))."""
        prior = self._prior()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if prior is not None:
                return prior.sample((n,)).reshape(n, self.latent_dim).float().cpu()
            if self.means is not None and len(self.means) > 1:
                mu, sd = self.means.mean(0), self.means.std(0)
                return mu + sd * torch.randn(n, self.latent_dim)
            return torch.randn(n, self.latent_dim)

    def prior_mean(self) -> torch.Tensor:
        """The mean of p(z) (D,); for a model without a prior, the mean of the evaluation codes
        (of 4096 draws from ``prior_samples`` when no images are loaded)."""
        key = ("prior_mean",)
        if key not in self._cache:
            prior = self._prior()
            mean: torch.Tensor | None = None
            if prior is not None:
                try:
                    mean = prior.mean.reshape(self.latent_dim).float().cpu()
                except NotImplementedError:
                    mean = None
                if mean is not None and not bool(torch.isfinite(mean).all()):
                    mean = None
            if mean is None and prior is None and self.means is not None:
                mean = self.means.mean(0)  # no prior: the centre of the evaluation codes
            if mean is None:
                mean = self.prior_samples(4096).mean(0)
            self._cache[key] = mean.detach()
        return self._cache[key]

    def reference_codes(self) -> torch.Tensor:
        """The codes that set slider ranges and principal directions: the posterior points of
        the evaluation images, else 4096 prior draws."""
        return self.means if self.means is not None else self.prior_samples(4096)

    def slider_range(self) -> float:
        """A symmetric range ±R (R a multiple of 0.5) covering the reference codes and 99.9% of
        the prior on every axis: the range of the axis sliders."""
        key = ("range",)
        if key not in self._cache:
            codes = torch.cat([self.reference_codes(), self.prior_samples(4096)])
            lo = torch.quantile(codes, 0.0005, dim=0).abs().max()
            hi = torch.quantile(codes, 0.9995, dim=0).abs().max()
            r = max(float(lo), float(hi), 1.0)
            self._cache[key] = math.ceil(r * 2) / 2
        return self._cache[key]

    def directions(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``k`` principal directions of the reference codes: ``(components (k, D),
        std (k,))``, each component a unit vector, ``std`` the spread of the codes along it."""
        k = max(1, min(int(k), self.latent_dim))
        key = ("pca", k)
        if key not in self._cache:
            codes = self.reference_codes().double()
            centred = codes - codes.mean(0)
            _, s, vt = torch.linalg.svd(centred, full_matrices=False)
            n = max(len(codes) - 1, 1)
            comps = vt[:k].float()
            std = (s[:k] / math.sqrt(n)).float()
            if len(std) < k:  # fewer codes than directions: pad with unit axes
                comps = torch.cat([comps, torch.eye(self.latent_dim)[len(std) : k]])
                std = torch.cat([std, torch.ones(k - len(std))])
            self._cache[key] = (comps, std.clamp_min(1e-6))
        return self._cache[key]

    # -- paths and maps --------------------------------------------------------------------------
    def code_of(self, index: int) -> torch.Tensor:
        """The posterior point (D,) of evaluation image ``index``."""
        if self.means is None:
            raise ValueError("no evaluation images are loaded")
        if not 0 <= index < len(self.means):
            raise ValueError(f"index: expected 0 <= index < {len(self.means)}, got {index}")
        return self.means[index]

    def interpolate(
        self,
        i: int,
        j: int,
        steps: int = 10,
        *,
        method: Literal["linear", "slerp"] = "linear",
        y: int | None = None,
    ) -> torch.Tensor:
        """Decode ``steps`` codes from evaluation image ``i``'s to ``j``'s: (steps,
        *input_shape). ``"slerp"`` follows the great circle (for Gaussian latents)."""
        from pyvae.latent import interpolate_latents

        key = ("interp", i, j, steps, method, y)
        with self._lock:
            if key not in self._cache:
                path = interpolate_latents(self.code_of(i), self.code_of(j), steps, method=method)
                self._cache[key] = self.decode(path, y)
            return self._cache[key]

    def embedding(self, method: Literal["pca", "tsne"] = "pca", *, seed: int = 0) -> np.ndarray:
        """2-D coordinates (N, 2) of the posterior points: the points themselves for D <= 2 (a
        zero column for D = 1), else their PCA or t-SNE (scikit-learn) embedding."""
        if self.means is None:
            raise ValueError("no evaluation images are loaded")
        key = ("embed", method if self.latent_dim > 2 else "raw", seed)
        with self._lock:
            if key not in self._cache:
                means = self.means.double().numpy()
                if self.latent_dim == 1:
                    out = np.concatenate([means, np.zeros_like(means)], axis=1)
                elif self.latent_dim == 2:
                    out = means
                elif method == "pca":
                    comps, _ = self.directions(2)
                    out = (means - means.mean(0)) @ comps.double().numpy().T
                elif method == "tsne":
                    from sklearn.manifold import TSNE

                    perplexity = float(min(30.0, max(2.0, (len(means) - 1) / 3)))
                    out = TSNE(2, init="pca", random_state=seed, perplexity=perplexity)
                    out = out.fit_transform(means)
                else:
                    raise ValueError(f"method: expected 'pca' or 'tsne', got {method!r}")
                self._cache[key] = np.asarray(out, dtype=np.float64)
            return self._cache[key]

    def indices_of_class(self, label: int) -> list[int]:
        """The evaluation images of class ``label``, by index."""
        if self.labels is None:
            return []
        return [int(i) for i in torch.nonzero(self.labels == label).flatten()]

    def image_from_upload(self, data: bytes) -> torch.Tensor:
        """An uploaded PNG/JPEG as an input (1, *input_shape) in [0, 1]: converted to the
        model's channels (grey or RGB) and resized to its height and width.

        Raises:
            ValueError: not an image, or a model whose inputs are not images (C, H, W) with
                C of 1 or 3.
        """
        from PIL import Image, UnidentifiedImageError

        shape = self.input_shape
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise ValueError(
                f"uploads need an image model (input shape (1 or 3, H, W)); this one takes {shape}"
            )
        try:
            with Image.open(io.BytesIO(data)) as opened:
                if opened.width * opened.height > 4096 * 4096:  # read no more than that
                    raise ValueError(f"image too large ({opened.width} x {opened.height} pixels)")
                img = opened.convert("L" if shape[0] == 1 else "RGB")
                img = img.resize((shape[2], shape[1]), Image.Resampling.LANCZOS)
                array = np.asarray(img, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise ValueError(f"not a readable PNG or JPEG image ({exc})") from None
        x = torch.from_numpy(array)
        x = x.unsqueeze(0) if shape[0] == 1 else x.permute(2, 0, 1)
        return x.unsqueeze(0).to(self._dtype())


# -- pictures -------------------------------------------------------------------------------------


def _as_hwc(image: torch.Tensor) -> np.ndarray:
    """One decoded example as an (H, W) or (H, W, 3) float array: images as they are, flat
    vectors of a square size as squares, others as a 1-pixel-high strip."""
    x = image.detach().float().cpu()
    if x.dim() == 3 and x.shape[0] in (1, 3):
        arr = x.numpy()
        return arr[0] if x.shape[0] == 1 else arr.transpose(1, 2, 0)
    if x.dim() == 3:  # other channel counts: the channels side by side
        return np.concatenate(list(x.numpy()), axis=1)
    if x.dim() == 2:
        return x.numpy()
    flat = x.reshape(-1).numpy()
    side = math.isqrt(flat.size)
    if side * side == flat.size:
        return flat.reshape(side, side)
    return flat.reshape(1, -1)


def to_display(image: torch.Tensor, *, size: int = 192) -> tuple[np.ndarray, bool]:
    """A decoded example as an 8-bit picture about ``size`` pixels wide (nearest-neighbour
    upscaling, so pixels stay sharp).

    Returns:
        ``(array, clipped)``: uint8 (H', W') or (H', W', 3), and whether values outside [0, 1]
        were clipped for display (say so next to the picture).
    """
    arr = _as_hwc(image)
    clipped = bool((arr < 0).any() or (arr > 1).any() or not np.isfinite(arr).all())
    arr = np.nan_to_num(np.clip(arr, 0.0, 1.0))
    h, w = arr.shape[:2]
    scale = max(1, size // max(h, w))
    arr = np.repeat(arr, scale, axis=1)
    arr = np.repeat(arr, 24 if h == 1 else scale, axis=0)  # a 1-row strip gets some height
    return (arr * 255 + 0.5).astype(np.uint8), clipped


def image_strip(images: Sequence[torch.Tensor] | torch.Tensor, *, size: int = 96) -> np.ndarray:
    """Decoded examples side by side, 2 white pixels apart: one uint8 picture."""
    tiles = [to_display(x, size=size)[0] for x in images]
    if not tiles:
        raise ValueError("images: expected at least one")
    h = max(t.shape[0] for t in tiles)
    gap_shape = (h, 2, *tiles[0].shape[2:])
    parts: list[np.ndarray] = []
    for t in tiles:
        if parts:
            parts.append(np.full(gap_shape, 255, np.uint8))
        pad = [(0, h - t.shape[0]), (0, 0)] + [(0, 0)] * (t.ndim - 2)
        parts.append(np.pad(t, pad, constant_values=255))
    return np.concatenate(parts, axis=1)


def animation_gif(
    images: Sequence[torch.Tensor] | torch.Tensor, *, size: int = 192, ms_per_frame: int = 120
) -> bytes:
    """An endlessly looping GIF that plays the decoded examples forth and back."""
    from PIL import Image

    frames = [Image.fromarray(to_display(x, size=size)[0]) for x in images]
    if not frames:
        raise ValueError("images: expected at least one")
    sequence = frames + frames[-2:0:-1]
    buffer = io.BytesIO()
    sequence[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=sequence[1:],
        duration=ms_per_frame,
        loop=0,
    )
    return buffer.getvalue()


def metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Metrics as (name, formatted value) rows for the model card."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, float):
            rows.append((str(key), f"{value:.4g}"))
        elif isinstance(value, (int, str, bool)) or value is None:
            rows.append((str(key), str(value)))
    return rows
