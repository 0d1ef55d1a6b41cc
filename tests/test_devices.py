"""Devices, dtypes and reproducibility: ``.to()`` moves everything a model owns (priors, learned
scales, pseudo-inputs), ``sample`` follows the model's device and dtype, a ``generator`` makes
sampling reproducible.

There is no GPU in CI: a move to float64 and a move to the ``meta`` device (a device other than
the CPU, with no memory) stand in for ``.to("cuda")``; both go through the same ``nn.Module._apply``
as a CUDA move, so a tensor that is not a parameter or buffer would be left behind in each.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from tiny import SHAPE, tiny_model, vae_models
from torch import nn

import pyvae
import pyvae.validation

# conv with batch norm (running statistics are buffers) and a conv-backed denoising model
# (a None keyword is dropped by pyvae.build, so the mlp's hidden_dims goes)
DEVICE_OVERRIDES: dict[str, dict[str, Any]] = {
    "conv": {"batch_norm": True},
    "denoising": {"backbone": "conv", "channels": (4,), "hidden_dim": 8, "hidden_dims": None},
}


def device_model(name: str, likelihood: str = "bernoulli", prior: str = "normal") -> pyvae.BaseVAE:
    return tiny_model(name, likelihood, prior, **DEVICE_OVERRIDES.get(name, {}))


def combos() -> Iterator[tuple[str, str, str]]:
    likelihoods, priors = pyvae.list_likelihoods(), pyvae.list_priors()
    for model in vae_models():
        for i in range(max(len(likelihoods), len(priors))):
            yield model, likelihoods[i % len(likelihoods)], priors[i % len(priors)]


def _stray_tensors(model: nn.Module) -> list[str]:
    """Tensor attributes of submodules that are neither parameters nor buffers (``.to`` would
    leave them behind)."""
    stray = []
    for module_name, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Tensor) and attr not in ("_parameters", "_buffers"):
                stray.append(f"{module_name}.{attr}")
    return stray


def _all_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))  # persistent or not
    return tensors


@pytest.mark.parametrize(("model_name", "likelihood", "prior"), list(combos()))
def test_to_float64_moves_everything(model_name: str, likelihood: str, prior: str) -> None:
    model = device_model(model_name, likelihood, prior)
    assert _stray_tensors(model) == []
    model.to(torch.float64)
    for name, tensor in _all_tensors(model).items():
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float64, name
    # the prior's distribution, the likelihood's (learned) scale, the outputs and the loss follow
    p = model.prior_distribution()
    assert p.sample((2,)).dtype == torch.float64
    assert p.log_prob(torch.zeros(2, model.latent_dim, dtype=torch.float64)).dtype == torch.float64
    x = torch.rand(5, *SHAPE, dtype=torch.float64)
    out = model(x)
    assert out.z.dtype == out.params.dtype == torch.float64
    terms = model.loss(x, out)
    assert terms.loss.dtype == terms.recon.dtype == terms.kl.dtype == torch.float64
    terms.loss.backward()
    assert all(p.grad is None or p.grad.dtype == torch.float64 for p in model.parameters())
    assert model.sample(4).dtype == torch.float64
    assert model.sample(4, generator=torch.Generator().manual_seed(0)).dtype == torch.float64
    with pytest.raises(TypeError, match="float64"):
        model(x.float())  # a float32 batch for a float64 model: a clear error, not a crash


@pytest.mark.parametrize(("model_name", "likelihood", "prior"), list(combos()))
def test_to_another_device_moves_everything(model_name: str, likelihood: str, prior: str) -> None:
    meta = torch.device("meta")
    model = device_model(model_name, likelihood, prior).to(meta)
    for name, tensor in _all_tensors(model).items():
        assert tensor.device == meta, name
    with pytest.raises(ValueError, match="device"):
        model(torch.rand(2, *SHAPE))  # a CPU batch for a model elsewhere: a clear error


@pytest.mark.parametrize(("model_name", "likelihood", "prior"), list(combos()))
def test_training_step_reads_no_values_back(model_name: str, likelihood: str, prior: str) -> None:
    """With value checks off, forward, loss, backward and sample never read a value back to the
    host (no GPU synchronisation): on the meta device, which has no values, they run."""
    meta = torch.device("meta")
    model = device_model(model_name, likelihood, prior).to(meta)
    x = torch.empty(2, *SHAPE, device=meta)
    validating = pyvae.validation.validate_args_enabled()
    pyvae.set_validate_args(False)
    try:
        terms = model.loss(x, model(x))
        terms.loss.backward()
    finally:
        pyvae.set_validate_args(validating)
    assert terms.loss.device == terms.recon.device == terms.kl.device == meta
    assert all(p.grad is not None and p.grad.device == meta for p in model.parameters())
    assert model.sample(3).device == meta  # sample uses the model's device


@pytest.mark.parametrize(("model_name", "likelihood", "prior"), list(combos()))
def test_generator_makes_sampling_reproducible(
    model_name: str, likelihood: str, prior: str
) -> None:
    model = device_model(model_name, likelihood, prior).eval()
    first = model.sample(6, generator=torch.Generator().manual_seed(42))
    torch.randn(100)  # the global RNG moves on; the generator alone decides
    state = torch.get_rng_state()
    second = model.sample(6, generator=torch.Generator().manual_seed(42))
    assert torch.equal(torch.get_rng_state(), state)  # sampling with a generator leaves it alone
    other = model.sample(6, generator=torch.Generator().manual_seed(43))
    assert first.shape == (6, *SHAPE)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    # a generator continues its stream: two draws of 3 differ from each other
    g = torch.Generator().manual_seed(42)
    assert not torch.equal(model.sample(3, generator=g), model.sample(3, generator=g))


@pytest.mark.parametrize("prior", pyvae.list_priors())
def test_deepcopy_gives_an_independent_model(prior: str) -> None:
    """DDP, Lightning and EMA code copy models: a copy's prior must use the copy's own tensors
    (a VampPrior encodes with its own model's encoder)."""
    model = device_model("mlp", "bernoulli", prior).eval()
    clone = copy.deepcopy(model)
    z = torch.randn(4, model.latent_dim)
    before = model.prior_distribution().log_prob(z)
    torch.testing.assert_close(clone.prior_distribution().log_prob(z), before)
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(0.5)
    torch.testing.assert_close(
        model.prior_distribution().log_prob(z), before
    )  # the original is untouched
    if any(True for _ in model.prior.parameters()) or prior == "vamp":
        assert not torch.allclose(clone.prior_distribution().log_prob(z), before)
