"""The posterior families: full_gaussian (KL against numpy), the planar and IAF flows (log_prob
against the change-of-variables formula with an autograd Jacobian), and every family inside the
mlp and conv backbones (gradients, log-likelihood, save/load, torch.compile)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch._dynamo
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.distributions import MultivariateNormal, TransformedDistribution

import pyvae
from pyvae.posteriors import latent_point
from pyvae.posteriors.flows import IAFHead, PlanarHead, PlanarTransform
from pyvae.posteriors.full_gaussian import FullGaussianHead

SHAPE = (1, 8, 8)
FAMILIES: dict[str, Any] = {
    "gaussian": "gaussian",
    "full_gaussian": "full_gaussian",
    "planar": {"name": "planar", "n_steps": 2},
    "iaf": {"name": "iaf", "n_steps": 2, "hidden": 12, "context": 6},
}
BACKBONES: dict[str, dict[str, Any]] = {
    "mlp": {"hidden_dims": (16,)},
    "conv": {"channels": (4,), "hidden_dim": 8},
}

finite = st.floats(-2.0, 2.0, allow_nan=False, width=64)
# flow parameters: 0 or of magnitude >= 0.01 (a w of norm 1e-100 makes u_hat ~1e100: the planar
# step then rounds z away in float64 itself, and no inverse can recover it; see PlanarTransform)
flow_param = st.one_of(
    st.just(0.0), st.floats(0.01, 2.0, width=64), st.floats(-2.0, -0.01, width=64)
)


def matrices(b: int, d: int, n: int) -> st.SearchStrategy[np.ndarray]:
    return arrays(np.float64, (b, d, n), elements=finite)


# -- full_gaussian ---------------------------------------------------------------------------
def numpy_kl(mq: np.ndarray, lq: np.ndarray, mp: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """KL(N(mq, lq lq^T) || N(mp, diag sp^2)) per row, from the textbook formula with numpy's
    inverse and log-determinants."""
    out = []
    for m, low in zip(mq, lq, strict=True):
        cov_q, cov_p = low @ low.T, np.diag(sp**2)
        inv_p = np.linalg.inv(cov_p)
        diff = mp - m
        _, logdet_q = np.linalg.slogdet(cov_q)
        _, logdet_p = np.linalg.slogdet(cov_p)
        d = len(m)
        out.append(0.5 * (np.trace(inv_p @ cov_q) + diff @ inv_p @ diff - d + logdet_p - logdet_q))
    return np.array(out)


@st.composite
def full_gaussian_case(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    b, d = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    loc = draw(arrays(np.float64, (b, d), elements=finite))
    lower = np.tril(draw(matrices(b, d, d)), -1)
    diag = np.exp(draw(arrays(np.float64, (b, d), elements=st.floats(-1.5, 1.5, width=64))))
    tril = lower + np.stack([np.diag(row) for row in diag])
    prior_loc = draw(arrays(np.float64, (d,), elements=finite))
    prior_scale = np.exp(draw(arrays(np.float64, (d,), elements=st.floats(-1, 1, width=64))))
    return loc, tril, prior_loc, prior_scale


@given(full_gaussian_case())
def test_full_gaussian_kl_matches_numpy(case: tuple[np.ndarray, ...]) -> None:
    loc, tril, prior_loc, prior_scale = case
    q = MultivariateNormal(torch.from_numpy(loc), scale_tril=torch.from_numpy(tril))
    d = loc.shape[1]
    standard = pyvae.PRIORS.build({"name": "normal", "latent_dim": d}).double()()
    learned = pyvae.PRIORS.build({"name": "learned_normal", "latent_dim": d}).double()
    with torch.no_grad():
        learned.loc.copy_(torch.from_numpy(prior_loc))
        learned.log_scale.copy_(torch.from_numpy(np.log(prior_scale)))
    kl_std = pyvae.kl_divergence(q, standard, method="closed_form")
    kl_learned = pyvae.kl_divergence(q, learned(), method="closed_form")
    np.testing.assert_allclose(
        kl_std.numpy(), numpy_kl(loc, tril, np.zeros(d), np.ones(d)), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        kl_learned.detach().numpy(),
        numpy_kl(loc, tril, prior_loc, prior_scale),
        rtol=1e-9,
        atol=1e-9,
    )
    # pyvae's own prior types (kl.StandardNormal / DiagonalNormal) take the same closed form
    own = pyvae.kl.StandardNormal(torch.zeros(d, dtype=torch.float64), torch.ones(d).double())
    torch.testing.assert_close(pyvae.kl_divergence(q, own, method="closed_form"), kl_std)


def test_full_gaussian_kl_agrees_with_monte_carlo() -> None:
    head = FullGaussianHead(5, 3).double()
    q = head(torch.randn(2, 5, dtype=torch.float64))
    p = pyvae.PRIORS.build({"name": "normal", "latent_dim": 3}).double()()
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    torch.testing.assert_close(pyvae.kl_divergence(q, p), mc, rtol=0.0, atol=0.02)


@given(st.integers(1, 3), st.integers(1, 6))
def test_full_gaussian_head_builds_a_cholesky_factor(batch: int, d: int) -> None:
    head = FullGaussianHead(4, d)
    with torch.no_grad():  # every output of the linear layer distinct
        head.linear.weight.normal_()
    q = head(torch.randn(batch, 4))
    assert isinstance(q, MultivariateNormal)
    assert q.batch_shape == (batch,) and q.event_shape == (d,)
    tril = q.scale_tril
    assert torch.equal(tril, tril.tril())
    assert (tril.diagonal(dim1=-2, dim2=-1) > 0).all()
    rows, cols = torch.tril_indices(d, d, -1)
    below = tril[..., rows, cols]  # the D(D-1)/2 free entries, all used
    assert below.shape[-1] == d * (d - 1) // 2 and (below != 0).all()
    assert q.rsample((7,)).shape == (7, batch, d)
    torch.testing.assert_close(latent_point(q), q.loc)


# -- flows: log_prob against the change of variables with an autograd Jacobian --------------
def flow_reference(q: TransformedDistribution, z0: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(z, log q(z))`` for base points z0 (B, D): z pushed through the transforms, and
    ``log q0(z0) - log|det dz/dz0|`` with the Jacobian from torch.autograd.functional.jacobian
    (the full (B*D) x (B*D) matrix; its off-diagonal blocks must vanish)."""
    b, d = z0.shape

    def push(flat: torch.Tensor) -> torch.Tensor:
        x = flat.view(b, d)
        for transform in q.transforms:
            x = transform._forward(x)[0]  # no cache: an independent pass
        return x.reshape(-1)

    jac = torch.autograd.functional.jacobian(push, z0.reshape(-1)).view(b, d, b, d)
    blocks = torch.stack([jac[i, :, i, :] for i in range(b)])
    off = jac.clone()
    for i in range(b):
        off[i, :, i, :] = 0
    assert torch.equal(off, torch.zeros_like(off))  # example i's z depends on its own z0 only
    log_det = torch.linalg.slogdet(blocks).logabsdet
    return push(z0.reshape(-1)).view(b, d), q.base_dist.log_prob(z0) - log_det


@st.composite
def planar_case(draw: st.DrawFn) -> tuple[int, int, int, list[np.ndarray]]:
    b, d, k = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    params = [draw(arrays(np.float64, (b, d), elements=flow_param)) for _ in range(2 * k)]
    params += [draw(arrays(np.float64, (b,), elements=flow_param)) for _ in range(k)]
    return b, d, k, params


def planar_flow(b: int, d: int, k: int, params: list[np.ndarray]) -> TransformedDistribution:
    t = [torch.from_numpy(p) for p in params]
    base = torch.distributions.Independent(
        torch.distributions.Normal(torch.linspace(-1, 1, b * d).view(b, d).double(), 0.7), 1
    )
    transforms = [PlanarTransform(t[2 * i], t[2 * i + 1], t[2 * k + i]) for i in range(k)]
    return TransformedDistribution(base, transforms)


@given(planar_case(), st.floats(-3, 3, width=64))
def test_planar_log_prob_is_the_change_of_variables(
    case: tuple[int, int, int, list[np.ndarray]], shift: float
) -> None:
    b, d, k, params = case
    q = planar_flow(b, d, k, params)
    for transform in q.transforms:  # the invertibility condition w^T u_hat > -1 holds
        assert (transform.wu > -1).all()
    z0 = torch.randn(b, d, dtype=torch.float64) + shift
    z, expected = flow_reference(q, z0)
    # a z the distribution did not sample: the inverse is a root find
    torch.testing.assert_close(q.log_prob(z.clone()), expected, rtol=1e-9, atol=1e-9)
    x = z.clone()
    for transform in reversed(q.transforms):
        x = transform._inverse(x)
    torch.testing.assert_close(x, z0, rtol=1e-9, atol=1e-9)
    # its own sample: the cached path gives the same value
    sample = q.rsample((5,))
    torch.testing.assert_close(q.log_prob(sample), q.log_prob(sample.clone()), rtol=1e-9, atol=1e-9)


@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(1, 3),
    st.floats(0.1, 2.0),
    arrays(np.float64, (3, 5), elements=finite),
    st.integers(0, 2**16),
)
def test_iaf_log_prob_is_the_change_of_variables(
    b: int, d: int, k: int, weight_scale: float, features: np.ndarray, seed: int
) -> None:
    torch.manual_seed(seed)
    head = IAFHead(5, d, n_steps=k, hidden=7, context=3).double()
    with torch.no_grad():
        for p in head.parameters():
            p.mul_(weight_scale)
    q = head(torch.from_numpy(features[:b]))
    z0 = torch.randn(b, d, dtype=torch.float64)
    z, expected = flow_reference(q, z0)
    torch.testing.assert_close(q.log_prob(z.clone()), expected, rtol=1e-9, atol=1e-9)
    sample = q.rsample((4,))
    assert sample.shape == (4, b, d)
    torch.testing.assert_close(q.log_prob(sample), q.log_prob(sample.clone()), rtol=1e-9, atol=1e-9)


def test_iaf_steps_are_autoregressive_in_alternating_orders() -> None:
    d = 4
    head = IAFHead(5, d, n_steps=2, hidden=16, context=3).double()
    q = head(torch.randn(1, 5, dtype=torch.float64))
    for k, transform in enumerate(q.transforms):
        jac = torch.autograd.functional.jacobian(
            lambda v, t=transform: t._forward(v)[0], q.base_dist.mean
        )
        jac = jac[0, :, 0, :]
        triangle = jac.tril() if k % 2 == 0 else jac.triu()  # order 1..D, then reversed
        torch.testing.assert_close(jac, triangle, rtol=0, atol=0)
        assert (jac.diagonal() > 0).all()
    assert not torch.equal(q.transforms[0].made.in_mask, q.transforms[1].made.in_mask)


@given(arrays(np.float64, (2, 3), elements=st.floats(-50, 50, width=64)))
def test_planar_inverse_of_extreme_parameters(values: np.ndarray) -> None:
    """w^T u down to -7500 (softplus underflows: w^T u_hat = -1, the edge of invertibility) and
    up to 7500: the log-determinant stays finite away from s = 0, and the inverse is backward
    stable (pushing it forward gives y back), however ill-conditioned the step."""
    u, w = torch.from_numpy(values), torch.from_numpy(values[::-1].copy())
    transform = PlanarTransform(u, w, torch.full((2,), 0.5, dtype=torch.float64))
    assert (transform.wu >= -1).all()
    z0 = torch.randn(6, 2, 3, dtype=torch.float64)
    y, log_det = transform._forward(z0)
    assert not torch.isnan(log_det).any()
    back = transform._forward(transform._inverse(y.clone()))[0]
    torch.testing.assert_close(back, y, rtol=1e-9, atol=1e-9 * (1 + float(transform.u.abs().max())))


def test_flow_latent_point_and_shapes() -> None:
    for head in (PlanarHead(5, 3, n_steps=3), IAFHead(5, 3, hidden=8, context=4)):
        q = head(torch.randn(2, 5))
        point = q.base_dist.mean
        for transform in q.transforms:
            point = transform._forward(point)[0]
        torch.testing.assert_close(latent_point(q), point)
        assert q.batch_shape == (2,) and q.event_shape == (3,)
        assert q.rsample().shape == (2, 3) and q.rsample((4, 5)).shape == (4, 5, 2, 3)


@pytest.mark.parametrize(
    ("spec", "argument"),
    [
        ({"name": "planar", "n_steps": 0}, "n_steps"),
        ({"name": "iaf", "hidden": -1}, "hidden"),
        ({"name": "iaf", "n_steps": 1.5}, "n_steps"),
        ({"name": "iaf", "context": True}, "context"),
    ],
)
def test_bad_flow_configs_name_the_argument(spec: dict[str, Any], argument: str) -> None:
    with pytest.raises(pyvae.ConfigError, match=f"{argument}: expected a positive integer"):
        pyvae.build("mlp", input_shape=SHAPE, latent_dim=2, hidden_dims=(8,), posterior=spec)


# -- every family in the mlp and conv backbones -------------------------------------------
def build(backbone: str, family: str, **extra: Any) -> pyvae.BaseVAE:
    return pyvae.build(
        backbone,
        input_shape=SHAPE,
        latent_dim=3,
        posterior=FAMILIES[family],
        **BACKBONES[backbone],
        **extra,
    )


CASES = [(b, f) for b in BACKBONES for f in FAMILIES]


@pytest.mark.parametrize(("backbone", "family"), CASES)
def test_family_trains_evaluates_and_round_trips(backbone: str, family: str) -> None:
    model = build(backbone, family)
    assert pyvae.build(model.config).config == model.config
    x = torch.rand(5, *SHAPE)
    out = model(x)
    terms = model.loss(x, out)
    terms.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    head = [p for n, p in model.named_parameters() if n.startswith("head.")]
    assert head and all(p.grad.abs().sum() > 0 for p in head)  # the posterior head is trained
    log_px = pyvae.log_likelihood(model, x, k=7, chunk_size=10)
    assert log_px.shape == (5,) and torch.isfinite(log_px).all()
    # the ELBO is below the importance-sampled estimate on average over many samples
    with torch.no_grad():
        elbo = pyvae.evaluation.elbo(model, x).mean()
    assert torch.isfinite(elbo)
    # save/load through the config and the state dict: equal outputs
    model.eval()
    rebuilt = pyvae.build(model.config)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    torch.testing.assert_close(rebuilt.reconstruct(x), model.reconstruct(x))
    z = model.encode(x).rsample((3,))
    torch.testing.assert_close(rebuilt.encode(x).log_prob(z), model.encode(x).log_prob(z))


@pytest.mark.parametrize("family", ["full_gaussian", "planar", "iaf"])
def test_family_log_prob_of_an_upcast_copy(family: str) -> None:
    """The loss may evaluate log q at a copy of out.z (float upcast under autocast): the value
    equals the one of the sample itself."""
    model = build("mlp", family)
    x = torch.rand(4, *SHAPE)
    q = model.encode(x)
    z = q.rsample()
    torch.testing.assert_close(q.log_prob(z.double().float()), q.log_prob(z), rtol=1e-4, atol=1e-4)


def test_conditional_flow_model() -> None:
    model = build("conv", "iaf", num_classes=3)
    x, y = torch.rand(4, *SHAPE), torch.tensor([0, 1, 2, 0])
    model.loss(x, model(x, y)).loss.backward()
    assert torch.isfinite(pyvae.log_likelihood(model, x, y=y, k=3)).all()
    assert model.reconstruct(x, y).shape == x.shape


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread", "fresh_dynamo")
@pytest.mark.parametrize(("backbone", "family"), CASES)
def test_family_compiles_fullgraph_and_matches_eager(backbone: str, family: str) -> None:
    model = build(backbone, family)
    x = torch.rand(4, *SHAPE)

    def step(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        terms = model.loss(x, model(x))
        return terms.loss, terms.kl

    results = []
    for fn in (step, torch.compile(step, fullgraph=True, backend="eager")):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        loss, kl = fn(x)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((loss.detach(), kl.detach(), grads))
    (loss_e, kl_e, grads_e), (loss_c, kl_c, grads_c) = results
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(kl_c, kl_e, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads_c, grads_e, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread", "fresh_dynamo")
@pytest.mark.parametrize("family", ["full_gaussian", "planar", "iaf"])
def test_family_inductor_matches_eager(family: str) -> None:
    import torch._inductor.config as inductor_config

    model = build("mlp", family)
    x = torch.rand(4, *SHAPE)

    def step(x: torch.Tensor) -> torch.Tensor:
        return model.loss(x, model(x)).loss

    torch.manual_seed(5)
    eager = step(x)
    with inductor_config.patch(fallback_random=True, compile_threads=1):
        torch.manual_seed(5)
        compiled = torch.compile(step, fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    assert math.isfinite(float(compiled))


@pytest.mark.parametrize("family", ["full_gaussian", "planar", "iaf"])
def test_family_with_one_latent_dimension_trains_every_parameter(family: str) -> None:
    model = pyvae.build(
        "mlp", input_shape=SHAPE, latent_dim=1, hidden_dims=(8,), posterior=FAMILIES[family]
    )
    x = torch.rand(4, *SHAPE)
    model.loss(x, model(x)).loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("backbone", ["mlp", "conv"])
def test_the_backbones_initialisation_keeps_the_heads_deliberate_start(backbone: str) -> None:
    """He initialisation of a backbone's layers must not overwrite a head's chosen start: each
    IAF step starts near the identity (gate bias 1.5, sigmoid 0.82) and the full-covariance head
    starts as the diagonal one. (Overwriting them cost the IAF 4 nats of test NLL on MNIST.)"""
    kwargs = {"input_shape": (1, 8, 8), "latent_dim": 4}
    iaf = pyvae.build(backbone, posterior="iaf", **kwargs)
    for made in iaf.head.steps:
        assert torch.equal(made.out.bias[4:], torch.full((4,), 1.5))
    full = pyvae.build(backbone, posterior="full_gaussian", **kwargs)
    assert not full.head.linear.weight[8:].any() and not full.head.linear.bias[8:].any()
    assert full.head.linear.weight[:8].std() > 0  # the rest was initialised
