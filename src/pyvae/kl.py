"""The KL term of the ELBO: closed form where torch.distributions has one, else Monte Carlo."""

from __future__ import annotations

from typing import Literal

import torch
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal
from torch.distributions import kl_divergence as _closed_form_kl

__all__ = ["KLMethod", "kl_divergence", "warm_kl_dispatch"]

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


def warm_kl_dispatch(*pairs: tuple[Distribution, Distribution]) -> None:
    """Resolve ``torch.distributions.kl_divergence``'s dispatch for these (q, p) example pairs now.

    torch caches which closed form (or none) serves a pair of distribution types the first time it
    meets the pair; ``torch.compile`` cannot trace that first lookup (``fullgraph=True`` fails,
    otherwise the graph breaks). pyvae warms the pairs its own components produce when it is
    imported; a plug-in with new distribution types calls this once with small example instances.
    """
    for q, p in pairs:
        try:
            _closed_form_kl(q, p)
        except NotImplementedError:
            pass  # "no closed form" is cached too


def _gaussian(*batch: int) -> Distribution:
    return Independent(Normal(torch.zeros(*batch, 1), torch.ones(*batch, 1)), 1)


def _mixture() -> Distribution:
    return MixtureSameFamily(Categorical(logits=torch.zeros(2)), _gaussian(2))  # 2 components


# The pairs pyvae's own posteriors and priors produce: a diagonal Gaussian posterior against the
# normal/learned_normal priors, and against the mog/vamp mixtures (torch has no closed form for
# the latter, a lookup that compiles already; warmed so that it stays so if torch adds one).
warm_kl_dispatch((_gaussian(), _gaussian()), (_gaussian(), _mixture()))
