"""The contract every pyvae model follows: encode, reparameterize, decode, loss."""

from __future__ import annotations

import abc
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution

from pyvae import evaluation
from pyvae.config import Configurable, check_positive_int, check_positive_ints
from pyvae.kl import KLMethod, kl_divergence
from pyvae.likelihoods import LIKELIHOODS, Likelihood
from pyvae.outputs import LossTerms, VAEOutput
from pyvae.priors import PRIORS, Prior
from pyvae.registry import Registry
from pyvae.validation import check_finite, check_tensor, format_shape, validate_args_enabled

__all__ = ["MODELS", "BaseVAE", "register_model"]

ComponentSpec = str | Mapping[str, Any]
_HALF_DTYPES = (torch.float16, torch.bfloat16)


class BaseVAE(Configurable, nn.Module, abc.ABC):
    """Abstract variational autoencoder.

    A concrete model builds its networks in ``__init__`` (after calling
    ``super().__init__(input_shape=..., latent_dim=..., likelihood=..., prior=...)``) and defines
    :meth:`encode` and :meth:`decode`; reparameterisation, the loss, sampling and reconstruction
    are shared. The reconstruction term comes from ``self.likelihood`` (a
    :class:`~pyvae.likelihoods.Likelihood`), the KL term from ``self.prior`` (a
    :class:`~pyvae.priors.Prior`).

    Args:
        input_shape: shape of one example, without the batch dimension, e.g. ``(1, 28, 28)``.
        latent_dim: size D of the latent space.
        likelihood: a likelihood name (see :func:`pyvae.list_likelihoods`), config dict or instance.
        prior: a prior name (see :func:`pyvae.list_priors`), config dict or instance.
    """

    input_shape: tuple[int, ...]
    latent_dim: int
    likelihood: Likelihood
    prior: Prior

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        latent_dim: int,
        likelihood: ComponentSpec | Likelihood = "bernoulli",
        prior: ComponentSpec | Prior = "normal",
    ) -> None:
        super().__init__()
        self.input_shape = check_positive_ints("input_shape", input_shape)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.likelihood = LIKELIHOODS.build(likelihood)
        self.prior = PRIORS.build(prior)
        for component in (self.likelihood, self.prior):
            component.attach(self)

    # -- what a concrete model defines -------------------------------------------------------
    @abc.abstractmethod
    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x) for inputs x of shape (B, *input_shape): a distribution with batch shape (B,),
        event shape (latent_dim,) that supports ``rsample``."""

    @abc.abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The parameters of p(x|z) (e.g. Bernoulli logits) for z of shape (B, latent_dim);
        shape (B, *input_shape)."""

    # -- shared --------------------------------------------------------------------------------
    def reparameterize(self, posterior: Distribution) -> torch.Tensor:
        """A differentiable sample z ~ q(z|x) of shape (B, latent_dim) (``posterior.rsample()``):
        gradients reach the encoder through it."""
        return posterior.rsample()

    def forward(self, x: torch.Tensor) -> VAEOutput:
        """Encode, sample z with the reparameterisation trick, decode.

        Args:
            x: inputs of shape (B, *input_shape), floating point, on the model's device.
        """
        self.check_input(x)
        posterior = self.encode(x)
        z = self.reparameterize(posterior)
        params = self.decode(z)
        if params.shape != x.shape:
            raise RuntimeError(
                f"{type(self).__name__}.decode returned shape {format_shape(list(params.shape))}"
                f" for inputs of shape {format_shape(list(x.shape))}; it must return the data's"
                f" shape"
            )
        return VAEOutput(posterior=posterior, z=z, params=params)

    def loss(
        self,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        beta: float = 1.0,
        kl_method: KLMethod = "auto",
    ) -> LossTerms:
        """The negative ELBO of ``x`` given ``out = self(x)``, in nats.

        ``recon = -log p(x|z)`` summed over data dimensions and ``kl = KL(q(z|x) || p(z))`` are
        per example, shape (B,); ``loss = mean_b(recon + beta * kl)`` is the scalar to
        backpropagate.

        Args:
            x: the (clean) inputs, shape (B, *input_shape).
            out: the output of ``self(x)``.
            beta: the KL weight (beta-VAE), >= 0; 1 gives the ELBO.
            kl_method: ``"auto"`` (closed form when torch.distributions has one),
                ``"closed_form"`` or ``"monte_carlo"`` (from the sample ``out.z``).
        """
        # forward checked x's values; the likelihood's support check sees NaN too
        self._check_structure(x)
        if not isinstance(out, VAEOutput):
            raise TypeError(f"out: expected the VAEOutput of model(x), got {type(out).__name__}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ValueError(f"beta: expected a number >= 0, got {beta!r}")
        # Under autocast (or for a 16-bit model) params and z are 16-bit: upcast them so that the
        # loss terms are computed and reduced in float32.
        params = out.params.float() if out.params.dtype in _HALF_DTYPES else out.params
        z = out.z.float() if out.z.dtype in _HALF_DTYPES else out.z
        recon = -self.likelihood.log_prob(x, params)
        kl = kl_divergence(out.posterior, self.prior(), z=z, method=kl_method)
        loss = (recon + beta * kl).mean()
        if validate_args_enabled() and not bool(torch.isfinite(loss)):
            term = "recon (-log p(x|z))" if not bool(torch.isfinite(recon).all()) else "kl"
            raise FloatingPointError(
                f"the loss is not finite: its first non-finite term is {term}; check the "
                f"learning rate and the inputs, or switch checks off with "
                f"pyvae.set_validate_args(False)"
            )
        return LossTerms(loss=loss, recon=recon, kl=kl)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws z ~ p(z), decoded to the mean of p(x|z): shape (n, *input_shape)."""
        check_positive_int("n", n)
        z = self.prior.sample(n, generator=generator)
        return self.likelihood.mean(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z) at the posterior mean z = E[q(z|x)]: shape (B, *input_shape)."""
        self.check_input(x)
        return self.likelihood.mean(self.decode(self.encode(x).mean))

    def log_likelihood(
        self, x: torch.Tensor, *, k: int = 5000, chunk_size: int = 4096
    ) -> torch.Tensor:
        """The importance-sampled estimate of ``log p(x)`` per example, in nats, shape (B,).

        ``logsumexp_i(log w_i) - log k`` over ``k`` samples ``z_i ~ q(z|x)``, with
        ``log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)``; computed in eval mode without
        gradients, decoding at most ``max(chunk_size, B)`` samples at a time. See
        :func:`pyvae.log_likelihood`; for the IWAE training objective use
        ``-pyvae.iwae_bound(model, x, k).mean()``.
        """
        return evaluation.log_likelihood(self, x, k=k, chunk_size=chunk_size)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error if x is not a finite float tensor of shape (B, *input_shape) with
        the model's dtype, on the model's device (the finiteness check can be switched off with
        :func:`pyvae.set_validate_args`)."""
        self._check_structure(x)
        check_finite("x", x)

    def _check_structure(self, x: torch.Tensor) -> None:
        """Shape, dtype and device of x (no value read back from the device)."""
        reference = next(self.parameters(), None)
        check_tensor(
            "x",
            x,
            (None, *self.input_shape),
            dtype=None if reference is None else reference.dtype,
            device=None if reference is None else reference.device,
        )

    def save(
        self, path: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None
    ) -> Path:
        """Write the weights (safetensors) and the build config (JSON) to ``path``; no pickle.

        ``pyvae.load(path)`` rebuilds the model exactly. See :func:`pyvae.checkpoint.save`.

        Args:
            path: the file to write, conventionally ``*.safetensors``.
            metadata: optional JSON-serialisable values stored beside the config.
        """
        from pyvae.checkpoint import save

        return save(self, path, metadata=metadata)

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, latent_dim={self.latent_dim}"


MODELS: Registry[BaseVAE] = Registry("model", BaseVAE, "pyvae.models")
register_model = MODELS.register


def data_size(shape: Sequence[int]) -> int:
    """Number of data dimensions of one example."""
    return math.prod(shape)
