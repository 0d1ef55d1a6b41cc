"""Deployment: torch.export programs and ONNX files of every model's decoder and encoder reproduce
the PyTorch model's outputs, at batch sizes other than the traced one.

onnxruntime is the independent check of the ONNX files (another runtime, another set of kernels):
its outputs must match PyTorch's to float32 rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tiny import SHAPE, tiny_model
from torch.distributions import Independent, Normal

import pyvae
from pyvae.posteriors import latent_point

pytestmark = pytest.mark.usefixtures("one_thread")

LATENT = 3
RTOL, ATOL = 1e-5, 1e-6


def _reference(
    model: pyvae.BaseVAE, part: str, inputs: tuple[torch.Tensor, ...]
) -> dict[str, torch.Tensor]:
    """What the exported part must compute, straight from the model in eval mode."""
    model.eval()
    with torch.no_grad():
        if part == "decoder":
            return {"mean": model.likelihood.mean(model.decode(*inputs))}
        q = model.encode(*inputs)
        if isinstance(q, Independent) and isinstance(q.base_dist, Normal):
            return {"loc": q.base_dist.loc, "scale": q.base_dist.scale}
        return {"loc": latent_point(q)}


def _inputs(model: pyvae.BaseVAE, part: str, batch: int) -> tuple[torch.Tensor, ...]:
    # z is (B, model.latent_dim): for a VQ-VAE the flattened grid, not its code size LATENT
    first = torch.randn(batch, model.latent_dim) if part == "decoder" else torch.rand(batch, *SHAPE)
    if model.num_classes is None:
        return (first,)
    return first, torch.arange(batch) % model.num_classes


def _feed(session: ort.InferenceSession, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    return {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}


def _models() -> list[tuple[str, dict[str, Any]]]:
    """Every registered model, every posterior family on the mlp, and a conditional model."""
    cases: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in pyvae.list_models()]
    for p in pyvae.list_posteriors():
        if p != "gaussian":  # a point mass trains with the autoencoder's objective
            deterministic = pyvae.POSTERIORS.get(p).deterministic
            cases.append(
                ("mlp", {"posterior": p, **({"objective": "ae"} if deterministic else {})})
            )
    cases += [("conv", {"num_classes": 3})]
    return cases


def _id(case: tuple[str, dict[str, Any]]) -> str:
    name, extra = case
    return "-".join([name, *(f"{k}={v}" for k, v in extra.items())])


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("part", ["decoder", "encoder"])
@pytest.mark.parametrize("case", _models(), ids=_id)
def test_onnx_matches_pytorch_for_every_model(
    case: tuple[str, dict[str, Any]], part: str, tmp_path: Path
) -> None:
    name, extra = case
    model = tiny_model(name, latent_dim=LATENT, **extra)
    path = pyvae.export_onnx(model, tmp_path / f"{name}.onnx", part=part)
    assert model.training  # the model's own mode is restored
    session = _session(path)
    names = ["z" if part == "decoder" else "x"] + (["y"] if model.num_classes else [])
    assert [i.name for i in session.get_inputs()] == names
    assert all(i.shape[0] == "batch" for i in session.get_inputs())  # a dynamic batch size
    for batch in (1, 5):
        inputs = _inputs(model, part, batch)
        expected = _reference(model, part, inputs)
        outputs = session.run(None, _feed(session, inputs))
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
    expected = _reference(model, "decoder", (z,))["mean"].numpy()
    np.testing.assert_allclose(mean, expected, 1e-5, 1e-6)


@pytest.mark.parametrize("part", ["decoder", "encoder"])
@pytest.mark.parametrize("case", _models(), ids=_id)
def test_torch_export_with_two_batch_sizes(case: tuple[str, dict[str, Any]], part: str) -> None:
    name, extra = case
    model = tiny_model(name, latent_dim=LATENT, **extra)
    program = pyvae.export(model, part=part)
    assert isinstance(program, torch.export.ExportedProgram)
    assert model.training
    module = program.module()
    for batch in (1, 7):
        inputs = _inputs(model, part, batch)
        got = module(*inputs)
        expected = _reference(model, part, inputs)
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
    expected = _reference(model, "encoder", (x,))
    np.testing.assert_allclose(loc, expected["loc"].numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(scale, expected["scale"].numpy(), rtol=RTOL, atol=ATOL)


def test_float64_model_exports_in_float64() -> None:
    model = tiny_model("mlp", latent_dim=LATENT).double()
    z = torch.randn(3, LATENT, dtype=torch.float64)
    got = pyvae.export(model).module()(z)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, _reference(model, "decoder", (z,))["mean"])


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    model = tiny_model("mlp", latent_dim=LATENT)
    with pytest.raises(ValueError, match=r"part: expected one of \('decoder', 'encoder'\)"):
        pyvae.export(model, part="sampler")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model: expected a pyvae model"):
        pyvae.export(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="path: the folder"):
        pyvae.export_onnx(model, tmp_path / "missing" / "d.onnx")
