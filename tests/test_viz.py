"""Visualisation helpers on real MNIST images: what the grids hold, how the figures are labelled."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import pytest
import torch
from PIL import Image

import pyvae
from pyvae import viz

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def model() -> pyvae.BaseVAE:
    torch.manual_seed(0)
    return pyvae.build("conv", latent_dim=2, channels=[4, 8], hidden_dim=32).eval()


@pytest.fixture
def images(mnist: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return mnist[0][:16]


def _labels(ticks: list) -> list[str]:
    return [t.get_text() for t in ticks]


def test_reconstruction_grid_holds_inputs_then_reconstructions(
    model: pyvae.BaseVAE, images: torch.Tensor
) -> None:
    grid = viz.reconstruction_grid(model, images, ncol=8)
    assert grid.shape == (3, 4 * 29 + 1, 8 * 29 + 1)  # 2 chunks x (input row, recon row)
    recon = model.reconstruct(images)
    torch.testing.assert_close(grid[0, 1:29, 1:29], images[0, 0])
    torch.testing.assert_close(grid[0, 30:58, 1:29], recon[0, 0])
    torch.testing.assert_close(grid[0, 59:87, 30:58], images[9, 0])  # 2nd chunk, 2nd column
    assert float(grid[0, 0, 0]) == viz.PAD_VALUE


def test_sample_grid_is_reproducible_and_saves(model: pyvae.BaseVAE, tmp_path: Path) -> None:
    a = viz.sample_grid(model, 10, ncol=5, generator=torch.Generator().manual_seed(3))
    b = viz.sample_grid(model, 10, ncol=5, generator=torch.Generator().manual_seed(3))
    c = viz.sample_grid(model, 10, ncol=5, generator=torch.Generator().manual_seed(4))
    assert a.shape == (3, 2 * 29 + 1, 5 * 29 + 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    path = viz.save_grid(a, tmp_path / "sub" / "s.png")
    with Image.open(path) as im:
        assert im.size == (5 * 29 + 1, 2 * 29 + 1)


def test_manifold_grid_tiles_touch(model: pyvae.BaseVAE) -> None:
    grid = viz.manifold_grid(model, 4)
    assert grid.shape == (3, 4 * 28, 4 * 28)


def test_plot_reconstructions_labels_rows(
    model: pyvae.BaseVAE, images: torch.Tensor, tmp_path: Path
) -> None:
    fig = viz.plot_reconstructions(model, images, ncol=8)
    (ax,) = fig.axes
    assert _labels(ax.get_yticklabels()) == ["input", "reconstruction"] * 2
    viz.save_figure(fig, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="equal size"):
        viz.plot_image_rows({"a": images, "b": images[:3]})


def test_plot_latent_2d_direct_and_more_dims_pca_tsne(
    mnist: tuple[torch.Tensor, torch.Tensor],
) -> None:
    labels = mnist[1][:60]
    means2 = torch.randn(60, 2)
    fig = viz.plot_latent(means2, labels, class_names=[f"digit {i}" for i in range(10)])
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("$z_1$", "$z_2$")
    legend = fig.legends[0]
    assert sorted(t.get_text() for t in legend.get_texts()) == sorted(
        f"digit {int(c)}" for c in labels.unique()
    )
    # each class's points are drawn with that class's colour group: offsets match the data
    n_drawn = sum(len(coll.get_offsets()) for coll in ax.collections)
    assert n_drawn == 60
    fig = viz.plot_latent(torch.randn(60, 5), labels)
    assert [a.get_title() for a in fig.axes] == ["PCA", "t-SNE"]
    assert fig.axes[0].get_xlabel().startswith("PC 1 (")
    assert fig.axes[1].get_xlabel() == "t-SNE 1"
    with pytest.raises(ValueError, match=r"labels: expected shape \(60,\)"):
        viz.plot_latent(means2, labels[:10])
    fig = viz.plot_latent(torch.randn(3000, 2), max_points=100)  # subsampled, one colour
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 100


def test_plot_manifold_ticks_are_grid_values(model: pyvae.BaseVAE) -> None:
    fig = viz.plot_manifold(model, 5)
    (ax,) = fig.axes
    _, vx, vy = pyvae.latent.latent_grid_points(model, 5)
    assert _labels(ax.get_xticklabels()) == [f"{float(v):.2f}" for v in vx]
    assert _labels(ax.get_yticklabels()) == [f"{float(v):.2f}" for v in vy]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("$z_{1}$", "$z_{2}$")


def test_plot_interpolation_and_traversal(model: pyvae.BaseVAE, images: torch.Tensor) -> None:
    fig = viz.plot_interpolation(model, [(images[0], images[1]), (images[2], images[3])], steps=4)
    (ax,) = fig.axes
    assert _labels(ax.get_xticklabels()) == ["input A", "0.00", "0.33", "0.67", "1.00", "input B"]
    assert _labels(ax.get_yticklabels()) == ["pair 1", "pair 2"]
    fig = viz.plot_traversal(model, torch.zeros(2), values=[-1.0, 0.0, 1.0])
    assert _labels(fig.axes[0].get_yticklabels()) == ["$z_{1}$", "$z_{2}$"]


def test_plot_training_curves() -> None:
    history = [
        {
            "epoch": e,
            "train_neg_elbo": 100.0 / e,
            "train_recon": 90.0 / e,
            "train_kl": 10.0,
            "eval_neg_elbo": 110.0 / e,
            "eval_recon": 95.0 / e,
            "eval_kl": 15.0,
        }
        for e in range(1, 4)
    ]
    fig = viz.plot_training_curves(history)
    assert [a.get_title() for a in fig.axes] == [
        "negative ELBO",
        "reconstruction  -log p(x|z)",
        "KL(q(z|x) || p(z))",
    ]
    first = fig.axes[0]
    assert [line.get_label() for line in first.get_lines()] == ["train", "eval"]
    assert list(first.get_lines()[1].get_ydata()) == [110.0, 55.0, 110.0 / 3]
    assert first.get_xlabel() == "epoch" and first.get_ylabel() == "nats per example"
    with pytest.raises(ValueError, match="at least one epoch"):
        viz.plot_training_curves([])


def test_missing_matplotlib_names_the_extra(
    model: pyvae.BaseVAE, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"needs matplotlib.*pip install 'pyvae\[viz\]'"):
        viz.plot_samples(model, 4)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(ImportError, match=r"needs scikit-learn.*pyvae\[viz\]"):
        viz.require("sklearn.manifold", "t-SNE")
