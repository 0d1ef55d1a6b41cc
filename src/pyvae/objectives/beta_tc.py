"""The beta-TC-VAE objective (Chen, Li, Grosse and Duvenaud, 2018, "Isolating Sources of
Disentanglement in Variational Autoencoders", https://arxiv.org/abs/1802.04942).

The KL term of the ELBO, averaged over the data, splits into three parts (the paper's eq. (2)):

* the index-code mutual information ``mi = E[log q(z|x) - log q(z)]``,
* the total correlation ``tc = E[log q(z) - sum_j log q(z_j)]``,
* the dimension-wise KL ``dim_kl = E[sum_j log q(z_j) - log p(z)]``,

where ``q(z) = (1/N) sum_n q(z|x_n)`` is the aggregate posterior over the N training examples.
The loss weights them separately, ``mean_b(recon + alpha * mi + beta * tc + gamma * dim_kl)``;
``beta > 1`` penalises the total correlation only, which encourages independent latent
dimensions. ``q(z_i)`` and ``q(z_ij)`` at the sample ``z_i`` of example i are estimated from the
minibatch (no pass over the data set), which is why the training-set size N is needed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from pyvae.config import ConfigError
from pyvae.kl import KLMethod
from pyvae.objectives import Objective, check_weight, register_objective
from pyvae.objectives._common import (
    diagonal_gaussian,
    f32,
    probe_posterior,
    require_diagonal_gaussian,
    require_factorised_prior,
)
from pyvae.outputs import LossTerms, VAEOutput

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE
    from pyvae.posteriors import PosteriorHead

__all__ = ["BetaTC", "tc_decomposition"]

_LOG_2PI = math.log(2 * math.pi)
_ESTIMATORS = ("mss", "mws")


def _log_weights(batch: int, dataset_size: int, estimator: str, like: torch.Tensor) -> torch.Tensor:
    """log w_ij, (B, B): the weight of q(z_i | x_j) in the estimate of q(z_i)."""
    if estimator == "mws":
        return like.new_full((batch, batch), -math.log(dataset_size * batch))
    own = -math.log(dataset_size)
    other = math.log(dataset_size - 1) - math.log(dataset_size) - math.log(batch - 1)
    eye = torch.eye(batch, dtype=torch.bool, device=like.device)
    return torch.where(
        eye, like.new_full((batch, batch), own), like.new_full((batch, batch), other)
    )


def tc_decomposition(
    loc: torch.Tensor,
    scale: torch.Tensor,
    z: torch.Tensor,
    log_pz: torch.Tensor,
    dataset_size: int,
    *,
    estimator: str = "mss",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example ``(mi, tc, dim_kl)`` of a diagonal Gaussian posterior, each of shape (B,),
    in nats, estimated from the minibatch.

    With ``m_ij = log q(z_i | x_j)`` (and per dimension ``m_ijd``), the aggregate densities are
    ``log q(z_i) ~ logsumexp_j(log w_ij + m_ij)`` and ``log q(z_id) ~ logsumexp_j(log w_ij +
    m_ijd)``. The weights ``w_ij``:

    * ``"mss"`` (default): ``1/N`` for the example's own posterior (``j = i``) and
      ``(N - 1) / (N (B - 1))`` for each other one: an unbiased estimate of ``q(z_i)`` when the
      other examples of the batch are drawn uniformly from the rest of the data, in the spirit
      of the paper's minibatch stratified sampling (its appendix; the weights here are pyvae's,
      chosen so that a batch holding the whole data set gives the exact mixture density).
    * ``"mws"``: ``1 / (N B)`` for every j, the minibatch-weighted sampling estimator as
      published by Chen et al. (and used by their code). Its ``log q(z)`` is, in expectation,
      a lower bound, low by about ``log N`` for broad posteriors (exactly ``log N`` when the
      batch is the whole data set), so its ``mi`` is high by about ``log N``, its ``tc`` by
      ``(D - 1) log N`` and its ``dim_kl`` low by ``D log N``; the gradients of the paper.

    For both, ``mi + tc + dim_kl = log q(z_i|x_i) - log p(z_i)``, the one-sample Monte Carlo
    KL at ``z_i``: its mean over the data is the KL term of the ELBO.

    Args:
        loc: the posterior means, shape (B, D).
        scale: the posterior standard deviations, shape (B, D), > 0.
        z: one sample per example, ``z_i ~ q(z|x_i)``, shape (B, D).
        log_pz: ``log p(z_i)`` under the prior, shape (B,).
        dataset_size: N, the number of training examples (>= 2).
        estimator: ``"mss"`` or ``"mws"``.
    """
    if estimator not in _ESTIMATORS:
        raise ConfigError(f"estimator: expected one of {_ESTIMATORS}, got {estimator!r}")
    batch = z.shape[0]
    if batch < 2:
        raise ValueError(
            f"x: the beta_tc objective estimates the aggregate posterior from the batch and "
            f"needs at least 2 examples, got a batch of {batch}"
        )
    loc, scale, z = f32(loc), f32(scale), f32(z)
    # m[i, j, d] = log N(z_id; loc_jd, scale_jd)
    standard = (z.unsqueeze(1) - loc.unsqueeze(0)) / scale.unsqueeze(0)
    m = -0.5 * standard * standard - scale.log().unsqueeze(0) - 0.5 * _LOG_2PI
    log_w = _log_weights(batch, dataset_size, estimator, z)
    log_qz_x = torch.diagonal(m, dim1=0, dim2=1).sum(0)  # (B,): log q(z_i | x_i)
    log_qz = torch.logsumexp(log_w + m.sum(-1), dim=1)
    log_prod = torch.logsumexp(log_w.unsqueeze(-1) + m, dim=1).sum(-1)
    log_pz = f32(log_pz)
    return log_qz_x - log_qz, log_qz - log_prod, log_prod - log_pz


@register_objective("beta_tc")
class BetaTC(Objective):
    """The beta-TC-VAE loss ``mean_b(recon + alpha * mi + beta * tc + gamma * dim_kl)`` (Chen
    et al., 2018), with the terms of :func:`tc_decomposition`.

    Needs a diagonal Gaussian posterior (``posterior="gaussian"``) and a prior that factorises
    over the latent dimensions (``"normal"``, ``"learned_normal"``); others are refused with a
    :class:`pyvae.ConfigError`. ``terms.kl`` is the per-example ``KL(q(z|x) || p(z))``
    (closed form), and ``terms.mi``, ``terms.tc``, ``terms.dim_kl`` the three estimated parts
    (their sum is the one-sample Monte Carlo KL). ``model.loss(..., beta=b)`` replaces the TC
    weight for one call. Batches need at least 2 examples; under DDP each process estimates
    from its own batch.

    Args:
        dataset_size: N, the number of training examples (>= 2), required: the estimator of the
            aggregate posterior needs it.
        alpha: the weight of the index-code mutual information, >= 0.
        beta: the weight of the total correlation, >= 0 (the paper's disentangling setting:
            6, with ``alpha = gamma = 1``).
        gamma: the weight of the dimension-wise KL, >= 0.
        estimator: ``"mss"`` (default, unbiased for q(z)) or ``"mws"`` (the paper's
            minibatch-weighted sampling); see :func:`tc_decomposition`.
    """

    def __init__(
        self,
        dataset_size: int | None = None,
        alpha: float = 1.0,
        beta: float = 6.0,
        gamma: float = 1.0,
        estimator: str = "mss",
    ) -> None:
        super().__init__()
        if isinstance(dataset_size, bool) or not isinstance(dataset_size, int) or dataset_size < 2:
            raise ConfigError(
                "dataset_size: the beta_tc objective estimates the aggregate posterior q(z) "
                "from minibatches and needs the number of training examples N, an integer >= 2 "
                f"(e.g. objective={{'name': 'beta_tc', 'dataset_size': 60000}}), got "
                f"{dataset_size!r}"
            )
        if estimator not in _ESTIMATORS:
            raise ConfigError(f"estimator: expected one of {_ESTIMATORS}, got {estimator!r}")
        self.dataset_size = dataset_size
        self.alpha = check_weight("alpha", alpha)
        self.beta = check_weight("beta", beta)
        self.gamma = check_weight("gamma", gamma)
        self.estimator = estimator

    def check_model(self, model: BaseVAE) -> None:
        """Refuse a model without a factorised prior or with structured latents."""
        super().check_model(model)
        from pyvae.objectives.elbo import _plain_kl

        if not _plain_kl(model):
            raise ConfigError(
                f"objective: 'beta_tc' decomposes the KL of one latent vector with a diagonal "
                f"Gaussian posterior; {type(model).__name__} has structured latents (it overrides "
                f"kl()); use objective='elbo'"
            )
        require_factorised_prior(model, "beta_tc", "prior")

    def check_posterior(self, head: PosteriorHead) -> None:
        """Refuse a posterior family that is not a diagonal Gaussian (checked on the head's
        output for one probe row when the model is built)."""
        super().check_posterior(head)
        q = probe_posterior(head)
        if q is not None and diagonal_gaussian(q) is None:
            raise ConfigError(
                f"posterior: objective 'beta_tc' needs a diagonal Gaussian posterior "
                f"(posterior='gaussian'), got {type(head).registered_name!r} "
                f"({type(q).__name__})"
            )

    def forward(
        self,
        model: BaseVAE,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        beta: float | None = None,
        kl_method: KLMethod = "auto",
    ) -> LossTerms:
        loc, scale = require_diagonal_gaussian(out.posterior, "beta_tc")
        z = f32(out.z)
        recon = model.reconstruction_term(x, out)
        kl = model.kl(out, method=kl_method)
        log_pz = model.prior_distribution().log_prob(z)
        mi, tc, dim_kl = tc_decomposition(
            loc, scale, z, log_pz, self.dataset_size, estimator=self.estimator
        )
        tc_weight = self.beta if beta is None else beta
        loss = (recon + self.alpha * mi + tc_weight * tc + self.gamma * dim_kl).mean()
        return LossTerms(
            loss=loss, recon=recon, kl=kl, extras={"mi": mi, "tc": tc, "dim_kl": dim_kl}
        )
