"""Priors p(z) over the latent space, as swappable components.

A prior is a module whose ``forward()`` builds a ``torch.distributions.Distribution`` with event
shape (latent_dim,) from its buffers and parameters on every call, so that ``.to(device)``,
``state_dict`` and optimisers just work. It is built with what it needs (``latent_dim``; the
VampPrior also ``input_shape``), which a model passes when it builds its prior by name or dict;
an instance belongs to one model (a second model refuses it). A prior that needs the model's
encoder (the VampPrior) sets ``needs_encoder`` and receives the encoder as the argument of
``forward``; models ask for p(z) with :meth:`pyvae.BaseVAE.prior_distribution`.
Register a new one with :func:`register_prior`; choose it
by name or instance when building a model (``pyvae.build("mlp", prior="normal")``).

Registered: ``normal`` (N(0, I), the default), ``learned_normal`` (a learned diagonal Gaussian),
``mog`` (a learned mixture of diagonal Gaussians) and ``vamp`` (the VampPrior). The KL term of the
first two against a Gaussian posterior is closed-form; the mixtures' is a Monte Carlo estimate
(see :func:`pyvae.kl_divergence`). Learned scales are ``exp`` of a learned log-scale.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from typing import ClassVar, cast

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from pyvae.config import Configurable, check_positive_int, check_positive_ints
from pyvae.kl import DiagonalNormal, StandardNormal
from pyvae.registry import Registry

__all__ = [
    "PRIORS",
    "DiagonalNormalMixture",
    "LearnedNormalPrior",
    "MixtureOfGaussiansPrior",
    "Prior",
    "StandardNormalPrior",
    "VampPrior",
    "draw",
    "list_priors",
    "register_prior",
]


Encoder = Callable[[torch.Tensor], Distribution]


class Prior(Configurable, nn.Module, abc.ABC):
    """Base class of priors p(z) over a latent space of size ``latent_dim``.

    Args:
        latent_dim: the size D of the latent space (a model passes its own).
    """

    #: Whether ``forward`` takes the model's encoder (``x -> q(z|x)``) as its argument.
    needs_encoder: ClassVar[bool] = False

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)

    @abc.abstractmethod
    def forward(self) -> Distribution:
        """p(z): batch shape (), event shape (latent_dim,)."""

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples of shape (n, latent_dim) (see :func:`draw`)."""
        if self.needs_encoder:
            raise TypeError(
                f"{type(self).__name__} needs the model's encoder: sample with model.sample(n)"
            )
        return draw(self(), n, generator=generator)


def draw(dist: Distribution, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` samples of ``dist`` (shape (n, *event_shape)), reproducible with a ``generator``.

    torch.distributions take no generator: with one, a seed drawn from it seeds a forked global
    RNG on the distribution's device, so the global random state is left untouched and the same
    generator state gives the same samples.
    """
    if generator is None:
        return dist.sample((n,))
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    device = _device_of(dist)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return dist.sample((n,))


def _device_of(dist: Distribution) -> torch.device:
    """The device of a distribution's parameters (CPU when it has none)."""
    for value in vars(dist).values():
        if isinstance(value, torch.Tensor):
            return value.device
        if isinstance(value, Distribution):
            return _device_of(value)
    return torch.device("cpu")


PRIORS: Registry[Prior] = Registry("prior", Prior, "pyvae.priors")
register_prior = PRIORS.register


def list_priors(pattern: str | None = None) -> list[str]:
    """Registered prior names, sorted, optionally filtered by an fnmatch wildcard."""
    return PRIORS.names(pattern)


@register_prior("normal")
class StandardNormalPrior(Prior):
    """The standard normal N(0, I), the default; its KL to a diagonal Gaussian is closed-form."""

    loc: torch.Tensor
    scale: torch.Tensor

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.register_buffer("loc", torch.zeros(self.latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(self.latent_dim), persistent=False)

    def forward(self) -> Distribution:
        """N(0, I) as a :class:`pyvae.kl.StandardNormal` (the fused closed-form KL's type)."""
        return StandardNormal(self.loc, self.scale)


def _diagonal_normal(loc: torch.Tensor, log_scale: torch.Tensor) -> Distribution:
    return DiagonalNormal(loc, log_scale.exp(), log_scale=log_scale)


class DiagonalNormalMixture(MixtureSameFamily):
    """A mixture of K diagonal Gaussians over vectors (torch's ``MixtureSameFamily`` with an
    ``Independent(Normal, 1)`` component of batch shape (K,)), whose ``log_prob`` is three
    matrix products instead of a (..., K, D) broadcast.

    With precisions ``w_k = 1 / scale_k^2``, the quadratic form of component k is
    ``sum_d w_kd (z_d - loc_kd)^2 = (z^2) . w_k - 2 z . (w_k loc_k) + loc_k^2 . w_k``: for
    values of shape (..., D) that is ``(..., D) @ (D, K)`` products, not ~10 elementwise passes
    over a (..., K, D) tensor (a VampPrior model with K = 500, D = 40 and 300-300 networks:
    231 -> 90 ms per training step on one CPU thread; it also makes its k = 5000 test NLL
    affordable). The expansion cancels where z is close to a component with a small scale, so it
    is computed in float64 (float32 on MPS, which has no float64) and the result is cast back to
    torch's dtype for it (the value's and the components' promoted). Sampling, ``mean`` and
    ``variance`` are torch's.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(value)``, shape ``value.shape[:-1]``, in nats."""
        if self._validate_args:
            self._validate_sample(value)
        normal = cast("Independent[Normal]", self.component_distribution).base_dist
        # torch's dtype for log_prob(value) (e.g. float32 for a bf16 z under autocast)
        result_dtype = torch.promote_types(value.dtype, normal.loc.dtype)
        dtype = result_dtype if value.device.type == "mps" else torch.float64
        v, loc, scale = value.to(dtype), normal.loc.to(dtype), normal.scale.to(dtype)
        precision = scale.pow(-2)  # (K, D)
        quadratic = (
            (v * v) @ precision.T - 2 * (v @ (loc * precision).T) + (loc * loc * precision).sum(-1)
        )  # (..., K)
        log_norm = -scale.log().sum(-1) - 0.5 * loc.shape[-1] * math.log(2 * math.pi)
        log_weights = torch.log_softmax(self.mixture_distribution.logits.to(dtype), dim=-1)
        log_p = torch.logsumexp(log_weights + log_norm - 0.5 * quadratic, dim=-1)
        return log_p.to(result_dtype)


def _mixture(weights: Categorical, components: Distribution) -> MixtureSameFamily:
    """``MixtureSameFamily(weights, components)``; a :class:`DiagonalNormalMixture` (the fast
    ``log_prob``) when the components are diagonal Gaussians of batch shape (K,)."""
    diagonal = (
        isinstance(components, Independent)
        and components.reinterpreted_batch_ndims == 1
        and isinstance(components.base_dist, Normal)
        and len(components.batch_shape) == 1
    )
    kind = DiagonalNormalMixture if diagonal else MixtureSameFamily
    return kind(weights, components, validate_args=False)


@register_prior("learned_normal")
class LearnedNormalPrior(Prior):
    """A learned diagonal Gaussian N(loc, diag(exp(log_scale)^2)), initialised to N(0, I).

    Its KL to a diagonal Gaussian posterior is closed-form.
    """

    loc: nn.Parameter
    log_scale: nn.Parameter

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.loc = nn.Parameter(torch.zeros(self.latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(self.latent_dim))

    def forward(self) -> Distribution:
        return _diagonal_normal(self.loc, self.log_scale)


@register_prior("mog")
class MixtureOfGaussiansPrior(Prior):
    """A learned mixture of ``n_components`` diagonal Gaussians,
    ``p(z) = sum_k pi_k N(z; loc_k, diag(exp(log_scale_k)^2))`` with ``pi = softmax(logits)``.

    Initialised with equal weights, unit scales and means drawn from N(0, I) (from torch's global
    random generator, so seed it for reproducible models). The KL term is a Monte Carlo estimate.

    Args:
        latent_dim: the size D of the latent space.
        n_components: the number K of mixture components.
    """

    loc: nn.Parameter
    log_scale: nn.Parameter
    logits: nn.Parameter

    def __init__(self, latent_dim: int, n_components: int = 10) -> None:
        super().__init__(latent_dim)
        self.n_components = check_positive_int("n_components", n_components)
        k, d = self.n_components, self.latent_dim
        self.loc = nn.Parameter(torch.randn(k, d))
        self.log_scale = nn.Parameter(torch.zeros(k, d))
        self.logits = nn.Parameter(torch.zeros(k))

    def forward(self) -> Distribution:
        return _mixture(
            Categorical(logits=self.logits, validate_args=False),
            _diagonal_normal(self.loc, self.log_scale),
        )


@register_prior("vamp")
class VampPrior(Prior):
    """The VampPrior (Tomczak and Welling, 2018, https://arxiv.org/abs/1705.07120):
    ``p(z) = (1/K) sum_k q(z | u_k)``, the mixture of the model's own posteriors at ``K`` learned
    pseudo-inputs ``u_k``.

    ``pseudo_inputs`` is a parameter of shape (K, *input_shape), initialised uniform in [0, 1)
    (from torch's global random generator); to start from data instead, copy K training examples
    into it (``model.prior.pseudo_inputs.data.copy_(x[:K])``). Every call encodes the K
    pseudo-inputs with the model's encoder, so gradients reach both. The KL term is a Monte Carlo
    estimate. With batch normalisation in the encoder, encoding the pseudo-inputs in training mode
    also updates its running statistics.

    Args:
        latent_dim: the size D of the latent space.
        input_shape: the shape of one input (of a pseudo-input).
        n_components: the number K of pseudo-inputs.
    """

    needs_encoder = True
    pseudo_inputs: nn.Parameter

    def __init__(self, latent_dim: int, input_shape: Sequence[int], n_components: int = 50) -> None:
        super().__init__(latent_dim)
        self.input_shape = check_positive_ints("input_shape", input_shape)
        self.n_components = check_positive_int("n_components", n_components)
        self.pseudo_inputs = nn.Parameter(torch.rand(self.n_components, *self.input_shape))

    def forward(self, encode: Encoder) -> Distribution:  # type: ignore[override]
        """p(z) = (1/K) sum_k q(z|u_k), with ``encode`` the model's encoder ``x -> q(z|x)``."""
        uniform = self.pseudo_inputs.new_zeros(self.n_components)
        weights = Categorical(logits=uniform, validate_args=False)
        return _mixture(weights, encode(self.pseudo_inputs))
