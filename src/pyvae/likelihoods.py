"""Likelihoods p(x|z): the reconstruction term of the ELBO, as swappable components.

A likelihood turns the decoder's output (``params``, shape (B, *event_shape)) into a distribution
over the data. ``log_prob`` is summed over all data dimensions and returned per example, in nats;
``mean`` is what :meth:`pyvae.BaseVAE.sample` and :meth:`pyvae.BaseVAE.reconstruct` return.
Register a new one with :func:`register_likelihood`; choose it by name or instance when building a
model (``pyvae.build("conv", likelihood="gaussian")``).
"""

from __future__ import annotations

import abc
import math
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, constraints

from pyvae.config import ConfigError, Configurable
from pyvae.registry import Registry
from pyvae.validation import validate_args_enabled

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE

__all__ = [
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "Likelihood",
    "list_likelihoods",
    "register_likelihood",
]


class Likelihood(Configurable, nn.Module, abc.ABC):
    """Base class of likelihoods p(x|z).

    Subclasses define :meth:`distribution` (and ``support``, the constraint the data must meet);
    they may override :meth:`log_prob` and :meth:`mean` with faster direct formulas.
    """

    support: constraints.Constraint = constraints.real

    def __init__(self) -> None:
        super().__init__()
        self.event_shape: tuple[int, ...] = ()

    def attach(self, model: BaseVAE) -> None:
        """Called once by the model that owns this likelihood, with its ``input_shape`` set."""
        self.event_shape = tuple(model.input_shape)

    @abc.abstractmethod
    def distribution(self, params: torch.Tensor) -> Distribution:
        """p(x|z) with batch shape (B,) and event shape ``params.shape[1:]``."""

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)`` in nats, summed over data dimensions, shape (B,)."""
        if validate_args_enabled():
            self.check_support(x)
        return self.distribution(params).log_prob(x)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z), data-shaped (B, *event_shape)."""
        return self.distribution(params).mean

    def check_support(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``x`` holds values outside ``support`` (or NaN)."""
        ok = self.support.check(x)
        if not bool(ok.all()):
            bad = x[~ok]
            raise ValueError(
                f"x: {type(self).__name__} expects data in its support {self.support}, got "
                f"{bad.numel()} values outside it (first: {bad.flatten()[0].item()}); "
                f"switch value checks off with pyvae.set_validate_args(False)"
            )


LIKELIHOODS: Registry[Likelihood] = Registry("likelihood", Likelihood, "pyvae.likelihoods")
register_likelihood = LIKELIHOODS.register


def list_likelihoods(pattern: str | None = None) -> list[str]:
    """Registered likelihood names, sorted, optionally filtered by an fnmatch wildcard."""
    return LIKELIHOODS.names(pattern)


def _independent(base: Distribution, params: torch.Tensor) -> Distribution:
    return Independent(base, params.dim() - 1, validate_args=False)


@register_likelihood("bernoulli")
class BernoulliLikelihood(Likelihood):
    """Bernoulli with logits; ``-log p`` is the binary cross-entropy, summed over pixels.

    The default for images in [0, 1]. For grey values strictly between 0 and 1 the "log
    probability" is the negative cross-entropy, the usual practice (it is not a normalised
    density there; see ``continuous_bernoulli`` for one that is). ``mean`` is ``sigmoid(params)``.
    """

    support = constraints.unit_interval

    def distribution(self, params: torch.Tensor) -> Distribution:
        return _independent(Bernoulli(logits=params, validate_args=False), params)


@register_likelihood("gaussian")
class GaussianLikelihood(Likelihood):
    """Gaussian with mean ``params`` and a fixed standard deviation ``scale``.

    ``-log p(x|z) = sum_i (x_i - mu_i)^2 / (2 scale^2) + D log(scale) + D/2 log(2 pi)``: the summed
    squared error of the seeds' MSE loss, scaled, with its constant, so that it is a true
    log-density in nats.

    Args:
        scale: the standard deviation, > 0.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ConfigError(f"scale: expected a positive finite number, got {scale!r}")
        self.scale = float(scale)

    def distribution(self, params: torch.Tensor) -> Distribution:
        return _independent(Normal(params, self.scale, validate_args=False), params)
