"""Priors p(z) over the latent space, as swappable components.

A prior is a module whose ``forward()`` builds a ``torch.distributions.Distribution`` with event
shape (latent_dim,) from its buffers and parameters on every call, so that ``.to(device)``,
``state_dict`` and optimisers just work. Register a new one with :func:`register_prior`; choose it
by name or instance when building a model (``pyvae.build("mlp", prior="normal")``).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from pyvae.config import Configurable
from pyvae.registry import Registry

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE

__all__ = ["PRIORS", "Prior", "StandardNormalPrior", "list_priors", "register_prior"]


class Prior(Configurable, nn.Module, abc.ABC):
    """Base class of priors p(z). Subclasses create their tensors in :meth:`attach`."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim = 0

    def attach(self, model: BaseVAE) -> None:
        """Called once by the model that owns this prior, with ``latent_dim`` and ``input_shape``
        set (the encoder is not built yet). Create parameters and buffers here."""
        self.latent_dim = model.latent_dim

    @abc.abstractmethod
    def forward(self) -> Distribution:
        """p(z): batch shape (), event shape (latent_dim,)."""

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples of shape (n, latent_dim), reproducible when a ``generator`` is given.

        With a generator, a seed drawn from it seeds a forked global RNG, so the global random
        state is left untouched and the same generator state gives the same samples.
        """
        dist = self()
        if generator is None:
            return dist.sample((n,))
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        device = dist.sample((0,)).device  # where the prior lives
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            return dist.sample((n,))


PRIORS: Registry[Prior] = Registry("prior", Prior, "pyvae.priors")
register_prior = PRIORS.register


def list_priors(pattern: str | None = None) -> list[str]:
    """Registered prior names, sorted, optionally filtered by an fnmatch wildcard."""
    return PRIORS.names(pattern)


@register_prior("normal")
class StandardNormalPrior(Prior):
    """The standard normal N(0, I), the default; its KL to a diagonal Gaussian is closed-form."""

    loc: torch.Tensor
    scale: torch.Tensor

    def attach(self, model: BaseVAE) -> None:
        super().attach(model)
        self.register_buffer("loc", torch.zeros(self.latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(self.latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)
