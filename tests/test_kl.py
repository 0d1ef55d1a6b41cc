"""The KL term: closed form against numpy, Monte Carlo against the closed form and against
independent numpy/scipy estimates for the mixture priors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import special, stats
from torch.distributions import Distribution, Independent, Normal

import pyvae


def diagonal_gaussians(seed: int, batch: int, dim: int) -> tuple[np.ndarray, ...]:
    """Random (loc_q, scale_q, loc_p, scale_p), float64 arrays of shape (batch, dim)."""
    rng = np.random.default_rng(seed)
    locs = rng.uniform(-3, 3, size=(2, batch, dim))
    scales = np.exp(rng.uniform(-1.5, 1.5, size=(2, batch, dim)))
    return locs[0], scales[0], locs[1], scales[1]


def as_dist(loc: np.ndarray, scale: np.ndarray) -> Distribution:
    return Independent(Normal(torch.from_numpy(loc), torch.from_numpy(scale)), 1)


def numpy_kl(mq: np.ndarray, sq: np.ndarray, mp: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """KL(N(mq, sq^2) || N(mp, sp^2)) summed over the last axis, the textbook formula."""
    terms = np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5
    return terms.sum(axis=-1)


@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 4), dim=st.integers(1, 8))
def test_closed_form_matches_the_textbook_formula(seed: int, batch: int, dim: int) -> None:
    mq, sq, mp, sp = diagonal_gaussians(seed, batch, dim)
    kl = pyvae.kl_divergence(as_dist(mq, sq), as_dist(mp, sp), method="closed_form")
    assert kl.shape == (batch,)
    np.testing.assert_allclose(kl.numpy(), numpy_kl(mq, sq, mp, sp), rtol=1e-10, atol=1e-12)
    assert (kl >= 0).all()
    same = pyvae.kl_divergence(as_dist(mq, sq), as_dist(mq, sq), method="closed_form")
    np.testing.assert_allclose(same.numpy(), 0.0, atol=1e-12)


@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 3), dim=st.integers(1, 6))
def test_monte_carlo_agrees_with_the_closed_form_in_expectation(
    seed: int, batch: int, dim: int
) -> None:
    """The forced Monte Carlo path, averaged over n samples, is within 5 standard errors of the
    closed form; so is an independent numpy/scipy estimate."""
    mq, sq, mp, sp = diagonal_gaussians(seed, batch, dim)
    q, p = as_dist(mq, sq), as_dist(mp, sp)
    closed = pyvae.kl_divergence(q, p, method="closed_form").numpy()
    n = 4000
    torch.manual_seed(seed)
    z = q.sample((n,))  # (n, batch, dim)
    mc = pyvae.kl_divergence(q, p, z, method="monte_carlo").numpy()  # (n, batch)
    assert mc.shape == (n, batch)
    se = mc.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(mc.mean(axis=0) - closed) <= 5 * se + 1e-9)
    # Independent: numpy's sampler, scipy's densities.
    zn = np.random.default_rng(seed).normal(mq, sq, size=(n, batch, dim))
    log_ratio = stats.norm.logpdf(zn, mq, sq).sum(-1) - stats.norm.logpdf(zn, mp, sp).sum(
        -1
    )  # (n, batch)
    se_np = log_ratio.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(log_ratio.mean(axis=0) - closed) <= 5 * se_np + 1e-9)


def test_auto_uses_the_closed_form_when_there_is_one() -> None:
    mq, sq, mp, sp = diagonal_gaussians(0, 3, 4)
    q, p = as_dist(mq, sq), as_dist(mp, sp)
    z = q.sample()
    auto = pyvae.kl_divergence(q, p, z)  # z is ignored by the closed form
    torch.testing.assert_close(auto, pyvae.kl_divergence(q, p, method="closed_form"))
    mc = pyvae.kl_divergence(q, p, z, method="monte_carlo")
    torch.testing.assert_close(mc, q.log_prob(z) - p.log_prob(z))


def test_bad_method_and_missing_closed_form_are_clear_errors() -> None:
    q = as_dist(np.zeros((1, 2)), np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"method: expected one of .* got 'exact'"):
        pyvae.kl_divergence(q, q, method="exact")  # type: ignore[arg-type]
    model = pyvae.build("mlp", input_shape=(4,), latent_dim=2, hidden_dims=(4,), prior="mog")
    with pytest.raises(NotImplementedError, match=r"no closed-form KL .*register_kl"):
        pyvae.kl_divergence(
            model.encode(torch.rand(1, 4)), model.prior_distribution(), method="closed_form"
        )


# -- mixtures: no closed form; the Monte Carlo estimate is unbiased ------------------------------


def mixture_log_prob_numpy(
    z: np.ndarray, log_weights: np.ndarray, loc: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """log sum_k w_k N(z; loc_k, diag(scale_k^2)) with scipy: z (..., D), loc/scale (K, D)."""
    comp = stats.norm.logpdf(z[..., None, :], loc, scale).sum(-1)  # (..., K)
    return special.logsumexp(comp + log_weights, axis=-1)


def mixture_parameters(model: pyvae.BaseVAE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log weights (K,), loc (K, D), scale (K, D)) of the model's mixture prior, read from its
    tensors without its distribution: the mog's parameters, or the encoded pseudo-inputs."""
    prior = model.prior
    if isinstance(prior, pyvae.MixtureOfGaussiansPrior):
        log_w = torch.log_softmax(prior.logits, 0)
        loc, scale = prior.loc, prior.log_scale.exp()
    else:
        assert isinstance(prior, pyvae.VampPrior)
        posterior = model.encode(prior.pseudo_inputs)
        k = prior.n_components
        log_w = torch.full((k,), -np.log(k))
        loc, scale = posterior.base_dist.loc, posterior.base_dist.scale
    return tuple(t.detach().double().numpy() for t in (log_w, loc, scale))  # type: ignore[return-value]


@pytest.mark.parametrize(
    "prior",
    [{"name": "mog", "n_components": 4}, {"name": "vamp", "n_components": 5}],
    ids=["mog", "vamp"],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_mixture_kl_is_an_unbiased_monte_carlo_estimate(prior: dict[str, Any], seed: int) -> None:
    torch.manual_seed(seed)
    model = pyvae.build("mlp", input_shape=(6,), latent_dim=3, hidden_dims=(8,), prior=prior)
    with torch.no_grad():  # spread the mixture's parameters away from their initial values
        for p in model.prior.parameters():
            p.add_(0.5 * torch.randn_like(p))
    x = torch.rand(2, 6)
    with torch.no_grad():
        q, p_z = model.encode(x), model.prior_distribution()
        n = 4000
        z = q.rsample((n,))
        ours = pyvae.kl_divergence(q, p_z, z).double().numpy()  # "auto": no closed form -> MC
        np.testing.assert_allclose(ours, (q.log_prob(z) - p_z.log_prob(z)).numpy())
    # Independent: numpy samples of q, scipy densities, 50x as many samples.
    loc_q = q.base_dist.loc.double().numpy()
    scale_q = q.base_dist.scale.double().numpy()
    zn = np.random.default_rng(seed).normal(loc_q, scale_q, size=(50 * n, *loc_q.shape))
    log_w, loc, scale = mixture_parameters(model)
    log_ratio = stats.norm.logpdf(zn, loc_q, scale_q).sum(-1) - mixture_log_prob_numpy(
        zn, log_w, loc, scale
    )
    se = np.sqrt(ours.var(axis=0) / n + log_ratio.var(axis=0) / (50 * n))
    assert np.all(np.abs(ours.mean(axis=0) - log_ratio.mean(axis=0)) <= 5 * se)
    assert np.all(log_ratio.mean(axis=0) > 0)  # a KL
