"""The VQ-VAE objective (van den Oord et al., 2017, https://arxiv.org/abs/1711.00937)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pyvae.config import ConfigError
from pyvae.kl import KLMethod
from pyvae.objectives import Objective, check_weight, register_objective
from pyvae.outputs import LossTerms, VAEOutput

if TYPE_CHECKING:
    from pyvae.models.base import BaseVAE

__all__ = ["VQObjective"]


@register_objective("vq")
class VQObjective(Objective):
    """``loss = mean_b(recon + codebook + beta * commitment)`` for a vector-quantised model.

    Per example, summed over grid positions and code dimensions (like every pyvae term):
    ``codebook = ||sg[z_e] - e||^2`` (moves the codes towards the encoder's outputs; left out of
    the loss when the model updates its codebook by EMA, where it is still reported) and
    ``commitment = ||z_e - sg[e]||^2`` (keeps the encoder near its codes), with ``z_e`` the
    encoder's output, ``e`` its nearest codes and ``sg`` stop-gradient. ``recon`` is
    ``-log p(x|z_q)`` at the straight-through quantised z; ``kl`` is the model's KL to the uniform
    prior over codes, the constant ``positions * log(codebook_size)`` (not optimised). Extras:
    ``codebook`` and ``commitment``, (B,).

    Args:
        beta: the commitment weight (0.25 in the paper), >= 0; ``model.loss(..., beta=b)``
            overrides it for one call.
    """

    requires_prior = False

    def __init__(self, beta: float = 0.25) -> None:
        super().__init__()
        self.beta = check_weight("beta", beta)

    def check_model(self, model: BaseVAE) -> None:
        """Refuse models without vector-quantised latents."""
        if not getattr(type(model), "vector_quantized", False):
            raise ConfigError(
                f"objective 'vq' needs a vector-quantised model (such as 'vqvae'), got "
                f"{type(model).__name__}"
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
        weight = self.beta if beta is None else beta
        posterior = out.posterior
        z_e, codes = getattr(posterior, "z_e", None), getattr(posterior, "codes", None)
        if z_e is None or codes is None:
            raise TypeError(
                f"out.posterior: expected the QuantizedPosterior of a vector-quantised model's "
                f"forward, got {type(posterior).__name__}"
            )
        recon = model.reconstruction_term(x, out)
        z_e, codes = z_e.float(), codes.float()
        codebook = (z_e.detach() - codes).pow(2).sum(-1)
        commitment = (z_e - codes.detach()).pow(2).sum(-1)
        regulariser = weight * commitment
        if not getattr(model, "ema", False):
            regulariser = regulariser + codebook
        kl = model.kl(out, method=kl_method)
        return LossTerms(
            loss=(recon + regulariser).mean(),
            recon=recon,
            kl=kl,
            extras={"codebook": codebook, "commitment": commitment},
        )
