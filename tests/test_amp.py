"""Mixed precision: training under ``torch.autocast`` (bfloat16 on CPU) runs without NaN, and the
loss terms are computed and reduced in float32.

float16 and bfloat16 autocast on CUDA follow the same code path (``BaseVAE.loss`` upcasts 16-bit
decoder outputs and latent samples); they are not run here (no GPU in CI).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny import SHAPE, pairs, tiny_model
from torch.utils._python_dispatch import TorchDispatchMode

import pyvae

REDUCTIONS = {"sum", "mean", "logsumexp", "prod", "cumsum", "nansum", "amax", "amin", "var"}
pytestmark = pytest.mark.usefixtures("one_thread")


class ReductionDtypes(TorchDispatchMode):
    """Records the dtype of the input of every reduction that runs (below autocast)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, torch.dtype, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        if name in REDUCTIONS and isinstance(args[0], torch.Tensor):
            self.seen.append((name, args[0].dtype, tuple(args[0].shape)))
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def images(mnist: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """128 real MNIST digits, average-pooled to 8 x 8, in [0, 1]."""
    return F.adaptive_avg_pool2d(mnist[0][:128], SHAPE[1:])


@pytest.mark.parametrize(("model_name", "likelihood", "prior"), list(pairs()))
def test_bf16_autocast_trains_with_float32_loss_terms(
    model_name: str, likelihood: str, prior: str, images: torch.Tensor
) -> None:
    torch.manual_seed(0)
    model = tiny_model(model_name, likelihood, prior)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(16):
        x = images[(step % 4) * 32 : (step % 4 + 1) * 32]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            assert out.params.dtype == torch.bfloat16  # autocast is really on
            with ReductionDtypes() as recorder:
                terms = model.loss(x, out)
        for name, value in (("loss", terms.loss), ("recon", terms.recon), ("kl", terms.kl)):
            assert value.dtype == torch.float32, name
            assert torch.isfinite(value).all(), (name, step)
        # float32 or wider (the mixture priors' log-density reduces in float64)
        low = [r for r in recorder.seen if r[1] not in (torch.float32, torch.float64)]
        assert recorder.seen and not low, f"reductions below float32 in the loss: {low}"
        optimizer.zero_grad()
        terms.loss.backward()
        for name, p in model.named_parameters():
            assert p.dtype == torch.float32 and p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
        optimizer.step()
        losses.append(terms.loss.item())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # it learns: the last pass over the 4 batches has a lower mean loss than the first
    assert sum(losses[-4:]) < sum(losses[:4]), losses


@pytest.mark.parametrize("model_name", pyvae.list_models())
def test_bf16_loss_close_to_float32(model_name: str, images: torch.Tensor) -> None:
    """The bf16 loss is the float32 loss up to bf16 rounding of the networks (not of the sums)."""
    model = tiny_model(model_name).eval()  # eval: the denoising model adds no noise
    x = images[:64]
    torch.manual_seed(1)
    reference = model.loss(x, model(x))
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = model.loss(x, model(x))
    torch.testing.assert_close(terms.loss, reference.loss, rtol=2e-2, atol=0.0)
    torch.testing.assert_close(terms.recon, reference.recon, rtol=3e-2, atol=0.5)
