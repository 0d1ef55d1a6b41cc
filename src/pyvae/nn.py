"""Reusable network blocks: MLP stacks and conv stacks that size themselves (posterior heads are
in :mod:`pyvae.posteriors`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

from torch import nn

from pyvae.config import ConfigError

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "activation_layer",
    "conv_decoder",
    "conv_encoder",
    "conv_output_sizes",
    "init_weights",
    "mlp",
]

#: The weight initialisations a built-in backbone accepts (its ``init=`` argument).
INITS = ("he", "torch")

#: The hidden-layer activations a fully connected backbone accepts (its ``activation=``
#: argument), with the torch module of each.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}

# the gain of torch.nn.init.calculate_gain for each activation (He-style N(0, gain^2 / fan_in))
_Gain = Literal["relu", "tanh", "leaky_relu"]
_GAINS: dict[str, _Gain] = {"tanh": "tanh", "leaky_relu": "leaky_relu"}


def _check_activation(activation: str) -> str:
    """The name of a hidden-layer activation, checked against :data:`ACTIVATIONS`."""
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ConfigError(f"activation: expected one of {tuple(ACTIVATIONS)}, got {activation!r}")
    return activation


def activation_layer(activation: str) -> nn.Module:
    """A new module of the named activation (see :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[_check_activation(activation)]()


def init_weights(modules: Sequence[nn.Module], init: str, activation: str = "relu") -> None:
    """Initialise the linear and (transposed) convolution layers in ``modules``, in place.

    ``"he"``: He et al. (2015, https://arxiv.org/abs/1502.01852), weights drawn from
    N(0, gain^2 / fan_in) (``torch.nn.init.kaiming_normal_``; gain sqrt(2) for ReLU and the
    ReLU-like activations, 5/3 for tanh), biases zero: it keeps the activations' scale through
    the layers. ``"torch"``: leave PyTorch's default (uniform,
    variance 1 / (3 fan_in), which shrinks the signal at each ReLU layer); on MNIST it learned
    10 to 25 nats slower in the first epochs (the comparison is on the docs' defaults page).

    A module whose layers need a particular start (the IAF's forget-gate bias, which starts each
    flow step near the identity; the full-covariance head's zero off-diagonal weights, which
    start it as the diagonal Gaussian) defines ``after_init_weights()``, which sets that start;
    this function calls it after re-initialising the layers, so the start is not overwritten.
    """
    if init not in INITS:
        raise ConfigError(f"init: expected one of {INITS}, got {init!r}")
    nonlinearity: _Gain = _GAINS.get(_check_activation(activation), "relu")
    if init == "torch":
        return
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity=nonlinearity)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        for part in module.modules():  # a deliberate start survives (see below)
            after = getattr(part, "after_init_weights", None)
            if callable(after):
                after()


def mlp(
    sizes: Sequence[int], *, final_activation: bool = False, activation: str = "relu"
) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` with ``activation`` (ReLU by
    default) between them (and after the last one if ``final_activation``): maps (B, sizes[0])
    to (B, sizes[-1])."""
    _check_activation(activation)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if final_activation or i < len(sizes) - 2:
            layers.append(activation_layer(activation))
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
