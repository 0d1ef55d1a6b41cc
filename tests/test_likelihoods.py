"""Every likelihood's log p(x|z) and mean against an independent reference (scipy, mpmath)."""

from __future__ import annotations

import math
from typing import Any

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, special, stats

import pyvae
from pyvae.likelihoods import StableContinuousBernoulli

SHAPE = (2, 3)  # the data shape of the tiny models below


def likelihood(spec: str | dict[str, Any]) -> pyvae.Likelihood:
    """The likelihood of a tiny model (attached, so learned scales exist), in float64."""
    model = pyvae.build("mlp", input_shape=SHAPE, latent_dim=2, hidden_dims=(4,), likelihood=spec)
    return model.double().likelihood


def unit_data(seed: int, batch: int) -> torch.Tensor:
    """Data in [0, 1] with exact 0, 1/2 and 1 among them, float64, shape (batch, *SHAPE)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *SHAPE, generator=g, dtype=torch.float64)
    edges = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    pick = torch.randint(0, 4, x.shape, generator=g)  # 3 of 4: an edge value
    return torch.where(pick < 3, edges[pick.clamp(max=2)], x)


def random_params(seed: int, batch: int, spread: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return spread * torch.randn(batch, *SHAPE, generator=g, dtype=torch.float64)


def per_example(values: np.ndarray) -> np.ndarray:
    return values.reshape(values.shape[0], -1).sum(axis=1)


@given(seed=st.integers(0, 2**31 - 1), spread=st.sampled_from([0.1, 3.0, 30.0]))
def test_bernoulli_matches_scipy(seed: int, spread: float) -> None:
    lik = likelihood("bernoulli")
    x, logits = unit_data(seed, 5), random_params(seed + 1, 5, spread)
    xn, ln = x.numpy(), logits.numpy()
    expected = per_example(xn * special.log_expit(ln) + (1 - xn) * special.log_expit(-ln))
    np.testing.assert_allclose(lik.log_prob(x, logits).numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(lik.mean(logits).numpy(), special.expit(ln), rtol=1e-12)


@pytest.mark.parametrize("name", ["gaussian", "laplace"])
@given(
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.01, 10.0),
    learn_scale=st.sampled_from([None, "global", "per_dim"]),
)
def test_location_scale_likelihoods_match_scipy(
    name: str, seed: int, scale: float, learn_scale: str | None
) -> None:
    lik = likelihood({"name": name, "scale": scale, "learn_scale": learn_scale})
    x = random_params(seed, 4, 2.0)
    loc = random_params(seed + 1, 4, 2.0)
    if learn_scale is None:
        s = np.full(SHAPE, scale)
    else:
        raw = lik.raw_scale
        assert raw is not None
        assert raw.shape == (SHAPE if learn_scale == "per_dim" else ())
        # Initialised to `scale`; then moved to random values to test the parameterisation.
        np.testing.assert_allclose(np.broadcast_to(lik.scale.detach(), SHAPE), scale, rtol=1e-6)
        with torch.no_grad():
            raw.copy_(
                torch.randn(
                    raw.shape, dtype=raw.dtype, generator=torch.Generator().manual_seed(seed)
                )
            )
        s = lik.min_scale + np.logaddexp(0.0, raw.detach().numpy())  # softplus, in numpy
        s = np.broadcast_to(s, SHAPE)
    xn, ln = x.numpy(), loc.numpy()
    if name == "gaussian":
        expected = per_example(stats.norm.logpdf(xn, loc=ln, scale=s))
    else:  # scipy's laplace.logpdf underflows to -inf far out; the density's direct formula:
        expected = per_example(-np.abs(xn - ln) / s - np.log(2 * s))
    np.testing.assert_allclose(lik.log_prob(x, loc).detach().numpy(), expected, rtol=1e-10)
    torch.testing.assert_close(lik.mean(loc), loc)


def test_gaussian_is_the_scaled_squared_error_with_its_constant() -> None:
    """The docstring's formula: -log p = sum (x - mu)^2 / (2 s^2) + D log s + D/2 log(2 pi)."""
    lik = likelihood({"name": "gaussian", "scale": 0.3})
    x, mu = random_params(1, 3, 1.0), random_params(2, 3, 1.0)
    d = x[0].numel()
    direct = (
        ((x - mu) ** 2).flatten(1).sum(1) / (2 * 0.09) + d * np.log(0.3) + d / 2 * np.log(2 * np.pi)
    )
    torch.testing.assert_close(-lik.log_prob(x, mu), direct)


# -- continuous Bernoulli ------------------------------------------------------------------------


def cb_reference(x: float, eta: float) -> tuple[float, float]:
    """(log p(x), mean) of the continuous Bernoulli with logits eta, from its definition in
    probabilities l = sigmoid(eta), with mpmath at 30 digits beyond those of sigmoid(-|eta|):
    p(x) = C(l) l^x (1 - l)^(1 - x), C(l) = 2 atanh(1 - 2 l) / (1 - 2 l) (2 at l = 1/2),
    E[x] = l / (2 l - 1) + 1 / (2 atanh(1 - 2 l)) (1/2 at l = 1/2)."""
    with mpmath.workdps(30 + int(abs(eta) / 2.3)):
        lam = 1 / (1 + mpmath.exp(-mpmath.mpf(eta)))
        if eta == 0:
            log_c, mean = mpmath.log(2), mpmath.mpf(0.5)
        else:
            log_c = mpmath.log(2 * mpmath.atanh(1 - 2 * lam) / (1 - 2 * lam))
            mean = lam / (2 * lam - 1) + 1 / (2 * mpmath.atanh(1 - 2 * lam))
        log_p = x * mpmath.log(lam) + (1 - x) * mpmath.log(1 - lam) + log_c
        return float(log_p), float(mean)


EDGE_LOGITS = [0.0, 1e-8, -1e-4, 0.3, -0.4999, 0.5, -0.5001, 1.0, -5.0, 16.0, -20.0, 50.0, -300.0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("x", [0.0, 0.5, 1.0, 0.25, 0.999])
def test_continuous_bernoulli_matches_mpmath_at_edges(x: float, dtype: torch.dtype) -> None:
    eta = torch.tensor(EDGE_LOGITS, dtype=dtype)
    dist = StableContinuousBernoulli(logits=eta)
    log_p = dist.log_prob(torch.full_like(eta, x))
    refs = [cb_reference(x, float(e)) for e in eta.double()]
    expected_log_p = torch.tensor([r[0] for r in refs], dtype=torch.float64)
    expected_mean = torch.tensor([r[1] for r in refs], dtype=torch.float64)
    # float64: close to exact; float32: within a few float32 ulps of the reference's magnitude.
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(log_p.double(), expected_log_p, rtol=tol, atol=tol)
    torch.testing.assert_close(dist.mean.double(), expected_mean, rtol=tol, atol=tol)


@given(seed=st.integers(0, 2**31 - 1), spread=st.sampled_from([0.2, 2.0, 40.0]))
def test_continuous_bernoulli_likelihood_matches_mpmath(seed: int, spread: float) -> None:
    lik = likelihood("continuous_bernoulli")
    x, logits = unit_data(seed, 3), random_params(seed + 1, 3, spread)
    refs = [
        [cb_reference(float(a), float(e)) for a, e in zip(xr.flatten(), lr.flatten(), strict=True)]
        for xr, lr in zip(x, logits, strict=True)
    ]
    expected = torch.tensor([sum(r[0] for r in row) for row in refs], dtype=torch.float64)
    torch.testing.assert_close(lik.log_prob(x, logits), expected, rtol=1e-11, atol=1e-11)
    expected_mean = torch.tensor([[r[1] for r in row] for row in refs], dtype=torch.float64)
    torch.testing.assert_close(lik.mean(logits).flatten(1), expected_mean, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("eta", [0.0, 0.3, -2.0, 25.0])
def test_continuous_bernoulli_density_integrates_to_one(eta: float) -> None:
    """Independent of any formula for C: the density integrates to 1 over [0, 1] (Simpson's rule),
    and x times it to the mean."""
    grid = torch.linspace(0, 1, 20_001, dtype=torch.float64)
    dist = StableContinuousBernoulli(logits=torch.full_like(grid, eta))
    density = dist.log_prob(grid).exp().numpy()
    assert integrate.simpson(density, x=grid.numpy()) == pytest.approx(1.0, abs=1e-9)
    mean = integrate.simpson(grid.numpy() * density, x=grid.numpy())
    assert mean == pytest.approx(float(dist.mean[0]), abs=1e-9)


# -- extreme parameters --------------------------------------------------------------------------

LIKELIHOOD_SPECS: list[str | dict[str, Any]] = [
    "bernoulli",
    "continuous_bernoulli",
    "gaussian",
    {"name": "gaussian", "learn_scale": "per_dim"},
    "laplace",
    {"name": "laplace", "learn_scale": "global"},
]


@pytest.mark.parametrize("spec", LIKELIHOOD_SPECS, ids=str)
@pytest.mark.parametrize("extreme", [1e4, -1e4, 0.0, 1e-30])
def test_no_nan_or_inf_for_extreme_parameters_in_float32(
    spec: str | dict[str, Any], extreme: float
) -> None:
    lik = likelihood(spec).float()
    params = torch.full((2, *SHAPE), extreme, requires_grad=True)
    x = unit_data(0, 2).float()
    log_p = lik.log_prob(x, params)
    assert log_p.shape == (2,)
    assert torch.isfinite(log_p).all()
    assert torch.isfinite(lik.mean(params)).all()
    log_p.sum().backward()
    assert params.grad is not None and torch.isfinite(params.grad).all()


def test_continuous_bernoulli_fixes_torchs_saturation_at_large_logits() -> None:
    """torch's own ContinuousBernoulli clamps probabilities, so in float32 its log-normaliser stops
    growing beyond |logits| ~ 16; ours follows log C(eta) ~ log |eta|."""
    eta = torch.tensor([-300.0, 300.0])
    ours = StableContinuousBernoulli(logits=eta).log_prob(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(ours, torch.full((2,), float(np.log(300.0))), rtol=1e-6, atol=0)


# -- configuration and support -------------------------------------------------------------------


def test_registered_likelihoods() -> None:
    assert {"bernoulli", "continuous_bernoulli", "gaussian", "laplace"} <= set(
        pyvae.list_likelihoods()
    )


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        ({"name": "gaussian", "learn_scale": "yes"}, r"learn_scale: expected None, 'global' or"),
        ({"name": "laplace", "scale": -1.0}, r"scale: expected a positive finite number, got -1"),
        (
            {"name": "gaussian", "learn_scale": "global", "scale": 0.5, "min_scale": 0.5},
            r"min_scale: expected a number >= 0 and below scale=0.5, got 0.5",
        ),
        ({"name": "laplace", "min_scale": -0.1}, r"min_scale: expected a number >= 0"),
        ({"name": "gaussian", "sclae": 2.0}, r"unknown argument 'sclae'. Did you mean 'scale'"),
    ],
)
def test_bad_likelihood_config(config: dict[str, Any], pattern: str) -> None:
    with pytest.raises(pyvae.ConfigError, match=pattern):
        pyvae.build("mlp", input_shape=SHAPE, likelihood=config)


@pytest.mark.parametrize("name", ["bernoulli", "continuous_bernoulli"])
def test_data_outside_the_unit_interval_is_refused(name: str) -> None:
    lik = likelihood(name)
    x = torch.full((1, *SHAPE), 1.5, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"x: .*Likelihood expects data in its support .*first: 1\.5"
    ):
        lik.log_prob(x, torch.zeros_like(x))


def test_per_dimension_scale_needs_the_data_shape() -> None:
    with pytest.raises(pyvae.ConfigError, match="event_shape: learn_scale='per_dim' needs"):
        pyvae.GaussianLikelihood(learn_scale="per_dim")
    # built on its own with the shape (or a global scale), a learned scale is usable at once
    lik = pyvae.GaussianLikelihood(learn_scale="per_dim", event_shape=(2,))
    assert lik.scale.shape == (2,)
    x = torch.zeros(1, 2)
    expected = -2 * (math.log(2 * math.pi) / 2)  # N(0; 0, 1) per dimension, summed
    torch.testing.assert_close(lik.log_prob(x, x), torch.tensor([expected]))
    assert pyvae.GaussianLikelihood(learn_scale="global").scale.shape == ()


def test_learned_scale_is_saved_moved_and_rebuilt() -> None:
    model = pyvae.build(
        "mlp",
        input_shape=SHAPE,
        latent_dim=2,
        hidden_dims=(4,),
        likelihood={"name": "laplace", "learn_scale": "per_dim", "scale": 0.2},
    )
    assert model.likelihood.config == {
        "name": "laplace",
        "scale": 0.2,
        "learn_scale": "per_dim",
        "min_scale": 1e-3,
        "event_shape": list(SHAPE),  # passed by the model
    }
    with torch.no_grad():
        model.likelihood.raw_scale.add_(torch.randn(SHAPE))
    assert "likelihood.raw_scale" in model.state_dict()
    rebuilt = pyvae.build(model.config)
    rebuilt.load_state_dict(model.state_dict())
    x, mu = torch.rand(3, *SHAPE), torch.rand(3, *SHAPE)
    torch.testing.assert_close(rebuilt.likelihood.log_prob(x, mu), model.likelihood.log_prob(x, mu))
    assert model.double().likelihood.scale.dtype == torch.float64
