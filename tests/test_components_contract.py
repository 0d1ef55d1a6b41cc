"""The cross product of models, likelihoods and priors: any component works with any model, with
no change to the model classes. Small configs, so that the 3 x 6 x 4 combinations stay fast."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import pyvae
from tests.tiny import takes_prior

SHAPE = (1, 8, 8)
MODELS: dict[str, dict[str, Any]] = {
    "mlp": {"name": "mlp", "hidden_dims": (16,)},
    "conv": {"name": "conv", "channels": (4,), "hidden_dim": 16},
    "denoising": {"name": "denoising", "backbone": "mlp", "hidden_dims": (16,)},
    "ladder": {"name": "ladder", "hidden_dims": (16,), "ladder_dim": 8},
}
LIKELIHOODS: dict[str, dict[str, Any]] = {
    "bernoulli": {"name": "bernoulli"},
    "continuous_bernoulli": {"name": "continuous_bernoulli"},
    "gaussian": {"name": "gaussian", "scale": 0.5},
    "gaussian_global": {"name": "gaussian", "learn_scale": "global"},
    "gaussian_per_dim": {"name": "gaussian", "learn_scale": "per_dim"},
    "laplace_per_dim": {"name": "laplace", "learn_scale": "per_dim", "scale": 0.3},
}
PRIORS: dict[str, dict[str, Any]] = {
    "normal": {"name": "normal"},
    "learned_normal": {"name": "learned_normal"},
    "mog": {"name": "mog", "n_components": 3},
    "vamp": {"name": "vamp", "n_components": 4},
}


def test_every_registered_component_is_covered() -> None:
    assert {m for m in pyvae.list_models() if takes_prior(m)} <= set(MODELS)
    assert set(pyvae.list_likelihoods()) <= {c["name"] for c in LIKELIHOODS.values()}
    assert set(pyvae.list_priors()) <= {c["name"] for c in PRIORS.values()}


def build(model: str, likelihood: str, prior: str) -> pyvae.BaseVAE:
    return pyvae.build(
        MODELS[model],
        input_shape=SHAPE,
        latent_dim=3,
        likelihood=LIKELIHOODS[likelihood],
        prior=PRIORS[prior],
    )


def assert_every_parameter_has_a_gradient(model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient"


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("model_name", MODELS)
def test_contract(model_name: str, likelihood: str, prior: str) -> None:
    model = build(model_name, likelihood, prior)
    x = torch.rand(4, *SHAPE)
    params = dict(model.named_parameters())
    for component, names in (
        ("likelihood", ["raw_scale"] if "learn_scale" in LIKELIHOODS[likelihood] else []),
        (
            "prior",
            {"learned_normal": ["loc"], "mog": ["logits"], "vamp": ["pseudo_inputs"]}.get(
                prior, []
            ),
        ),
    ):
        for name in names:  # learned component parameters are the model's parameters
            assert any(k.endswith(f"{component}.{name}") for k in params), (component, name)

    # The ELBO loss: shapes, finite, gradients through the sample to every parameter.
    terms = model.loss(x, model(x))
    assert terms.recon.shape == terms.kl.shape == (4,)
    assert torch.isfinite(terms.loss)
    terms.loss.backward()
    assert_every_parameter_has_a_gradient(model)

    # The IWAE objective: the same.
    model.zero_grad()
    bound = pyvae.iwae_bound(model, x, 3)
    assert bound.shape == (4,) and torch.isfinite(bound).all()
    (-bound.mean()).backward()
    assert_every_parameter_has_a_gradient(model)

    # Evaluation, sampling, reconstruction.
    log_px = model.log_likelihood(x, k=4, chunk_size=8)
    assert log_px.shape == (4,) and torch.isfinite(log_px).all()
    assert model.sample(2).shape == (2, *SHAPE)
    assert model.reconstruct(x).shape == x.shape

    # The learned state is saved and rebuilt with the config.
    model.eval()
    rebuilt = pyvae.build(model.config)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    z = torch.randn(5, 3)
    torch.testing.assert_close(
        rebuilt.prior_distribution().log_prob(z), model.prior_distribution().log_prob(z)
    )
    params_x = model.decode(z[:4])
    torch.testing.assert_close(
        rebuilt.likelihood.log_prob(x, params_x), model.likelihood.log_prob(x, params_x)
    )
