"""Hypothesis strategies for testing pyvae parts: shapes, sizes and small model configs.

Needs ``hypothesis`` (``pip install "pyvae[testing]"``); pyvae itself never imports this module.
Each strategy draws values, not only seeds, so a property is tried on many shapes::

    import pyvae
    from hypothesis import given
    from pyvae.testing import check_model
    from pyvae.testing.strategies import model_configs

    @given(model_configs(names=["my_model"]))
    def test_my_model(config):
        try:
            model = pyvae.build(config)
        except pyvae.ConfigError:
            return  # a part refused the combination, clearly
        check_model(model, save=False)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from pyvae.likelihoods import LIKELIHOODS
from pyvae.models import MODELS
from pyvae.objectives import OBJECTIVES
from pyvae.posteriors import POSTERIORS
from pyvae.priors import PRIORS
from pyvae.registry import Registry
from pyvae.testing import SMALL_MODEL_CONFIGS, SMALL_PART_ARGUMENTS, small_spec

__all__ = [
    "batch_sizes",
    "flat_shapes",
    "image_shapes",
    "input_shapes",
    "latent_dims",
    "model_configs",
    "part_specs",
]


def latent_dims(max_value: int = 4) -> st.SearchStrategy[int]:
    """Latent sizes D in ``[1, max_value]``."""
    return st.integers(1, max_value)


def batch_sizes(min_value: int = 2, max_value: int = 5) -> st.SearchStrategy[int]:
    """Batch sizes B in ``[min_value, max_value]`` (at least 2: some checks compare examples)."""
    return st.integers(min_value, max_value)


def image_shapes(max_channels: int = 3, max_side: int = 9) -> st.SearchStrategy[tuple[int, ...]]:
    """Image shapes ``(C, H, W)``, sides in ``[2, max_side]`` (not necessarily square or even)."""
    side = st.integers(2, max_side)
    return st.tuples(st.integers(1, max_channels), side, side)


def flat_shapes(max_features: int = 12) -> st.SearchStrategy[tuple[int, ...]]:
    """Flat (tabular) shapes ``(F,)`` with F in ``[1, max_features]``."""
    return st.tuples(st.integers(1, max_features))


def input_shapes(*, images_only: bool = False) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes of one example: images ``(C, H, W)``, and flat ``(F,)`` unless ``images_only``."""
    return image_shapes() if images_only else st.one_of(image_shapes(), flat_shapes())


def part_specs(
    registry: Registry[Any], names: Sequence[str] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Small config dicts (see :func:`pyvae.testing.small_spec`) of the registered parts
    ``names`` of ``registry`` (default: all of them)."""
    return st.sampled_from(list(names) if names is not None else registry.names()).map(
        lambda name: small_spec(registry, name)
    )


def _needs_images(name: str) -> bool:
    accepted = set(inspect.signature(MODELS.get(name)).parameters)
    config = SMALL_MODEL_CONFIGS.get(name, {})
    return "channels" in accepted or config.get("backbone") not in (None, "mlp")


@st.composite
def _model_config(
    draw: st.DrawFn, names: Sequence[str], conditional: bool, parts: bool
) -> dict[str, Any]:
    name = draw(st.sampled_from(list(names)))
    cls = MODELS.get(name)
    params = inspect.signature(cls).parameters
    accepts_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = set(params)
    small = SMALL_MODEL_CONFIGS.get(name)
    if small is None:
        small = {k: v for k, v in SMALL_PART_ARGUMENTS.items() if k in accepted}
    config: dict[str, Any] = {
        "name": name,
        "input_shape": draw(input_shapes(images_only=_needs_images(name))),
        "latent_dim": draw(latent_dims()),
        **small,
    }
    choices: list[tuple[str, st.SearchStrategy[Any]]] = [
        ("num_classes", st.sampled_from([None, 2, 3]) if conditional else st.just(None))
    ]
    if parts:
        choices += [
            ("posterior", part_specs(POSTERIORS)),
            ("likelihood", part_specs(LIKELIHOODS)),
            ("prior", part_specs(PRIORS)),
            ("objective", part_specs(OBJECTIVES)),
        ]
    for key, strategy in choices:
        if accepts_all or key in accepted:
            value = draw(st.one_of(st.none(), strategy))
            if value is not None:
                config[key] = value
    return config


def model_configs(
    names: Sequence[str] | None = None, *, conditional: bool = True, parts: bool = True
) -> st.SearchStrategy[dict[str, Any]]:
    """Config dicts for ``pyvae.build(config)``: a registered model (of ``names``, default all)
    with small networks, a drawn input shape (images for convolutional backbones), latent size
    and, where the model takes them, ``num_classes`` (``conditional``) and registered parts
    (``parts``: posterior, likelihood, prior, objective, each sometimes left to the default).

    Some drawn combinations are refused by a part with a :class:`pyvae.ConfigError` at build
    time (e.g. the VampPrior in a conditional model); treat that as "not applicable".
    """
    chosen = list(names) if names is not None else MODELS.names()
    return _model_config(chosen, conditional, parts)
