"""Priors: densities against scipy, sampling against the analytic moments, state and devices."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from scipy import special, stats

import pyvae

LATENT = 3


def build(prior: str | dict[str, Any], model: str = "mlp", **kwargs: Any) -> pyvae.BaseVAE:
    """A tiny float64 model with this prior (inputs of shape (5,))."""
    if model == "mlp":
        kwargs = {"hidden_dims": (8,), **kwargs}
    return pyvae.build(model, input_shape=(5,), latent_dim=LATENT, prior=prior, **kwargs).double()


def perturb(module: torch.nn.Module) -> None:
    """Move every parameter away from its initial value, so tests see a learned state."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.7 * torch.randn_like(p))


def z_points(n: int = 50) -> torch.Tensor:
    return 2.0 * torch.randn(n, LATENT, dtype=torch.float64)


def numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def mixture_log_prob(z: np.ndarray, log_w: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> Any:
    """log sum_k w_k N(z; loc_k, diag(scale_k^2)) with scipy, z (N, D), loc/scale (K, D)."""
    return special.logsumexp(stats.norm.logpdf(z[:, None], loc, scale).sum(-1) + log_w, axis=-1)


def test_registered_priors() -> None:
    assert {"normal", "learned_normal", "mog", "vamp"} <= set(pyvae.list_priors())


def test_standard_normal_matches_scipy() -> None:
    model = build("normal")
    z = z_points()
    expected = stats.norm.logpdf(z.numpy()).sum(-1)
    np.testing.assert_allclose(numpy(model.prior_distribution().log_prob(z)), expected, rtol=1e-12)
    assert list(model.prior.parameters()) == []
    assert not any(key.startswith("prior.") for key in model.state_dict())  # nothing to save


def test_learned_normal_starts_at_n01_and_matches_scipy() -> None:
    model = build("learned_normal")
    prior = model.prior
    assert isinstance(prior, pyvae.LearnedNormalPrior)
    z = z_points()
    np.testing.assert_allclose(
        numpy(prior().log_prob(z)), stats.norm.logpdf(z.numpy()).sum(-1), rtol=1e-12
    )
    perturb(prior)
    loc, scale = numpy(prior.loc), numpy(prior.log_scale.exp())
    expected = stats.norm.logpdf(z.numpy(), loc, scale).sum(-1)
    np.testing.assert_allclose(numpy(prior().log_prob(z)), expected, rtol=1e-12)
    assert {"prior.loc", "prior.log_scale"} <= set(model.state_dict())


def test_mixture_of_gaussians_matches_scipy() -> None:
    prior = build({"name": "mog", "n_components": 4}).prior
    assert isinstance(prior, pyvae.MixtureOfGaussiansPrior)
    assert prior.loc.shape == prior.log_scale.shape == (4, LATENT)
    assert prior.logits.shape == (4,)
    perturb(prior)
    z = z_points()
    log_w = numpy(prior.logits) - special.logsumexp(numpy(prior.logits))
    expected = mixture_log_prob(z.numpy(), log_w, numpy(prior.loc), numpy(prior.log_scale.exp()))
    np.testing.assert_allclose(numpy(prior().log_prob(z)), expected, rtol=1e-12)


def test_vamp_prior_is_the_mixture_of_the_encoded_pseudo_inputs() -> None:
    model = build({"name": "vamp", "n_components": 6})
    prior = model.prior
    assert isinstance(prior, pyvae.VampPrior)
    assert prior.pseudo_inputs.shape == (6, 5)
    perturb(model)
    posterior = model.encode(prior.pseudo_inputs)
    loc, scale = numpy(posterior.base_dist.loc), numpy(posterior.base_dist.scale)
    z = z_points()
    expected = mixture_log_prob(z.numpy(), np.full(6, -np.log(6)), loc, scale)
    log_p = prior(model.encode).log_prob(z)
    # the fast mixture density expands the quadratic form: float64 cancellation leaves ~1e-11
    np.testing.assert_allclose(numpy(log_p), expected, rtol=1e-9)
    # The encoder belongs to the model only; gradients reach it and the pseudo-inputs.
    assert [k for k in model.state_dict() if k.startswith("prior.")] == ["prior.pseudo_inputs"]
    log_p.sum().backward()
    assert prior.pseudo_inputs.grad is not None and prior.pseudo_inputs.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        reached = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert reached == (not name.startswith("decoder")), name


def test_vamp_prior_encodes_clean_pseudo_inputs_in_a_denoising_model() -> None:
    model = build(
        {"name": "vamp", "n_components": 4},
        model="denoising",
        hidden_dims=(8,),
        corruption={"name": "gaussian", "std": 1.0},
    )
    model.train()
    z = z_points(5)
    first, second = model.prior_distribution().log_prob(z), model.prior_distribution().log_prob(z)
    torch.testing.assert_close(first, second)  # the corruption would make them differ


def test_vamp_prior_without_a_model_is_a_clear_error() -> None:
    prior = pyvae.VampPrior(latent_dim=2, input_shape=(5,))  # usable at once: no attach step
    assert prior.pseudo_inputs.shape == (50, 5)
    with pytest.raises(TypeError, match="VampPrior needs the model's encoder"):
        prior.sample(3)


@pytest.mark.parametrize("name", ["mog", "vamp"])
def test_bad_number_of_components(name: str) -> None:
    with pytest.raises(pyvae.ConfigError, match="n_components: expected a positive integer, got 0"):
        build({"name": name, "n_components": 0})


@pytest.mark.parametrize("spec", ["learned_normal", {"name": "mog", "n_components": 3}])
def test_samples_have_the_analytic_mean_and_are_reproducible(spec: str | dict[str, Any]) -> None:
    prior = build(spec).prior
    perturb(prior)
    n = 20_000
    samples = prior.sample(n, generator=torch.Generator().manual_seed(5))
    assert samples.shape == (n, LATENT)
    again = prior.sample(n, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(samples, again)
    if isinstance(prior, pyvae.MixtureOfGaussiansPrior):
        weights = torch.softmax(prior.logits, 0)
        mean = (weights[:, None] * prior.loc).sum(0)
    else:
        assert isinstance(prior, pyvae.LearnedNormalPrior)
        mean = prior.loc
        torch.testing.assert_close(
            samples.std(0), prior.log_scale.exp().detach(), rtol=0.03, atol=0
        )
    se = samples.std(0) / n**0.5
    assert ((samples.mean(0) - mean.detach()).abs() <= 5 * se).all()


@pytest.mark.parametrize("spec", ["learned_normal", "mog", {"name": "vamp", "n_components": 3}])
def test_prior_state_is_saved_rebuilt_and_moved(spec: str | dict[str, Any]) -> None:
    model = build(spec).float()
    perturb(model)
    rebuilt = pyvae.build(model.config)
    rebuilt.load_state_dict(model.state_dict())
    z = torch.randn(7, LATENT)
    torch.testing.assert_close(
        rebuilt.prior_distribution().log_prob(z), model.prior_distribution().log_prob(z)
    )
    assert model.double().prior_distribution().sample((2,)).dtype == torch.float64


def test_diagonal_mixture_log_prob_is_torchs_with_its_gradients() -> None:
    """The three-matmul log_prob of the mixture priors against torch's generic
    MixtureSameFamily (an independent computation), for values with extra leading dimensions
    (the (k, B, D) samples of the NLL estimate), and the gradients of both."""
    model = build({"name": "vamp", "n_components": 7})
    perturb(model)
    prior = model.prior_distribution()
    assert isinstance(prior, pyvae.priors.DiagonalNormalMixture)
    z = (2.0 * torch.randn(4, 6, LATENT, dtype=torch.float64)).requires_grad_()
    params = [z, model.prior.pseudo_inputs, *model.encoder.parameters()]
    fast = prior.log_prob(z)
    assert fast.shape == (4, 6)
    fast_grads = torch.autograd.grad(fast.sum(), params)
    generic = torch.distributions.MixtureSameFamily.log_prob(model.prior_distribution(), z)
    generic_grads = torch.autograd.grad(generic.sum(), params)
    torch.testing.assert_close(fast, generic, rtol=1e-9, atol=1e-9)
    for a, b in zip(fast_grads, generic_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_diagonal_mixture_is_accurate_in_float32_with_small_scales() -> None:
    """Near a component with a small scale the expanded quadratic form cancels; it is computed
    in float64, so a float32 model's log-density stays at float32 accuracy (scipy reference)."""
    prior = build({"name": "mog", "n_components": 3}).float().prior
    with torch.no_grad():
        prior.loc.copy_(torch.tensor([[3.0, -2.0, 1.5], [0.0, 0.0, 0.0], [-3.0, 4.0, 2.0]]))
        prior.log_scale.fill_(float(np.log(1e-3)))
        prior.logits.copy_(torch.tensor([0.3, -0.2, 0.0]))
    z = prior.loc.detach()[[0, 2]] + 1e-3 * torch.randn(2, LATENT)
    log_w = numpy(prior.logits) - special.logsumexp(numpy(prior.logits))
    expected = mixture_log_prob(
        z.double().numpy(), log_w, numpy(prior.loc).astype(float), np.full((3, LATENT), 1e-3)
    )
    log_p = prior().log_prob(z)
    assert log_p.dtype == torch.float32
    np.testing.assert_allclose(numpy(log_p), expected, rtol=1e-6)


def test_mixture_of_non_diagonal_components_keeps_torchs_log_prob() -> None:
    """A VampPrior over a full-covariance posterior is torch's MixtureSameFamily."""
    model = build({"name": "vamp", "n_components": 4}, posterior="full_gaussian")
    prior = model.prior_distribution()
    assert type(prior) is torch.distributions.MixtureSameFamily
    assert prior.log_prob(z_points(5)).shape == (5,)
