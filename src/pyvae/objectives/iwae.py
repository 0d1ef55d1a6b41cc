"""The importance-weighted autoencoder objective (Burda, Grosse and Salakhutdinov, 2016,
"Importance Weighted Autoencoders", https://arxiv.org/abs/1509.00519).

The loss is ``-mean_b log (1/k) sum_i w_i`` with ``log w_i = log p(x|z_i) + log p(z_i) -
log q(z_i|x)``, ``z_i ~ q(z|x)``: the same bound as :func:`pyvae.iwae_bound`, a lower bound on
log p(x) that tightens as ``k`` grows (``k = 1`` is the ELBO with a Monte Carlo KL).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from pyvae.config import ConfigError
from pyvae.kl import KLMethod
from pyvae.objectives import Objective, register_objective
from pyvae.objectives._common import f32
from pyvae.outputs import LossTerms, VAEOutput

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE

__all__ = ["IWAE"]


@register_objective("iwae")
class IWAE(Objective):
    """The IWAE training loss ``-mean_b iwae_bound_k(x)`` (Burda et al., 2016).

    It reuses the forward pass: the posterior ``out.posterior`` and its sample ``out.z``
    (decoded as ``out.params``) are the first of the ``k`` importance samples; the other
    ``k - 1`` are drawn from ``out.posterior`` and decoded in one batch of ``(k - 1) * B``
    (labels of a conditional model repeated). ``terms.recon`` (``-log p(x|z)`` at ``out.z``) and
    ``terms.kl`` (``KL(q(z|x) || p(z))``) are the one-sample ELBO's terms, so ``terms.elbo`` is
    the ELBO; ``terms.iwae`` is the per-example bound (B,), and ``loss = -mean(terms.iwae)``.
    Likelihood and densities are computed in float32 under 16-bit autocast.

    Args:
        k: the number of importance samples per example, an integer >= 1.
    """

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k: expected an integer >= 1 (importance samples), got {k!r}")
        self.k = k

    def forward(
        self,
        model: BaseVAE,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        beta: float | None = None,
        kl_method: KLMethod = "auto",
    ) -> LossTerms:
        if beta is not None:
            raise ValueError(
                "beta: the 'iwae' objective has no KL weight (the bound weighs the samples); "
                "leave beta unset or use objective='elbo'"
            )
        posterior, y = out.posterior, out.y
        prior = model.prior_distribution()
        recon = model.reconstruction_term(x, out)
        kl = model.kl(out, method=kl_method)
        z = f32(out.z).unsqueeze(0)  # (1, B, D)
        log_px = (-recon).unsqueeze(0)  # (1, B)
        batch = x.shape[0]
        if self.k > 1:
            n = self.k - 1
            more = posterior.rsample(torch.Size([n]))  # (k-1, B, D)
            labels = None if y is None else y.expand(n, batch).reshape(n * batch)
            params = model._decode(more.reshape(n * batch, -1), labels)
            repeated = x.expand(n, *x.shape).reshape(n * batch, *x.shape[1:])
            log_more = model.likelihood.log_prob(repeated, f32(params)).view(n, batch)
            z = torch.cat([z, f32(more)])
            log_px = torch.cat([log_px, log_more])
        log_w = log_px + f32(prior.log_prob(z)) - f32(posterior.log_prob(z))
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.k)
        return LossTerms(loss=-bound.mean(), recon=recon, kl=kl, extras={"iwae": bound})
