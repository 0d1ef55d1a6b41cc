"""Building models by name: :func:`build` and :func:`list_models`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyvae.models import MODELS, BaseVAE

__all__ = ["build", "list_models"]


def build(name: str | Mapping[str, Any], **config: Any) -> BaseVAE:
    """Build a registered model by name, or rebuild one from its ``model.config``.

    Keyword arguments that are ``None`` are dropped, so a caller's "not given" never overrides a
    model default. Unknown names raise :class:`pyvae.UnknownNameError` (a ``ValueError``) naming
    close matches; invalid arguments raise :class:`pyvae.ConfigError`.

    Example:
        >>> import pyvae
        >>> model = pyvae.build("conv", latent_dim=4)
        >>> same = pyvae.build(model.config)
    """
    if isinstance(name, BaseVAE):
        raise TypeError("build: expected a model name or config dict, got a model instance")
    return MODELS.build(name, **config)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by an fnmatch wildcard (``"*conv*"``)."""
    return MODELS.names(pattern)
