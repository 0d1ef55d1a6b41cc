"""Tiny models for the tests that run over every model x likelihood x prior (amp, compile,
devices): one place for their configurations."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pyvae

SHAPE = (1, 8, 8)
# A registered model not listed here is built with its defaults on SHAPE.
TINY: dict[str, dict[str, Any]] = {
    "mlp": {"hidden_dims": (16,)},
    "conv": {"channels": (4,), "hidden_dim": 8},
    "denoising": {"backbone": "mlp", "hidden_dims": (16,)},
    "ae": {"hidden_dims": (16,)},
    "ladder": {"hidden_dims": (16,), "ladder_dim": 8},  # latent_dim 3 -> layers (2, 1)
}
PRIOR_CONFIG: dict[str, dict[str, Any]] = {"vamp": {"n_components": 3}, "mog": {"n_components": 3}}


def likelihood_spec(name: str) -> str | dict[str, Any]:
    """The likelihood by name, with a learned per-dimension scale where it has one."""
    parameters = inspect.signature(pyvae.LIKELIHOODS.get(name).__init__).parameters
    return {"name": name, "learn_scale": "per_dim"} if "learn_scale" in parameters else name


def tiny_model(
    name: str,
    likelihood: str = "bernoulli",
    prior: str = "normal",
    *,
    latent_dim: int = 3,
    **overrides: Any,
) -> pyvae.BaseVAE:
    """A tiny model on (1, 8, 8) inputs; ``overrides`` replace entries of its TINY config."""
    config = {"input_shape": SHAPE, "latent_dim": latent_dim, **TINY.get(name, {}), **overrides}
    if takes_prior(name):
        config["prior"] = {"name": prior, **PRIOR_CONFIG.get(prior, {})}
    return pyvae.build(name, likelihood=likelihood_spec(likelihood), **config)


def vae_models() -> list[str]:
    """The registered models with a prior and a stochastic posterior (the deterministic
    autoencoder ``ae`` has neither; pyvae.testing.check_model covers it)."""
    return [m for m in pyvae.list_models() if takes_prior(m)]


def takes_prior(model: str) -> bool:
    """Whether a model has a prior to choose (the autoencoder has none)."""
    return "prior" in inspect.signature(pyvae.MODELS.get(model).__init__).parameters


def pairs() -> Iterator[tuple[str, str, str]]:
    """Every (model, likelihood) pair with the default prior and every (model, prior) pair with
    the default likelihood."""
    for model in pyvae.list_models():
        for likelihood in pyvae.list_likelihoods():
            yield model, likelihood, "normal"
        for prior in pyvae.list_priors() if takes_prior(model) else []:
            if prior != "normal":
                yield model, "bernoulli", prior
