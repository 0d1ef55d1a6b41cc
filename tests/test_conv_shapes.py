"""The conv model takes any image size it can, and gives back exactly that size."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import pyvae


@given(
    channels=st.integers(1, 3),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    depth=st.integers(1, 4),
    batch_norm=st.booleans(),
    kernel_size=st.sampled_from([3, 4]),
)
def test_any_image_shape_round_trips(
    channels: int, height: int, width: int, depth: int, batch_norm: bool, kernel_size: int
) -> None:
    """3x3 kernels round sizes up and take any image; 4x4 kernels round down and take every
    image of at least 2**depth pixels a side, and refuse smaller ones by name."""
    config = {
        "input_shape": (channels, height, width),
        "latent_dim": 2,
        "channels": [4] * depth,
        "hidden_dim": 8,
        "batch_norm": batch_norm,
        "kernel_size": kernel_size,
    }
    if kernel_size == 4 and min(height, width) < 2**depth:
        with pytest.raises(ValueError, match=r"input_shape: .* too small for \d+ convolutions"):
            pyvae.build("conv", **config)
        return
    model = pyvae.build("conv", **config)
    x = torch.rand(2, channels, height, width)
    out = model(x)
    assert out.params.shape == x.shape
    assert torch.isfinite(model.loss(x, out).loss)


def test_default_kernels_are_4x4_and_3x3_is_available() -> None:
    default = pyvae.build("conv", latent_dim=2)
    kernels = {m.kernel_size for m in default.modules() if isinstance(m, torch.nn.Conv2d)}
    assert kernels == {(4, 4)}
    old = pyvae.build("conv", latent_dim=2, kernel_size=3)
    kernels = {m.kernel_size for m in old.modules() if isinstance(m, torch.nn.ConvTranspose2d)}
    assert kernels == {(3, 3)}
    with pytest.raises(ValueError, match=r"kernel_size: expected one of \(3, 4\), got 5"):
        pyvae.build("conv", kernel_size=5)


def test_batch_norm_is_used_and_trains() -> None:
    model = pyvae.build("conv", latent_dim=2, channels=(4, 8), hidden_dim=8, batch_norm=True)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.rand(4, 1, 28, 28)
    model.loss(x, model(x)).loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mlp_takes_flat_inputs() -> None:
    model = pyvae.build("mlp", input_shape=(12,), latent_dim=2, likelihood="gaussian")
    x = torch.randn(3, 12)
    assert model(x).params.shape == (3, 12)
    with pytest.raises(ValueError, match=r"expected shape \(B, 12\)"):
        model(torch.randn(3, 1, 12))
