"""Latent-space tools that work with every pyvae model.

* :func:`encode_loader`: a whole data loader to posterior means (N, D) and labels (N,).
* :func:`interpolate`: decoded points on the line (or great circle) between two inputs' codes.
* :func:`traverse`: vary one latent dimension around a code, decode each point.
* :func:`latent_grid`: a grid over a 2-D plane of the latent space, at quantiles of the prior
  (the "manifold" picture), decoded.

Everything decodes to the mean of p(x|z) (``model.likelihood.mean``), runs without gradients and
leaves the model's train/eval mode as it was (the model is put in eval mode while it runs). Codes
are posterior points (:func:`pyvae.posteriors.latent_point`: the mean for Gaussians). For a
conditional model, pass the class ``y`` to decode with (and the loader's labels are used to
encode).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import torch

from pyvae.models.base import BaseVAE
from pyvae.posteriors import latent_point
from pyvae.priors import draw

__all__ = [
    "encode_loader",
    "interpolate",
    "interpolate_latents",
    "latent_grid",
    "latent_grid_points",
    "traverse",
]


@contextlib.contextmanager
def _evaluating(model: BaseVAE) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device_dtype(model: BaseVAE) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters(), None)
    if p is None:
        return torch.device("cpu"), torch.get_default_dtype()
    return p.device, p.dtype


def _labels(model: BaseVAE, y: int | None, n: int, device: torch.device) -> torch.Tensor | None:
    """``n`` copies of the class ``y`` for a conditional model (None for an unconditional one)."""
    if model.num_classes is None:
        if y is not None:
            raise ValueError(f"y: the model is unconditional and takes no class, got {y!r}")
        return None
    if isinstance(y, bool) or not isinstance(y, int) or not 0 <= y < model.num_classes:
        raise ValueError(
            f"y: the model is conditional: expected a class in [0, {model.num_classes - 1}], "
            f"got {y!r}"
        )
    return torch.full((n,), y, dtype=torch.long, device=device)


def encode_loader(
    model: BaseVAE, loader: Iterable[Any], *, device: str | torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Posterior means (points) of every batch of a loader.

    Args:
        model: the model.
        loader: yields ``x`` or ``(x, y, ...)`` batches, x of shape (B, *input_shape) (a
            conditional model needs the labels y and encodes with them).
        device: where to run the encoder (default: the model's device).

    Returns:
        ``(means, labels)``: means (N, latent_dim) on the CPU, labels (N,) on the CPU when the
        batches carry them, else None.
    """
    model_device, dtype = _device_dtype(model)
    device = model_device if device is None else torch.device(device)
    means: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    with _evaluating(model):
        for batch in loader:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            y = None
            if isinstance(batch, (tuple, list)) and len(batch) > 1:
                y = torch.as_tensor(batch[1])
                labels.append(y.cpu())
            if model.num_classes is None:
                y = None
            elif y is None:
                raise ValueError(
                    f"loader: a conditional model (num_classes={model.num_classes}) encodes with "
                    f"the labels: expected (x, y) batches, got batches of x alone"
                )
            else:  # shape, dtype and range checked, naming y
                y = model.check_labels(y.to(device), x.shape[0])
            means.append(latent_point(model._encode(x.to(device, dtype), y)).cpu())
    if not means:
        raise ValueError("encode_loader: the loader yielded no batches")
    return torch.cat(means), (torch.cat(labels) if labels else None)


def interpolate_latents(
    z0: torch.Tensor,
    z1: torch.Tensor,
    steps: int = 10,
    *,
    method: Literal["linear", "slerp"] = "linear",
) -> torch.Tensor:
    """``steps`` points from ``z0`` to ``z1`` (both shape (D,)), endpoints included: (steps, D).

    ``"slerp"`` moves along the great circle, keeping the norm between the endpoints' norms,
    which stays in the typical set of a high-dimensional Gaussian prior.
    """
    if steps < 2:
        raise ValueError(f"steps: expected at least 2, got {steps}")
    if z0.shape != z1.shape or z0.dim() != 1:
        raise ValueError(
            f"z0, z1: expected two vectors of the same shape (D,), got {tuple(z0.shape)} and "
            f"{tuple(z1.shape)}"
        )
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device).unsqueeze(1)
    if method == "linear":
        return (1 - t) * z0 + t * z1
    if method != "slerp":
        raise ValueError(f"method: expected 'linear' or 'slerp', got {method!r}")
    n0, n1 = z0.norm(), z1.norm()
    cos = torch.dot(z0, z1) / (n0 * n1).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    if float(omega) < 1e-4:  # (nearly) parallel: slerp is linear
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def interpolate(
    model: BaseVAE,
    x0: torch.Tensor,
    x1: torch.Tensor,
    steps: int = 10,
    *,
    method: Literal["linear", "slerp"] = "linear",
    y: int | None = None,
) -> torch.Tensor:
    """Decode the path between the posterior means of two inputs.

    Args:
        model: the model.
        x0: the first input, of shape ``input_shape`` (or (1, *input_shape)).
        x1: the second input, of the same shape.
        steps: points on the path, endpoints included (>= 2).
        method: ``"linear"`` or ``"slerp"`` (see :func:`interpolate_latents`).
        y: for a conditional model, the class both inputs are encoded and decoded with.

    Returns:
        (steps, *input_shape): decoded means, on the model's device.
    """
    device, dtype = _device_dtype(model)
    xs = [x.reshape(1, *model.input_shape).to(device, dtype) for x in (x0, x1)]
    with _evaluating(model):
        z = latent_point(model._encode(torch.cat(xs), _labels(model, y, 2, device)))
        path = interpolate_latents(z[0], z[1], steps, method=method)
        return model.likelihood.mean(model._decode(path, _labels(model, y, steps, device)))


def traverse(
    model: BaseVAE,
    z: torch.Tensor,
    dim: int,
    values: Sequence[float] | torch.Tensor = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
    *,
    y: int | None = None,
) -> torch.Tensor:
    """Set latent dimension ``dim`` of the code ``z`` (D,) to each of ``values``, decode each
    (with the class ``y`` for a conditional model).

    Returns:
        (len(values), *input_shape): decoded means.
    """
    device, dtype = _device_dtype(model)
    if z.shape != (model.latent_dim,):
        raise ValueError(f"z: expected shape ({model.latent_dim},), got {tuple(z.shape)}")
    if not 0 <= dim < model.latent_dim:
        raise ValueError(f"dim: expected 0 <= dim < {model.latent_dim}, got {dim}")
    vals = torch.as_tensor(values, dtype=dtype, device=device)
    codes = z.to(device, dtype).repeat(len(vals), 1)
    codes[:, dim] = vals
    with _evaluating(model):
        return model.likelihood.mean(model._decode(codes, _labels(model, y, len(vals), device)))


def latent_grid_points(
    model: BaseVAE,
    n: int = 15,
    *,
    dims: tuple[int, int] = (0, 1),
    quantiles: tuple[float, float] = (0.05, 0.95),
    n_prior_samples: int = 20000,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The codes of an ``n`` x ``n`` grid over latent dimensions ``dims``.

    Along each of the two dimensions the grid takes the prior's quantiles at ``n`` evenly spaced
    levels between ``quantiles`` (for the standard normal prior this is ``Phi^-1`` of
    ``linspace(0.05, 0.95, n)``, the classic manifold picture); the other dimensions are held at
    the prior's median. Quantiles come from ``n_prior_samples`` seeded prior samples, so any prior
    works.

    Returns:
        ``(codes, values_x, values_y)``: codes (n * n, D), row-major with ``values_y`` decreasing
        down the rows (so that it plots with y upwards) and ``values_x`` increasing along a row;
        values_x, values_y: (n,) the grid values of dims[0] (increasing) and dims[1] (increasing).
    """
    if n < 2:
        raise ValueError(f"n: expected at least 2, got {n}")
    d = model.latent_dim
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= k < d for k in dims):
        raise ValueError(f"dims: expected two different dimensions in [0, {d}), got {dims}")
    lo, hi = quantiles
    if not 0 < lo < hi < 1:
        raise ValueError(f"quantiles: expected 0 < low < high < 1, got {quantiles}")
    device, dtype = _device_dtype(model)
    with _evaluating(model):
        gen = torch.Generator(device=device).manual_seed(seed)
        samples = draw(model.prior_distribution(), n_prior_samples, generator=gen).to(dtype)
    levels = torch.linspace(lo, hi, n, dtype=dtype, device=samples.device)
    vx = torch.quantile(samples[:, dims[0]], levels)
    vy = torch.quantile(samples[:, dims[1]], levels)
    base = samples.median(dim=0).values
    codes = base.repeat(n * n, 1)
    gy, gx = torch.meshgrid(vy.flip(0), vx, indexing="ij")
    codes[:, dims[0]] = gx.reshape(-1)
    codes[:, dims[1]] = gy.reshape(-1)
    return codes.to(device), vx, vy


def latent_grid(
    model: BaseVAE,
    n: int = 15,
    *,
    dims: tuple[int, int] = (0, 1),
    quantiles: tuple[float, float] = (0.05, 0.95),
    seed: int = 0,
    y: int | None = None,
) -> torch.Tensor:
    """Decode an ``n`` x ``n`` grid over a latent plane (see :func:`latent_grid_points`), with
    the class ``y`` for a conditional model.

    Returns:
        (n * n, *input_shape): decoded means, row-major, the top row at the highest value of
        ``dims[1]``.
    """
    codes, _, _ = latent_grid_points(model, n, dims=dims, quantiles=quantiles, seed=seed)
    labels = _labels(model, y, len(codes), codes.device)
    with _evaluating(model):
        return model.likelihood.mean(model._decode(codes, labels))
