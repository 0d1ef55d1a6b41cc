"""The models. Importing this package registers ``mlp``, ``conv``, ``ae``, ``denoising``,
``ladder`` and ``vqvae``."""

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
from pyvae.models.vqvae import VQVAE

__all__ = [
    "CORRUPTIONS",
    "MLPVAE",
    "MODELS",
    "VQVAE",
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
