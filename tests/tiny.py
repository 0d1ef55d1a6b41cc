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
    return pyvae.build(
        name,
        likelihood=likelihood_spec(likelihood),
        prior={"name": prior, **PRIOR_CONFIG.get(prior, {})},
        **config,
    )


def pairs() -> Iterator[tuple[str, str, str]]:
    """Every (model, likelihood) pair with the default prior and every (model, prior) pair with
    the default likelihood."""
    for model in pyvae.list_models():
        for likelihood in pyvae.list_likelihoods():
            yield model, likelihood, "normal"
        for prior in pyvae.list_priors():
            if prior != "normal":
                yield model, "bernoulli", prior
