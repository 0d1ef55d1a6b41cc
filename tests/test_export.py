"""Deployment: torch.export programs and ONNX files of every model's decoder and encoder reproduce
the PyTorch model's outputs, at batch sizes other than the traced one.

onnxruntime is the independent check of the ONNX files (another runtime, another set of kernels):
its outputs must match PyTorch's to float32 rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tiny import SHAPE, tiny_model

import pyvae

pytestmark = pytest.mark.usefixtures("one_thread")

LATENT = 3
RTOL, ATOL = 1e-5, 1e-6


def _reference(model: pyvae.BaseVAE, part: str, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the exported part must compute, straight from the model in eval mode."""
    model.eval()
    with torch.no_grad():
        if part == "decoder":
            return {"mean": model.likelihood.mean(model.decode(inputs))}
        q = model.encode(inputs)
        if isinstance(q, torch.distributions.Independent):  # a location-scale posterior
            return {"loc": q.base_dist.loc, "scale": q.base_dist.scale}
        return {"loc": q.mean}  # a point mass (the autoencoder)


def _inputs(part: str, batch: int) -> torch.Tensor:
    if part == "decoder":
        return torch.randn(batch, LATENT)
    return torch.rand(batch, *SHAPE)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("part", ["decoder", "encoder"])
@pytest.mark.parametrize("name", pyvae.list_models())
def test_onnx_matches_pytorch_for_every_model(name: str, part: str, tmp_path: Path) -> None:
    model = tiny_model(name, latent_dim=LATENT)
    path = pyvae.export_onnx(model, tmp_path / f"{name}.onnx", part=part)
    assert model.training  # the model's own mode is restored
    session = _session(path)
    input_name = "z" if part == "decoder" else "x"
    assert [i.name for i in session.get_inputs()] == [input_name]
    assert session.get_inputs()[0].shape[0] == "batch"  # a dynamic batch dimension
    for batch in (1, 5):
        x = _inputs(part, batch)
        expected = _reference(model, part, x)
        outputs = session.run(None, {input_name: x.numpy()})
        assert [o.name for o in session.get_outputs()] == list(expected)
        for got, (key, want) in zip(outputs, expected.items(), strict=True):
            assert got.shape == tuple(want.shape), key
            np.testing.assert_allclose(got, want.numpy(), rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("likelihood", pyvae.list_likelihoods())
def test_onnx_decoder_gives_each_likelihoods_mean(likelihood: str, tmp_path: Path) -> None:
    model = tiny_model("mlp", likelihood=likelihood, latent_dim=LATENT)
    session = _session(pyvae.export_onnx(model, tmp_path / "decoder.onnx"))
    z = torch.randn(4, LATENT) * 3  # logits far from 0 too (the continuous Bernoulli's branches)
    (mean,) = session.run(["mean"], {"z": z.numpy()})
    np.testing.assert_allclose(mean, _reference(model, "decoder", z)["mean"].numpy(), 1e-5, 1e-6)


@pytest.mark.parametrize("part", ["decoder", "encoder"])
@pytest.mark.parametrize("name", pyvae.list_models())
def test_torch_export_with_two_batch_sizes(name: str, part: str) -> None:
    model = tiny_model(name, latent_dim=LATENT)
    program = pyvae.export(model, part=part)
    assert isinstance(program, torch.export.ExportedProgram)
    assert model.training
    module = program.module()
    for batch in (1, 7):
        x = _inputs(part, batch)
        got = module(x)
        expected = _reference(model, part, x)
        got = {"mean": got} if part == "decoder" else got
        assert list(got) == list(expected)
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=RTOL, atol=ATOL)


def test_export_uses_eval_mode_batch_norm_statistics(tmp_path: Path) -> None:
    """A conv model with batch normalisation, left in training mode, is exported with its running
    statistics (what it computes in eval mode), not the batch's."""
    model = tiny_model("conv", latent_dim=LATENT, batch_norm=True)
    model.train()
    for _ in range(3):  # move the running statistics away from their initial values
        model(torch.rand(8, *SHAPE))
    session = _session(pyvae.export_onnx(model, tmp_path / "enc.onnx", part="encoder"))
    x = torch.rand(5, *SHAPE)
    loc, scale = session.run(None, {"x": x.numpy()})
    expected = _reference(model, "encoder", x)
    np.testing.assert_allclose(loc, expected["loc"].numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(scale, expected["scale"].numpy(), rtol=RTOL, atol=ATOL)


def test_float64_model_exports_in_float64() -> None:
    model = tiny_model("mlp", latent_dim=LATENT).double()
    z = torch.randn(3, LATENT, dtype=torch.float64)
    got = pyvae.export(model).module()(z)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, _reference(model, "decoder", z)["mean"])


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    model = tiny_model("mlp", latent_dim=LATENT)
    with pytest.raises(ValueError, match=r"part: expected one of \('decoder', 'encoder'\)"):
        pyvae.export(model, part="sampler")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model: expected a pyvae model"):
        pyvae.export(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="path: the folder"):
        pyvae.export_onnx(model, tmp_path / "missing" / "d.onnx")
