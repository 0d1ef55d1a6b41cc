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


# -- conditional models: the labels reach the model, and are required / refused by name -------

H = 8  # tile size of the conditional model's images


@pytest.fixture(scope="module")
def cvae() -> pyvae.BaseVAE:
    torch.manual_seed(0)
    return pyvae.build(
        "mlp", input_shape=(1, H, H), latent_dim=2, hidden_dims=[16], num_classes=3
    ).eval()


def _tile(grid: torch.Tensor, row: int, col: int, size: int = H) -> torch.Tensor:
    """Tile (row, col) of a make_grid grid with padding 1, first channel."""
    top, left = 1 + row * (size + 1), 1 + col * (size + 1)
    return grid[0, top : top + size, left : left + size]


def _decoded(model: pyvae.BaseVAE, z: torch.Tensor, c: int) -> torch.Tensor:
    with torch.no_grad():
        y = torch.full((len(z),), c, dtype=torch.long)
        return model.likelihood.mean(model.decode(z, y))


def test_conditional_samples_one_row_per_class_sharing_z(cvae: pyvae.BaseVAE) -> None:
    """Row i is model.decode(z, y[i]) for the same draws z in every row (columns share z)."""
    from pyvae.priors import draw

    n, classes = 4, [2, 0, 1]
    grid = viz.sample_grid(cvae, n, y=classes, generator=torch.Generator().manual_seed(3))
    assert grid.shape == (3, 3 * (H + 1) + 1, n * (H + 1) + 1)
    z = draw(cvae.prior_distribution(), n, generator=torch.Generator().manual_seed(3))
    for row, c in enumerate(classes):
        expected = _decoded(cvae, z, c)
        for col in range(n):
            torch.testing.assert_close(_tile(grid, row, col), expected[col, 0])
    rows = [grid[:, 1 + r * (H + 1) : (r + 1) * (H + 1)] for r in range(3)]
    assert not torch.allclose(rows[0], rows[1]) and not torch.allclose(rows[1], rows[2])
    # a tensor of classes works alike; without a generator the global RNG makes it reproducible
    torch.manual_seed(5)
    a = viz.sample_grid(cvae, n, y=torch.tensor(classes))
    torch.manual_seed(5)
    b = viz.sample_grid(cvae, n, y=torch.tensor(classes))
    assert torch.equal(a, b)
    # one class: n samples of it, as model.sample draws them
    one = viz.sample_grid(cvae, 4, y=1, ncol=2, generator=torch.Generator().manual_seed(7))
    expected = cvae.sample(4, y=torch.full((4,), 1), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(_tile(one, 1, 0), expected[2, 0])
    with pytest.raises(ValueError, match=r"ncol: with one row per class .* got 3"):
        viz.sample_grid(cvae, n, y=classes, ncol=3)


def test_plot_samples_labels_the_class_rows(cvae: pyvae.BaseVAE) -> None:
    fig = viz.plot_samples(cvae, 3, y=range(3), class_names=["zero", "one", "two"])
    (ax,) = fig.axes
    assert _labels(ax.get_yticklabels()) == ["zero", "one", "two"]
    assert "per class" in ax.get_title()
    fig = viz.plot_samples(cvae, 4, y=2)
    assert fig.axes[0].get_title() == "4 samples of y = 2: z ~ p(z), decoded"


def test_conditional_reconstructions_use_each_inputs_label(cvae: pyvae.BaseVAE) -> None:
    torch.manual_seed(1)
    x, y = torch.rand(4, 1, H, H), torch.tensor([0, 1, 2, 1])
    grid = viz.reconstruction_grid(cvae, x, y=y, ncol=4)
    expected = cvae.reconstruct(x, y)
    for col in range(4):
        torch.testing.assert_close(_tile(grid, 1, col), expected[col, 0])
    other = viz.reconstruction_grid(cvae, x, y=(y + 1) % 3, ncol=4)
    assert not torch.allclose(grid, other)
    fig = viz.plot_reconstructions(cvae, x, y=y)
    assert _labels(fig.axes[0].get_yticklabels()) == ["input", "reconstruction"]


def test_conditional_manifold_interpolation_traversal_decode_with_the_class(
    cvae: pyvae.BaseVAE,
) -> None:
    from pyvae import latent

    grids = [viz.manifold_grid(cvae, 3, y=c) for c in range(3)]
    assert grids[0].shape == (3, 3 * H, 3 * H)
    torch.testing.assert_close(
        grids[2][0, :H, :H], latent.latent_grid(cvae, 3, y=2)[0, 0]
    )  # top-left tile
    assert not torch.allclose(grids[0], grids[1])
    fig = viz.plot_manifold(cvae, 3, y=torch.tensor(1), class_names=["a", "b", "c"])
    assert fig.axes[0].get_title().startswith("decoded latent grid for class b, 3x3")

    torch.manual_seed(2)
    x = torch.rand(4, 1, H, H)
    fig = viz.plot_interpolation(cvae, [(x[0], x[1]), (x[2], x[3])], y=[0, 2], steps=3)
    ax = fig.axes[0]
    assert _labels(ax.get_yticklabels()) == ["pair 1 (y = 0)", "pair 2 (y = 2)"]
    shown = torch.as_tensor(ax.get_images()[0].get_array())[..., 0]  # (rows, cols) of the grid
    path = latent.interpolate(cvae, x[2], x[3], 3, y=2)
    grid = shown.unsqueeze(0).float()
    torch.testing.assert_close(_tile(grid, 1, 1), path[0, 0])  # row 2, first point of the path
    other = latent.interpolate(cvae, x[2], x[3], 3, y=0)
    assert not torch.allclose(path, other)
    fig = viz.plot_interpolation(cvae, [(x[0], x[1])], y=1, steps=3)  # one class for all pairs
    assert _labels(fig.axes[0].get_yticklabels()) == ["pair 1 (y = 1)"]

    fig = viz.plot_traversal(cvae, torch.zeros(2), values=[-1.0, 1.0], y=2)
    shown = torch.as_tensor(fig.axes[0].get_images()[0].get_array())[..., 0]
    expected = latent.traverse(cvae, torch.zeros(2), 0, [-1.0, 1.0], y=2)
    torch.testing.assert_close(_tile(shown.unsqueeze(0).float(), 0, 1), expected[1, 0])
    assert fig.axes[0].get_title() == "latent traversals, decoded with y = 2"


def _calls(x: torch.Tensor, y: object) -> dict[str, object]:
    pair = [(x[0], x[1])]
    labels = None if y is None else torch.zeros(len(x), dtype=torch.long)
    return {
        "reconstruction_grid": lambda m: viz.reconstruction_grid(m, x, y=labels),
        "plot_reconstructions": lambda m: viz.plot_reconstructions(m, x, y=labels),
        "sample_grid": lambda m: viz.sample_grid(m, 4, y=y),
        "plot_samples": lambda m: viz.plot_samples(m, 4, y=y),
        "manifold_grid": lambda m: viz.manifold_grid(m, 3, y=y),
        "plot_manifold": lambda m: viz.plot_manifold(m, 3, y=y),
        "plot_interpolation": lambda m: viz.plot_interpolation(m, pair, y=y, steps=2),
        "plot_traversal": lambda m: viz.plot_traversal(m, torch.zeros(2), values=[0.0], y=y),
    }


@pytest.mark.parametrize("name", list(_calls(torch.zeros(2, 1, H, H), None)))
def test_labels_required_by_conditional_refused_by_unconditional(
    cvae: pyvae.BaseVAE, name: str
) -> None:
    x = torch.rand(2, 1, H, H)
    with pytest.raises(ValueError, match=r"^y: .*conditional \(num_classes=3\)"):
        _calls(x, None)[name](cvae)  # type: ignore[operator]
    plain = pyvae.build("mlp", input_shape=(1, H, H), latent_dim=2, hidden_dims=[8]).eval()
    with pytest.raises(ValueError, match=r"^y: MLPVAE is unconditional \(num_classes=None\)"):
        _calls(x, 1)[name](plain)  # type: ignore[operator]
    _calls(x, 1)[name](cvae)  # type: ignore[operator]  # and both work when given right
    _calls(x, None)[name](plain)  # type: ignore[operator]


def test_bad_classes_are_refused_by_name(cvae: pyvae.BaseVAE) -> None:
    with pytest.raises(ValueError, match=r"y: the model is conditional: expected classes in "):
        viz.sample_grid(cvae, 2, y=[0, 3])
    with pytest.raises(ValueError, match=r"y: the model is conditional: expected a class in"):
        viz.manifold_grid(cvae, 2, y=-1)
    with pytest.raises(ValueError, match="y: expected the classes of the rows: at least one"):
        viz.sample_grid(cvae, 2, y=[])
    with pytest.raises(ValueError, match=r"y: expected the classes .* got 1.5"):
        viz.sample_grid(cvae, 2, y=1.5)
    x = torch.rand(2, 1, H, H)
    with pytest.raises(ValueError, match=r"y: expected one class per pair \(1\) .* got 2"):
        viz.plot_interpolation(cvae, [(x[0], x[1])], y=[0, 1])
    with pytest.raises(ValueError, match=r"y: expected shape \(2,\)"):
        viz.reconstruction_grid(cvae, x, y=torch.tensor([0]))


def test_save_grid_lays_out_ncol_images_a_row_and_refuses_a_bad_ncol(tmp_path: Path) -> None:
    batch = torch.rand(6, 1, 8, 8)
    path = viz.save_grid(batch, tmp_path / "g.png", ncol=3)
    width, height = Image.open(path).size
    assert (width, height) == (3 * 9 + 1, 2 * 9 + 1)  # 8-pixel images, 1-pixel padding
    for bad in (0, -2, 2.5):
        with pytest.raises(ValueError, match="ncol: expected a positive integer"):
            viz.save_grid(batch, tmp_path / "h.png", ncol=bad)
