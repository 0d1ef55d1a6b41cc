"""Posterior families q(z|x), as swappable components.

A posterior *head* maps the encoder's features ``h`` (shape (B, in_features)) to a
``torch.distributions.Distribution`` with batch shape (B,), event shape (latent_dim,), a
reparameterised ``rsample`` and an exact ``log_prob``. Every built-in backbone takes
``posterior=`` (a name, a config dict or an instance) and builds its head with
``in_features`` and ``latent_dim``; the KL term falls back to Monte Carlo by itself where a family
has no closed form, and :func:`pyvae.log_likelihood` works unchanged.

Registered here: ``gaussian`` (diagonal, the default) and ``point`` (a point mass: the
deterministic autoencoder); in submodules ``full_gaussian`` (full covariance through a Cholesky
factor, :mod:`pyvae.posteriors.full_gaussian`) and the normalizing flows ``planar`` and ``iaf``
(:mod:`pyvae.posteriors.flows`). Register a new one with :func:`register_posterior`.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
from torch import nn
from torch.distributions import Distribution, TransformedDistribution, constraints

from pyvae.config import Configurable, check_positive_int
from pyvae.kl import DiagonalNormal
from pyvae.registry import Registry

__all__ = [
    "POSTERIORS",
    "DiagonalGaussianHead",
    "PointMass",
    "PointMassHead",
    "PosteriorHead",
    "latent_point",
    "list_posteriors",
    "register_posterior",
]

LOG_VAR_MIN, LOG_VAR_MAX = -30.0, 20.0


class PosteriorHead(Configurable, nn.Module, abc.ABC):
    """Base class of posterior heads: features ``h`` (B, in_features) -> q(z|x).

    Args:
        in_features: the width of the encoder's features (given by the backbone).
        latent_dim: the size D of the latent space (given by the backbone).
    """

    #: True for heads whose posterior is a point (no density): models built with them have no
    #: likelihood bound and sample only through a fitted sampler.
    deterministic: ClassVar[bool] = False

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)

    @abc.abstractmethod
    def forward(self, h: torch.Tensor) -> Distribution:
        """q(z|x) from features of shape (B, in_features): batch shape (B,), event shape
        (latent_dim,), with ``rsample``."""


POSTERIORS: Registry[PosteriorHead] = Registry("posterior", PosteriorHead, "pyvae.posteriors")
register_posterior = POSTERIORS.register


def list_posteriors(pattern: str | None = None) -> list[str]:
    """Registered posterior names, sorted, optionally filtered by an fnmatch wildcard."""
    return POSTERIORS.names(pattern)


@register_posterior("gaussian")
class DiagonalGaussianHead(PosteriorHead):
    """A diagonal Gaussian q(z|x) = N(loc, diag(scale^2)), the default.

    One linear layer outputs ``loc`` and a log-variance, clamped to [-30, 20] before
    ``scale = exp(log_var / 2)``, so extreme encoder outputs give a finite, positive scale
    (between about 3e-7 and 2.2e4) instead of 0, inf or NaN. Its KL to the normal and learned
    normal priors is closed-form.
    """

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__(in_features, latent_dim)
        self.linear = nn.Linear(in_features, 2 * latent_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        """A :class:`pyvae.kl.DiagonalNormal` (an ``Independent(Normal(loc, scale), 1)`` that
        keeps its log-scale for the KL): batch shape (B,), event (latent_dim,)."""
        loc, log_var = self.linear(h).chunk(2, dim=-1)
        log_scale = 0.5 * log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)
        return DiagonalNormal(loc, log_scale.exp(), log_scale=log_scale)


class PointMass(Distribution):
    """A point mass at ``loc`` (shape (B, D)): the posterior of a deterministic autoencoder.

    ``rsample`` returns ``loc`` (gradients flow to it); ``mean`` is ``loc``. It has no density,
    so ``log_prob`` raises: a model with a point-mass posterior has no ELBO or likelihood bound.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {"loc": constraints.real}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor, validate_args: bool | None = False) -> None:
        self.loc = loc
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> torch.Tensor:
        return self.loc.expand(*sample_shape, *self.loc.shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "a point-mass posterior (a deterministic autoencoder) has no density: log q(z|x), "
            "the KL term and likelihood bounds are undefined; train it with objective='ae' and "
            "sample from it with a fitted sampler"
        )


@register_posterior("point")
class PointMassHead(PosteriorHead):
    """A deterministic code z = W h + b, as a :class:`PointMass` (the autoencoder's posterior)."""

    deterministic = True

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__(in_features, latent_dim)
        self.linear = nn.Linear(in_features, latent_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        """A :class:`PointMass` at the code, batch shape (B,), event (latent_dim,)."""
        return PointMass(self.linear(h))


def latent_point(posterior: Distribution) -> torch.Tensor:
    """The deterministic point of a posterior, shape (B, latent_dim): what ``reconstruct``,
    latent maps and samplers use.

    Its mean where the family has one in closed form (Gaussians, point masses); for a flow (a
    ``TransformedDistribution``) the base distribution's point pushed through the transforms,
    which is not the flow's mean in general.
    """
    if isinstance(posterior, TransformedDistribution):
        z = latent_point(posterior.base_dist)
        for transform in posterior.transforms:
            z = transform(z)
        return z
    return posterior.mean


# the families in submodules register themselves on import
from pyvae.posteriors import flows, full_gaussian  # noqa: E402, F401
