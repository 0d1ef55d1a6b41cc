"""pyvae: variational autoencoders for PyTorch.

>>> import pyvae
>>> model = pyvae.build("conv", latent_dim=4)  # an nn.Module; train it in your own loop
"""

# submodules reachable as attributes: pyvae.data.load_sprites, pyvae.metrics.mig, pyvae.training.fit
from pyvae import data as data
from pyvae import metrics as metrics
from pyvae import samplers as samplers
from pyvae import training as training
from pyvae.checkpoint import CheckpointError, load
from pyvae.config import ConfigError, Configurable
from pyvae.deployment import export, export_onnx
from pyvae.evaluation import elbo, iwae_bound, linear_warmup, log_likelihood
from pyvae.evaluator import EvaluationReport, evaluate
from pyvae.factory import build, list_models
from pyvae.kl import kl_divergence
from pyvae.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    GaussianLikelihood,
    LaplaceLikelihood,
    Likelihood,
    list_likelihoods,
    register_likelihood,
)
from pyvae.models import (
    CORRUPTIONS,
    MLPVAE,
    MODELS,
    VQVAE,
    Autoencoder,
    BaseVAE,
    ConvVAE,
    Corruption,
    DenoisingVAE,
    LadderVAE,
    VAEWrapper,
    register_corruption,
    register_model,
)
from pyvae.objectives import OBJECTIVES, Objective, list_objectives, register_objective
from pyvae.objectives.elbo import cyclical_annealing
from pyvae.outputs import LossTerms, VAEOutput
from pyvae.posteriors import POSTERIORS, PosteriorHead, list_posteriors, register_posterior
from pyvae.priors import (
    PRIORS,
    LearnedNormalPrior,
    MixtureOfGaussiansPrior,
    Prior,
    StandardNormalPrior,
    VampPrior,
    list_priors,
    register_prior,
)
from pyvae.registry import Registry, UnknownNameError
from pyvae.validation import set_validate_args

__version__ = "0.3.0"

__all__ = [
    "CORRUPTIONS",
    "LIKELIHOODS",
    "MLPVAE",
    "MODELS",
    "OBJECTIVES",
    "POSTERIORS",
    "PRIORS",
    "VQVAE",
    "Autoencoder",
    "BaseVAE",
    "BernoulliLikelihood",
    "CheckpointError",
    "ConfigError",
    "Configurable",
    "ContinuousBernoulliLikelihood",
    "ConvVAE",
    "Corruption",
    "DenoisingVAE",
    "EvaluationReport",
    "GaussianLikelihood",
    "LadderVAE",
    "LaplaceLikelihood",
    "LearnedNormalPrior",
    "Likelihood",
    "LossTerms",
    "MixtureOfGaussiansPrior",
    "Objective",
    "PosteriorHead",
    "Prior",
    "Registry",
    "StandardNormalPrior",
    "UnknownNameError",
    "VAEOutput",
    "VAEWrapper",
    "VampPrior",
    "__version__",
    "build",
    "cyclical_annealing",
    "elbo",
    "evaluate",
    "export",
    "export_onnx",
    "iwae_bound",
    "kl_divergence",
    "linear_warmup",
    "list_likelihoods",
    "list_models",
    "list_objectives",
    "list_posteriors",
    "list_priors",
    "load",
    "log_likelihood",
    "register_corruption",
    "register_likelihood",
    "register_model",
    "register_objective",
    "register_posterior",
    "register_prior",
    "set_validate_args",
]
