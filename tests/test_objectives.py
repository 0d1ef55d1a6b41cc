"""The objectives of issue 9 (elbo with free bits and KL schedules, beta_tc, mmd, iwae), each
against an independent computation: hand-computed schedules, numpy/scipy references, exact
values of a Gaussian aggregate posterior, pyvae.iwae_bound."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import norm
from torch.distributions import Independent, Laplace, MultivariateNormal, Normal, kl_divergence

import pyvae
from pyvae.objectives.beta_tc import tc_decomposition
from pyvae.objectives.elbo import cyclical_annealing, kl_per_dimension, schedule_weight
from pyvae.objectives.mmd import mmd_per_example
from pyvae.outputs import VAEOutput

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 4, 4)
SMALL: dict[str, Any] = {"input_shape": SHAPE, "latent_dim": 3, "hidden_dims": (8,)}


def _model(objective: Any, **kw: Any) -> pyvae.BaseVAE:
    return pyvae.build("mlp", **{**SMALL, **kw}, objective=objective)


def _gaussian_out(
    model: pyvae.BaseVAE, loc: torch.Tensor, scale: torch.Tensor, x: torch.Tensor
) -> VAEOutput:
    """A VAEOutput with a chosen diagonal Gaussian posterior (decoded by the model)."""
    q = Independent(Normal(loc, scale), 1)
    z = q.rsample()
    return VAEOutput(posterior=q, z=z, params=model.decode(z), y=None)


# -- KL schedules --------------------------------------------------------------------------------
def test_cyclical_annealing_hand_values() -> None:
    # period 10, ramp over the first half: 0, .2, .4, .6, .8, then 1 until the cycle restarts
    expected = [0, 0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1, 1, 0, 0.2, 0.4]
    got = [cyclical_annealing(t, 10, ratio=0.5) for t in range(13)]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    # two cycles, then the weight stays at beta; ratio 1 ramps over the whole period
    assert cyclical_annealing(19, 10, ratio=0.5, cycles=2, beta=3.0) == 3.0
    assert cyclical_annealing(20, 10, ratio=0.5, cycles=2, beta=3.0) == 3.0
    assert cyclical_annealing(25, 10, ratio=0.5, cycles=2, beta=3.0) == 3.0
    assert cyclical_annealing(12, 10, ratio=0.5, cycles=2, beta=3.0) == pytest.approx(1.2)
    assert cyclical_annealing(3, 4, ratio=1.0) == 0.75


@given(
    step=st.integers(0, 10_000),
    period=st.integers(1, 500),
    ratio=st.floats(0.01, 1.0),
    cycles=st.one_of(st.none(), st.integers(1, 20)),
)
def test_schedule_on_device_equals_the_host_formula(
    step: int, period: int, ratio: float, cycles: int | None
) -> None:
    spec = {"name": "cyclical", "period": period, "ratio": ratio, "cycles": cycles}
    on_device = schedule_weight(spec, torch.tensor(step))
    host = cyclical_annealing(step, period, ratio=ratio, cycles=cycles)
    assert on_device.shape == ()
    assert float(on_device) == pytest.approx(host, abs=1e-6)
    warmup = schedule_weight({"name": "linear", "warmup_steps": period}, torch.tensor(step))
    assert float(warmup) == pytest.approx(pyvae.linear_warmup(step, period), abs=1e-6)


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ({"name": "linear", "warmup_steps": 4}, [0, 0.25, 0.5, 0.75, 1, 1]),
        ({"name": "linear", "warmup_steps": 0}, [1, 1, 1]),
        (
            {"name": "cyclical", "period": 4, "ratio": 0.5, "cycles": 2},
            [0, 0.5, 1, 1, 0, 0.5, 1, 1, 1, 1],
        ),
    ],
)
def test_elbo_schedule_advances_once_per_training_call(
    schedule: dict[str, Any], expected: list[float]
) -> None:
    beta = 2.0
    model = _model({"name": "elbo", "beta": beta, "schedule": schedule})
    x = torch.rand(5, *SHAPE)
    for t, factor in enumerate(expected):
        assert int(model.objective.step) == t
        out = model(x)
        terms = model.loss(x, out)
        weight = beta * factor
        torch.testing.assert_close(terms.beta, torch.full((5,), weight))
        torch.testing.assert_close(terms.loss, (terms.recon + weight * terms.kl).mean())
        # terms.kl is the true KL, not the weighted one
        torch.testing.assert_close(
            terms.kl, pyvae.kl_divergence(out.posterior, model.prior_distribution())
        )
    # evaluation-mode calls do not advance the schedule; an explicit beta overrides it
    model.eval()
    before = int(model.objective.step)
    terms = model.loss(x, model(x), beta=0.125)
    torch.testing.assert_close(terms.loss, (terms.recon + 0.125 * terms.kl).mean())
    assert int(model.objective.step) == before


def test_schedule_step_is_saved_and_resumed(tmp_path: Path) -> None:
    schedule = {"name": "cyclical", "period": 10, "ratio": 0.5}
    model = _model({"name": "elbo", "schedule": schedule})
    x = torch.rand(3, *SHAPE)
    for _ in range(7):
        model.loss(x, model(x))
    path = model.save(tmp_path / "m.safetensors")
    loaded = pyvae.load(path)
    assert int(loaded.objective.step) == 7
    loaded.train()
    assert float(loaded.loss(x, loaded(x)).beta[0]) == pytest.approx(cyclical_annealing(7, 10))
    assert int(loaded.objective.step) == 8
    # a plain ELBO keeps no counter (its state dict is unchanged)
    assert not any("step" in k for k in _model("elbo").state_dict())


# -- free bits -----------------------------------------------------------------------------------
def test_free_bits_loss_equals_the_hand_computation() -> None:
    lam, beta = 0.4, 1.5
    model = _model({"name": "elbo", "beta": beta, "free_bits": lam})
    x = torch.rand(4, *SHAPE)
    # dimension 0 far from the prior, 1 close to it (KL < lam), 2 in between
    loc = torch.tensor([[2.0, 0.1, 0.8], [1.5, -0.1, -0.9], [2.5, 0.05, 0.7], [1.8, 0.0, -0.8]])
    scale = torch.tensor([[0.3, 0.95, 0.6]]).expand(4, 3).clone()
    loc.requires_grad_(True)
    out = _gaussian_out(model, loc, scale, x)
    terms = model.loss(x, out)
    m, s = loc.detach().numpy().astype(np.float64), scale.numpy().astype(np.float64)
    kl_dim = 0.5 * (s**2 + m**2 - 1) - np.log(s)  # closed form against N(0, 1)
    recon = terms.recon.detach().numpy().astype(np.float64)
    expected = recon.mean() + beta * np.maximum(lam, kl_dim.mean(0)).sum()
    assert kl_dim.mean(0)[1] < lam < kl_dim.mean(0)[0]
    assert float(terms.loss.detach()) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(terms.kl.detach().numpy(), kl_dim.sum(1), rtol=1e-5)
    # the clamped dimension gets no gradient from the KL part, the others do
    grad = torch.autograd.grad(terms.loss - terms.recon.mean(), loc)[0]
    assert torch.all(grad[:, 1] == 0)
    torch.testing.assert_close(grad[:, 0], beta * loc[:, 0].detach() / 4)


@given(
    batch=st.integers(1, 6),
    dim=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    log_scale_p=st.floats(-1.0, 1.0),
)
def test_kl_per_dimension_closed_form_against_numpy(
    batch: int, dim: int, seed: int, log_scale_p: float
) -> None:
    g = torch.Generator().manual_seed(seed)
    mq, sq = torch.randn(batch, dim, generator=g), torch.rand(batch, dim, generator=g) + 0.2
    mp, sp = torch.randn(dim, generator=g), torch.full((dim,), math.exp(log_scale_p))
    got = kl_per_dimension(Independent(Normal(mq, sq), 1), Independent(Normal(mp, sp), 1))
    a, b, c, d = (t.double().numpy() for t in (mq, sq, mp, sp))
    expected = np.log(d / b) + (b**2 + (a - c) ** 2) / (2 * d**2) - 0.5
    assert got.shape == (batch, dim)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_kl_per_dimension_monte_carlo_and_refusals() -> None:
    q = Independent(Laplace(torch.zeros(3, 2), torch.ones(3, 2)), 1)
    p = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    z = q.sample()
    # torch knows Laplace || Normal in closed form, per dimension
    closed = kl_per_dimension(q, p, z)
    torch.testing.assert_close(
        closed, kl_divergence(Laplace(0.0, 1.0), Normal(0.0, 1.0)).expand(3, 2)
    )
    per_dim = kl_per_dimension(q, p, z, method="monte_carlo")
    expected = Laplace(0.0, 1.0).log_prob(z) - Normal(0.0, 1.0).log_prob(z)
    torch.testing.assert_close(per_dim, expected)
    torch.testing.assert_close(per_dim.sum(1), q.log_prob(z) - p.log_prob(z))
    full = MultivariateNormal(torch.zeros(3, 2), torch.eye(2))
    with pytest.raises(pyvae.ConfigError, match="free_bits: needs a per-dimension KL"):
        kl_per_dimension(full, p)
    with pytest.raises(pyvae.ConfigError, match="free_bits: objective 'elbo' needs a prior"):
        _model({"name": "elbo", "free_bits": 0.5}, prior="mog")


# -- beta-TC ---------------------------------------------------------------------------------------
def _numpy_tc(
    loc: np.ndarray, scale: np.ndarray, z: np.ndarray, n: int, estimator: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = z.shape[0]
    m = norm.logpdf(z[:, None, :], loc[None, :, :], scale[None, :, :])  # (B, B, D)
    if estimator == "mws":
        log_w = np.full((b, b), -np.log(n * b))
    else:
        log_w = np.full((b, b), np.log((n - 1) / (n * (b - 1))))
        np.fill_diagonal(log_w, -np.log(n))
    log_qzx = np.array([m[i, i].sum() for i in range(b)])
    log_qz = logsumexp(log_w + m.sum(-1), axis=1)
    log_prod = logsumexp(log_w[:, :, None] + m, axis=1).sum(-1)
    log_pz = norm.logpdf(z).sum(-1)
    return log_qzx - log_qz, log_qz - log_prod, log_prod - log_pz


@given(
    batch=st.integers(2, 7),
    dim=st.integers(1, 4),
    n=st.integers(2, 10_000),
    estimator=st.sampled_from(["mss", "mws"]),
    seed=st.integers(0, 2**16),
)
def test_tc_decomposition_against_numpy(
    batch: int, dim: int, n: int, estimator: str, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    scale = torch.rand(batch, dim, generator=g, dtype=torch.float64) + 0.1
    z = loc + scale * torch.randn(batch, dim, generator=g, dtype=torch.float64)
    log_pz = Independent(Normal(torch.zeros(dim), torch.ones(dim)), 1).log_prob(z.float())
    got = tc_decomposition(loc, scale, z, log_pz, n, estimator=estimator)
    expected = _numpy_tc(loc.numpy(), scale.numpy(), z.numpy(), n, estimator)
    for g_, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g_.numpy(), e, rtol=1e-4, atol=1e-4)
    # the three parts always add up to the Monte Carlo KL at z
    log_qzx = Independent(Normal(loc, scale), 1).log_prob(z)
    torch.testing.assert_close(sum(got), log_qzx - log_pz.double(), rtol=1e-4, atol=1e-4)


def test_beta_tc_terms_match_a_gaussian_aggregate_posterior() -> None:
    """q(z|x_n) = N(mu_n, s^2 I) with mu_n ~ N(0, C): the aggregate posterior is close to
    N(0, C + s^2 I), for which mi, tc and dim_kl (against N(0, I)) have closed forms. The whole
    data set is one batch, so the stratified estimator is the exact mixture density."""
    n, s = 2000, 0.6
    c = np.array([[2.0, 1.2], [1.2, 1.0]])
    g = torch.Generator().manual_seed(1)
    chol = torch.linalg.cholesky(torch.tensor(c))
    mu = torch.randn(n, 2, generator=g, dtype=torch.float64) @ chol.T
    scale = torch.full((n, 2), s, dtype=torch.float64)
    z = mu + s * torch.randn(n, 2, generator=g, dtype=torch.float64)
    prior = Independent(Normal(torch.zeros(2, dtype=torch.float64), 1.0), 1)
    mi, tc, dim_kl = tc_decomposition(mu, scale, z, prior.log_prob(z), n)
    sigma = c + s**2 * np.eye(2)
    exact_mi = 0.5 * np.log(np.linalg.det(sigma)) - 0.5 * np.log(s**4)
    exact_tc = 0.5 * (np.log(np.diag(sigma)).sum() - np.log(np.linalg.det(sigma)))
    exact_dim_kl = 0.5 * (np.diag(sigma) - 1 - np.log(np.diag(sigma))).sum()
    # exact: mi 1.31, tc 0.30, dim_kl 0.28 nats; tolerances of about 2 Monte Carlo errors
    assert float(mi.mean()) == pytest.approx(exact_mi, abs=0.05)
    assert float(tc.mean()) == pytest.approx(exact_tc, abs=0.04)
    assert float(dim_kl.mean()) == pytest.approx(exact_dim_kl, abs=0.05)
    # the sum is the KL term of the ELBO up to Monte Carlo error
    kl = pyvae.kl_divergence(Independent(Normal(mu, scale), 1), prior)
    assert float((mi + tc + dim_kl).mean()) == pytest.approx(float(kl.mean()), abs=0.07)
    # the published MWS weights put log q(z) exactly log N lower when the batch is the data set
    mi_w, tc_w, dim_kl_w = tc_decomposition(mu, scale, z, prior.log_prob(z), n, estimator="mws")
    torch.testing.assert_close(mi_w, mi + math.log(n))
    torch.testing.assert_close(tc_w, tc + math.log(n))  # (D - 1) log N with D = 2
    torch.testing.assert_close(dim_kl_w, dim_kl - 2 * math.log(n))


def test_beta_tc_objective_weights_the_terms() -> None:
    config = {"name": "beta_tc", "dataset_size": 500, "alpha": 0.5, "beta": 6.0, "gamma": 2.0}
    model = _model(config)
    x = torch.rand(6, *SHAPE)
    out = model(x)
    terms = model.loss(x, out)
    loss = (terms.recon + 0.5 * terms.mi + 6.0 * terms.tc + 2.0 * terms.dim_kl).mean()
    torch.testing.assert_close(terms.loss, loss)
    q = out.posterior
    torch.testing.assert_close(
        terms.mi + terms.tc + terms.dim_kl,
        q.log_prob(out.z) - model.prior_distribution().log_prob(out.z),
        rtol=1e-4,
        atol=1e-4,
    )
    torch.testing.assert_close(terms.kl, pyvae.kl_divergence(q, model.prior_distribution()))
    once = model.loss(x, out, beta=1.0)  # beta overrides the TC weight
    torch.testing.assert_close(
        once.loss, (once.recon + 0.5 * once.mi + once.tc + 2.0 * once.dim_kl).mean()
    )


@pytest.mark.parametrize(
    "config, match",
    [
        ({"name": "beta_tc"}, r"dataset_size: .*needs the number of training examples.*got None"),
        ({"name": "beta_tc", "dataset_size": 1}, r"dataset_size: .*integer >= 2.*got 1"),
        ({"name": "beta_tc", "dataset_size": 9.5}, r"dataset_size: .*got 9.5"),
        ({"name": "beta_tc", "dataset_size": 9, "beta": -1}, r"beta: expected a finite number"),
        ({"name": "beta_tc", "dataset_size": 9, "estimator": "x"}, r"estimator: expected one of"),
        ({"name": "mmd", "alpha": 2.0}, r"alpha: expected a number <= 1.*got 2.0"),
        ({"name": "mmd", "lam": 0}, r"lam: expected a number > 0, got 0"),
        ({"name": "mmd", "alpha": -1.0, "lam": 1.5}, r"lam: expected alpha \+ lam >= 1"),
        ({"name": "mmd", "kernel": "gauss"}, r"kernel: expected one of \('imq', 'rbf'\), got"),
        ({"name": "mmd", "scale": -1.0}, r"scale: expected a number > 0, got -1.0"),
        ({"name": "iwae", "k": 0}, r"k: expected an integer >= 1 .*got 0"),
        ({"name": "elbo", "free_bits": -0.1}, r"free_bits: expected a finite number >= 0"),
        ({"name": "elbo", "schedule": "linear"}, r"schedule: expected None, .*got 'linear'"),
        ({"name": "elbo", "schedule": {"name": "linear"}}, r"schedule.warmup_steps: expected"),
        (
            {"name": "elbo", "schedule": {"name": "cyclical", "period": 10, "ratio": 0}},
            r"schedule.ratio: expected a number in \(0, 1\], got 0",
        ),
        (
            {"name": "elbo", "schedule": {"name": "cyclical", "period": 0}},
            r"schedule.period: expected an integer >= 1, got 0",
        ),
        (
            {"name": "elbo", "schedule": {"name": "linear", "warmup_steps": 3, "period": 2}},
            r"schedule: the 'linear' schedule takes \['warmup_steps'\], got unknown keys",
        ),
    ],
)
def test_bad_configs_name_the_argument(config: dict[str, Any], match: str) -> None:
    with pytest.raises(pyvae.ConfigError, match=match):
        _model(config)


def test_beta_tc_refuses_other_families() -> None:
    with pytest.raises(pyvae.ConfigError, match="objective: 'beta_tc' .*structured latents"):
        pyvae.build("ladder", input_shape=SHAPE, objective={"name": "beta_tc", "dataset_size": 9})
    with pytest.raises(pyvae.ConfigError, match="prior: objective 'beta_tc' needs a prior"):
        _model({"name": "beta_tc", "dataset_size": 10}, prior="vamp")
    model = _model({"name": "beta_tc", "dataset_size": 10})
    x = torch.rand(3, *SHAPE)
    q = MultivariateNormal(torch.zeros(3, 3), torch.eye(3))
    z = q.rsample()
    out = VAEOutput(posterior=q, z=z, params=model.decode(z))
    with pytest.raises(pyvae.ConfigError, match="posterior: .*needs a diagonal Gaussian"):
        model.loss(x, out)
    with pytest.raises(ValueError, match="needs at least 2 examples, got a batch of 1"):
        model.loss(x[:1], model(x[:1]))


# -- MMD -------------------------------------------------------------------------------------------
def _numpy_mmd(a: np.ndarray, b: np.ndarray, kernel: str, scale: float) -> float:
    c = 2 * a.shape[1] * scale**2

    def k(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        d2 = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        return c / (c + d2) if kernel == "imq" else np.exp(-d2 / c)

    n = a.shape[0]
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    off = ~np.eye(n, dtype=bool)
    return kaa[off].sum() / (n * (n - 1)) + kbb[off].sum() / (n * (n - 1)) - 2 * kab.mean()


@given(
    batch=st.integers(2, 9),
    dim=st.integers(1, 6),
    kernel=st.sampled_from(["imq", "rbf"]),
    scale=st.floats(0.2, 3.0),
    shift=st.floats(-2.0, 2.0),
    seed=st.integers(0, 2**16),
)
def test_mmd_against_numpy(
    batch: int, dim: int, kernel: str, scale: float, shift: float, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, dim, generator=g, dtype=torch.float64) + shift
    b = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    per_example = mmd_per_example(a, b, kernel=kernel, scale=scale)
    assert per_example.shape == (batch,)
    expected = _numpy_mmd(a.numpy(), b.numpy(), kernel, scale)
    assert float(per_example.mean()) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_mmd_separates_distributions_and_is_unbiased_at_zero() -> None:
    g = torch.Generator().manual_seed(3)
    same = [
        float(
            mmd_per_example(torch.randn(50, 2, generator=g), torch.randn(50, 2, generator=g)).mean()
        )
        for _ in range(200)
    ]
    # unbiased: the mean over draws of the same distribution is ~0 (std of the mean ~ 1e-3)
    assert abs(np.mean(same)) < 3e-3
    far = mmd_per_example(torch.randn(50, 2, generator=g) + 2, torch.randn(50, 2, generator=g))
    assert float(far.mean()) > 0.1


def test_mmd_objective_loss_composition() -> None:
    model = _model({"name": "mmd", "alpha": 0.25, "lam": 10.0, "kernel": "rbf", "scale": 0.5})
    x = torch.rand(5, *SHAPE)
    out = model(x)
    state = torch.get_rng_state()
    terms = model.loss(x, out)
    torch.set_rng_state(state)  # the same prior draws
    prior_z = model.prior_distribution().rsample((5,))
    mmd = mmd_per_example(out.z, prior_z, kernel="rbf", scale=0.5)
    torch.testing.assert_close(terms.mmd, mmd)
    torch.testing.assert_close(terms.loss, (terms.recon + 0.75 * terms.kl + 9.25 * mmd).mean())


# -- IWAE ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("conditional", [False, True])
def test_iwae_loss_equals_iwae_bound_with_the_same_seed(k: int, conditional: bool) -> None:
    # B * D = 16: torch draws normals in blocks of 16, so out.z followed by k - 1 more draws is
    # the same stream as one draw of (k, B, D) in pyvae.iwae_bound
    model = _model({"name": "iwae", "k": k}, latent_dim=4, num_classes=3 if conditional else None)
    x = torch.rand(4, *SHAPE)
    y = torch.tensor([0, 2, 1, 2]) if conditional else None
    torch.manual_seed(11)
    out = model(x, y)
    terms = model.loss(x, out)
    torch.manual_seed(11)
    bound = pyvae.iwae_bound(model, x, k, y=y)
    torch.testing.assert_close(terms.iwae, bound)
    torch.testing.assert_close(terms.loss, -bound.mean())
    torch.testing.assert_close(
        terms.kl, pyvae.kl_divergence(out.posterior, model.prior_distribution())
    )
    if k == 1:  # the one-sample ELBO with a Monte Carlo KL
        mc = out.posterior.log_prob(out.z) - model.prior_distribution().log_prob(out.z)
        torch.testing.assert_close(terms.iwae, -(terms.recon + mc))
    with pytest.raises(ValueError, match="beta: the 'iwae' objective has no KL weight"):
        model.loss(x, out, beta=1.0)


# -- every objective with conditional models, the denoising wrapper, bf16 ------------------------
OBJECTIVES = [
    {"name": "elbo", "free_bits": 0.1, "schedule": {"name": "cyclical", "period": 3}},
    {"name": "beta_tc", "dataset_size": 100},
    {"name": "mmd", "kernel": "imq"},
    {"name": "iwae", "k": 3},
]


@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o["name"])
def test_objectives_train_conditional_and_denoising_models(objective: dict[str, Any]) -> None:
    x, y = torch.rand(4, *SHAPE), torch.tensor([0, 1, 2, 1])
    conditional = _model(objective, num_classes=3)
    terms = conditional.loss(x, conditional(x, y))
    terms.loss.backward()
    assert all(p.grad is not None for p in conditional.parameters())
    denoising = pyvae.build("denoising", backbone={"name": "mlp", **SMALL, "objective": objective})
    denoising.train()
    terms = denoising.loss(x, denoising(x))
    terms.loss.backward()
    assert torch.isfinite(terms.loss)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model = _model(objective)
        terms = model.loss(x, model(x))
    for value in (terms.loss, terms.recon, terms.kl, *terms.extras.values()):
        assert value.dtype == torch.float32 and torch.isfinite(value).all()


@pytest.mark.slow
@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o["name"])
def test_objectives_compile_fullgraph(objective: dict[str, Any]) -> None:
    model = _model(objective)
    model.train()
    x = torch.rand(4, *SHAPE)

    def step(x: torch.Tensor) -> torch.Tensor:
        return model.loss(x, model(x)).loss

    def run(fn: Any) -> torch.Tensor:
        if objective["name"] == "elbo":
            model.objective.step.zero_()
        torch.manual_seed(5)
        return fn(x)

    eager = run(step)
    compiled = torch.compile(step, fullgraph=True, backend="eager")
    torch.testing.assert_close(run(compiled), eager)
    if objective["name"] == "elbo":  # the counter advances inside the compiled graph
        assert int(model.objective.step) == 1
        compiled(x)
        assert int(model.objective.step) == 2


def test_fit_keeps_the_objectives_own_weight() -> None:
    """pyvae.training.fit passes no beta unless given one: the objective's weight and schedule
    apply, and objectives without a KL weight (iwae, ae) train."""
    data = torch.rand(8, *SHAPE)
    model = _model({"name": "elbo", "beta": 4.0, "schedule": {"name": "linear", "warmup_steps": 8}})
    history = pyvae.training.fit(model, data, epochs=2, batch_size=4, seed=0)
    assert int(model.objective.step) == 4
    assert history[-1]["beta"] == pytest.approx(4.0 * 3 / 8)  # the weight of the last step
    iwae = _model({"name": "iwae", "k": 2})
    assert "beta" not in pyvae.training.fit(iwae, data, epochs=1, batch_size=4)[0]
    ae = pyvae.build("ae", input_shape=SHAPE, hidden_dims=(8,))
    assert pyvae.training.fit(ae, data, epochs=1, batch_size=4)[0]["train_kl"] == 0.0


@pytest.mark.parametrize("posterior", ["full_gaussian", "planar", "iaf"])
def test_families_without_per_dimension_terms_are_refused_at_build(posterior: str) -> None:
    with pytest.raises(pyvae.ConfigError, match="posterior: objective 'beta_tc' needs a diagonal"):
        _model({"name": "beta_tc", "dataset_size": 10}, posterior=posterior)
    with pytest.raises(pyvae.ConfigError, match="free_bits: needs a per-dimension KL"):
        _model({"name": "elbo", "free_bits": 0.5}, posterior=posterior)
    for objective in ({"name": "mmd"}, {"name": "iwae", "k": 2}):  # these serve any density
        model = _model(objective, posterior=posterior)
        x = torch.rand(3, *SHAPE)
        model.loss(x, model(x)).loss.backward()
