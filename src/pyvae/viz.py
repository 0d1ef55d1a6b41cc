"""Pictures of a trained VAE: grids as tensors (torchvision) and labelled matplotlib figures.

Tensor builders (no matplotlib needed) return an image grid of shape (3, H, W) in [0, 1], ready
for ``torchvision.utils.save_image`` (:func:`save_grid`) or TensorBoard:
:func:`reconstruction_grid`, :func:`sample_grid`, :func:`manifold_grid`.

Figure builders return a ``matplotlib.figure.Figure`` (shown inline in a notebook; save it with
:func:`save_figure`); they never touch pyplot's global state, so they work on any backend:
:func:`plot_reconstructions`, :func:`plot_image_rows`, :func:`plot_samples`, :func:`plot_latent`,
:func:`plot_manifold`, :func:`plot_interpolation`, :func:`plot_traversal`,
:func:`plot_training_curves`.

A conditional model (built with ``num_classes``) needs its labels, passed as the keyword ``y``
everywhere: the labels (N,) of the inputs for reconstructions; a class (an int) to decode a
manifold, a traversal or the interpolations with (or one class per pair); a class or several for
samples (one row per class, columns sharing their z). An unconditional model refuses ``y``, and a
conditional one refuses to draw without it; both errors name ``y``.

matplotlib and scikit-learn (PCA, t-SNE) are optional: ``pip install 'pyvae[viz]'``.
"""

from __future__ import annotations

import importlib
import math
import operator
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torchvision.utils import make_grid, save_image

from pyvae.config import check_positive_int
from pyvae.latent import _labels as _class_labels
from pyvae.latent import interpolate, latent_grid, latent_grid_points, traverse
from pyvae.models.base import BaseVAE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "manifold_grid",
    "plot_image_rows",
    "plot_interpolation",
    "plot_latent",
    "plot_manifold",
    "plot_reconstructions",
    "plot_samples",
    "plot_training_curves",
    "plot_traversal",
    "reconstruction_grid",
    "require",
    "sample_grid",
    "save_figure",
    "save_grid",
]

PAD_VALUE = 0.5  # grey lines between tiles, visible on black and white backgrounds


def require(module: str, feature: str, extra: str = "viz") -> ModuleType:
    """Import an optional dependency, or raise an ``ImportError`` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        package = {"sklearn": "scikit-learn"}.get(top, top)
        raise ImportError(
            f"{feature} needs {package}, which is not installed: pip install 'pyvae[{extra}]'"
        ) from exc


def _new_figure(width: float, height: float) -> Figure:
    figure_module = require("matplotlib.figure", "pyvae.viz")
    return figure_module.Figure(figsize=(width, height), layout="constrained")


def _display(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> float CPU images in [0, 1] with 1 or 3 channels."""
    if images.dim() != 4:
        raise ValueError(
            f"images: expected a batch of images (N, C, H, W), got shape {tuple(images.shape)}"
        )
    images = images.detach().float().cpu().clamp(0, 1)
    if images.shape[1] not in (1, 3):
        images = images.mean(dim=1, keepdim=True)
    return images


def _grid(images: torch.Tensor, ncol: int, padding: int = 1) -> torch.Tensor:
    return make_grid(_display(images), nrow=ncol, padding=padding, pad_value=PAD_VALUE)


def save_grid(grid: torch.Tensor, path: str | os.PathLike[str], *, ncol: int | None = None) -> Path:
    """Write an image grid (3, H, W) or a batch (N, C, H, W) in [0, 1] as a PNG (parents made);
    a batch is laid out ``ncol`` images a row (by default about square)."""
    if ncol is not None:
        check_positive_int("ncol", ncol)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensor = grid.detach().float().cpu().clamp(0, 1)
    if tensor.dim() == 4:
        tensor = _grid(tensor, ncol or math.ceil(math.sqrt(len(tensor))))
    save_image(tensor, str(path))
    return path


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Save a figure (PNG, SVG or PDF by suffix), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), dpi=dpi, bbox_inches="tight", pad_inches=0.08)
    return path


def _model_device_dtype(model: BaseVAE) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters(), None)
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)


# -- labels of a conditional model ---------------------------------------------------------------


def _batch_labels(model: BaseVAE, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """The labels (n,) of n inputs, on the model's device, checked by ``model.check_labels``
    (None for an unconditional model; a clear error naming ``y`` otherwise)."""
    if isinstance(y, torch.Tensor):
        y = y.to(_model_device_dtype(model)[0])
    return model.check_labels(y, n)


def _as_class(y: object) -> object:
    """An integer-like class (a Python or numpy integer, a 0-d integer tensor) as an ``int``;
    anything else unchanged (and refused by :func:`_one_class`)."""
    if isinstance(y, bool):
        return y
    if isinstance(y, torch.Tensor):
        if y.dim() == 0 and not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool):
            return int(y)
        return y
    try:
        return operator.index(y)  # type: ignore[arg-type]
    except TypeError:
        return y


def _one_class(model: BaseVAE, y: object, hint: str = "") -> int | None:
    """One class ``y`` to decode with: None for an unconditional model (which refuses a class),
    an int in ``[0, num_classes)`` for a conditional one."""
    if model.num_classes is None:
        model.check_labels(y, 1)  # raises, naming y, unless y is None
        return None
    if y is None:
        raise ValueError(
            f"y: {type(model).__name__} is conditional (num_classes={model.num_classes}): pass "
            f"the class to decode with, y=c with c in [0, {model.num_classes - 1}]{hint}"
        )
    y = _as_class(y)
    _class_labels(model, y, 1, torch.device("cpu"))  # type: ignore[arg-type]  # raises, naming y
    return y  # type: ignore[return-value]


def _classes(model: BaseVAE, y: object, what: str) -> list[int]:
    """A sequence (or 1-D integer tensor) of classes of a conditional model, as ints."""
    if isinstance(y, torch.Tensor):
        if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(
                f"y: expected {what}: a class (int) or a 1-D integer tensor of classes, got a "
                f"tensor of shape {tuple(y.shape)} and dtype {y.dtype}"
            )
        items: list[object] = [int(c) for c in y.tolist()]
    elif isinstance(y, Iterable) and not isinstance(y, (str, bytes)):
        items = [_as_class(c) for c in y]
    else:
        raise ValueError(f"y: expected {what}: a class (int) or a sequence of classes, got {y!r}")
    if not items:
        raise ValueError(f"y: expected {what}: at least one class, got an empty sequence")
    k = model.num_classes or 0
    bad = [c for c in items if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < k]
    if bad:
        raise ValueError(
            f"y: the model is conditional: expected classes in [0, {k - 1}], got {bad[0]!r} "
            f"in {list(items)!r}"
        )
    return items  # type: ignore[return-value]


def _class_name(c: int, class_names: Sequence[str] | None, prefix: str = "") -> str:
    """The name of class ``c`` (with ``prefix``, e.g. "class "), or ``"y = c"`` unnamed."""
    if class_names is not None and 0 <= c < len(class_names):
        return f"{prefix}{class_names[c]}"
    return f"y = {c}"


def _reconstruct(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    device, dtype = _model_device_dtype(model)
    labels = _batch_labels(model, y, x.shape[0])
    was_training = model.training
    model.eval()
    try:
        return model.reconstruct(x.to(device, dtype), labels)
    finally:
        model.train(was_training)


# -- tensors ------------------------------------------------------------------------------------


def reconstruction_grid(
    model: BaseVAE, x: torch.Tensor, *, y: torch.Tensor | None = None, ncol: int = 8
) -> torch.Tensor:
    """Inputs beside their reconstructions: rows of ``ncol`` inputs, each followed by the row of
    their reconstructions (mean of p(x|z) at the posterior mean).

    Args:
        model: the model.
        x: inputs (N, *input_shape) (images: (N, C, H, W)).
        y: a conditional model's labels of the inputs, integer tensor (N,) (each input is encoded
            and decoded with its own label); None (required) for an unconditional model.
        ncol: images per row.

    Returns:
        (3, H', W') grid in [0, 1].
    """
    recon = _reconstruct(model, x, y)
    return _grid(_interleave([x.cpu(), recon.cpu()], ncol), ncol)


def _interleave(sets: Sequence[torch.Tensor], ncol: int) -> torch.Tensor:
    """Rows of ``ncol`` from each set in turn: set0 row0, set1 row0, ..., set0 row1, ..."""
    n = len(sets[0])
    chunks = []
    for start in range(0, n, ncol):
        for s in sets:
            chunk = s[start : start + ncol]
            if len(chunk) < ncol:  # pad a short last row with blank tiles
                chunk = torch.cat([chunk, torch.zeros(ncol - len(chunk), *chunk.shape[1:])])
            chunks.append(chunk)
    return torch.cat(chunks)


def _samples(
    model: BaseVAE,
    n: int,
    y: int | Sequence[int] | torch.Tensor | None,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, list[int] | None]:
    """The decoded samples of :func:`sample_grid`, and the classes of its rows (None unless
    ``y`` holds one row per class)."""
    device, _ = _model_device_dtype(model)
    per_class = model.num_classes is not None and y is not None
    if per_class and not isinstance(_as_class(y), int):
        classes = _classes(model, y, "the classes of the rows")
    else:
        c = _one_class(
            model, y, f", or several, e.g. y=range({model.num_classes}), for one row each"
        )
        labels = None if c is None else torch.full((n,), c, dtype=torch.long, device=device)
        return model.sample(n, y=labels, generator=generator), None
    if generator is None:  # the rows share their codes: one generator, rewound for each class
        seed = int(torch.randint(0, 2**62, ()).item())  # from the global RNG (torch.manual_seed)
        generator = torch.Generator(device=device).manual_seed(seed)
    state = generator.get_state()
    rows = []
    for c in classes:
        generator.set_state(state)
        labels = torch.full((n,), c, dtype=torch.long, device=device)
        rows.append(model.sample(n, y=labels, generator=generator))
    return torch.cat(rows), classes


def sample_grid(
    model: BaseVAE,
    n: int = 64,
    *,
    y: int | Sequence[int] | torch.Tensor | None = None,
    ncol: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Samples z ~ p(z), decoded (``model.sample``), as a grid (3, H', W') in [0, 1].

    For a conditional model, ``y`` chooses the classes:

    * one class ``c`` (an int): ``n`` samples, all decoded with label ``c``, in rows of ``ncol``;
    * several classes (a sequence or 1-D integer tensor of K classes, e.g. ``range(10)``): one
      row per class, ``n`` samples per row (K * n in all): row ``i`` is decoded with label
      ``y[i]``, and column ``j`` uses the same draw z_j in every row, so rows differ only
      through their label. The grid is (3, K * (H + 1) + 1, n * (W + 1) + 1).

    Args:
        model: the model.
        n: number of samples (per row with several classes).
        y: the class(es) of a conditional model, as above; None (required) for an
            unconditional one.
        ncol: images per row (default: about sqrt(n); with several classes, n: leave it out).
        generator: a seeded generator for reproducible samples.
    """
    was_training = model.training
    model.eval()
    try:
        samples, classes = _samples(model, n, y, generator)
    finally:
        model.train(was_training)
    if classes is not None:
        if ncol is not None and ncol != n:
            raise ValueError(
                f"ncol: with one row per class (y holds {len(classes)} classes) each row holds "
                f"the n={n} samples of its class; leave ncol out, got {ncol}"
            )
        return _grid(samples, n)
    return _grid(samples, ncol or math.ceil(math.sqrt(n)))


def manifold_grid(
    model: BaseVAE,
    n: int = 15,
    *,
    y: int | None = None,
    dims: tuple[int, int] = (0, 1),
    seed: int = 0,
) -> torch.Tensor:
    """The decoded ``n`` x ``n`` latent grid of :func:`pyvae.latent.latent_grid` as one image
    (3, n*H, n*W), tiles touching, the highest ``z[dims[1]]`` at the top; a conditional model
    decodes every tile with the class ``y`` (an int, required)."""
    images = latent_grid(model, n, dims=dims, seed=seed, y=_one_class(model, y))
    return make_grid(_display(images), nrow=n, padding=0)


# -- figures ------------------------------------------------------------------------------------


def _tile_size(images: torch.Tensor) -> tuple[int, int]:
    return int(images.shape[-2]), int(images.shape[-1])


def _center(i: int, size: int, padding: int = 1) -> float:
    """The pixel coordinate of the centre of tile ``i`` in a ``make_grid`` row or column."""
    return padding + i * (size + padding) + (size - 1) / 2


def _show(ax: Any, grid: torch.Tensor) -> None:
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest", vmin=0, vmax=1)


def plot_image_rows(
    rows: Sequence[tuple[str, torch.Tensor]] | Mapping[str, torch.Tensor],
    *,
    ncol: int = 8,
    title: str | None = None,
    tile_inches: float = 0.6,
) -> Figure:
    """Labelled rows of images, e.g. ``{"input": x, "noisy": x_tilde, "reconstruction": r}``.

    Every set holds the same number N of images (N, C, H, W); they are wrapped in chunks of
    ``ncol``, and each chunk shows one row per set, labelled on the left.
    """
    items = list(rows.items()) if isinstance(rows, Mapping) else list(rows)
    if not items:
        raise ValueError("rows: expected at least one (label, images) pair")
    sets = [_display(images) for _, images in items]
    n = len(sets[0])
    if any(len(s) != n or s.shape[1:] != sets[0].shape[1:] for s in sets):
        raise ValueError(
            "rows: expected image sets of equal size and shape, got "
            + ", ".join(
                f"{label}: {tuple(s.shape)}" for (label, _), s in zip(items, sets, strict=True)
            )
        )
    ncol = min(ncol, n)
    grid = _grid(_interleave(sets, ncol), ncol)
    n_rows = math.ceil(n / ncol) * len(sets)
    fig = _new_figure(max(4.0, ncol * tile_inches + 1.8), n_rows * tile_inches + 0.7)
    ax = fig.subplots()
    _show(ax, grid)
    h, _ = _tile_size(sets[0])
    ax.set_yticks([_center(r, h) for r in range(n_rows)])
    ax.set_yticklabels([items[r % len(items)][0] for r in range(n_rows)])
    ax.set_xticks([])
    ax.tick_params(axis="y", length=0)
    if title:
        ax.set_title(title)
    return fig


def plot_reconstructions(
    model: BaseVAE,
    x: torch.Tensor,
    *,
    y: torch.Tensor | None = None,
    ncol: int = 8,
    title: str | None = None,
) -> Figure:
    """Inputs (rows labelled "input") above their reconstructions ("reconstruction").

    Args:
        model: the model.
        x: inputs (N, *input_shape).
        y: a conditional model's labels of the inputs, integer tensor (N,); None (required) for
            an unconditional model.
        ncol: images per row.
        title: the figure title.
    """
    recon = _reconstruct(model, x, y)
    given = "" if y is None else ", y"
    return plot_image_rows(
        [("input", x), ("reconstruction", recon)],
        ncol=ncol,
        title=title
        or f"inputs and their reconstructions (mean of p(x|z{given}) at z = E[q(z|x{given})])",
    )


def plot_samples(
    model: BaseVAE,
    n: int = 64,
    *,
    y: int | Sequence[int] | torch.Tensor | None = None,
    ncol: int | None = None,
    generator: torch.Generator | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Decoded samples z ~ p(z) (the mean of p(x|z)): a grid of ``n``, or for a conditional
    model given several classes, one row per class (see :func:`sample_grid`).

    Args:
        model: the model.
        n: number of samples (per class with several classes).
        y: a conditional model's class (an int: ``n`` samples of that class) or classes (a
            sequence or 1-D integer tensor of K classes: K rows of ``n``, labelled by class,
            column j sharing the draw z_j); None (required) for an unconditional model.
        ncol: images per row (one class: default about sqrt(n); several: n, leave it out).
        generator: a seeded generator for reproducible samples.
        class_names: names of the classes, indexed by label (row labels and title).
        title: the figure title.
    """
    rows_are_classes = (
        model.num_classes is not None and y is not None and not isinstance(_as_class(y), int)
    )
    grid = sample_grid(model, n, y=y, ncol=ncol, generator=generator)
    if rows_are_classes:
        classes = _classes(model, y, "the classes of the rows")
        ncol, nrow = n, len(classes)
    else:
        ncol = ncol or math.ceil(math.sqrt(n))
        nrow = math.ceil(n / ncol)
    margin = 1.6 if rows_are_classes else 0.5
    fig = _new_figure(max(3.5, 0.55 * ncol + margin), 0.55 * nrow + 0.7)
    ax = fig.subplots()
    _show(ax, grid)
    if rows_are_classes:
        h = int(model.input_shape[-2])
        ax.set_yticks([_center(r, h) for r in range(len(classes))])
        ax.set_yticklabels([_class_name(c, class_names) for c in classes])
        ax.set_xticks([])
        ax.tick_params(axis="y", length=0)
        ax.set_title(
            title
            or f"{n} samples per class: z ~ p(z), decoded with the row's class (columns share z)"
        )
        return fig
    ax.set_axis_off()
    c = _one_class(model, y)
    of = "" if c is None else f" of {_class_name(c, class_names, 'class ')}"
    ax.set_title(title or f"{n} samples{of}: z ~ p(z), decoded")
    return fig


def _embed(means: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, tuple[str, str], str]:
    if method == "direct":
        return means[:, :2], ("$z_1$", "$z_2$"), "latent means"
    if method == "pca":
        decomposition = require("sklearn.decomposition", "plot_latent(method='pca')")
        pca = decomposition.PCA(n_components=2, random_state=seed)
        points = pca.fit_transform(means)
        var = pca.explained_variance_ratio_ * 100
        return points, (f"PC 1 ({var[0]:.0f}% var.)", f"PC 2 ({var[1]:.0f}% var.)"), "PCA"
    if method == "tsne":
        manifold = require("sklearn.manifold", "plot_latent(method='tsne')")
        perplexity = float(min(30.0, max(2.0, (len(means) - 1) / 3)))
        # exact gradients are faster than Barnes-Hut for a few hundred points
        tsne = manifold.TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            random_state=seed,
            method="exact" if len(means) <= 400 else "barnes_hut",
        )
        return tsne.fit_transform(means), ("t-SNE 1", "t-SNE 2"), "t-SNE"
    raise ValueError(f"method: expected 'auto', 'direct', 'pca' or 'tsne', got {method!r}")


def plot_latent(
    means: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    class_names: Sequence[str] | None = None,
    method: Literal["auto", "direct", "pca", "tsne"] = "auto",
    max_points: int = 2000,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """Scatter the latent means, coloured by class.

    With 2 latent dimensions (``method="auto"``) the means are plotted directly; with more,
    two panels show a PCA projection and a t-SNE embedding (scikit-learn). With one dimension,
    z is plotted against the class.

    Args:
        means: posterior means (N, D), e.g. from :func:`pyvae.latent.encode_loader`.
        labels: class indices (N,) for the colours (None: one colour).
        class_names: names shown in the legend, indexed by label.
        method: ``"auto"``, ``"direct"`` (the first two dimensions), ``"pca"`` or ``"tsne"``.
        max_points: a seeded random subset of at most this many points is shown (t-SNE is
            quadratic in N).
        seed: seed of the subset, PCA and t-SNE.
    """
    if means.dim() != 2:
        raise ValueError(f"means: expected shape (N, D), got {tuple(means.shape)}")
    if labels is not None and labels.shape != (means.shape[0],):
        raise ValueError(
            f"labels: expected shape ({means.shape[0]},) to match means, got {tuple(labels.shape)}"
        )
    n, d = means.shape
    if n > max_points:
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points]
        means = means[keep]
        labels = labels[keep] if labels is not None else None
    z = means.detach().double().cpu().numpy()
    y = labels.cpu().numpy() if labels is not None else None
    if d == 1:
        return _plot_1d(z[:, 0], y, class_names, title)
    if method == "auto":
        methods = ["direct"] if d == 2 else ["pca", "tsne"]
    else:
        methods = [method]
    fig = _new_figure(5.2 * len(methods) + 1.3, 5.0)
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    handles: list[Any] = []
    for ax, m in zip(axes, methods, strict=False):
        points, (xlabel, ylabel), name = _embed(z, m, seed)
        handles = _scatter(ax, points, y, class_names)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name if m != "direct" else f"latent means ({len(z)} points)")
        if m == "direct":
            ax.set_aspect("equal", adjustable="datalim")
    if handles:
        fig.legend(handles=handles, loc="outside right center", title="class", markerscale=2)
    fig.suptitle(title or f"posterior means E[q(z|x)], {d}-D latent space, coloured by class")
    return fig


def _scatter(
    ax: Any, points: np.ndarray, y: np.ndarray | None, class_names: Sequence[str] | None
) -> list[Any]:
    if y is None:
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.7)
        return []
    colormaps = require("matplotlib", "plot_latent").colormaps
    classes = np.unique(y)
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    handles = []
    for i, c in enumerate(classes):
        mask = y == c
        name = class_names[int(c)] if class_names is not None and int(c) < len(class_names) else c
        handles.append(
            ax.scatter(
                points[mask, 0],
                points[mask, 1],
                s=6,
                alpha=0.75,
                color=cmap(i % cmap.N),
                label=str(name),
            )
        )
    return handles


def _plot_1d(
    z: np.ndarray, y: np.ndarray | None, class_names: Sequence[str] | None, title: str | None
) -> Figure:
    fig = _new_figure(6.0, 4.0)
    ax = fig.subplots()
    labels = np.zeros(len(z), dtype=int) if y is None else y
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(z))
    ax.scatter(z, labels + jitter, s=6, alpha=0.6, c=labels, cmap="tab10")
    ticks = np.unique(labels)
    ax.set_yticks(ticks)
    if class_names is not None:
        ax.set_yticklabels([class_names[int(t)] for t in ticks])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("class")
    ax.set_title(title or "posterior means E[q(z|x)], 1-D latent space")
    return fig


def plot_manifold(
    model: BaseVAE,
    n: int = 15,
    *,
    y: int | None = None,
    dims: tuple[int, int] = (0, 1),
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """The decoded grid over a latent plane, axes ticked with the z values of the tiles.

    The grid values are the prior's 5%-95% quantiles along ``dims`` (see
    :func:`pyvae.latent.latent_grid_points`); other dimensions sit at the prior's median.

    Args:
        model: the model.
        n: tiles per side (n * n in all).
        y: a conditional model's class (an int), which every tile is decoded with; None
            (required) for an unconditional model.
        dims: the two latent dimensions of the plane.
        seed: the seed of the prior samples whose quantiles make the grid.
        class_names: names of the classes, indexed by label (title).
        title: the figure title.
    """
    c = _one_class(model, y)
    _, vx, vy = latent_grid_points(model, n, dims=dims, seed=seed)
    images = _display(latent_grid(model, n, dims=dims, seed=seed, y=c))
    grid = _grid(images, n)
    h, w = _tile_size(images)
    fig = _new_figure(6.4, 6.2)
    ax = fig.subplots()
    _show(ax, grid)
    idx = sorted({round(float(i)) for i in np.linspace(0, n - 1, min(n, 7))})
    ax.set_xticks([_center(i, w) for i in idx])
    ax.set_xticklabels([f"{float(vx[i]):.2f}" for i in idx])
    ax.set_yticks([_center(n - 1 - i, h) for i in idx])
    ax.set_yticklabels([f"{float(vy[i]):.2f}" for i in idx])
    ax.set_xlabel(f"$z_{{{dims[0] + 1}}}$")
    ax.set_ylabel(f"$z_{{{dims[1] + 1}}}$")
    rest = "" if model.latent_dim == 2 else "; other dimensions at the prior median"
    of = "" if c is None else f" for {_class_name(c, class_names, 'class ')}"
    ax.set_title(title or f"decoded latent grid{of}, {n}x{n} prior quantiles 5%-95%{rest}")
    return fig


def _pair_classes(model: BaseVAE, y: object, n_pairs: int) -> list[int | None]:
    """One class per pair: all None (unconditional), one class repeated, or one per pair."""
    if model.num_classes is None or y is None or isinstance(_as_class(y), int):
        return [_one_class(model, y, ", or one class per pair")] * n_pairs
    classes = _classes(model, y, "one class per pair")
    if len(classes) != n_pairs:
        raise ValueError(
            f"y: expected one class per pair ({n_pairs}) or one class for all, got "
            f"{len(classes)} classes"
        )
    return list(classes)


def plot_interpolation(
    model: BaseVAE,
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    y: int | Sequence[int] | torch.Tensor | None = None,
    steps: int = 10,
    method: Literal["linear", "slerp"] = "linear",
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """For each pair of inputs, one row: input A, the decoded path between their codes
    (``steps`` points, endpoints included), input B.

    Args:
        model: the model.
        pairs: pairs ``(x0, x1)`` of inputs, each of shape ``input_shape``.
        y: a conditional model's class of each pair (a sequence or 1-D integer tensor with
            one class per pair, or one int for all): both inputs of a pair are encoded, and
            the path decoded, with it (so pair inputs of the same class make sense); None
            (required) for an unconditional model.
        steps: points on the path, endpoints included (>= 2).
        method: ``"linear"`` or ``"slerp"`` (see :func:`pyvae.latent.interpolate_latents`).
        class_names: names of the classes, indexed by label (row labels).
        title: the figure title.
    """
    if not pairs:
        raise ValueError("pairs: expected at least one (x0, x1) pair")
    classes = _pair_classes(model, y, len(pairs))
    rows = []
    for (x0, x1), c in zip(pairs, classes, strict=True):
        path = interpolate(model, x0, x1, steps, method=method, y=c).cpu()
        ends = [x.reshape(1, *model.input_shape).cpu().to(path.dtype) for x in (x0, x1)]
        rows.append(torch.cat([ends[0], path, ends[1]]))
    images = _display(torch.cat(rows))
    ncol = steps + 2
    grid = _grid(images, ncol)
    h, w = _tile_size(images)
    margin = 1.0 if model.num_classes is None else 1.8
    fig = _new_figure(max(5.0, 0.62 * ncol + margin), 0.65 * len(pairs) + 1.1)
    ax = fig.subplots()
    _show(ax, grid)
    labels = ["input A"] + [f"{t:.2f}" for t in np.linspace(0, 1, steps)] + ["input B"]
    ax.set_xticks([_center(i, w) for i in range(ncol)])
    ax.set_xticklabels(labels, rotation=90 if steps > 8 else 0, fontsize=8)
    ax.set_yticks([_center(r, h) for r in range(len(pairs))])
    ax.set_yticklabels(
        [
            f"pair {r + 1}" + ("" if c is None else f" ({_class_name(c, class_names, 'class ')})")
            for r, c in enumerate(classes)
        ]
    )
    ax.set_xlabel("t on the path between the codes of A and B (decoded)")
    ax.tick_params(length=0)
    given = "" if model.num_classes is None else ", encoded and decoded with the pair's class"
    ax.set_title(title or f"{method} interpolation between posterior means{given}")
    return fig


def plot_traversal(
    model: BaseVAE,
    z: torch.Tensor,
    dims: Sequence[int] | None = None,
    values: Sequence[float] = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
    *,
    y: int | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """One row per latent dimension in ``dims``: the code ``z`` with that dimension set to each of
    ``values``, decoded (shows what each dimension controls).

    Args:
        model: the model.
        z: the code to start from, shape (latent_dim,).
        dims: the dimensions to traverse (default: the first 10).
        values: the values each dimension is set to (one column each).
        y: a conditional model's class (an int), which every tile is decoded with; None
            (required) for an unconditional model.
        class_names: names of the classes, indexed by label (title).
        title: the figure title.
    """
    c = _one_class(model, y)
    dims = list(range(min(model.latent_dim, 10))) if dims is None else list(dims)
    images = _display(torch.cat([traverse(model, z, d, values, y=c).cpu() for d in dims]))
    ncol = len(values)
    grid = _grid(images, ncol)
    h, w = _tile_size(images)
    fig = _new_figure(0.62 * ncol + 1.4, 0.62 * len(dims) + 1.0)
    ax = fig.subplots()
    _show(ax, grid)
    ax.set_xticks([_center(i, w) for i in range(ncol)])
    ax.set_xticklabels([f"{v:g}" for v in values])
    ax.set_yticks([_center(r, h) for r in range(len(dims))])
    ax.set_yticklabels([f"$z_{{{d + 1}}}$" for d in dims])
    ax.set_xlabel("value of the traversed dimension")
    ax.tick_params(length=0)
    of = "" if c is None else f", decoded with {_class_name(c, class_names, 'class ')}"
    ax.set_title(title or f"latent traversals{of}")
    return fig


_CURVES = (
    ("neg_elbo", "negative ELBO"),
    ("recon", "reconstruction  -log p(x|z)"),
    ("kl", "KL(q(z|x) || p(z))"),
)


def plot_training_curves(
    history: Sequence[Mapping[str, float]], *, title: str | None = None
) -> Figure:
    """Negative ELBO, reconstruction and KL per epoch, for training and evaluation.

    Args:
        history: one dict per epoch with ``"epoch"`` and any of ``"train_neg_elbo"``,
            ``"train_recon"``, ``"train_kl"``, ``"eval_neg_elbo"``, ``"eval_recon"``,
            ``"eval_kl"`` (nats per example).
    """
    if not history:
        raise ValueError("history: expected at least one epoch")
    epochs = [float(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    fig = _new_figure(12.0, 3.6)
    axes = fig.subplots(1, 3)
    for ax, (key, label) in zip(axes, _CURVES, strict=False):
        for split, style in (("train", "-"), ("eval", "--")):
            values = [h.get(f"{split}_{key}") for h in history]
            if all(v is not None for v in values):
                ax.plot(
                    epochs,
                    values,
                    style,
                    marker="o" if len(epochs) < 30 else None,
                    markersize=3,
                    label=split,
                )
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "training curves")
    return fig
