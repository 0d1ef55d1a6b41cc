"""Reusable network blocks: MLP stacks and conv stacks that size themselves (posterior heads are
in :mod:`pyvae.posteriors`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import nn

from pyvae.config import ConfigError

__all__ = ["INITS", "conv_decoder", "conv_encoder", "conv_output_sizes", "init_weights", "mlp"]

#: The weight initialisations a built-in backbone accepts (its ``init=`` argument).
INITS = ("he", "torch")


def init_weights(modules: Sequence[nn.Module], init: str) -> None:
    """Initialise the linear and (transposed) convolution layers in ``modules``, in place.

    ``"he"``: He et al. (2015, https://arxiv.org/abs/1502.01852), weights drawn from
    N(0, 2 / fan_in) (``torch.nn.init.kaiming_normal_`` with the ReLU gain), biases zero: it keeps
    the activations' scale through ReLU layers. ``"torch"``: leave PyTorch's default (uniform,
    variance 1 / (3 fan_in), which shrinks the signal at each ReLU layer); on MNIST it learned
    10 to 25 nats slower in the first epochs (the comparison is on the docs' defaults page).
    """
    if init not in INITS:
        raise ConfigError(f"init: expected one of {INITS}, got {init!r}")
    if init == "torch":
        return
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)


def mlp(sizes: Sequence[int], *, final_activation: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` with ReLU between them (and
    after the last one if ``final_activation``): maps (B, sizes[0]) to (B, sizes[-1])."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if final_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def conv_output_sizes(size: int, n_layers: int) -> list[int]:
    """Spatial sizes through ``n_layers`` convolutions of kernel 3, stride 2, padding 1.

    Each layer maps ``s`` to ``ceil(s / 2)``; the list starts with ``size``.
    """
    sizes = [size]
    for _ in range(n_layers):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def conv_encoder(in_channels: int, channels: Sequence[int], batch_norm: bool) -> nn.Sequential:
    """Strided 3x3 convolutions, each halving height and width (rounding up), with ReLU (and
    ``BatchNorm2d`` before it if ``batch_norm``): maps (B, in_channels, H, W) to
    (B, channels[-1], H', W') with H', W' from :func:`conv_output_sizes`."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip([in_channels, *channels[:-1]], channels, strict=True):
        layers.append(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def conv_decoder(
    out_channels: int,
    channels: Sequence[int],
    heights: Sequence[int],
    widths: Sequence[int],
    batch_norm: bool,
) -> nn.Sequential:
    """The mirror of :func:`conv_encoder`: 3x3 transposed convolutions of stride 2 whose output
    padding restores the encoder's sizes exactly (``heights``/``widths`` from
    :func:`conv_output_sizes`). The last layer maps to ``out_channels`` with no activation."""
    layers: list[nn.Module] = []
    reversed_channels = [*reversed(channels), out_channels]
    n = len(channels)
    for i in range(n):
        c_in, c_out = reversed_channels[i], reversed_channels[i + 1]
        h_in, w_in = heights[n - i], widths[n - i]
        h_out, w_out = heights[n - i - 1], widths[n - i - 1]
        padding = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))  # each 0 or 1
        last = i == n - 1
        layers.append(
            nn.ConvTranspose2d(
                c_in,
                c_out,
                3,
                stride=2,
                padding=1,
                output_padding=padding,
                bias=last or not batch_norm,
            )
        )
        if not last:
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
