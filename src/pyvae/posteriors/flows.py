"""Normalizing-flow posteriors on a diagonal Gaussian base: ``planar`` and ``iaf``.

Each head returns a ``torch.distributions.TransformedDistribution`` of the base
``N(loc, diag(scale^2))`` through ``n_steps`` invertible transforms whose parameters the encoder
outputs per example (amortised). Its ``rsample`` is reparameterised; its ``log_prob`` is exact
for any z (the change of variables ``log q(z) = log q0(z0) - sum_k log |det J_k|``): for a z that
the distribution itself just sampled, the transforms' caches give z0 and the log-determinants
back directly; for any other z each step is inverted (the IAF exactly, in D sequential passes;
the planar step by a bracketed root find to float64 precision). There is no closed-form KL, so
the ELBO's KL term is the Monte Carlo estimate ``log q(z) - log p(z)`` at the training sample;
``pyvae.log_likelihood`` works unchanged. The deterministic point (``reconstruct``, latent maps)
is the base mean pushed through the flow (:func:`pyvae.posteriors.latent_point`), not the flow's
mean, which has no closed form.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import (
    Distribution,
    Independent,
    Normal,
    TransformedDistribution,
    constraints,
)
from torch.distributions.transforms import Transform

from pyvae.config import check_positive_int
from pyvae.posteriors import LOG_VAR_MAX, LOG_VAR_MIN, PosteriorHead, register_posterior

__all__ = [
    "MADE",
    "IAFHead",
    "IAFTransform",
    "PlanarHead",
    "PlanarTransform",
]

_BISECTION_STEPS = 64  # halvings of a bracket of width 2|w^T u|: far below float64 resolution
_NEWTON_STEPS = 8  # then Newton: each step gains ~16 digits relative to the root's size


class _CachedLogDet(Transform):
    """A transform over vectors that keeps the log-determinant of its last forward call, so that
    ``log_prob`` of the sample just drawn costs nothing more than the sampling did."""

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True

    def __init__(self) -> None:
        super().__init__(cache_size=1)
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (x, log|det J|(x))

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, log|det dy/dx|)`` for x of shape (*sample, B, D): shapes (*sample, B, D) and
        (*sample, B)."""
        raise NotImplementedError

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y, log_det = self._forward(x)
        self._last = (x, log_det)
        return y

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._last is not None and self._last[0] is x:
            return self._last[1]
        return self._forward(x)[1]


class PlanarTransform(_CachedLogDet):
    """One planar step ``f(z) = z + u_hat * tanh(w^T z + b)`` (Rezende and Mohamed, 2015,
    https://arxiv.org/abs/1505.05770), per example.

    ``u_hat = u + (m(w^T u) - w^T u) w / ||w||^2`` with ``m(a) = softplus(a) - 1`` gives
    ``w^T u_hat > -1``, the condition under which f is invertible;
    ``log|det J| = log(1 + (1 - tanh^2(w^T z + b)) w^T u_hat)``.

    The inverse: with ``s = w^T z + b``, ``w^T f(z) + b = s + (w^T u_hat) tanh(s)``, strictly
    increasing in s, with its root within ``|w^T u_hat|`` of ``w^T y + b``; it is bracketed,
    bisected and polished by Newton steps kept inside the bracket, in float64 without gradients;
    one last Newton step with gradients gives the implicit-function derivative;
    ``z = y - u_hat tanh(s)``.
    The inverse is as exact as the map is well conditioned: with ``||w||`` near 0, ``u_hat``
    grows like ``1 / ||w||`` and the forward step itself rounds z away (for ``||w|| = 1e-100``
    nothing of z survives in float64); ``log_prob`` of the distribution's own samples does not
    invert and stays exact.

    Args:
        u: shape (B, D). w: shape (B, D). b: shape (B,).
    """

    def __init__(self, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        wu = (w * u).sum(-1, keepdim=True)
        norm_sq = (w * w).sum(-1, keepdim=True)
        w_sq = norm_sq.clamp_min(torch.finfo(w.dtype).tiny)
        softplus = F.softplus(wu)
        self.u = u + (softplus - 1.0 - wu) * w / w_sq
        self.w, self.b = w, b
        # 1 + w^T u_hat, kept in closed form (shape (B,)): softplus(w^T u) > 0 (for w = 0, where
        # u_hat = u, 1 + w^T u = 1); the log-determinant is log(t^2 + (1 - t^2)(1 + w^T u_hat)),
        # a sum of two terms >= 0, with no cancellation of 1 - 1 where w^T u is very negative
        ratio = norm_sq / w_sq  # 1, or < 1 where ||w||^2 underflows
        self.softplus = (ratio * softplus + (1.0 - ratio) * (1.0 + wu)).squeeze(-1)
        self.wu = self.softplus - 1.0

    def _slope(self, t: torch.Tensor, softplus: torch.Tensor) -> torch.Tensor:
        """``1 + (1 - t^2) w^T u_hat`` = ``t^2 + (1 - t^2)(1 + w^T u_hat)``, >= 0."""
        return t * t + (1.0 - t * t) * softplus

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.tanh((x * self.w).sum(-1) + self.b)
        y = x + self.u * t.unsqueeze(-1)
        return y, torch.log(self._slope(t, self.softplus))

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        target = (y * self.w).sum(-1) + self.b  # s + c tanh(s) at the root
        c = self.wu.expand_as(target)
        softplus = self.softplus.expand_as(target)
        wide = torch.float32 if y.device.type == "mps" else torch.float64
        with torch.no_grad():
            t64, c64 = target.detach().to(wide), c.detach().to(wide)
            sp64 = softplus.detach().to(wide)
            low, high = t64 - c64.abs(), t64 + c64.abs()
            for _ in range(_BISECTION_STEPS):
                mid = 0.5 * (low + high)
                above = mid + c64 * torch.tanh(mid) > t64
                high = torch.where(above, mid, high)
                low = torch.where(above, low, mid)
            s0 = 0.5 * (low + high)
            # bisection is exact in absolute terms only; Newton steps kept inside the bracket
            # make the root exact relative to its size too (a tiny w with a huge u_hat needs it)
            for _ in range(_NEWTON_STEPS):
                t0 = torch.tanh(s0)
                slope = self._slope(t0, sp64)
                step = torch.where(slope > 0, (s0 + c64 * t0 - t64) / slope, 0.0)
                s0 = torch.minimum(torch.maximum(s0 - step, low), high)
            s0 = s0.to(y.dtype)
        t0 = torch.tanh(s0)
        # one Newton step with gradients, at the root: the implicit-function derivative
        slope = self._slope(t0, softplus)
        s = s0 - (s0 + c * t0 - target) / torch.where(slope > 0, slope, 1.0)
        return y - self.u * torch.tanh(s).unsqueeze(-1)


class MADE(nn.Module):
    """A masked autoencoder for distribution estimation (Germain et al., 2015,
    https://arxiv.org/abs/1502.03509) with a context: ``(m, s)`` of shape (*, D) each, where
    output i depends only on the inputs that come before i in ``order`` (and on the context).

    One hidden layer of ``hidden`` ReLU units; hidden unit k has degree ``k mod D`` (degree 0
    units see only the context), so output i sees inputs of degree < its own.

    Args:
        latent_dim: D.
        context: the width of the context features h.
        hidden: the number of hidden units.
        order: the autoregressive order, a permutation of ``1..D`` (shape (D,)).
    """

    in_mask: torch.Tensor
    out_mask: torch.Tensor

    def __init__(self, latent_dim: int, context: int, hidden: int, order: torch.Tensor) -> None:
        super().__init__()
        d = latent_dim
        hidden_degree = torch.arange(hidden) % d
        # with D = 1 no hidden unit may see z (m and s depend on the context only): no z layer
        self.inp = nn.Linear(d, hidden) if d > 1 else None
        self.ctx = nn.Linear(context, hidden, bias=d == 1)
        self.out = nn.Linear(hidden, 2 * d)
        self.register_buffer(
            "in_mask", (hidden_degree[:, None] >= order[None, :]).float(), persistent=False
        )
        out_mask = (order[:, None] > hidden_degree[None, :]).float()
        self.register_buffer("out_mask", torch.cat([out_mask, out_mask]), persistent=False)
        self.after_init_weights()

    def after_init_weights(self) -> None:
        """The forget-gate bias: ``sigmoid(s)`` starts near 1 (s = 1.5), each step near the
        identity (called again by :func:`pyvae.nn.init_weights` after it re-initialises)."""
        with torch.no_grad():
            self.out.bias[self.out.out_features // 2 :].fill_(1.5)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m, s)`` for z of shape (*, B, D) and a context h of shape (B, context)."""
        a = self.ctx(h)
        if self.inp is not None:
            a = a + F.linear(z, self.inp.weight * self.in_mask, self.inp.bias)
        m, s = F.linear(F.relu(a), self.out.weight * self.out_mask, self.out.bias).chunk(2, -1)
        return m, s


class IAFTransform(_CachedLogDet):
    """One inverse autoregressive flow step (Kingma et al., 2016,
    https://arxiv.org/abs/1606.04934), the numerically stable form:
    ``(m, s) = MADE(z, h)``, ``sigma = sigmoid(s)``, ``f(z) = sigma * z + (1 - sigma) * m``,
    ``log|det J| = sum log sigma``.

    The inverse is exact and sequential: D passes of the MADE, each fixing one more coordinate
    in the autoregressive order.

    Args:
        made: the step's :class:`MADE`.
        context: the encoder's context h for this batch, shape (B, context).
    """

    def __init__(self, made: MADE, context: torch.Tensor) -> None:
        super().__init__()
        self.made, self.context = made, context

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, s = self.made(x, self.context)
        sigma = torch.sigmoid(s)
        return sigma * x + (1.0 - sigma) * m, F.logsigmoid(s).sum(-1)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = torch.zeros_like(y)
        for _ in range(y.shape[-1]):
            m, s = self.made(x, self.context)
            sigma = torch.sigmoid(s)
            x = (y - (1.0 - sigma) * m) / sigma
        return x


class _FlowHead(PosteriorHead):
    """A diagonal Gaussian base (loc, clamped log-variance) and the flow's per-example
    parameters, from one linear layer."""

    def __init__(self, in_features: int, latent_dim: int, n_flow_params: int) -> None:
        super().__init__(in_features, latent_dim)
        self.linear = nn.Linear(in_features, 2 * latent_dim + n_flow_params)

    def _base(self, h: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        d = self.latent_dim
        out = self.linear(h)
        loc, log_var, rest = out[..., :d], out[..., d : 2 * d], out[..., 2 * d :]
        scale = torch.exp(0.5 * log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX))
        base = Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)
        return base, rest


@register_posterior("planar")
class PlanarHead(_FlowHead):
    """A planar-flow posterior (Rezende and Mohamed, 2015, https://arxiv.org/abs/1505.05770):
    the diagonal Gaussian base through ``n_steps`` :class:`PlanarTransform` steps whose
    ``u, w, b`` the encoder outputs per example.

    Cheap (O(D) per step) but each step bends the density along one direction only, so many
    steps are needed for much flexibility.

    Args:
        in_features: the encoder's feature width (given by the backbone).
        latent_dim: D (given by the backbone).
        n_steps: the number of planar steps K (>= 1); the head outputs K(2D + 1) flow numbers.
    """

    def __init__(self, in_features: int, latent_dim: int, n_steps: int = 4) -> None:
        check_positive_int("n_steps", n_steps)
        super().__init__(in_features, latent_dim, n_steps * (2 * latent_dim + 1))
        self.n_steps = n_steps

    def forward(self, h: torch.Tensor) -> Distribution:
        """A ``TransformedDistribution``: batch shape (B,), event (latent_dim,)."""
        d = self.latent_dim
        base, params = self._base(h)
        steps = params.unflatten(-1, (self.n_steps, 2 * d + 1))
        transforms: list[Transform] = [
            PlanarTransform(steps[:, k, :d], steps[:, k, d : 2 * d], steps[:, k, 2 * d])
            for k in range(self.n_steps)
        ]
        return TransformedDistribution(base, transforms, validate_args=False)


@register_posterior("iaf")
class IAFHead(_FlowHead):
    """An inverse-autoregressive-flow posterior (Kingma et al., 2016,
    https://arxiv.org/abs/1606.04934): the diagonal Gaussian base through ``n_steps``
    :class:`IAFTransform` steps, each a :class:`MADE` fed with the encoder's context h (a
    ``context``-wide output of the head's linear layer); the autoregressive order is reversed
    between consecutive steps (the paper's permutation), so every coordinate can depend on every
    other after two steps.

    Sampling and ``log_prob`` of its own sample cost one MADE pass per step; ``log_prob`` of
    another z inverts each step exactly in D passes.

    Args:
        in_features: the encoder's feature width (given by the backbone).
        latent_dim: D (given by the backbone).
        n_steps: the number of IAF steps (>= 1).
        hidden: the hidden units of each step's MADE.
        context: the width of the context h.
    """

    def __init__(
        self,
        in_features: int,
        latent_dim: int,
        n_steps: int = 2,
        hidden: int = 64,
        context: int = 32,
    ) -> None:
        for name, value in (("n_steps", n_steps), ("hidden", hidden), ("context", context)):
            check_positive_int(name, value)
        super().__init__(in_features, latent_dim, context)
        self.n_steps, self.hidden, self.context = n_steps, hidden, context
        order = torch.arange(1, latent_dim + 1)
        self.steps = nn.ModuleList(
            MADE(latent_dim, context, hidden, order if k % 2 == 0 else order.flip(0))
            for k in range(n_steps)
        )

    def forward(self, h: torch.Tensor) -> Distribution:
        """A ``TransformedDistribution``: batch shape (B,), event (latent_dim,)."""
        base, context = self._base(h)
        transforms: list[Transform] = [
            IAFTransform(cast(MADE, made), context) for made in self.steps
        ]
        return TransformedDistribution(base, transforms, validate_args=False)
