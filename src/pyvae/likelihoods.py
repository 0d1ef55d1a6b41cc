"""Likelihoods p(x|z): the reconstruction term of the ELBO, as swappable components.

A likelihood turns the decoder's output (``params``, shape (B, *event_shape)) into a distribution
over the data. ``log_prob`` is summed over all data dimensions and returned per example, in nats,
with every normalising constant included (so the numbers are true log-likelihoods); ``mean`` is
what :meth:`pyvae.BaseVAE.sample` and :meth:`pyvae.BaseVAE.reconstruct` return.
Register a new one with :func:`register_likelihood`; choose it by name or instance when building a
model (``pyvae.build("conv", likelihood="gaussian")``).

Registered: ``bernoulli`` (the default), ``continuous_bernoulli``, ``gaussian`` and ``laplace``
(each with a fixed scale, or a learned one: ``{"name": "gaussian", "learn_scale": "per_dim"}``).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import (
    Bernoulli,
    ContinuousBernoulli,
    Distribution,
    Independent,
    Laplace,
    Normal,
    constraints,
)

from pyvae.config import ConfigError, Configurable, check_positive_ints
from pyvae.registry import Registry
from pyvae.validation import in_range, validate_args_enabled

__all__ = [
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "GaussianLikelihood",
    "LaplaceLikelihood",
    "Likelihood",
    "StableContinuousBernoulli",
    "list_likelihoods",
    "register_likelihood",
]


class Likelihood(Configurable, nn.Module, abc.ABC):
    """Base class of likelihoods p(x|z).

    Subclasses define :meth:`distribution` (and ``support``, the constraint the data must meet);
    they may override :meth:`log_prob` and :meth:`mean` with faster direct formulas. A likelihood
    with parameters shaped like the data takes an ``event_shape`` argument, which a model passes
    (its ``input_shape``) when it builds the likelihood by name or dict.
    """

    support: constraints.Constraint = constraints.real

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
        bounds = (
            getattr(self.support, "lower_bound", None),
            getattr(self.support, "upper_bound", None),
        )
        if self.support is constraints.real or bounds != (None, None):  # an interval: min and max
            lower, upper = (-math.inf if b is None else b for b in bounds)
            if in_range(x, lower, upper):
                return
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

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``distribution(params).log_prob(x)``, computed directly: the summed binary
        cross-entropy with logits, negated after the sum (the training loop's hot path)."""
        if validate_args_enabled():
            self.check_support(x)
        bce = F.binary_cross_entropy_with_logits(params, x, reduction="none")
        return -bce.flatten(1).sum(1)


def _taylor_below(dtype: torch.dtype) -> float:
    """The |logits| below which the continuous Bernoulli's log-normaliser and mean use their
    Taylor series: where its truncation error meets the closed forms' rounding error (which grows
    near 0), about 0.54 in float32 and 0.044 in float64; both errors are then a few ulps."""
    return 4 * torch.finfo(dtype).eps ** 0.125


class StableContinuousBernoulli(ContinuousBernoulli):
    """torch's ``ContinuousBernoulli`` with its log-normaliser and mean computed from the logits.

    torch computes both from probabilities clamped to ``[eps, 1 - eps]``, so in float32 they
    saturate once ``|logits|`` exceeds about 16 (``log C`` stays near ``log 16`` instead of
    growing like ``log |logits|``). Written in the logits ``eta`` they are stable everywhere:

    * ``C(eta) = eta / tanh(eta / 2)``, so
      ``log C = log|eta| - log(-expm1(-|eta|)) + log1p(exp(-|eta|))``, and near 0
      ``log C = log 2 + eta^2/12 - 7 eta^4/1440 + 31 eta^6/90720``;
    * ``E[x] = 1 / (1 - exp(-eta)) - 1 / eta``, and near 0
      ``E[x] = 1/2 + eta/12 - eta^3/720 + eta^5/30240``.

    Build it with ``logits`` (sampling and the other methods are torch's).
    """

    def _cont_bern_log_norm(self) -> torch.Tensor:
        eta = self.logits
        small = eta.abs() < _taylor_below(eta.dtype)
        a = torch.where(small, torch.ones_like(eta), eta.abs())  # no log(0) in the unused branch
        closed = a.log() - torch.log(-torch.expm1(-a)) + torch.log1p(torch.exp(-a))
        e2 = eta * eta
        taylor = math.log(2.0) + e2 * (1 / 12 + e2 * (-7 / 1440 + e2 * (31 / 90720)))
        return torch.where(small, taylor, closed)

    @property
    def mean(self) -> torch.Tensor:
        eta = self.logits
        small = eta.abs() < _taylor_below(eta.dtype)
        safe = torch.where(small, torch.ones_like(eta), eta)
        closed = -1.0 / torch.expm1(-safe) - 1.0 / safe
        e2 = eta * eta
        taylor = 0.5 + eta * (1 / 12 + e2 * (-1 / 720 + e2 * (1 / 30240)))
        return torch.where(small, taylor, closed)


@register_likelihood("continuous_bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """The continuous Bernoulli (Loaiza-Ganem and Cunningham, 2019, https://arxiv.org/abs/1907.06845)
    with logits ``params``: a normalised density on [0, 1] for grey-valued data.

    ``log p(x|z) = sum_i [x_i log lambda_i + (1 - x_i) log(1 - lambda_i) + log C(lambda_i)]`` with
    ``lambda = sigmoid(params)`` and the normaliser ``C``, computed stably near
    ``lambda = 1/2`` and for extreme logits (see :class:`StableContinuousBernoulli`). ``mean`` is
    the distribution's mean (not ``lambda``).
    """

    support = constraints.unit_interval

    def distribution(self, params: torch.Tensor) -> Distribution:
        return _independent(StableContinuousBernoulli(logits=params, validate_args=False), params)


ScaleMode = Literal["global", "per_dim"]


class _LocScaleLikelihood(Likelihood):
    """A location-scale family (``family``) with location ``params`` and a fixed or learned scale.

    Args:
        scale: the scale (> 0), fixed, or the initial value of a learned scale.
        learn_scale: ``None`` (fixed), ``"global"`` (one learned scale) or ``"per_dim"`` (one
            learned scale per data dimension, shape ``input_shape``).
        min_scale: a floor (>= 0) under a learned scale, ``scale = min_scale + softplus(raw)``,
            so that the log-density stays bounded on data with constant dimensions.
        event_shape: the shape of one example (a model passes its ``input_shape``); needed for
            ``learn_scale="per_dim"``.
    """

    family: ClassVar[type[Normal] | type[Laplace]]
    raw_scale: nn.Parameter | None

    def __init__(
        self,
        scale: float = 1.0,
        learn_scale: ScaleMode | None = None,
        min_scale: float = 1e-3,
        event_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(scale, bool):
            raise ConfigError(f"scale: expected a positive finite number, got {scale!r}")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ConfigError(f"scale: expected a positive finite number, got {scale!r}")
        if learn_scale not in (None, "global", "per_dim"):
            raise ConfigError(
                f"learn_scale: expected None, 'global' or 'per_dim', got {learn_scale!r}"
            )
        if not (
            isinstance(min_scale, (int, float))
            and not isinstance(min_scale, bool)
            and math.isfinite(min_scale)
        ) or not (0 <= min_scale < (scale if learn_scale else math.inf)):
            raise ConfigError(
                f"min_scale: expected a number >= 0 and below scale={scale!r}, got {min_scale!r}"
            )
        if learn_scale == "per_dim" and event_shape is None:
            raise ConfigError(
                "event_shape: learn_scale='per_dim' needs the data's shape; build the likelihood "
                "through a model (which passes its input_shape) or pass event_shape"
            )
        self.event_shape = (
            None if event_shape is None else check_positive_ints("event_shape", event_shape)
        )
        self.init_scale = float(scale)
        self.learn_scale = learn_scale
        self.min_scale = float(min_scale)
        self.raw_scale = None
        if learn_scale is not None:
            shape = self.event_shape if learn_scale == "per_dim" and self.event_shape else ()
            v = self.init_scale - self.min_scale
            raw = v + math.log(-math.expm1(-v))  # softplus(raw) = v
            self.raw_scale = nn.Parameter(torch.full(shape, raw))

    @property
    def scale(self) -> torch.Tensor | float:
        """The scale: a float when fixed, else a tensor of shape () or ``input_shape``."""
        if self.learn_scale is None:
            return self.init_scale
        assert self.raw_scale is not None
        return self.min_scale + F.softplus(self.raw_scale)

    def distribution(self, params: torch.Tensor) -> Distribution:
        base = self.family(params, self.scale, validate_args=False)
        return _independent(base, params)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params


@register_likelihood("gaussian")
class GaussianLikelihood(_LocScaleLikelihood):
    """Gaussian with mean ``params`` and standard deviation ``scale`` (fixed or learned).

    ``-log p(x|z) = sum_i [(x_i - mu_i)^2 / (2 s_i^2) + log s_i + log(2 pi) / 2]``: the summed
    squared error of the seeds' MSE loss, scaled, with its constant, so that it is a true
    log-density in nats.

    Args:
        scale: the standard deviation (> 0), fixed, or the initial value of a learned one.
        learn_scale: ``None`` (fixed), ``"global"`` (one learned standard deviation) or
            ``"per_dim"`` (one per data dimension).
        min_scale: floor under a learned standard deviation (``min_scale + softplus(raw)``).
        event_shape: the data's shape (passed by the model; needed for ``"per_dim"``).
    """

    family = Normal


@register_likelihood("laplace")
class LaplaceLikelihood(_LocScaleLikelihood):
    """Laplace with location ``params`` and scale ``b`` (fixed or learned): an L1 loss.

    ``-log p(x|z) = sum_i [|x_i - mu_i| / b_i + log(2 b_i)]`` in nats; the mean is ``params``.

    Args:
        scale: the scale b (> 0; the standard deviation is ``sqrt(2) b``), fixed, or the initial
            value of a learned one.
        learn_scale: ``None`` (fixed), ``"global"`` or ``"per_dim"``.
        min_scale: floor under a learned scale (``min_scale + softplus(raw)``).
        event_shape: the data's shape (passed by the model; needed for ``"per_dim"``).
    """

    family = Laplace
