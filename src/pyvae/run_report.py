"""The run folder's figures and its one-page HTML report (the template is a package file,
``pyvae/templates/report.html``).

:func:`write_figures` draws the standard figures of a trained model with :mod:`pyvae.viz`;
:func:`plot_kl_per_dimension` draws the KL of each latent dimension (the diagnostics of
:func:`pyvae.evaluate`); :func:`write_report` fills the template from a run's ``run.json``
contents. ``pyvae train`` and ``pyvae demo`` call them; they work on any run.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, TensorDataset

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pyvae.models.base import BaseVAE

__all__ = ["CAPTIONS", "plot_kl_per_dimension", "write_figures", "write_report"]

#: The figures a run folder may hold, with their captions in the report.
CAPTIONS: dict[str, str] = {
    "curves.png": "Training curves: negative ELBO, reconstruction term and KL per epoch "
    "(nats per image; solid: training, dashed: evaluation).",
    "reconstructions.png": "Evaluation images (input rows) and their reconstructions.",
    "samples.png": "Samples from the prior p(z), decoded to the mean of p(x|z).",
    "latent.png": "Posterior means of the evaluation images, coloured by class.",
    "manifold.png": "The decoder over a grid of the latent plane (prior quantiles 5%-95%).",
    "interpolation.png": "Decoded straight paths between the codes of two evaluation images.",
}
# a conditional model's figures use the labels: their captions say how
_CONDITIONAL_CAPTIONS: dict[str, str] = {
    "reconstructions.png": "Evaluation images (input rows) and their reconstructions, each "
    "encoded and decoded with its own label.",
    "samples.png": "One row per class: draws z ~ p(z) decoded to the mean of p(x|z, y) with the "
    "row's label; each column uses the same z in every row.",
    "latent.png": "Posterior means E[q(z|x, y)] of the evaluation images (encoded with their "
    "labels), coloured by class.",
    "manifold.png": "The decoder over a grid of the latent plane (prior quantiles 5%-95%), with "
    "the one class named in its title.",
    "interpolation.png": "Decoded straight paths between the codes of two evaluation images of "
    "the same class, encoded and decoded with that class.",
}
_MAX_CLASS_ROWS = 20  # the samples figure of a conditional model shows at most this many classes
DIAGNOSTIC_CAPTIONS: dict[str, str] = {
    "kl_per_dim.png": "KL(q(z_d|x) || p(z_d)) per latent dimension, mean over the evaluation "
    "images (nats); grey bars: inactive dimensions (posterior collapse).",
}


def plot_kl_per_dimension(
    kl_per_dim: Sequence[float],
    *,
    active: Sequence[bool] | None = None,
    title: str | None = None,
) -> Figure:
    """A bar chart of the KL of each latent dimension (nats), inactive dimensions in grey.

    Args:
        kl_per_dim: the mean KL per dimension, e.g. ``report.kl_per_dim`` of
            :func:`pyvae.evaluate`.
        active: which dimensions are active (same length); all are drawn alike when None.
        title: the figure title.
    """
    from pyvae.viz import _new_figure

    values = [float(v) for v in kl_per_dim]
    if not values:
        raise ValueError("kl_per_dim: expected at least one dimension")
    if active is not None and len(active) != len(values):
        raise ValueError(
            f"active: expected {len(values)} flags (one per dimension), got {len(active)}"
        )
    flags = [True] * len(values) if active is None else [bool(a) for a in active]
    fig = _new_figure(max(4.0, min(12.0, 0.35 * len(values) + 2)), 3.2)
    ax = fig.subplots()
    ax.bar(
        range(len(values)),
        values,
        color=["tab:blue" if a else "0.7" for a in flags],
    )
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    ax.set_xticks(range(len(values)))
    ax.tick_params(axis="x", labelsize=8 if len(values) > 16 else 10)
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or f"KL per dimension ({sum(flags)} of {len(values)} active)")
    return fig


def _interpolation_pairs(labels: torch.Tensor) -> list[tuple[int, int]]:
    first: dict[int, int] = {}
    for i, y in enumerate(labels.tolist()):
        first.setdefault(int(y), i)
    pairs = [
        (first[a], first[b])
        for a, b in ((0, 6), (1, 7), (3, 8), (4, 9))
        if a in first and b in first
    ]
    if not pairs:
        pairs = [(i, i + 1) for i in range(0, min(len(labels) - 1, 8), 2)]
    return pairs


def _same_class_pairs(labels: torch.Tensor, most: int = 4) -> list[tuple[int, int]]:
    """The first two images of each class, for the first ``most`` classes that have two."""
    pairs = []
    for c in sorted({int(v) for v in labels.tolist()}):
        (index,) = torch.nonzero(labels == c, as_tuple=True)
        if len(index) >= 2:
            pairs.append((int(index[0]), int(index[1])))
        if len(pairs) == most:
            break
    return pairs


def write_figures(
    out: str | os.PathLike[str],
    model: BaseVAE,
    history: Sequence[Mapping[str, float]],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    classes: Sequence[str] = (),
    seed: int = 0,
    kl_per_dim: Sequence[float] | None = None,
    active: Sequence[bool] | None = None,
) -> list[str]:
    """Draw a run's figures into the folder ``out``; returns the file names written.

    A model without a prior (the autoencoder) gets no samples or manifold. A conditional model
    (``num_classes``) gets the same figures, drawn with the labels: reconstructions with each
    image's label, one row of 8 samples per class (the first 20 classes) sharing their codes,
    the latent means encoded with their labels, the manifold decoded with the most common
    evaluation class, and interpolations between two images of the same class, encoded and
    decoded with it (no ``interpolation.png`` when no class has two evaluation images).

    Args:
        out: an existing folder.
        model: the trained model.
        history: the training history (rows with ``epoch`` and the curves' keys).
        images: evaluation images (N, *input_shape), N >= 2.
        labels: their integer labels (N,) (colours of the latent plot, interpolation pairs; the
            labels a conditional model encodes and decodes with).
        classes: the class names, indexed by label.
        seed: the seed of the samples and the 2-D embeddings.
        kl_per_dim: the KL per dimension, for ``kl_per_dim.png`` (skipped when None).
        active: which dimensions are active.
    """
    from pyvae import viz
    from pyvae.latent import encode_loader

    folder = Path(out)
    if len(images) < 2:
        raise ValueError(
            f"images: the figures need at least 2 evaluation images, got {len(images)}"
        )
    if labels.shape != (len(images),) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels: expected integer labels of shape ({len(images)},), got dtype "
            f"{labels.dtype} and shape {tuple(labels.shape)}"
        )
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and not (0 <= labels.min() <= labels.max() < num_classes):
        # checked here whatever the model's checks: the figures index and count by label
        raise ValueError(
            f"labels: a conditional model with num_classes={num_classes} needs labels in "
            f"[0, {num_classes - 1}], got values from {int(labels.min())} to {int(labels.max())}"
        )
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        viz.save_figure(fig, folder / name)
        written.append(name)

    device = next(model.parameters()).device
    names = list(classes) or None
    save(viz.plot_training_curves(list(history)), "curves.png")
    shown = slice(0, 16)
    save(
        viz.plot_reconstructions(
            model,
            images[shown].to(device),
            y=None if num_classes is None else labels[shown].to(device),
        ),
        "reconstructions.png",
    )
    has_prior = getattr(model, "prior", None) is not None  # an autoencoder cannot sample
    if has_prior:
        generator = torch.Generator(device=device).manual_seed(seed)
        if num_classes is None:
            save(viz.plot_samples(model, 64, generator=generator), "samples.png")
        else:
            rows = list(range(min(num_classes, _MAX_CLASS_ROWS)))
            title = None
            if len(rows) < num_classes:
                title = (
                    f"8 samples of each of the first {len(rows)} of {num_classes} classes: "
                    f"z ~ p(z), decoded with the row's class (columns share z)"
                )
            save(
                viz.plot_samples(
                    model, 8, y=rows, generator=generator, class_names=names, title=title
                ),
                "samples.png",
            )
    loader = DataLoader(TensorDataset(images, labels), batch_size=256)
    means, ys = encode_loader(model, loader)  # a conditional model encodes with the labels
    save(
        viz.plot_latent(means, ys, class_names=names, max_points=1500, seed=seed),
        "latent.png",
    )
    # a conditional model's manifold: its most common evaluation class (the smallest on ties)
    c = None if num_classes is None else int(torch.bincount(labels.long().cpu()).argmax())
    if not has_prior:
        pass  # the manifold spans the prior's quantiles
    elif model.latent_dim >= 2:
        save(viz.plot_manifold(model, 15, y=c, seed=seed, class_names=names), "manifold.png")
    else:
        z = torch.zeros(1, device=device)
        values = [float(v) for v in torch.linspace(-2.5, 2.5, 11)]
        of = "" if c is None else f", {viz._class_name(c, names, 'class ')}"
        save(
            viz.plot_traversal(
                model, z, [0], values, y=c, title=f"decoded z_1 (1-D latent space){of}"
            ),
            "manifold.png",
        )
    if num_classes is None:
        pairs = _interpolation_pairs(labels)
        pair_classes = None
    else:  # two images of the same class, encoded and decoded with it
        pairs = _same_class_pairs(labels)
        pair_classes = [int(labels[a]) for a, _ in pairs]
    if pairs:
        save(
            viz.plot_interpolation(
                model,
                [(images[a].to(device), images[b].to(device)) for a, b in pairs],
                y=pair_classes,
                steps=10,
                class_names=names,
            ),
            "interpolation.png",
        )
    if kl_per_dim is not None:
        save(plot_kl_per_dimension(kl_per_dim, active=active), "kl_per_dim.png")
    return written


def _fmt(value: Any, unit: str = " nats", digits: int = 2) -> str:
    if value is None:
        return "not defined"
    return f"{float(value):.{digits}f}{unit}"


def write_report(
    path: str | os.PathLike[str],
    run: Mapping[str, Any],
    files: Iterable[str],
    *,
    folder: str | None = None,
) -> Path:
    """Write the one-page HTML report of a run (the figures are linked, not embedded).

    Args:
        path: the HTML file to write (inside the run folder).
        run: the contents of the run's ``run.json`` (``metrics``, ``training``, ``data``,
            ``model``, ``evaluation``, ...).
        files: the file names of the run folder, linked at the bottom; figures among them are
            shown.
        folder: the run folder's name in the report's ``pyvae.load(...)`` hint (default: the
            folder of ``path``; a run written elsewhere and moved passes its final folder).
    """
    path = Path(path)
    files = list(files)
    esc = html.escape
    m = run["metrics"]
    ev = run.get("evaluation", {})
    rows = [
        ("test negative ELBO", _fmt(m.get("eval_neg_elbo"))),
        ("  reconstruction -log p(x|z)", _fmt(m.get("eval_recon"))),
        ("  KL(q(z|x) || p(z))", _fmt(m.get("eval_kl"))),
        (
            f"test NLL (importance sampled, k={m.get('nll_k')})",
            _fmt(m.get("eval_nll"))
            + ("" if m.get("eval_nll_stderr") is None else f" (± {m['eval_nll_stderr']:.2f})"),
        ),
        ("train negative ELBO (last epoch)", _fmt(m.get("train_neg_elbo"))),
        ("images (train / eval)", f"{m.get('n_train')} / {m.get('n_eval')}"),
        ("wall time", _fmt(m.get("wall_seconds"), " s", 1)),
    ]
    # a wrapper (denoising) records its backbone's whole config: read the sizes from there
    backbone = run["model"].get("backbone")
    sizes = {**(backbone if isinstance(backbone, dict) else {}), **run["model"]}
    latent_dim = len(ev.get("latent_variance") or []) or sizes.get("latent_dim", "?")
    diagnostics = [
        (
            "NLL ± standard error",
            _fmt(ev.get("nll"), "")
            + ("" if ev.get("nll_stderr") is None else f" ± {ev['nll_stderr']:.2f}")
            + ("" if ev.get("nll") is None else " nats"),
        ),
        ("bits per dimension", _fmt(ev.get("bits_per_dim"), "", 4)),
        ("ESS / k (importance sampling)", _fmt(ev.get("ess"), "", 3)),
        (
            "active units",
            "not defined"
            if ev.get("active_units") is None
            else f"{ev['active_units']} of {latent_dim} (Cov_x E[z_d] > {ev.get('threshold')})",
        ),
        ("mutual information I(x; z)", _fmt(ev.get("mutual_information"))),
    ]

    def table(pairs: Iterable[tuple[str, str]]) -> str:
        return "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs)

    settings = {
        **run["training"],
        "data": run["data"].get("note", run["data"].get("name", "")),
        "parameters": f"{run.get('n_parameters', 0):,}",
    }

    def figure(name: str, caption: str) -> str:
        return (
            f'<figure><img src="{esc(name)}" alt="{esc(name)}"><figcaption>{esc(caption)}'
            f"</figcaption></figure>"
        )

    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in ev.get("notes", []))
    conditional = sizes.get("num_classes") is not None
    captions = _CONDITIONAL_CAPTIONS if conditional else {}
    page = Template((resources.files("pyvae") / "templates" / "report.html").read_text("utf-8"))
    text = page.substitute(
        model_name=esc(str(run["model"]["name"])),
        data_name=esc(str(run["data"]["name"])),
        version=esc(str(run.get("pyvae_version", ""))),
        created=esc(str(run.get("created", ""))),
        torch=esc(str(run.get("environment", {}).get("torch", ""))),
        command=esc(str(run.get("command", ""))),
        metric_rows=table(rows),
        setting_rows=table((str(k), str(v)) for k, v in settings.items()),
        config=esc(json.dumps(run["model"], indent=2)),
        diagnostic_rows=table(diagnostics),
        notes=notes,
        diagnostic_figures="\n".join(
            figure(n, c) for n, c in DIAGNOSTIC_CAPTIONS.items() if n in files
        ),
        figures="\n".join(figure(n, captions.get(n, c)) for n, c in CAPTIONS.items() if n in files),
        links=" · ".join(f'<a href="{esc(f)}">{esc(f)}</a>' for f in files),
        folder=esc(folder if folder is not None else str(path.parent)),
    )
    path.write_text(text, encoding="utf-8")
    return path
