"""The denoising VAE (Im, Ahn, Memisevic and Bengio, 2017, https://arxiv.org/abs/1511.06406).

It wraps any registered model (the backbone): in training mode the encoder sees a corrupted input
x~ ~ c(x~|x), while the reconstruction term scores the decoder against the clean x, which trains the
denoising variational lower bound. In eval mode it behaves exactly like its backbone.
Corruptions are swappable components (:data:`CORRUPTIONS`).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution

from pyvae.config import ConfigError, Configurable
from pyvae.models.base import MODELS, BaseVAE, VAEWrapper, register_model
from pyvae.registry import Registry

__all__ = [
    "CORRUPTIONS",
    "Corruption",
    "DenoisingVAE",
    "GaussianNoise",
    "Masking",
    "SaltAndPepper",
    "register_corruption",
]


class Corruption(Configurable, nn.Module, abc.ABC):
    """A random corruption x -> x~ of the same shape, applied to the encoder's input."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The corrupted batch, same shape and dtype as ``x``."""


CORRUPTIONS: Registry[Corruption] = Registry("corruption", Corruption, "pyvae.corruptions")
register_corruption = CORRUPTIONS.register


def _check_probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{name}: expected a probability in [0, 1), got {value!r}")
    return float(value)


@register_corruption("gaussian")
class GaussianNoise(Corruption):
    """Additive Gaussian noise ``x + std * eps``, eps ~ N(0, I) (not clipped).

    Args:
        std: the noise's standard deviation, >= 0 (in the data's units).
    """

    def __init__(self, std: float = 0.25) -> None:
        super().__init__()
        if (
            isinstance(std, bool)
            or not isinstance(std, (int, float))
            or not (math.isfinite(std) and std >= 0)
        ):
            raise ConfigError(f"std: expected a finite number >= 0, got {std!r}")
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn_like(x)


@register_corruption("masking")
class Masking(Corruption):
    """Masking noise: each value is set to 0 with probability ``p``, independently.

    Args:
        p: the probability that a value is dropped, in [0, 1).
    """

    def __init__(self, p: float = 0.25) -> None:
        super().__init__()
        self.p = _check_probability("p", p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (torch.rand_like(x) >= self.p).to(x.dtype)


@register_corruption("salt_and_pepper")
class SaltAndPepper(Corruption):
    """Salt-and-pepper noise for data in [0, 1]: with probability ``p`` a value is replaced by 0
    or 1 (each with probability ``p / 2``).

    Args:
        p: the probability that a value is replaced, in [0, 1).
    """

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        self.p = _check_probability("p", p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.rand_like(x)
        salt = (u < self.p / 2).to(x.dtype)
        keep = (u >= self.p).to(x.dtype)
        return x * keep + salt


@register_model("denoising")
class DenoisingVAE(VAEWrapper):
    """A denoising VAE around a backbone model (see the module docstring): a
    :class:`~pyvae.models.VAEWrapper` that corrupts the encoder's input in training mode.

    ``likelihood``, ``prior``, ``objective``, ``input_shape``, ``latent_dim`` and
    ``num_classes`` are the backbone's.

    Args:
        backbone: the model to wrap: a registered name, a config dict or a model instance.
        corruption: the corruption by name (``"gaussian"``, ``"masking"``, ``"salt_and_pepper"``),
            config dict (``{"name": "gaussian", "std": 0.5}``) or instance.
        **backbone_config: keyword arguments for the backbone when it is given by name or dict
            (``latent_dim``, ``input_shape``, ``likelihood``, ...).
    """

    def __init__(
        self,
        backbone: str | Mapping[str, Any] | BaseVAE = "mlp",
        corruption: str | Mapping[str, Any] | Corruption = "gaussian",
        **backbone_config: Any,
    ) -> None:
        if isinstance(backbone, BaseVAE) and backbone_config:
            raise ConfigError(
                f"backbone: got a model instance and backbone arguments "
                f"{sorted(backbone_config)}; configure the instance instead"
            )
        super().__init__(MODELS.build(backbone, **backbone_config))
        self.corruption = CORRUPTIONS.build(corruption)

    @property
    def config(self) -> dict[str, Any]:
        """The registered name, the backbone's whole config (with the arguments given here for
        it) and the corruption's: a checkpoint records every backbone argument, so a backbone
        default changed later does not change the model it rebuilds."""
        return {
            "name": type(self).registered_name,
            "backbone": self.backbone.config,
            "corruption": self.corruption.config,
        }

    @classmethod
    def upgrade_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The backbone's stored config upgraded by its own class (older checkpoints stored a
        backbone name beside its arguments; they are joined into one config)."""
        out = dict(config)
        backbone = out.pop("backbone", "mlp")
        extra = {k: out.pop(k) for k in list(out) if k not in ("name", "corruption")}
        spec = {"name": backbone} if isinstance(backbone, str) else backbone
        name = spec.get("name") if isinstance(spec, Mapping) else None
        if not isinstance(name, str) or name not in MODELS:
            return dict(config)  # building it reports what is wrong
        out["backbone"] = MODELS.get(name).upgrade_config({**spec, **extra})
        return out

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """q(z|x~): the backbone's posterior of the corrupted input in training mode, of the
        clean input in eval mode."""
        return self.backbone._encode(self.corruption(x) if self.training else x, y)
