"""Deployment: a model's decoder or encoder as a ``torch.export`` program or an ONNX file.

Only the deterministic parts are exported, so the graph holds no random-number op (the ``normal``
op of reparameterisation has no ONNX equivalent):

* ``part="decoder"``: ``z`` of shape (B, latent_dim) -> ``mean``, the mean of p(x|z), shape
  (B, *input_shape) (for the Bernoulli likelihood, pixel probabilities). Draw ``z`` from the prior
  in the serving code (``numpy.random.standard_normal`` for the standard normal prior) to sample.
* ``part="encoder"``: ``x`` of shape (B, *input_shape) -> ``loc`` and ``scale`` of q(z|x) for a
  location-scale posterior (the diagonal Gaussian), or ``loc`` alone, the posterior's
  deterministic point (:func:`pyvae.posteriors.latent_point`), for the others.

A conditional model (``num_classes``) takes a second input ``y``, the integer class labels of
shape (B,).

The batch size is dynamic: one exported file serves any B >= 1. The model is exported in eval
mode (batch normalisation uses its running statistics; a denoising wrapper does not corrupt) and
its own training/eval state is restored afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.distributions import Distribution, Independent

from pyvae.models.base import BaseVAE
from pyvae.posteriors import latent_point

__all__ = ["export", "export_onnx"]

Part = Literal["decoder", "encoder"]
_PARTS = ("decoder", "encoder")
_EXAMPLE_BATCH = 2  # torch.export specialises sizes 0 and 1; any other size traces a dynamic batch


def _loc_scale(q: Distribution) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(loc, scale)`` of a location-scale posterior (``Independent`` of a family with ``loc``
    and ``scale`` tensors of the posterior's full shape), else ``None``."""
    base = q.base_dist if isinstance(q, Independent) else q
    loc, scale = getattr(base, "loc", None), getattr(base, "scale", None)
    shape = q.batch_shape + q.event_shape
    if (
        isinstance(loc, torch.Tensor)
        and isinstance(scale, torch.Tensor)
        and loc.shape == shape
        and scale.shape == shape
    ):
        return loc, scale
    return None


class _Decoder(nn.Module):
    """z (and y) -> the mean of p(x|z)."""

    def __init__(self, model: BaseVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        params = self.model.decode(z) if y is None else self.model.decode(z, y)
        return self.model.likelihood.mean(params)


class _Encoder(nn.Module):
    """x (and y) -> {"loc": ..., "scale": ...} (location-scale posteriors) or {"loc": ...}."""

    def __init__(self, model: BaseVAE, with_scale: bool) -> None:
        super().__init__()
        self.model = model
        self.with_scale = with_scale

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        q = self.model.encode(x) if y is None else self.model.encode(x, y)
        if self.with_scale:
            loc_scale = _loc_scale(q)
            assert loc_scale is not None  # decided on the same model before tracing
            return {"loc": loc_scale[0], "scale": loc_scale[1]}
        return {"loc": latent_point(q)}


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode inside the block; each one's own flag restored after it."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _check(model: object, part: object) -> BaseVAE:
    if not isinstance(model, BaseVAE):
        raise TypeError(f"model: expected a pyvae model (BaseVAE), got {type(model).__name__}")
    if part not in _PARTS:
        raise ValueError(f"part: expected one of {_PARTS}, got {part!r}")
    return model


def _reference(model: BaseVAE) -> tuple[torch.dtype, torch.device]:
    tensor = next(model.parameters(), None)
    if tensor is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return tensor.dtype, tensor.device


def _wrapper(
    model: BaseVAE, part: Part
) -> tuple[nn.Module, tuple[torch.Tensor, ...], list[str], list[str]]:
    """The module to trace for ``part`` (in eval mode), example inputs, the inputs' names and
    the output names. Call in eval mode."""
    dtype, device = _reference(model)
    wrapper: nn.Module
    labels: tuple[torch.Tensor, ...] = ()
    if model.num_classes is not None:
        labels = (torch.arange(_EXAMPLE_BATCH, device=device) % model.num_classes,)
    if part == "decoder":
        example = torch.zeros(_EXAMPLE_BATCH, model.latent_dim, dtype=dtype, device=device)
        wrapper, names, outputs = _Decoder(model), ["z"], ["mean"]
    else:
        example = torch.full((_EXAMPLE_BATCH, *model.input_shape), 0.5, dtype=dtype, device=device)
        with torch.no_grad():
            with_scale = _loc_scale(model.encode(example, *labels)) is not None
        wrapper, names = _Encoder(model, with_scale), ["x"]
        outputs = ["loc", "scale"] if with_scale else ["loc"]
    return wrapper.eval(), (example, *labels), names + ["y"] * len(labels), outputs


def _dynamic_batch(names: list[str]) -> dict[str, dict[int, torch.export.Dim]]:
    batch = torch.export.Dim("batch")
    return {name: {0: batch} for name in names}


def export(model: BaseVAE, part: Part = "decoder") -> torch.export.ExportedProgram:
    """The decoder or encoder of ``model`` as a ``torch.export.ExportedProgram`` with a dynamic
    batch size (the model's dtype and device).

    * ``part="decoder"``: input ``z`` (B, latent_dim) -> the mean of p(x|z), (B, *input_shape).
    * ``part="encoder"``: input ``x`` (B, *input_shape) -> a dict ``{"loc", "scale"}`` of
      q(z|x)'s location and scale, each (B, latent_dim), for a location-scale posterior (the
      diagonal Gaussian); ``{"loc"}``, the posterior's point
      (:func:`pyvae.posteriors.latent_point`), for other posteriors.

    A conditional model's program takes the labels ``y`` (integers, shape (B,)) as a second
    input.

    Traced in eval mode (the model's own mode is restored). ``program.module()(z)`` runs it;
    ``torch.export.save`` writes it to a ``.pt2`` file that ``torch.export.load`` reads without
    pyvae.

    Example:
        >>> import torch, pyvae
        >>> model = pyvae.build("mlp", latent_dim=2)
        >>> program = pyvae.export(model, part="decoder")
        >>> program.module()(torch.zeros(5, 2)).shape
        torch.Size([5, 1, 28, 28])
    """
    model = _check(model, part)
    with _eval_mode(model), torch.no_grad():
        wrapper, examples, names, _ = _wrapper(model, part)
        return torch.export.export(
            wrapper, examples, dynamic_shapes=_dynamic_batch(names), strict=False
        )


def export_onnx(
    model: BaseVAE,
    path: str | os.PathLike[str],
    part: Part = "decoder",
    *,
    opset_version: int | None = None,
) -> Path:
    """Write the decoder or encoder of ``model`` to an ONNX file with a dynamic batch size.

    The graph is :func:`export`'s, translated by torch's ONNX exporter (needs the ``export``
    extra: ``pip install "pyvae[export]"``, i.e. onnx, onnxscript and onnxruntime). Inputs and
    outputs are named: the decoder maps ``z`` (B, latent_dim) to ``mean`` (B, *input_shape); the
    encoder maps ``x`` (B, *input_shape) to ``loc`` and ``scale`` (each (B, latent_dim)) for a
    location-scale posterior, else to ``loc`` (the posterior's point); a conditional model takes
    ``y`` (int64 labels, (B,)) too. The weights are stored in the file itself (one file, no
    external data; ONNX limits such a file to 2 GiB).

    Args:
        model: a pyvae model (trained or not).
        path: the file to write, conventionally ``*.onnx``; its folder must exist.
        part: ``"decoder"`` or ``"encoder"``.
        opset_version: the ONNX opset; ``None`` lets torch choose its recommended one.

    Returns:
        The path written.
    """
    model = _check(model, part)
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path: the folder {str(path.parent)!r} does not exist")
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"export_onnx needs onnx and onnxscript ({error.name} is missing): "
            f'pip install "pyvae[export]"'
        ) from error
    with _eval_mode(model), torch.no_grad():
        wrapper, examples, names, outputs = _wrapper(model, part)
        onnx_program = torch.onnx.export(
            wrapper,
            examples,
            input_names=names,
            output_names=outputs,
            dynamic_shapes=_dynamic_batch(names),
            opset_version=opset_version,
            verbose=False,
            dynamo=True,
        )
    assert onnx_program is not None
    onnx_program.save(str(path), external_data=False)
    return path
