"""The small typed results that models return."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Distribution

__all__ = ["LossTerms", "VAEOutput"]


@dataclass
class VAEOutput:
    """What :meth:`pyvae.BaseVAE.forward` returns for a batch of B inputs.

    Attributes:
        posterior: q(z|x), batch shape (B,), event shape (latent_dim,).
        z: the reparameterised sample from ``posterior``, shape (B, latent_dim).
        params: the decoder's parameters of p(x|z) (e.g. Bernoulli logits), shape (B, *input_shape).
    """

    posterior: Distribution
    z: torch.Tensor
    params: torch.Tensor


@dataclass
class LossTerms:
    """The terms of the negative ELBO, in nats.

    Attributes:
        loss: scalar to backpropagate: ``mean over the batch of (recon + beta * kl)``.
        recon: per-example reconstruction term ``-log p(x|z)``, summed over data dimensions, (B,).
        kl: per-example ``KL(q(z|x) || p(z))`` (closed form or one-sample Monte Carlo), (B,).
    """

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor

    @property
    def elbo(self) -> torch.Tensor:
        """Per-example evidence lower bound ``-(recon + kl)`` (unweighted by beta), nats, (B,)."""
        return -(self.recon + self.kl)
