"""Tiny models for the tests that run over every model x likelihood x prior (amp, compile,
devices) and over every family (compile, DDP): one place for their configurations, taken from
the conformance kit (:mod:`pyvae.testing`), so that parts registered later get small sizes too."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pyvae
from pyvae.testing import SMALL_MODEL_CONFIGS, NotApplicable, small_model, small_spec

SHAPE = (1, 8, 8)
# A registered model not listed here is built with the kit's small sizes it accepts.
TINY: dict[str, dict[str, Any]] = SMALL_MODEL_CONFIGS


def likelihood_spec(name: str) -> str | dict[str, Any]:
    """The likelihood by name, with a learned per-dimension scale where it has one."""
    spec = small_spec(pyvae.LIKELIHOODS, name)
    return name if spec == {"name": name} else spec


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
        config["prior"] = small_spec(pyvae.PRIORS, prior)
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


def _first_applicable(**parts: Any) -> dict[str, Any] | None:
    """The config of the first model (mlp first) that accepts ``parts``, or None if every
    model refuses them with a ConfigError (tests/test_conformance.py fails then)."""
    for name in sorted(pyvae.list_models(), key=lambda m: (m != "mlp", m)):
        try:
            return small_model(name, **parts).config
        except NotApplicable:
            continue
    return None


def _objective_for(posterior: str) -> str | None:
    return "ae" if pyvae.POSTERIORS.get(posterior).deterministic else None


def family_configs() -> list[dict[str, Any]]:
    """Configs (``pyvae.build(config)``) of every family: each posterior family and each
    objective in the first model that takes it, and each model conditional (``num_classes=3``)
    where it accepts labels. Parts registered later are included automatically."""
    configs = []
    for posterior in pyvae.list_posteriors():
        configs.append(_first_applicable(posterior=posterior, objective=_objective_for(posterior)))
    for objective in pyvae.list_objectives():
        configs.append(_first_applicable(objective=objective))
    for model in pyvae.list_models():
        try:
            configs.append(small_model(model, num_classes=3).config)
        except NotApplicable:
            continue
    return _unique(configs)


def _unique(configs: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    seen, unique = set(), []
    for config in configs:
        if not config:
            continue
        key = family_id(config)
        if key not in seen:
            seen.add(key)
            unique.append(config)
    return unique


def family_covering() -> list[dict[str, Any]]:
    """Fewer configs in which every posterior family and every objective still appears, with
    and without labels: row i pairs the i-th posterior with the i-th objective (cyclically),
    conditional on odd rows; a pair refused at build time is split into two rows. (The
    objectives go in reverse order; which flow meets the multi-sample ``iwae`` in one row, the
    costliest compilation, depends on the registries.)"""
    posteriors, objectives = pyvae.list_posteriors(), pyvae.list_objectives()[::-1]
    rows: list[dict[str, Any] | None] = []
    for i in range(max(len(posteriors), len(objectives))):
        posterior, objective = posteriors[i % len(posteriors)], objectives[i % len(objectives)]
        labels = 3 if i % 2 else None
        config = _first_applicable(posterior=posterior, objective=objective, num_classes=labels)
        if config is None:
            config = _first_applicable(posterior=posterior, objective=_objective_for(posterior))
            rows.append(_first_applicable(objective=objective, num_classes=labels))
        rows.append(config)
    return _unique(rows)


def family_id(config: dict[str, Any]) -> str:
    """A short test id: the model, its posterior and objective, ``y`` if conditional."""

    def name(spec: Any) -> str:
        return spec["name"] if isinstance(spec, dict) else str(spec)

    backbone = config.get("backbone")
    parts = [config["name"]] + ([name(backbone)] if backbone else [])
    # a wrapper's config holds its backbone's whole config (or, given by hand, its arguments)
    merged = {**(backbone if isinstance(backbone, dict) else {}), **config}
    for key in ("posterior", "objective"):
        if key in merged:
            parts.append(f"{key[:3]}={name(merged[key])}")
    if merged.get("num_classes"):
        parts.append("y")
    return "-".join(parts)
