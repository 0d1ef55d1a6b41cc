"""The cross product of models, likelihoods and priors: any component works with any model, with
no change to the model classes. Small configs, so that the 3 x 6 x 4 combinations stay fast."""

from __future__ import annotations

from typing import Any

import pytest

import pyvae
from pyvae import testing
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


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("model_name", MODELS)
def test_contract(model_name: str, likelihood: str, prior: str) -> None:
    model = build(model_name, likelihood, prior)
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

    # The conformance kit: the loss's shapes, finite, gradients through the sample to every
    # parameter; the same for the IWAE bound; log_likelihood, sample, reconstruct; the learned
    # state saved and rebuilt with the config (prior log-density, likelihood in the loss,
    # reconstructions identical), through a checkpoint file too.
    testing.check_model(model)
