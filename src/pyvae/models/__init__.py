"""The models. Importing this package registers ``mlp``, ``conv``, ``ae``, ``denoising`` and
``ladder``."""

from pyvae.models.base import MODELS, BaseVAE, VAEWrapper, register_model
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
from pyvae.models.ladder import LadderVAE
from pyvae.models.mlp import MLPVAE, Autoencoder

__all__ = [
    "CORRUPTIONS",
    "MLPVAE",
    "MODELS",
    "Autoencoder",
    "BaseVAE",
    "ConvVAE",
    "Corruption",
    "DenoisingVAE",
    "GaussianNoise",
    "LadderVAE",
    "Masking",
    "SaltAndPepper",
    "VAEWrapper",
    "register_corruption",
    "register_model",
]
