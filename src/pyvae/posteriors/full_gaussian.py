"""A full-covariance Gaussian posterior q(z|x) = N(loc, L L^T), through a Cholesky factor L.

The closed-form KL of this family against pyvae's normal and learned-normal priors is registered
with ``torch.distributions.kl.register_kl``, so ``pyvae.kl_divergence`` (and the ELBO) uses it
without a Monte Carlo estimate.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal
from torch.distributions.kl import register_kl

from pyvae.kl import StandardNormal, warm_kl_dispatch
from pyvae.posteriors import LOG_VAR_MAX, LOG_VAR_MIN, PosteriorHead, register_posterior

__all__ = ["FullGaussianHead", "full_gaussian_kl"]


@register_posterior("full_gaussian")
class FullGaussianHead(PosteriorHead):
    """A full-covariance Gaussian q(z|x) = N(loc, L L^T) with a lower-triangular Cholesky factor
    ``L`` (torch's ``MultivariateNormal(loc, scale_tril=L)``): correlated latents in one
    posterior, at O(D^2) outputs per example instead of O(D).

    One linear layer outputs ``loc`` (D), a log-variance for the diagonal of ``L`` (D; clamped
    to [-30, 20] as in the diagonal head, so the diagonal is finite and > 0 and ``L`` is a valid
    Cholesky factor) and the D(D-1)/2 entries of a strictly lower-triangular ``M``, with
    ``L = diag(scale) (I + M)``: the off-diagonal entries ``L_ij = scale_i M_ij`` are relative to
    the scales and shrink with them (absolute entries ``L_ij`` trained slower still in the family
    table, docs/families.md). The weights of ``M`` start at zero, so the head starts as the
    diagonal Gaussian. Its KL to the ``normal`` and ``learned_normal`` priors is closed form
    (:func:`full_gaussian_kl`); other priors fall back to Monte Carlo.
    """

    tril_index: torch.Tensor

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__(in_features, latent_dim)
        d = latent_dim
        self.n_off = d * (d - 1) // 2
        self.linear = torch.nn.Linear(in_features, 2 * d + self.n_off)
        # position i*D + j of L (row-major) reads entry index[i*D + j] of [off-diagonal..., 0]:
        # the strictly-lower entries in torch.tril_indices order, the zero slot elsewhere
        rows, cols = torch.tril_indices(d, d, offset=-1)
        index = torch.full((d * d,), self.n_off, dtype=torch.long)
        index[rows * d + cols] = torch.arange(self.n_off)
        self.register_buffer("tril_index", index, persistent=False)
        self.after_init_weights()

    def after_init_weights(self) -> None:
        """Start as the diagonal head (the off-diagonal outputs zero): correlations are learned,
        not random (called again by :func:`pyvae.nn.init_weights` after it re-initialises)."""
        with torch.no_grad():
            self.linear.weight[2 * self.latent_dim :].zero_()
            self.linear.bias[2 * self.latent_dim :].zero_()

    def forward(self, h: torch.Tensor) -> Distribution:
        """A ``MultivariateNormal(loc, scale_tril=L)``: batch shape (B,), event (latent_dim,)."""
        d = self.latent_dim
        out = self.linear(h)
        loc, log_var, off = out[..., :d], out[..., d : 2 * d], out[..., 2 * d :]
        scale = torch.exp(0.5 * log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX))
        padded = torch.cat([off, off.new_zeros(*off.shape[:-1], 1)], dim=-1)
        lower = padded[..., self.tril_index].unflatten(-1, (d, d))
        # L = diag(scale) (I + M), M strictly lower: the correlations are relative to the scales
        scale_tril = scale.unsqueeze(-1) * lower + torch.diag_embed(scale)
        return MultivariateNormal(loc, scale_tril=scale_tril, validate_args=False)


def full_gaussian_kl(
    loc_q: torch.Tensor,
    scale_tril_q: torch.Tensor,
    loc_p: torch.Tensor | None = None,
    scale_p: torch.Tensor | None = None,
) -> torch.Tensor:
    """``KL(N(loc_q, L L^T) || N(loc_p, diag scale_p^2))`` in nats, shape ``loc_q.shape[:-1]``.

    ``0.5 * [sum_ij L_ij^2 / s_i^2 + sum_i (m_i - mu_i)^2 / s_i^2 - D] + sum_i log s_i -
    sum_i log L_ii``; without ``loc_p``/``scale_p`` the prior is N(0, I). 16-bit inputs are
    computed in float32.

    Args:
        loc_q: the posterior mean, shape (*B, D).
        scale_tril_q: its Cholesky factor, shape (*B, D, D), positive diagonal.
        loc_p: the prior mean, shape broadcastable to (*B, D), or ``None`` (zeros).
        scale_p: the prior standard deviations (> 0), same shape, or ``None`` (ones).
    """
    half = (torch.float16, torch.bfloat16)
    if loc_q.dtype in half:
        loc_q, scale_tril_q = loc_q.float(), scale_tril_q.float()
    log_det_q = scale_tril_q.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    d = loc_q.shape[-1]
    if loc_p is None and scale_p is None:
        trace = scale_tril_q.pow(2).sum((-2, -1))
        return 0.5 * (trace + loc_q.pow(2).sum(-1) - d) - log_det_q
    if loc_p is None or scale_p is None:
        raise ValueError("loc_p and scale_p: give both (a Gaussian prior) or neither (N(0, I))")
    if loc_p.dtype in half:
        loc_p, scale_p = loc_p.float(), scale_p.float()
    trace = (scale_tril_q / scale_p.unsqueeze(-1)).pow(2).sum((-2, -1))
    mahalanobis = ((loc_q - loc_p) / scale_p).pow(2).sum(-1)
    return 0.5 * (trace + mahalanobis - d) + scale_p.log().sum(-1) - log_det_q


@register_kl(MultivariateNormal, StandardNormal)  # type: ignore[untyped-decorator]  # torch: no hints
def _kl_full_standard(q: MultivariateNormal, p: StandardNormal) -> torch.Tensor:
    _check_event(q, p)
    return full_gaussian_kl(q.loc, q.scale_tril)


@register_kl(MultivariateNormal, Independent)  # type: ignore[untyped-decorator]  # torch: no hints
def _kl_full_diagonal(q: MultivariateNormal, p: Independent[Distribution]) -> torch.Tensor:
    # a diagonal Gaussian prior: torch's Independent(Normal, 1) or pyvae's DiagonalNormal
    if not (p.reinterpreted_batch_ndims == 1 and type(p.base_dist) is Normal):
        raise NotImplementedError  # no closed form here: pyvae.kl_divergence falls back to MC
    _check_event(q, p)
    return full_gaussian_kl(q.loc, q.scale_tril, p.base_dist.loc, p.base_dist.scale)


def _check_event(q: Distribution, p: Distribution) -> None:
    if q.event_shape != p.event_shape:
        raise ValueError(
            f"KL(q || p): q has event shape {tuple(q.event_shape)}, p {tuple(p.event_shape)}; "
            f"they must be equal"
        )


# register_kl empties torch's dispatch cache: warm pyvae's pairs again (this family's included)
warm_kl_dispatch()
