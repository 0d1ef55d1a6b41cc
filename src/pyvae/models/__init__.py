"""The models. Importing this package registers ``mlp``, ``conv`` and ``denoising``."""

from pyvae.models.base import MODELS, BaseVAE, register_model
from pyvae.models.conv import ConvVAE
from pyvae.models.denoising import (
    CORRUPTIONS,
    Corruption,
    DenoisingVAE,
    GaussianNoise,
    Masking,
    SaltAndPepper,
    register_corruption,
)
from pyvae.models.mlp import MLPVAE

__all__ = [
    "CORRUPTIONS",
    "MLPVAE",
    "MODELS",
    "BaseVAE",
    "ConvVAE",
    "Corruption",
    "DenoisingVAE",
    "GaussianNoise",
    "Masking",
    "SaltAndPepper",
    "register_corruption",
    "register_model",
]
