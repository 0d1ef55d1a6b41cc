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
from pyvae.nn import init_weights, mlp
from pyvae.objectives import Objective
from pyvae.posteriors import PosteriorHead
from pyvae.priors import Prior

__all__ = ["MLPVAE", "Autoencoder"]

Spec = str | Mapping[str, Any]


@register_model("mlp")
class MLPVAE(BaseVAE):
    """Fully connected encoder and decoder (Kingma and Welling, 2014, https://arxiv.org/abs/1312.6114).

    The input is flattened, passed through ``hidden_dims`` with ``activation`` (ReLU by default)
    to the posterior head; the
    decoder mirrors the hidden sizes back to ``prod(input_shape)`` outputs, reshaped to
    ``input_shape``. A conditional model (``num_classes``) appends the one-hot label to the
    encoder's features and to z.

    Args:
        input_shape: shape of one example, e.g. ``(1, 28, 28)`` or ``(20,)`` for tabular data.
        latent_dim: size of the latent space.
        hidden_dims: widths of the encoder's hidden layers (the decoder uses them reversed).
        likelihood: p(x|z) by name, config dict or instance (default ``"bernoulli"``).
        prior: p(z) by name, config dict or instance (default ``"normal"``), or ``None``.
        posterior: the posterior family q(z|x) (default ``"gaussian"``; see
            :func:`pyvae.list_posteriors`).
        objective: the training objective (default ``"elbo"``; see :func:`pyvae.list_objectives`).
        num_classes: the number of classes of a conditional model, or ``None``.
        init: the weight initialisation of the encoder, the decoder and a posterior head built
            by name: ``"he"`` (the default, He et al. 2015), ``"lecun"`` (N(0, 1/fan_in): 5 nats
            slower at 5 epochs, level on full MNIST at 50) or ``"torch"`` (PyTorch's default,
            markedly slower); see :func:`pyvae.nn.init_weights` and the docs' page on the
            defaults.
        activation: the hidden layers' activation, a name from :data:`pyvae.nn.ACTIVATIONS`
            (``"relu"`` by default; ``"tanh"`` is Burda et al.'s and Kingma and Welling's).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 16,
        hidden_dims: Sequence[int] = (512, 256),
        likelihood: Spec | Likelihood = "bernoulli",
        prior: Spec | Prior | None = "normal",
        posterior: Spec | PosteriorHead = "gaussian",
        objective: Spec | Objective = "elbo",
        num_classes: int | None = None,
        init: str = "he",
        activation: str = "relu",
    ) -> None:
        super().__init__(
            input_shape=input_shape,
            latent_dim=latent_dim,
            likelihood=likelihood,
            prior=prior,
            objective=objective,
            num_classes=num_classes,
        )
        hidden = check_positive_ints("hidden_dims", hidden_dims)
        n_in = data_size(self.input_shape)
        self.encoder = nn.Sequential(
            nn.Flatten(), mlp([n_in, *hidden], final_activation=True, activation=activation)
        )
        self.head = self.build_posterior(posterior, hidden[-1])
        self.decoder = nn.Sequential(
            mlp([latent_dim + self.condition_dim, *reversed(hidden), n_in], activation=activation),
            nn.Unflatten(1, self.input_shape),
        )
        # the backbone's networks, and the head when built here (an instance keeps its weights)
        init_weights(
            [self.encoder, self.decoder]
            + ([] if isinstance(posterior, PosteriorHead) else [self.head]),
            init,
            activation,
        )

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return self.head(self.condition(self.encoder(x), y))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.condition(z, y))


@register_model("ae")
class Autoencoder(MLPVAE):
    """A deterministic autoencoder (as in the deep-autoencoder tutorial: 784-128-64-12-3): the
    fully connected backbone with a point-mass posterior, the ``"ae"`` objective (the
    reconstruction term; ``objective={"name": "ae", "l2": 1e-3}`` adds the RAE latent penalty)
    and no prior.

    It has no ELBO and no likelihood bound; to generate, fit a sampler to its codes
    (:mod:`pyvae.samplers`). The same parts on another backbone:
    ``pyvae.build("conv", posterior="point", objective="ae")`` (that model keeps the default prior
    N(0, I), which the ``"ae"`` objective does not train: sample it through a fitted sampler).

    Args:
        input_shape: shape of one example.
        latent_dim: size of the code (3 by default, to plot it).
        hidden_dims: widths of the encoder's hidden layers (the decoder uses them reversed).
        likelihood: p(x|z), the reconstruction loss (``"bernoulli"``: binary cross-entropy;
            ``"gaussian"``: squared error).
        objective: ``"ae"`` by default.
        num_classes: the number of classes of a conditional autoencoder, or ``None``.
        init: the weight initialisation, ``"he"`` (the default), ``"lecun"`` or ``"torch"``
            (see :class:`MLPVAE`).
        activation: the hidden layers' activation (see :class:`MLPVAE`).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 3,
        hidden_dims: Sequence[int] = (128, 64, 12),
        likelihood: Spec | Likelihood = "bernoulli",
        objective: Spec | Objective = "ae",
        num_classes: int | None = None,
        init: str = "he",
        activation: str = "relu",
    ) -> None:
        super().__init__(
            input_shape=input_shape,
            latent_dim=latent_dim,
            hidden_dims=hidden_dims,
            likelihood=likelihood,
            prior=None,
            posterior="point",
            objective=objective,
            num_classes=num_classes,
            init=init,
            activation=activation,
        )
