"""The reparameterisation trick and the closed-form KL of the posterior, against independent
computations (analytic derivatives, Monte Carlo estimates with their standard errors)."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Independent, Normal

import pyvae
from pyvae.posteriors import DiagonalGaussianHead

dims = st.integers(1, 6)
batches = st.integers(1, 4)
seeds = st.integers(0, 2**31 - 1)


def gaussian(loc: torch.Tensor, log_scale: torch.Tensor) -> Independent:
    return Independent(Normal(loc, log_scale.exp()), 1)


@given(batch=batches, dim=dims, seed=seeds)
def test_gradient_of_the_sample_matches_its_analytic_value(batch: int, dim: int, seed: int) -> None:
    torch.manual_seed(seed)
    loc = (3 * torch.randn(batch, dim, dtype=torch.float64)).requires_grad_()
    scale = torch.rand(batch, dim, dtype=torch.float64).add(0.1).requires_grad_()
    posterior = Independent(Normal(loc, scale), 1)
    model = pyvae.build("mlp", input_shape=(4,), latent_dim=dim, hidden_dims=(4,))
    z = model.reparameterize(posterior)
    assert z.shape == (batch, dim)
    weights = torch.randn(batch, dim, dtype=torch.float64)
    (z * weights).sum().backward()
    eps = ((z - loc) / scale).detach()
    # z = loc + scale * eps  =>  dz/dloc = 1, dz/dscale = eps
    torch.testing.assert_close(loc.grad, weights)
    torch.testing.assert_close(scale.grad, weights * eps)


@given(dim=dims, seed=seeds)
def test_gradients_flow_from_the_decoder_through_the_sample_to_the_encoder(
    dim: int, seed: int
) -> None:
    torch.manual_seed(seed)
    model = pyvae.build("mlp", input_shape=(6,), latent_dim=dim, hidden_dims=(8,))
    x = torch.rand(3, 6)
    out = model(x)
    recon_only = -model.likelihood.log_prob(x, out.params).mean()  # no KL: only via z
    recon_only.backward()
    head = model.head.linear
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


@given(batch=batches, dim=dims, seed=seeds)
def test_closed_form_kl_matches_monte_carlo(batch: int, dim: int, seed: int) -> None:
    torch.manual_seed(seed)
    q = gaussian(
        torch.empty(batch, dim, dtype=torch.float64).uniform_(-3, 3),
        torch.empty(batch, dim, dtype=torch.float64).uniform_(-2, 1),
    )
    p = gaussian(torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dtype=torch.float64))
    closed = pyvae.kl_divergence(q, p, method="closed_form")
    n = 20_000
    z = q.sample((n,))  # (n, batch, dim)
    log_ratio = q.log_prob(z) - p.log_prob(z)  # (n, batch)
    estimate = log_ratio.mean(0)
    standard_error = log_ratio.std(0) / math.sqrt(n)
    assert (closed >= 0).all()
    assert ((closed - estimate).abs() <= 5 * standard_error + 1e-9).all(), (
        closed,
        estimate,
        standard_error,
    )
    # and the closed form is the textbook formula 1/2 sum(mu^2 + s^2 - 1 - log s^2)
    mu, s = q.base_dist.loc, q.base_dist.scale
    textbook = 0.5 * (mu**2 + s**2 - 1 - torch.log(s**2)).sum(-1)
    torch.testing.assert_close(closed, textbook)


@given(seed=seeds)
def test_kl_is_zero_when_the_posterior_is_the_prior(seed: int) -> None:
    torch.manual_seed(seed)
    dim = 1 + seed % 5
    q = gaussian(torch.zeros(2, dim), torch.zeros(2, dim))
    p = gaussian(torch.zeros(dim), torch.zeros(dim))
    torch.testing.assert_close(pyvae.kl_divergence(q, p), torch.zeros(2))


@given(raw=st.floats(-1e6, 1e6, allow_nan=False))
def test_posterior_stays_finite_for_extreme_encoder_outputs(raw: float) -> None:
    head = DiagonalGaussianHead(1, 2)
    with torch.no_grad():
        head.linear.weight.fill_(raw)
        head.linear.bias.zero_()
    posterior = head(torch.ones(3, 1))
    scale = posterior.base_dist.scale
    assert torch.isfinite(scale).all() and (scale > 0).all()
    z = posterior.rsample()
    assert torch.isfinite(z).all()
    assert torch.isfinite(posterior.log_prob(z)).all()
