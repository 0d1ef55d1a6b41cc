"""A fully connected VAE for flat (tabular) or image inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution

from pyvae.config import check_positive_ints
from pyvae.likelihoods import Likelihood
from pyvae.models.base import BaseVAE, data_size, register_model
from pyvae.nn import GaussianHead, mlp
from pyvae.priors import Prior

__all__ = ["MLPVAE"]


@register_model("mlp")
class MLPVAE(BaseVAE):
    """Fully connected encoder and decoder (Kingma and Welling, 2014, https://arxiv.org/abs/1312.6114).

    The input is flattened, passed through ``hidden_dims`` with ReLU to a diagonal Gaussian
    posterior; the decoder mirrors the hidden sizes back to ``prod(input_shape)`` outputs, reshaped
    to ``input_shape``.

    Args:
        input_shape: shape of one example, e.g. ``(1, 28, 28)`` or ``(20,)`` for tabular data.
        latent_dim: size of the latent space.
        hidden_dims: widths of the encoder's hidden layers (the decoder uses them reversed).
        likelihood: p(x|z) by name, config dict or instance (default ``"bernoulli"``).
        prior: p(z) by name, config dict or instance (default ``"normal"``).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 16,
        hidden_dims: Sequence[int] = (512, 256),
        likelihood: str | Mapping[str, Any] | Likelihood = "bernoulli",
        prior: str | Mapping[str, Any] | Prior = "normal",
    ) -> None:
        super().__init__(
            input_shape=input_shape, latent_dim=latent_dim, likelihood=likelihood, prior=prior
        )
        hidden = check_positive_ints("hidden_dims", hidden_dims)
        n_in = data_size(self.input_shape)
        self.encoder = nn.Sequential(nn.Flatten(), mlp([n_in, *hidden], final_activation=True))
        self.head = GaussianHead(hidden[-1], latent_dim)
        self.decoder = nn.Sequential(
            mlp([latent_dim, *reversed(hidden), n_in]), nn.Unflatten(1, self.input_shape)
        )

    def encode(self, x: torch.Tensor) -> Distribution:
        return self.head(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
