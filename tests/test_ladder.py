"""The Ladder VAE against independent computations: one layer is the plain VAE; the merged
Gaussians, log q(z|x) and log p(z) against numpy/scipy from the weights; per-layer KLs against
the Gaussian formula and their sum; log p(x) against numerical integration over the hierarchy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm

import pyvae
from pyvae.models.ladder import HierarchicalPrior, LadderPosterior, precision_weighted

SHAPE = (1, 8, 8)


def tiny(**config: object) -> pyvae.BaseVAE:
    base = {"input_shape": SHAPE, "hidden_dims": (16,), "ladder_dim": 8}
    return pyvae.build("ladder", **{**base, **config})


def test_one_layer_is_the_plain_vae() -> None:
    plain = pyvae.build("mlp", input_shape=SHAPE, latent_dim=3, hidden_dims=(16,))
    ladder = tiny(latent_dims=(3,))
    state = {k.replace("head.linear", "q_heads.0"): v for k, v in plain.state_dict().items()}
    ladder.load_state_dict(state)
    x = torch.rand(6, *SHAPE)
    torch.manual_seed(5)
    a = plain.loss(x, out_a := plain(x))
    torch.manual_seed(5)
    b = ladder.loss(x, out_b := ladder(x))
    torch.testing.assert_close(out_b.z, out_a.z)
    for name in ("loss", "recon", "kl"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name))
    torch.testing.assert_close(b.kl_layers[:, 0], a.kl)
    z = torch.randn(4, 6, 3)
    torch.testing.assert_close(out_b.posterior.log_prob(z), out_a.posterior.log_prob(z))
    torch.testing.assert_close(
        ladder.prior_distribution().log_prob(z), plain.prior_distribution().log_prob(z)
    )
    torch.manual_seed(1)
    iw_a = pyvae.log_likelihood(plain, x, k=64)
    torch.manual_seed(1)
    torch.testing.assert_close(pyvae.log_likelihood(ladder, x, k=64), iw_a)


def test_precision_weighting_against_the_formula() -> None:
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 3, size=5), rng.uniform(0.1, 3, size=5)
    loc, scale = precision_weighted(*(torch.from_numpy(a) for a in (m1, s1, m2, s2)))
    var = 1 / (1 / s1**2 + 1 / s2**2)
    np.testing.assert_allclose(scale.numpy() ** 2, var, rtol=1e-12)
    np.testing.assert_allclose(loc.numpy(), var * (m1 / s1**2 + m2 / s2**2), rtol=1e-12)
    # the product of the two densities is proportional to the merged one
    z = rng.normal(size=(7, 5))
    ratio = (
        norm.logpdf(z, m1, s1) + norm.logpdf(z, m2, s2) - norm.logpdf(z, loc.numpy(), scale.numpy())
    )
    np.testing.assert_allclose(ratio - ratio[0], 0, atol=1e-10)


def _numpy_ladder(model: pyvae.BaseVAE, x: np.ndarray):
    """The bottom-up Gaussians and the top-down conditionals from the weights, in numpy."""
    w = {k: v.double().numpy() for k, v in model.state_dict().items()}

    def lin(name: str, h: np.ndarray) -> np.ndarray:
        return h @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    def gauss(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        loc, log_var = np.split(out, 2, axis=-1)
        return loc, np.exp(0.5 * np.clip(log_var, -30, 20))

    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    d = relu(lin("encoder.1.0", x.reshape(len(x), -1)))
    bottom_up = [gauss(lin("q_heads.0", d))]
    for i in range(len(model.latent_dims) - 1):
        d = relu(lin(f"up.{i}.0", d))
        bottom_up.append(gauss(lin(f"q_heads.{i + 1}", d)))

    def top_down(i: int, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return gauss(lin(f"p_nets.{i}.2", relu(lin(f"p_nets.{i}.0", upper))))

    return bottom_up, top_down


def test_log_q_log_p_and_layer_kls_against_numpy() -> None:
    model = tiny(latent_dims=(3, 2, 2)).double()
    x = torch.rand(4, *SHAPE, dtype=torch.float64)
    out = model(x)
    bottom_up, top_down = _numpy_ladder(model, x.numpy())
    z = out.z.detach().numpy()
    z1, z2, z3 = z[:, :3], z[:, 3:5], z[:, 5:]
    # merged posterior parameters per layer, and the exact log q(z|x), log p(z)
    log_q = norm.logpdf(z3, *bottom_up[2]).sum(1)
    log_p = norm.logpdf(z3).sum(1)
    expected_kl = []
    for i, (lower, upper) in ((1, (z2, z3)), (0, (z1, z2))):
        mp, sp = top_down(i, upper)
        mh, sh = bottom_up[i]
        var = 1 / (1 / sh**2 + 1 / sp**2)
        mq, sq = var * (mh / sh**2 + mp / sp**2), np.sqrt(var)
        loc, scale = out.posterior.layer(i, torch.from_numpy(upper))
        np.testing.assert_allclose(loc.detach().numpy(), mq, rtol=1e-10)
        np.testing.assert_allclose(scale.detach().numpy(), sq, rtol=1e-10)
        log_q += norm.logpdf(lower, mq, sq).sum(1)
        log_p += norm.logpdf(lower, mp, sp).sum(1)
        kl = (np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5).sum(1)
        expected_kl.insert(0, kl)
    mh, sh = bottom_up[2]
    expected_kl.append((-np.log(sh) + (sh**2 + mh**2) / 2 - 0.5).sum(1))
    np.testing.assert_allclose(out.posterior.log_prob(out.z).detach().numpy(), log_q, rtol=1e-10)
    np.testing.assert_allclose(
        model.prior_distribution().log_prob(out.z).detach().numpy(), log_p, rtol=1e-10
    )
    terms = model.loss(x, out)
    np.testing.assert_allclose(
        terms.kl_layers.detach().numpy(), np.stack(expected_kl, 1), rtol=1e-10
    )
    torch.testing.assert_close(terms.kl, terms.kl_layers.sum(1))
    torch.testing.assert_close(terms.loss, (terms.recon + terms.kl).mean())
    # the Monte Carlo per-layer terms sum to log q(z|x) - log p(z) at the same sample
    mc = model.kl_layers(out, method="monte_carlo").sum(1).detach().numpy()
    np.testing.assert_allclose(mc, log_q - log_p, rtol=1e-9)


def test_the_per_layer_kl_is_an_unbiased_estimate_of_the_total_kl() -> None:
    model = tiny(latent_dims=(2, 1)).double()
    x = torch.rand(1, *SHAPE, dtype=torch.float64).expand(20_000, *SHAPE)
    with torch.no_grad():
        out = model(x)
        closed = model.kl(out).mean()
        mc_samples = model.kl(out, method="monte_carlo")
    mc = mc_samples.mean()
    assert abs(float(closed - mc)) < 4 * float(mc_samples.std()) / math.sqrt(20_000)


def test_log_likelihood_against_numerical_integration_over_the_hierarchy() -> None:
    model = tiny(latent_dims=(1, 1)).double().eval()
    x = (torch.rand(2, *SHAPE, dtype=torch.float64) > 0.5).double()
    grid = np.linspace(-7, 7, 351)
    step = grid[1] - grid[0]
    z1, z2 = np.meshgrid(grid, grid, indexing="ij")
    z = torch.from_numpy(np.stack([z1.ravel(), z2.ravel()], 1))
    with torch.no_grad():
        log_prior = model.prior_distribution().log_prob(z).numpy()
        params = model.decode(z)
        for i in range(2):
            log_px_z = model.likelihood.log_prob(x[i].expand(len(z), *SHAPE), params).numpy()
            exact = logsumexp(log_px_z + log_prior) + 2 * math.log(step)
            torch.manual_seed(i)
            estimate = float(pyvae.log_likelihood(model, x[i : i + 1], k=4000))
            assert abs(estimate - exact) < 0.05, (estimate, exact)


def test_sampling_runs_the_generative_path_and_distributions_check_shapes() -> None:
    model = tiny(latent_dims=(3, 2))
    prior = model.prior_distribution()
    assert isinstance(prior, HierarchicalPrior) and prior.event_shape == (5,)
    g = torch.Generator().manual_seed(0)
    a = model.sample(4, generator=g)
    assert a.shape == (4, *SHAPE)
    assert torch.equal(model.sample(4, generator=torch.Generator().manual_seed(0)), a)
    z = prior.sample((50_000,))
    assert abs(float(z[:, 3:].mean())) < 0.02 and abs(float(z[:, 3:].std()) - 1) < 0.02
    posterior = model.encode(torch.rand(2, *SHAPE))
    assert isinstance(posterior, LadderPosterior)
    assert posterior.rsample((7,)).shape == (7, 2, 5)
    with pytest.raises(
        ValueError, match=r"z: expected a last dimension of 5 \(the layers \(3, 2\)\)"
    ):
        posterior.log_prob(torch.zeros(2, 4))


@pytest.mark.parametrize(
    "prior",
    ["learned_normal", {"name": "mog", "n_components": 2}, {"name": "vamp", "n_components": 3}],
)
def test_top_layer_priors_and_the_conv_backbone(prior: object) -> None:
    model = pyvae.build(
        "ladder",
        input_shape=SHAPE,
        latent_dims=(3, 2),
        backbone="conv",
        channels=(4,),
        hidden_dim=8,
        ladder_dim=8,
        prior=prior,
    )
    assert model.prior.latent_dim == 2  # the top layer's
    x = torch.rand(3, *SHAPE)
    terms = model.loss(x, model(x))
    terms.loss.backward()
    assert terms.kl_layers.shape == (3, 2)
    assert all(p.grad is not None for p in model.parameters())
    assert torch.isfinite(pyvae.log_likelihood(model, x, k=8)).all()


def test_configs_are_checked() -> None:
    assert tiny(latent_dim=5).latent_dims == (3, 2)
    assert tiny().latent_dims == (32, 16) and tiny().latent_dim == 48
    with pytest.raises(pyvae.ConfigError, match=r"latent_dim: expected sum\(latent_dims\) = 5"):
        tiny(latent_dims=(3, 2), latent_dim=4)
    with pytest.raises(pyvae.ConfigError, match="latent_dims"):
        tiny(latent_dims=(3, 0))
    with pytest.raises(pyvae.ConfigError, match="backbone: expected 'mlp' or 'conv'"):
        tiny(backbone="resnet")
    with pytest.raises(
        pyvae.ConfigError, match="latent_dim=3 does not match the model's latent_dim=2"
    ):
        tiny(latent_dims=(3, 2), prior={"name": "normal", "latent_dim": 3})
    model = tiny(latent_dims=(3, 2), num_classes=2)
    x, y = torch.rand(2, *SHAPE), torch.tensor([0, 1])
    assert model.loss(x, model(x, y)).kl_layers.shape == (2, 2)
    assert model.sample(2, y=y).shape == (2, *SHAPE)
    rebuilt = pyvae.build(model.config)
    assert rebuilt.latent_dims == (3, 2)
