"""The small typed results that models return."""

from __future__ import annotations

from dataclasses import dataclass, field

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
        y: the class labels of a conditional model, shape (B,), else ``None``.
    """

    posterior: Distribution
    z: torch.Tensor
    params: torch.Tensor
    y: torch.Tensor | None = None


@dataclass
class LossTerms:
    """The terms of a model's objective, in nats, per example unless said otherwise.

    Attributes:
        loss: the scalar to backpropagate (for the ELBO: the batch mean of ``recon + beta * kl``).
        recon: per-example reconstruction term ``-log p(x|z)``, summed over data dimensions, (B,).
        kl: per-example ``KL(q(z|x) || p(z))`` (closed form or one-sample Monte Carlo), (B,);
            zeros for objectives without one (the autoencoder).
        extras: further per-example terms of the objective (e.g. ``tc`` of beta-TC, ``mmd`` of
            InfoVAE, ``kl_layers`` (B, L) of a hierarchical model), also readable as attributes:
            ``terms.tc``.
    """

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getattr__(self, name: str) -> torch.Tensor:
        extras = self.__dict__.get("extras", {})
        if name in extras:
            return extras[name]
        raise AttributeError(
            f"LossTerms has no term {name!r}; this objective reports loss, recon, kl"
            + (f" and {', '.join(sorted(extras))}" if extras else "")
        )

    @property
    def elbo(self) -> torch.Tensor:
        """Per-example evidence lower bound ``-(recon + kl)`` (unweighted by beta), nats, (B,)."""
        return -(self.recon + self.kl)
