"""The InfoVAE objective with the MMD divergence (Zhao, Song and Ermon, 2019, "InfoVAE:
Balancing Learning and Inference in Variational Autoencoders",
https://arxiv.org/abs/1706.02262).

The loss (the paper's eq. (6) with D = MMD, per example, averaged over the batch) is::

    recon + (1 - alpha) * KL(q(z|x) || p(z)) + (alpha + lam - 1) * MMD(q(z), p(z))

``lam`` (the paper's lambda) weighs the divergence of the aggregate posterior q(z) from the
prior; ``alpha`` trades the mutual information between x and z (``alpha = 1``: no KL term, the
"MMD-VAE"). The encoder stays a stochastic (e.g. Gaussian) posterior, so ``log_likelihood`` and
the ELBO stay defined.
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

__all__ = ["MMD", "mmd_per_example"]

_KERNELS = ("imq", "rbf")


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def _kernel(a: torch.Tensor, b: torch.Tensor, kernel: str, scale: float) -> torch.Tensor:
    """k(a_i, b_j), (n, m), with ``c = 2 D scale^2``."""
    c = 2.0 * a.shape[-1] * scale * scale
    sq = (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)
    return c / (c + sq) if kernel == "imq" else torch.exp(-sq / c)


def mmd_per_example(
    z: torch.Tensor, prior_z: torch.Tensor, *, kernel: str = "imq", scale: float = 1.0
) -> torch.Tensor:
    """Per-example terms of the unbiased estimate of ``MMD^2(q(z), p(z))`` (Gretton et al.,
    2012, eq. (3)), shape (B,), float32: their mean over the batch is the U-statistic
    ``sum_{i != j} [k(z_i, z_j) + k(p_i, p_j)] / (B (B - 1)) - 2 sum_{i, j} k(z_i, p_j) / B^2``
    (which can be slightly negative).

    Kernels, with ``c = 2 D scale^2``: ``"imq"`` (inverse multiquadratic, ``c / (c + |a-b|^2)``,
    as in Tolstikhin et al., 2018) and ``"rbf"`` (``exp(-|a-b|^2 / c)``).

    Args:
        z: samples of the aggregate posterior (one per example), shape (B, D), B >= 2.
        prior_z: as many samples of the prior, shape (B, D).
        kernel: ``"imq"`` or ``"rbf"``.
        scale: the kernel's bandwidth per dimension, > 0.
    """
    if kernel not in _KERNELS:
        raise ConfigError(f"kernel: expected one of {_KERNELS}, got {kernel!r}")
    if z.shape != prior_z.shape or z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(
            f"z, prior_z: expected two tensors of the same shape (B, D) with B >= 2, got "
            f"{tuple(z.shape)} and {tuple(prior_z.shape)}"
        )
    z, prior_z = f32(z), f32(prior_z)
    n = z.shape[0]
    off = 1.0 - torch.eye(n, dtype=z.dtype, device=z.device)
    k_zz = (_kernel(z, z, kernel, scale) * off).sum(1) / (n - 1)
    k_pp = (_kernel(prior_z, prior_z, kernel, scale) * off).sum(1) / (n - 1)
    k_zp = _kernel(z, prior_z, kernel, scale).sum(1) / n
    return k_zz + k_pp - 2.0 * k_zp


@register_objective("mmd")
class MMD(Objective):
    """InfoVAE with the MMD divergence (Zhao et al., 2019): ``mean_b(recon + (1 - alpha) * kl
    + (alpha + lam - 1) * mmd)``, with the unbiased MMD estimate of :func:`mmd_per_example`
    between the batch's samples ``out.z`` and as many fresh samples of the prior.

    ``terms.kl`` is the per-example ``KL(q(z|x) || p(z))`` and ``terms.mmd`` the per-example
    MMD terms (their batch mean is the MMD estimate). Batches need at least 2 examples; under
    DDP each process estimates from its own batch. ``model.loss(..., beta=b)`` replaces the KL
    weight ``1 - alpha`` for one call.

    Args:
        alpha: the paper's alpha, <= 1 (default 0: the KL keeps its full weight; 1 drops it).
        lam: the paper's lambda, > 0, with ``alpha + lam >= 1``; the MMD's weight is
            ``alpha + lam - 1``. The default 1000 puts the MMD, a number of order 1/B to 1, on
            the scale of a reconstruction term summed over hundreds of pixels; tune it for
            your data.
        kernel: ``"imq"`` (default) or ``"rbf"``.
        scale: the kernel bandwidth per latent dimension, > 0 (1 matches a standard normal
            prior).
    """

    def __init__(
        self, alpha: float = 0.0, lam: float = 1000.0, kernel: str = "imq", scale: float = 1.0
    ) -> None:
        super().__init__()
        self.alpha = _finite("alpha", alpha)
        self.lam = _finite("lam", lam)
        if self.alpha > 1:
            raise ConfigError(
                f"alpha: expected a number <= 1 (the KL weight is 1 - alpha), got {alpha!r}"
            )
        if self.lam <= 0:
            raise ConfigError(f"lam: expected a number > 0, got {lam!r}")
        if self.alpha + self.lam < 1:
            raise ConfigError(
                f"lam: expected alpha + lam >= 1 (the MMD's weight alpha + lam - 1 must be >= 0), "
                f"got alpha={alpha!r}, lam={lam!r}"
            )
        if kernel not in _KERNELS:
            raise ConfigError(f"kernel: expected one of {_KERNELS}, got {kernel!r}")
        self.kernel = kernel
        self.scale = _finite("scale", scale)
        if self.scale <= 0:
            raise ConfigError(f"scale: expected a number > 0, got {scale!r}")

    def forward(
        self,
        model: BaseVAE,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        beta: float | None = None,
        kl_method: KLMethod = "auto",
    ) -> LossTerms:
        recon = model.reconstruction_term(x, out)
        kl = model.kl(out, method=kl_method)
        prior = model.prior_distribution()
        shape = torch.Size([out.z.shape[0]])
        prior_z = prior.rsample(shape) if prior.has_rsample else prior.sample(shape)
        mmd = mmd_per_example(out.z, prior_z, kernel=self.kernel, scale=self.scale)
        kl_weight = 1.0 - self.alpha if beta is None else beta
        loss = (recon + kl_weight * kl + (self.alpha + self.lam - 1.0) * mmd).mean()
        return LossTerms(loss=loss, recon=recon, kl=kl, extras={"mmd": mmd})
