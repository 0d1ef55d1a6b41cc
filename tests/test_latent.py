"""Latent tools on real MNIST images: encoding a loader, interpolation, traversal, the grid."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pyvae
from pyvae.latent import (
    encode_loader,
    interpolate,
    interpolate_latents,
    latent_grid,
    latent_grid_points,
    traverse,
)


@pytest.fixture
def model() -> pyvae.BaseVAE:
    return pyvae.build("conv", latent_dim=3, channels=[4, 8], hidden_dim=32)


def test_encode_loader_matches_encode_and_keeps_order(
    model: pyvae.BaseVAE, mnist: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = mnist[0][:70], mnist[1][:70]
    model.train()
    means, ys = encode_loader(model, DataLoader(TensorDataset(images, labels), batch_size=32))
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        expected = model.encode(images).mean
    assert means.shape == (70, 3)
    torch.testing.assert_close(means, expected)
    assert ys is not None and torch.equal(ys, labels)
    unlabeled, none = encode_loader(model, [images[:10], images[10:20]])
    assert none is None and unlabeled.shape == (20, 3)
    with pytest.raises(ValueError, match="no batches"):
        encode_loader(model, [])


def test_interpolate_latents_linear_and_slerp() -> None:
    z0, z1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    lin = interpolate_latents(z0, z1, 5)
    assert torch.equal(lin[0], z0) and torch.equal(lin[-1], z1)
    torch.testing.assert_close(lin[2], torch.tensor([0.5, 1.0]))
    sl = interpolate_latents(z0, z1, 5, method="slerp")
    torch.testing.assert_close(sl[0], z0)
    torch.testing.assert_close(sl[-1], z1)
    # at t = 1/2 of a right angle: both coordinates equal sin(pi/4) / sin(pi/2) times the ends
    torch.testing.assert_close(sl[2], torch.tensor([math.sqrt(0.5), 2 * math.sqrt(0.5)]))
    with pytest.raises(ValueError, match="at least 2"):
        interpolate_latents(z0, z1, 1)
    with pytest.raises(ValueError, match="same shape"):
        interpolate_latents(z0, torch.zeros(3))


def test_interpolate_ends_at_the_reconstructions(
    model: pyvae.BaseVAE, mnist: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x0, x1 = mnist[0][0], mnist[0][1]
    path = interpolate(model, x0, x1, steps=6)
    assert path.shape == (6, 1, 28, 28)
    model.eval()
    ends = model.reconstruct(torch.stack([x0, x1]))
    torch.testing.assert_close(path[0], ends[0])
    torch.testing.assert_close(path[-1], ends[1])
    assert not torch.allclose(path[0], path[-1])


def test_traverse_sets_one_dimension(model: pyvae.BaseVAE) -> None:
    z = torch.tensor([0.3, -0.2, 0.1])
    values = [-1.0, 0.0, 2.0]
    out = traverse(model, z, 1, values)
    assert out.shape == (3, 1, 28, 28)
    model.eval()
    codes = torch.tensor([[0.3, v, 0.1] for v in values])
    with torch.no_grad():
        torch.testing.assert_close(out, model.likelihood.mean(model.decode(codes)))
    with pytest.raises(ValueError, match=r"dim: expected 0 <= dim < 3, got 3"):
        traverse(model, z, 3)
    with pytest.raises(ValueError, match=r"z: expected shape \(3,\)"):
        traverse(model, torch.zeros(2), 0)


def test_latent_grid_uses_prior_quantiles(model: pyvae.BaseVAE) -> None:
    codes, vx, vy = latent_grid_points(model, 5, dims=(0, 2))
    normal = torch.distributions.Normal(0.0, 1.0)
    expected = normal.icdf(torch.linspace(0.05, 0.95, 5))
    torch.testing.assert_close(vx, expected, atol=0.05, rtol=0)  # 20,000 seeded samples
    torch.testing.assert_close(vy, expected, atol=0.05, rtol=0)
    grid = codes.reshape(5, 5, 3)
    assert torch.equal(grid[0, :, 0], vx)  # x increases along a row
    assert torch.equal(grid[:, 0, 2], vy.flip(0))  # y decreases down the rows (top = high)
    assert float(grid[..., 1].abs().max()) < 0.05  # the other dimension at the prior's median
    images = latent_grid(model, 5, dims=(0, 2))
    assert images.shape == (25, 1, 28, 28)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    with pytest.raises(ValueError, match="two different dimensions"):
        latent_grid_points(model, 5, dims=(1, 1))


def test_latent_grid_follows_a_learned_prior() -> None:
    if "mog" not in pyvae.list_priors():
        pytest.skip("the mixture prior is not registered")
    model = pyvae.build(
        "mlp",
        input_shape=[4],
        latent_dim=2,
        hidden_dims=[8],
        prior={"name": "mog", "n_components": 2},
    )
    with torch.no_grad():
        for name, p in model.prior.named_parameters():
            if "loc" in name or "mean" in name:
                p.add_(5.0)  # shift the mixture away from the origin
    _, vx, _ = latent_grid_points(model, 3)
    assert float(vx[1]) > 2.0  # the grid sits where the prior's mass is


def test_encode_loader_encodes_a_conditional_model_with_the_labels() -> None:
    """Each batch's labels reach the encoder: the means are those of encode(x, y), and differ
    from encoding the same images with other labels; x-only batches and bad labels are refused,
    naming the argument."""
    torch.manual_seed(0)
    model = pyvae.build("mlp", input_shape=(1, 6, 6), latent_dim=2, hidden_dims=[8], num_classes=3)
    model.eval()
    x, y = torch.rand(10, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    means, ys = encode_loader(model, DataLoader(TensorDataset(x, y), batch_size=4))
    with torch.no_grad():
        torch.testing.assert_close(means, model.encode(x, y).mean)
        other = model.encode(x, (y + 1) % 3).mean
    assert not torch.allclose(means, other)  # the labels matter, so they were used
    assert ys is not None and torch.equal(ys, y)
    with pytest.raises(ValueError, match=r"loader: a conditional model .* \(x, y\) batches"):
        encode_loader(model, [x[:4]])
    with pytest.raises(TypeError, match="y: expected integer class labels"):
        encode_loader(model, [(x[:4], y[:4].float())])
    with pytest.raises(ValueError, match=r"y: expected class labels in \[0, 2\]"):
        encode_loader(model, [(x[:4], torch.tensor([0, 1, 2, 3]))])
