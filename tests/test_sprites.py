"""pyvae.data.load_sprites: a procedural dSprites-like data set."""

from __future__ import annotations

import pytest
import torch

import pyvae
from pyvae.data import SPRITE_FACTOR_VALUES, SPRITE_FACTORS, load_sprites, render_sprites


def test_shapes_values_and_determinism() -> None:
    x, f = load_sprites(300, seed=3, size=32)
    assert x.shape == (300, 1, 32, 32) and x.dtype == torch.float32
    assert f.shape == (300, 5) and f.dtype == torch.float32
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert bool((x.sum(dim=(1, 2, 3)) > 0).all()), "every sprite is visible"
    for j, name in enumerate(SPRITE_FACTORS):
        allowed = torch.tensor(SPRITE_FACTOR_VALUES[name], dtype=torch.float32)
        assert bool(torch.isclose(f[:, j, None], allowed).any(dim=1).all()), name
    x2, f2 = load_sprites(300, seed=3, size=32)
    assert torch.equal(x, x2) and torch.equal(f, f2)
    assert not torch.equal(load_sprites(300, seed=4, size=32)[1], f)
    assert pyvae.data.load_sprites is load_sprites


def test_factors_move_the_sprite_as_described() -> None:
    base = torch.tensor([[1.0, 1.0, 0.0, 0.5, 0.5]])
    rows = base.repeat(5, 1)
    rows[1, 3], rows[2, 4], rows[3, 1], rows[4, 0] = 1.0, 0.0, 0.5, 0.0
    x = render_sprites(rows, size=64)[:, 0]
    grid = torch.arange(64, dtype=torch.float32)

    def centre(img: torch.Tensor) -> tuple[float, float]:
        m = img.sum()
        return float((img.sum(0) * grid).sum() / m), float((img.sum(1) * grid).sum() / m)

    cx, cy = centre(x[0])
    assert cx == pytest.approx(31.5, abs=0.6) and cy == pytest.approx(31.5, abs=0.6)
    assert centre(x[1])[0] > 48  # x = 1: right
    assert centre(x[2])[1] < 15  # y = 0: top
    assert x[3].sum() < 0.4 * x[0].sum()  # half the scale: about a quarter of the area
    # the ellipse (axes 0.3 r and 0.15 r at scale 1: pi * 0.3 * 0.15 * 32^2 pixels) and square
    assert float(x[0].sum()) == pytest.approx(torch.pi * 9.6 * 4.8, rel=0.1)
    assert float(x[4].sum()) == pytest.approx((2 * 0.8 * 9.6) ** 2, rel=0.1)


def test_orientation_rotates_the_ellipse() -> None:
    rows = torch.tensor([[1.0, 1.0, 0.0, 0.5, 0.5], [1.0, 1.0, torch.pi / 2, 0.5, 0.5]])
    x = render_sprites(rows, size=64)[:, 0]
    width = [float((img.sum(0) > 0).sum()) for img in x]
    height = [float((img.sum(1) > 0).sum()) for img in x]
    assert width[0] > 1.6 * height[0] and height[1] > 1.6 * width[1]


@pytest.mark.parametrize(
    ("factors", "match"),
    [
        (torch.zeros(3, 4), "shape \\(N, 5\\)"),
        (torch.tensor([[3.0, 1.0, 0.0, 0.5, 0.5]]), "shape column"),
        (torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.5]]), "scale"),
        (torch.tensor([[0.0, 1.0, 0.0, 1.5, 0.5]]), "x and y"),
        (torch.tensor([[0.0, 1.0, float("nan"), 0.5, 0.5]]), "NaN"),
    ],
)
def test_render_refuses_bad_factors(factors: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        render_sprites(factors)


@pytest.mark.parametrize(("kwargs", "match"), [({"n": 0}, "n:"), ({"size": 4}, "size:")])
def test_load_refuses_bad_arguments(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_sprites(**{"n": 10, **kwargs})
