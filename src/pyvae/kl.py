"""The KL term of the ELBO: closed form where torch.distributions has one, else Monte Carlo.

pyvae's Gaussian priors return their own subclasses of ``Independent(Normal(loc, scale), 1)``,
:class:`DiagonalNormal` and :class:`StandardNormal`, for which this module registers fused
closed forms with ``torch.distributions.kl.register_kl``: the KL of a diagonal Gaussian posterior
(torch's ``Independent(Normal, 1)`` or a :class:`DiagonalNormal`) against them is a handful of
elementwise operations (``0.5 * (s^2 + m^2 - 1) - log s`` for the standard normal), not torch's
generic ``Independent``/``Independent`` route through ``Normal``/``Normal`` (scale ratios,
broadcasts against the prior's tensors). They stay in torch's dispatch: ``kl_divergence`` finds
them by type, and a pair a user registers for a more specific type wins over them.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.distributions import (
    Categorical,
    Distribution,
    ExpTransform,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    TransformedDistribution,
)
from torch.distributions import kl_divergence as _closed_form_kl
from torch.distributions.kl import register_kl

__all__ = [
    "DiagonalNormal",
    "KLMethod",
    "StandardNormal",
    "diagonal_normal_kl",
    "kl_divergence",
    "warm_kl_dispatch",
]

KLMethod = Literal["auto", "closed_form", "monte_carlo"]
_METHODS = ("auto", "closed_form", "monte_carlo")


def kl_divergence(
    q: Distribution,
    p: Distribution,
    z: torch.Tensor | None = None,
    method: KLMethod = "auto",
) -> torch.Tensor:
    """``KL(q || p)`` per batch element, in nats, summed over the event dimensions.

    Args:
        q: the approximate posterior, batch shape (B,), event shape (D,).
        p: the prior, event shape (D,) (batch shape () or (B,)).
        z: a sample from ``q`` of shape (B, D), used by the Monte Carlo estimate
            ``log q(z) - log p(z)`` (an unbiased one-sample estimate). Drawn from ``q`` with
            ``rsample`` when not given.
        method: ``"closed_form"`` uses ``torch.distributions.kl_divergence`` (new pairs are added
            with ``torch.distributions.kl.register_kl``) and fails if the pair has none;
            ``"monte_carlo"`` always estimates; ``"auto"`` takes the closed form when there is one.

    Returns:
        Tensor of shape (B,).
    """
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    if method != "monte_carlo":
        try:
            return _closed_form_kl(q, p)
        except NotImplementedError:
            if method == "closed_form":
                raise NotImplementedError(
                    f"method='closed_form': torch.distributions has no closed-form KL for "
                    f"{type(q).__name__} || {type(p).__name__}; register one with "
                    f"torch.distributions.kl.register_kl or use method='monte_carlo'"
                ) from None
    if z is None:
        z = q.rsample()
    return q.log_prob(z) - p.log_prob(z)


# Independent, not Independent[Normal]: it is not subscriptable in every torch that pyvae allows
class DiagonalNormal(Independent):  # type: ignore[type-arg]
    """A diagonal Gaussian N(loc, diag(scale^2)) over vectors: torch's
    ``Independent(Normal(loc, scale), 1)`` (it is one: ``isinstance`` checks, sampling,
    ``log_prob``, ``entropy`` and torch's own KL pairs all apply), as a type of its own so that
    pyvae's fused closed-form KL is found by ``torch.distributions.kl_divergence``.

    Args:
        loc: the mean, shape (*batch_shape, D).
        scale: the standard deviation (> 0), same shape.
        log_scale: ``log(scale)`` when the caller has it (a learned log-scale, half a
            log-variance): the KL then uses it instead of taking the logarithm again. It must
            equal ``scale.log()``; it is not checked (that would read the values).
        validate_args: torch's argument validation (off by default, as in pyvae's components;
            pyvae's value checks are done by the model, once per step).
    """

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        *,
        log_scale: torch.Tensor | None = None,
        validate_args: bool | None = False,
    ) -> None:
        super().__init__(Normal(loc, scale, validate_args=validate_args), 1, validate_args=False)
        self.log_scale = log_scale

    @property
    def loc(self) -> torch.Tensor:
        """The mean, shape (*batch_shape, D)."""
        return self.base_dist.loc

    @property
    def scale(self) -> torch.Tensor:
        """The standard deviation, shape (*batch_shape, D)."""
        return self.base_dist.scale

    def expand(
        self, batch_shape: torch.Size | list[int] | tuple[int, ...], _instance: object = None
    ) -> DiagonalNormal:
        shape = torch.Size(batch_shape) + self.event_shape
        log_scale = None if self.log_scale is None else self.log_scale.expand(shape)
        return DiagonalNormal(self.loc.expand(shape), self.scale.expand(shape), log_scale=log_scale)


class StandardNormal(DiagonalNormal):
    """The standard normal N(0, I) over vectors of size D, as a :class:`DiagonalNormal` whose KL
    from a diagonal Gaussian is the short formula ``0.5 * sum(s^2 + m^2 - 1) - sum(log s)``.

    Args:
        zeros: a tensor of zeros of shape (D,) (on the device and in the dtype wanted), the mean.
        ones: a tensor of ones of shape (D,), the standard deviation. Callers pass buffers they
            own (:class:`pyvae.StandardNormalPrior` does); the values are not read.
    """

    def __init__(self, zeros: torch.Tensor, ones: torch.Tensor) -> None:
        super().__init__(zeros, ones, log_scale=None)

    def expand(
        self, batch_shape: torch.Size | list[int] | tuple[int, ...], _instance: object = None
    ) -> StandardNormal:
        shape = torch.Size(batch_shape) + self.event_shape
        return StandardNormal(self.loc.expand(shape), self.scale.expand(shape))


_HALF = (torch.float16, torch.bfloat16)


def _diagonal_parts(
    d: Distribution,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
    """``(loc, scale, log_scale or None)`` of a diagonal Gaussian over vectors (a
    :class:`DiagonalNormal` or torch's ``Independent(Normal, 1)``), else ``None``."""
    if not (
        isinstance(d, Independent)
        and d.reinterpreted_batch_ndims == 1
        and type(d.base_dist) is Normal
    ):
        return None
    log_scale = d.log_scale if isinstance(d, DiagonalNormal) else None
    return d.base_dist.loc, d.base_dist.scale, log_scale


def _float32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in _HALF else t


def diagonal_normal_kl(
    loc_q: torch.Tensor,
    scale_q: torch.Tensor,
    loc_p: torch.Tensor | None = None,
    scale_p: torch.Tensor | None = None,
    *,
    log_scale_q: torch.Tensor | None = None,
    log_scale_p: torch.Tensor | None = None,
) -> torch.Tensor:
    """``KL(N(loc_q, diag scale_q^2) || N(loc_p, diag scale_p^2))`` summed over the last
    dimension, in nats: shape ``loc_q.shape[:-1]`` (broadcast with the prior's).

    ``sum_i [log s_p - log s_q + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2]``; with ``loc_p`` and
    ``scale_p`` left out, the prior is N(0, I): ``sum_i [(s_q^2 + m_q^2 - 1) / 2 - log s_q]``.
    ``log_scale_*`` replace ``scale_*.log()`` where the caller has them. 16-bit inputs are
    computed in float32.
    """
    loc_q, scale_q = _float32(loc_q), _float32(scale_q)
    log_q = scale_q.log() if log_scale_q is None else _float32(log_scale_q)
    if loc_p is None and scale_p is None:
        return 0.5 * (scale_q * scale_q + loc_q * loc_q - 1.0).sum(-1) - log_q.sum(-1)
    if loc_p is None or scale_p is None:
        raise ValueError("loc_p and scale_p: give both (a Gaussian prior) or neither (N(0, I))")
    loc_p, scale_p = _float32(loc_p), _float32(scale_p)
    log_p = scale_p.log() if log_scale_p is None else _float32(log_scale_p)
    diff = loc_q - loc_p
    ratio = (scale_q * scale_q + diff * diff) / (scale_p * scale_p)
    return 0.5 * (ratio - 1.0).sum(-1) + (log_p - log_q).sum(-1)


def _generic_independent(q: Independent[Any], p: Independent[Any]) -> torch.Tensor:
    """torch's ``Independent``/``Independent`` rule, for pairs the fused forms do not cover."""
    if q.reinterpreted_batch_ndims != p.reinterpreted_batch_ndims:
        raise NotImplementedError
    result = _closed_form_kl(q.base_dist, p.base_dist)
    for _ in range(p.reinterpreted_batch_ndims):
        result = result.sum(-1)
    return result


@register_kl(Independent, StandardNormal)  # type: ignore[untyped-decorator]  # torch: no hints
def _kl_to_standard_normal(q: Independent[Distribution], p: StandardNormal) -> torch.Tensor:
    parts = _diagonal_parts(q)
    if parts is None or parts[0].shape[-1:] != p.event_shape:
        return _generic_independent(q, p)
    loc, scale, log_scale = parts
    return diagonal_normal_kl(loc, scale, log_scale_q=log_scale)


@register_kl(Independent, DiagonalNormal)  # type: ignore[untyped-decorator]  # torch: no hints
def _kl_to_diagonal_normal(q: Independent[Distribution], p: DiagonalNormal) -> torch.Tensor:
    parts = _diagonal_parts(q)
    if parts is None or parts[0].shape[-1:] != p.event_shape:
        return _generic_independent(q, p)
    loc, scale, log_scale = parts
    return diagonal_normal_kl(
        loc, scale, p.loc, p.scale, log_scale_q=log_scale, log_scale_p=p.log_scale
    )


def warm_kl_dispatch(*pairs: tuple[Distribution, Distribution]) -> None:
    """Resolve ``torch.distributions.kl_divergence``'s dispatch for these (q, p) example pairs now
    (for pyvae's own pairs when none are given).

    torch caches which closed form (or none) serves a pair of distribution types the first time it
    meets the pair; ``torch.compile`` cannot trace that first lookup (``fullgraph=True`` fails,
    otherwise the graph breaks). pyvae warms the pairs its own components produce when it is
    imported; ``register_kl`` empties torch's cache, so call this again (without arguments) after
    registering a pair of your own, and once with small example instances of new distribution
    types a plug-in produces.
    """
    for q, p in pairs or _builtin_pairs():
        try:
            _closed_form_kl(q, p)
        except NotImplementedError:
            pass  # "no closed form" is cached too


def _gaussian(*batch: int) -> Distribution:
    return Independent(Normal(torch.zeros(*batch, 1), torch.ones(*batch, 1)), 1)


def _mixture() -> Distribution:
    return MixtureSameFamily(Categorical(logits=torch.zeros(2)), _gaussian(2))  # 2 components


def _standard() -> Distribution:
    return StandardNormal(torch.zeros(1), torch.ones(1))


def _diagonal() -> Distribution:
    return DiagonalNormal(torch.zeros(1), torch.ones(1))


def _full() -> Distribution:
    return MultivariateNormal(torch.zeros(1), scale_tril=torch.ones(1, 1), validate_args=False)


def _flow() -> Distribution:
    return TransformedDistribution(_gaussian(), [ExpTransform()], validate_args=False)


def _builtin_pairs() -> list[tuple[Distribution, Distribution]]:
    """The pairs pyvae's own posteriors and priors produce (torch's Independent(Normal) or a
    DiagonalNormal, the full-covariance MultivariateNormal and the flows' TransformedDistribution
    against the normal/learned_normal priors and against the mog/vamp mixtures, for which torch
    has no closed form), and torch's own pair for plug-ins with Independent(Normal) priors."""
    posteriors = (_gaussian(), _diagonal(), _full(), _flow())
    priors = (_standard(), _diagonal(), _mixture(), _gaussian())
    return [(q, p) for q in posteriors for p in priors]


warm_kl_dispatch()
