"""Helpers shared by the objectives (private): float32 views, diagonal Gaussian parts,
the factorisation checks of posteriors and priors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.distributions import Distribution, Independent, Normal

from pyvae.config import ConfigError

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE
    from pyvae.posteriors import PosteriorHead

_HALF = (torch.float16, torch.bfloat16)


def f32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is a 16-bit tensor (autocast), else ``t`` itself."""
    return t.float() if t.dtype in _HALF else t


def factorised_base(d: Distribution) -> Distribution | None:
    """The univariate base of a fully factorised distribution over vectors
    (``Independent(base, 1)`` with a scalar-event ``base``, e.g. a diagonal Gaussian), else
    ``None``."""
    if (
        isinstance(d, Independent)
        and d.reinterpreted_batch_ndims == 1
        and d.base_dist.event_shape == torch.Size()
    ):
        return d.base_dist
    return None


def diagonal_gaussian(d: Distribution) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(loc, scale)`` in float32 of a diagonal Gaussian over vectors (torch's
    ``Independent(Normal, 1)`` or a subclass), else ``None``."""
    base = factorised_base(d)
    if base is None or not isinstance(base, Normal):
        return None
    return f32(base.loc), f32(base.scale)


def require_factorised_prior(model: BaseVAE, objective: str, argument: str) -> None:
    """ConfigError at build time unless the model's prior is fully factorised over the latent
    dimensions (priors that need the encoder, such as the VampPrior, are mixtures: refused)."""
    prior = model.prior
    if prior is None:
        return  # Objective.check_model reports the missing prior
    if prior.needs_encoder:
        raise ConfigError(
            f"{argument}: objective {objective!r} needs a prior factorised over the latent "
            f"dimensions (e.g. prior='normal' or 'learned_normal'), got "
            f"{type(prior).__name__} (a mixture over encoded pseudo-inputs)"
        )
    with torch.no_grad():
        dist = prior()
    if factorised_base(dist) is None:
        raise ConfigError(
            f"{argument}: objective {objective!r} needs a prior factorised over the latent "
            f"dimensions (e.g. prior='normal' or 'learned_normal'), got {type(prior).__name__} "
            f"({type(dist).__name__})"
        )


def require_diagonal_gaussian(q: Distribution, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loc, scale)`` of a diagonal Gaussian posterior, or a ConfigError naming the family."""
    parts = diagonal_gaussian(q)
    if parts is None:
        raise ConfigError(
            f"posterior: objective {objective!r} needs a diagonal Gaussian posterior "
            f"(posterior='gaussian'), got {type(q).__name__}"
            + (f" of {type(q.base_dist).__name__}" if isinstance(q, Independent) else "")
        )
    return parts


def probe_posterior(head: PosteriorHead) -> Distribution | None:
    """The distribution ``head`` gives for one all-zero feature row (no gradients, eval mode,
    modes restored), to check its family at build time; ``None`` if the probe fails (the check
    is then left to the first loss call)."""
    modes = [(m, m.training) for m in head.modules()]
    head.eval()
    try:
        reference = next(head.parameters(), None)
        features = torch.zeros(
            1,
            head.in_features,
            dtype=reference.dtype if reference is not None else torch.get_default_dtype(),
            device=reference.device if reference is not None else None,
        )
        with torch.no_grad():
            return head(features)
    except Exception:  # a head with its own input needs: checked at the first loss instead
        return None
    finally:
        for module, mode in modes:
            module.training = mode
