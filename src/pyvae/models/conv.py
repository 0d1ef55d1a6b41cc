"""A convolutional VAE for images of any size (C, H, W)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn
from torch.distributions import Distribution

from pyvae.config import ConfigError, check_positive_int, check_positive_ints
from pyvae.likelihoods import Likelihood
from pyvae.models.base import BaseVAE, register_model
from pyvae.nn import conv_decoder, conv_encoder, conv_output_sizes, init_weights
from pyvae.objectives import Objective
from pyvae.posteriors import PosteriorHead
from pyvae.priors import Prior

Spec = str | Mapping[str, Any]

__all__ = ["ConvVAE"]


@register_model("conv")
class ConvVAE(BaseVAE):
    """Strided convolutions down, a dense bottleneck, transposed convolutions up.

    Each of the ``len(channels)`` encoder layers is a 4x4 convolution of stride 2 and padding 1
    that halves height and width (rounding down: 28 -> 14 -> 7; 3x3 kernels round up); the
    decoder's transposed convolutions restore the exact input size, so any (C, H, W) large enough
    for the layers works. Between the convolutions and the latent space sits
    one dense layer of ``hidden_dim`` units on each side. A conditional model (``num_classes``)
    appends the one-hot label to the dense features and to z.

    Args:
        input_shape: ``(C, H, W)``; MNIST-shaped ``(1, 28, 28)`` by default.
        latent_dim: size of the latent space.
        channels: output channels of the encoder's convolutions (the decoder mirrors them).
        hidden_dim: width of the dense layer between the convolutions and the latent space.
        kernel_size: 4 (the default, as in the common conv VAE) or 3 (pyvae 0.2's kernels,
            about 1 nat worse on MNIST at 50 epochs; see the docs' page on the defaults).
        batch_norm: add ``BatchNorm2d`` after each hidden convolution (as in the seeds). Under DDP
            convert with ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``.
        likelihood: p(x|z) by name, config dict or instance (default ``"bernoulli"``).
        prior: p(z) by name, config dict or instance (default ``"normal"``), or ``None``.
        posterior: the posterior family q(z|x) (default ``"gaussian"``; see
            :func:`pyvae.list_posteriors`).
        objective: the training objective (default ``"elbo"``; see :func:`pyvae.list_objectives`).
        num_classes: the number of classes of a conditional model, or ``None``.
        init: the weight initialisation of the encoder, the decoder and a posterior head built
            by name: ``"lecun"`` (the default, N(0, 1/fan_in)), ``"he"`` (pyvae 0.2's default;
            fastest in the first epochs, about 2 nats behind at 50) or ``"torch"`` (PyTorch's
            default, 25 nats behind at 5 epochs); see :func:`pyvae.nn.init_weights` and the
            docs' page on the defaults.
    """

    added_arguments: ClassVar[Mapping[str, Any]] = MappingProxyType({"kernel_size": 3})

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 16,
        channels: Sequence[int] = (32, 64),
        hidden_dim: int = 256,
        kernel_size: int = 4,
        batch_norm: bool = False,
        likelihood: Spec | Likelihood = "bernoulli",
        prior: Spec | Prior | None = "normal",
        posterior: Spec | PosteriorHead = "gaussian",
        objective: Spec | Objective = "elbo",
        num_classes: int | None = None,
        init: str = "lecun",
    ) -> None:
        super().__init__(
            input_shape=input_shape,
            latent_dim=latent_dim,
            likelihood=likelihood,
            prior=prior,
            objective=objective,
            num_classes=num_classes,
        )
        if len(self.input_shape) != 3:
            raise ConfigError(
                f"input_shape: the conv model expects images (C, H, W), got "
                f"{tuple(input_shape)!r}; use the 'mlp' model for flat inputs"
            )
        channels = check_positive_ints("channels", channels)
        hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        if not isinstance(batch_norm, bool):
            raise ConfigError(f"batch_norm: expected a bool, got {batch_norm!r}")
        c, h, w = self.input_shape
        heights = conv_output_sizes(h, len(channels), kernel_size)
        widths = conv_output_sizes(w, len(channels), kernel_size)
        if min(heights + widths) < 1:
            raise ConfigError(
                f"input_shape: {tuple(input_shape)!r} is too small for {len(channels)} "
                f"convolutions of kernel {kernel_size} (heights {heights}, widths {widths}); "
                f"use fewer layers (a shorter channels), kernel_size=3 (which rounds up) or a "
                f"larger input"
            )
        bottleneck = (channels[-1], heights[-1], widths[-1])
        n_features = channels[-1] * heights[-1] * widths[-1]

        self.encoder = nn.Sequential(
            conv_encoder(c, channels, batch_norm, kernel_size),
            nn.Flatten(),
            nn.Linear(n_features, hidden_dim),
            nn.ReLU(),
        )
        self.head = self.build_posterior(posterior, hidden_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim + self.condition_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, n_features),
            nn.ReLU(),
            nn.Unflatten(1, bottleneck),
            conv_decoder(c, channels, heights, widths, batch_norm, kernel_size),
        )
        # the backbone's networks, and the head when built here (an instance keeps its weights)
        init_weights(
            [self.encoder, self.decoder]
            + ([] if isinstance(posterior, PosteriorHead) else [self.head]),
            init,
        )

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return self.head(self.condition(self.encoder(x), y))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.condition(z, y))
